"""Named points where a test can make the process crash, to prove every step can be rerun.

`OFFBOARD_FAULT=<point>` makes `crash_point(<point>)` raise `InjectedCrash`, a BaseException
that no `except Exception` in the code swallows, like a killed worker. Unset in production,
where each call is one dictionary lookup.
"""

from __future__ import annotations

import os

__all__ = ["InjectedCrash", "crash_point"]


class InjectedCrash(BaseException):
    """A simulated crash at a named point (tests only)."""


def crash_point(point: str) -> None:
    if os.environ.get("OFFBOARD_FAULT") == point:
        raise InjectedCrash(point)
