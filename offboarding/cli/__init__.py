"""The `offboard` command: the demo, bundle verification, and what support staff do."""

from __future__ import annotations

import argparse
import os
import sys

from offboarding.cli import audit, cases, decisions, operations, persons
from offboarding.core.errors import OffboardingError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (cases, decisions, persons, operations, audit):
        module.register(commands)
    return parser


def _unexpected(error: Exception) -> str:
    """An error the pipeline did not raise itself, as one line that says what to check."""
    import psycopg

    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, psycopg.OperationalError):
        return (
            f"the platform database did not answer ({first}). Check OFFBOARD_DATABASE_URL "
            "(host, port, dbname, user) and that the server is running and reachable"
        )
    if isinstance(error, psycopg.Error):
        return f"the platform database refused a statement: {first}"
    return f"{type(error).__name__}: {first}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except OffboardingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if os.environ.get("OFFBOARD_DEBUG"):
            raise
        print(f"error: {_unexpected(error)}", file=sys.stderr)
        print("(set OFFBOARD_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2
