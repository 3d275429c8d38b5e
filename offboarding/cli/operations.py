"""`offboard` commands. Running the installation: the link endpoint, a local stack, Prefect's
set-up, backups, signing keys and the data map's check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = ["register"]


def _serve_links(args: argparse.Namespace) -> int:
    import uvicorn

    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.web import create_app

    app = create_app(Settings(), PrefectRuns())
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.destruction.compaction import compact_destroyed, pending_cases

    settings = Settings()
    if args.pending:
        for case in pending_cases(settings):
            print(case.case_id)
        return 0
    run = compact_destroyed(settings, say=print)
    print(run.summary())
    for case_id, addendum in sorted(run.closed.items()):
        print(f"  {case_id}: addendum {addendum}")
    for case_id, residue in sorted(run.residue.items()):
        print(f"  {case_id}: residue still on disk ({residue}); tried again at the next run")
    return 1 if run.residue else 0


def _serve_local(args: argparse.Namespace) -> int:
    from offboarding.dev.local import serve_local

    return serve_local(Path(args.home), args.port)


def _setup_prefect(args: argparse.Namespace) -> int:
    from flows.adapter import (
        DESTRUCTION_LIMIT_NAME,
        EXPORT_LIMIT_NAME,
        WORK_POOL,
        set_up_prefect,
    )
    from offboarding.core.config import Settings

    settings = Settings()
    set_up_prefect(settings)
    print(
        f"work pool {WORK_POOL!r} (process) ready; concurrency limits {EXPORT_LIMIT_NAME}="
        f"{settings.export.concurrency}, {DESTRUCTION_LIMIT_NAME}="
        f"{settings.destruction.concurrency}. Next: prefect deploy --all, then "
        f"prefect worker start --pool {WORK_POOL}"
    )
    return 0


def _backup(args: argparse.Namespace) -> int:
    from offboarding.backup.backup import take_backup
    from offboarding.core.config import Settings
    from offboarding.registry import TenantRegistry

    settings = Settings()
    for tenant in args.tenant or TenantRegistry(settings).tenants(status="active"):
        result = take_backup(settings, tenant)
        print(
            f"{tenant}: backup {result.backup_id} ({result.rows} rows, {result.files} files, "
            f"key {result.key_id}) in {', '.join(result.locations)}"
        )
    return 0


def _restore_check(args: argparse.Namespace) -> int:
    from offboarding.backup.backup import restore_check
    from offboarding.core.config import Settings

    for check in restore_check(Settings(), args.tenant):
        print(
            f"OK {check.location}: backup {check.backup_id} of {check.taken_at:%Y-%m-%d %H:%M} "
            f"UTC decrypts and verifies ({check.entries} entries, {check.rows} rows)"
        )
    return 0


def _keys(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.core.signing import load_key_list, rotate_signing_key
    from offboarding.evidence.archive import publish_key_list
    from offboarding.stores import open_store

    settings = Settings()
    if args.keys_command == "rotate":
        retired, new = rotate_signing_key(settings.keys_dir)
        print(f"retired {retired.fingerprint} at {retired.valid_until}; its private key is in "
              f"{settings.keys_dir / 'retired'}: take it offline or destroy it")  # fmt: skip
        print(f"signing now with {new.fingerprint}, introduced by the retired key's signature")
    keys = load_key_list(settings.keys_dir)
    published = publish_key_list(open_store(settings.store_url("archive"), write_once=True), keys)
    for key in keys.keys:
        until = key.valid_until.isoformat() if key.valid_until else "current"
        print(f"{key.fingerprint}  from {key.valid_from.isoformat()}  until {until}")
    print(f"published in the archive as {published}; give auditors this list "
          f"({settings.keys_dir / 'signing-keys.json'})")  # fmt: skip
    return 0


def _datamap_check(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.locations.reach import check_datamap

    datamap, checks = check_datamap(Settings())
    if args.json:
        print(json.dumps({"datamap": datamap.source, "ok": all(c.ok for c in checks),
                          "systems": [c.__dict__ for c in checks]}, indent=2))  # fmt: skip
        return 0 if all(c.ok for c in checks) else 1
    print(f"data map {datamap.source}: {len(checks)} systems")
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(
            f"  {'ok' if c.ok else '!!'} {c.name:<{width}}  {c.binding:<28} {c.status}: {c.detail}"
        )
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"a case would stop at its inventory: {', '.join(failed)} (see above)")
        return 1
    print("every system is bound and answered: cases can take their inventory")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's commands to the `offboard` parser."""
    serve_links = commands.add_parser(
        "serve-links", help="serve local download links and the acknowledgement page"
    )
    serve_links.add_argument("--host", default="127.0.0.1")
    serve_links.add_argument("--port", type=int, default=8765)
    serve_links.set_defaults(run=_serve_links)

    setup = commands.add_parser(
        "setup-prefect", help="create the work pool and the concurrency limits on the server"
    )
    setup.set_defaults(run=_setup_prefect)

    backup = commands.add_parser("backup", help="back up tenants now (default: every active one)")
    backup.add_argument("tenant", nargs="*")
    backup.set_defaults(run=_backup)

    compact = commands.add_parser(
        "compact",
        help="rewrite the tables of the tenants destroyed since the last run and prove, by "
        "their canaries, that their bytes left the files (a signed addendum per case)",
    )
    compact.add_argument("--pending", action="store_true", help="list the cases waiting")
    compact.set_defaults(run=_compact)

    restore = commands.add_parser(
        "restore-check", help="decrypt and verify the newest backup in every location"
    )
    restore.add_argument("tenant")
    restore.set_defaults(run=_restore_check)

    keys = commands.add_parser("keys", help="the operator's signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_commands.add_parser(
        "list", help="the keys with their validity periods; publishes the list in the archive"
    ).set_defaults(run=_keys)
    keys_commands.add_parser(
        "rotate", help="retire the signing key; the new one is introduced by the old"
    ).set_defaults(run=_keys)

    local = commands.add_parser(
        "serve-local", help="a local Prefect server with the UI, every deployment and a worker"
    )
    local.add_argument("--home", default=".offboard/serve")
    local.add_argument("--port", type=int, default=4200, help="the Prefect UI/API port")
    local.set_defaults(run=_serve_local)

    datamap = commands.add_parser("datamap", help="the data map of the platform's systems")
    datamap_commands = datamap.add_subparsers(dest="datamap_command", required=True)
    datamap_check = datamap_commands.add_parser(
        "check", help="validate OFFBOARD_DATAMAP and reach every bound system"
    )
    datamap_check.add_argument("--json", action="store_true")
    datamap_check.set_defaults(run=_datamap_check)
