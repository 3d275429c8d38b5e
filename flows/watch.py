"""The case watch: on a schedule, look after every case waiting for an acknowledgement.

For each suspended offboard run it sends the reminder that is due, re-issues links that
expired, and once the acknowledgement period is over resumes the case as "deemed delivered"
(the 90-day clock then starts). The waiting runs hold no worker; this short run is what
keeps them moving.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.exceptions import MissingContextError
from prefect.flow_runs import resume_flow_run

from offboarding.case import new_case
from offboarding.config import Settings
from offboarding.delivery import carry_out, delivery_status, plan_follow_up
from offboarding.errors import OffboardingError
from offboarding.scheduling import waiting_runs

DEEMED_BY = "case watch: no acknowledgement within the acknowledgement period"


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, scripts)
        return logging.getLogger("offboarding.watch")


def watch_cases(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """One pass over the waiting cases; returns how many got each follow-up."""
    logger = _logger()
    counts = {"waiting": 0, "remind": 0, "reissue": 0, "deemed-delivered": 0, "failed": 0}
    for run_id, tenant in waiting_runs():
        counts["waiting"] += 1
        case = new_case(tenant, run_id)
        try:
            at = now or datetime.now(UTC)
            follow_up = plan_follow_up(settings, delivery_status(settings, case), at)
            if follow_up.action == "deemed-delivered":
                resume_flow_run(
                    UUID(run_id),
                    run_input={"acknowledged_by": DEEMED_BY, "deemed_delivered": True},
                )
            elif follow_up.action != "none":
                carry_out(settings, case, follow_up, at)
        except OffboardingError as error:
            counts["failed"] += 1
            logger.error("case %s: follow-up failed: %s", case.case_id, error)
            continue
        if follow_up.action != "none":
            counts[follow_up.action] += 1
            logger.info("case %s: %s (%s)", case.case_id, follow_up.action, follow_up.reason)
    return counts


@flow(name="case-watch", flow_run_name="case-watch")
def case_watch() -> dict[str, int]:
    """Remind, re-issue expired links, and continue cases past the acknowledgement period."""
    counts = watch_cases(Settings())
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} case(s) could not be followed up: see the logs")
    return counts
