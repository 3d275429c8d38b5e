"""The daily deadline watch: every case against its 90-day deadline, and every open request
about one person against its month (clause 2.2.7). Cases within the warning period and
requests due within a week are flagged; a case past its deadline and not destroyed, or a
request past its deadline and not answered, fails the run, loudly."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

from flows import adapter
from offboarding.core.errors import DeadlineError
from offboarding.persons import requests_due
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
    soon, late = requests_due(adapter.settings(), datetime.now(UTC).date())
    for request in soon + late:
        state = "OVERDUE" if request in late else "due soon"
        logger.warning(
            "person request %s of %s (%s): %s, due %s",
            request.ref, request.tenant, request.kind, state, request.due_on,
        )  # fmt: skip
    counts["requests due soon"], counts["requests overdue"] = len(soon), len(late)
    overdue = [c.case_id for c in cases if c.status == "overdue"]
    if late:
        raise DeadlineError(
            f"{len(late)} person request(s) past their deadline and not answered: "
            f"{', '.join(r.ref for r in late)}. Answer them now (offboard request list), and "
            "tell the clients' DPOs"
        )
    if overdue:
        raise DeadlineError(
            f"{len(overdue)} case(s) past their destruction deadline and not destroyed: "
            f"{', '.join(overdue)}. Destroy now (offboard release --now if held) and inform "
            "the clients' DPOs"
        )
    return counts
