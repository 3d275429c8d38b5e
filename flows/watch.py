"""The case watch: on a schedule, look after every case waiting for a person.

For each suspended offboard run it sends the reminder that is due, re-issues links that
expired, and once the acknowledgement period is over resumes the case as "deemed delivered"
(the 90-day clock then starts). For each destroy run waiting for an attested system, it
reminds the system's role (and says when the attestation is overdue). The waiting runs hold
no worker; this short run is what keeps them moving. The rules are
`offboarding.delivery.delivery.watch_cases` and `offboarding.destruction.attestation`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from flows import adapter
from offboarding.delivery.delivery import watch_cases
from offboarding.destruction.attestation import remind_attestations


@flow(name="case-watch", flow_run_name="case-watch")
def case_watch() -> dict[str, int]:
    """Remind, re-issue expired links, and continue cases past the acknowledgement period."""
    settings, runs = adapter.settings(), adapter.PrefectRuns()
    counts = watch_cases(settings, runs, log=adapter.logger())
    counts["attestation reminders"] = remind_attestations(
        settings, runs.waiting_destructions(), datetime.now(UTC), log=adapter.logger().warning
    )
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} case(s) could not be followed up: see the logs")
    return counts
