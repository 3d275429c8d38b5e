"""The daily deadline watch: every case against its 90-day deadline. Cases within the warning
period are flagged; a case past its deadline and not destroyed fails the run, loudly."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from flows import adapter
from offboarding.core.errors import DeadlineError
from offboarding.scheduling.deadlines import case_deadlines


@flow(name="deadline-watch", flow_run_name="deadline-watch")
def deadline_watch() -> dict[str, int]:
    """List every case with its deadline; flag those due soon; fail for any overdue."""
    logger = adapter.logger()
    cases = case_deadlines(adapter.settings(), datetime.now(UTC))
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.status] = counts.get(case.status, 0) + 1
        log = logger.warning if case.flagged else logger.info
        log("%s %s: %s, deadline %s %s", case.tenant, case.case_id, case.status,
            case.deadline or "-", case.note)  # fmt: skip
    overdue = [c.case_id for c in cases if c.status == "overdue"]
    if overdue:
        raise DeadlineError(
            f"{len(overdue)} case(s) past their destruction deadline and not destroyed: "
            f"{', '.join(overdue)}. Destroy now (offboard release --now if held) and inform "
            "the clients' DPOs"
        )
    return counts
