"""Named points where a test can make the process crash, to prove every step can be rerun.

`OFFBOARD_FAULT=<point>` (or `<point>#<n>`: at its n-th passage) makes `crash_point(<point>)`
raise `InjectedCrash`, a BaseException no `except Exception` swallows; with
`OFFBOARD_FAULT_MODE=kill` the process SIGKILLs itself instead, like a worker killed by the
kernel. `OFFBOARD_FAULT_ONCE=<file>` crashes only the process that creates that file first:
once across a cluster's restarted workers. Unset in production, where each call is one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["InjectedCrash", "crash_point"]

_passages: Counter[str] = Counter()


class InjectedCrash(BaseException):
    """A simulated crash at a named point (tests only)."""


def crash_point(point: str) -> None:
    wanted = os.environ.get("OFFBOARD_FAULT")
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if name != point:
        return
    _passages[point] += 1
    if _passages[point] < int(nth or 1):
        return
    _passages[point] = 0
    once = os.environ.get("OFFBOARD_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if os.environ.get("OFFBOARD_FAULT_MODE") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedCrash(wanted)
