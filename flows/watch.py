"""The case watch: on a schedule, look after every case waiting for an acknowledgement.

For each suspended offboard run it sends the reminder that is due, re-issues links that
expired, and once the acknowledgement period is over resumes the case as "deemed delivered"
(the 90-day clock then starts). The waiting runs hold no worker; this short run is what
keeps them moving. The rules are `offboarding.delivery.delivery.watch_cases`.
"""

from __future__ import annotations

from prefect import flow

from flows import adapter
from offboarding.delivery.delivery import watch_cases


@flow(name="case-watch", flow_run_name="case-watch")
def case_watch() -> dict[str, int]:
    """Remind, re-issue expired links, and continue cases past the acknowledgement period."""
    counts = watch_cases(adapter.settings(), adapter.PrefectRuns(), log=adapter.logger())
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} case(s) could not be followed up: see the logs")
    return counts
