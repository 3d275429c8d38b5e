"""Every case against its contractual deadline (clause 2.3.2: destroyed within 90 days of
restitution), read from the audit archive: what `deadline-watch` checks daily."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from offboarding.audit import AuditTrail
from offboarding.config import CONTRACT_DESTRUCTION_LIMIT, Settings
from offboarding.records import CaseRef
from offboarding.signing import Signer
from offboarding.store import open_store

__all__ = ["CaseDeadline", "case_deadlines"]

Status = Literal[
    "waiting", "scheduled", "held", "due-soon", "overdue", "destroyed", "destroyed-late"
]


_PLAN_KINDS = ("destruction-scheduled", "destruction-rescheduled", "destruction-held")


@dataclass(frozen=True)
class CaseDeadline:
    tenant: str
    case_id: str
    status: Status
    deadline: datetime | None
    scheduled_for: datetime | None
    destroyed_at: datetime | None
    note: str

    @property
    def flagged(self) -> bool:
        return self.status in ("due-soon", "overdue", "destroyed-late")


def _cases(settings: Settings) -> list[CaseRef]:
    archive = open_store(settings.store_url("archive"))
    ids = {
        tuple(o.key.split("/")[1:3])
        for o in archive.list_objects("cases/")
        if o.key.count("/") >= 3
    }
    return [CaseRef(tenant=t, case_id=c) for t, c in sorted(ids)]


def case_deadlines(settings: Settings, now: datetime) -> list[CaseDeadline]:
    signer = Signer.load_or_create(settings.keys_dir)
    found: list[CaseDeadline] = []
    for case in _cases(settings):
        documents = [e.document for e in AuditTrail(settings, case, signer).events()]
        kinds = {d["kind"]: d for d in documents}  # the latest of each kind
        plans = [d for d in documents if d["kind"] in _PLAN_KINDS]
        deadline = datetime.fromisoformat(plans[-1]["data"]["deadline"]) if plans else None
        scheduled = datetime.fromisoformat(plans[-1]["data"]["scheduled_for"]) if plans else None
        certified = kinds.get("certificate")
        if certified:
            document = certified["data"]["certificate"]
            gone_by = datetime.fromisoformat(document["all_copies_gone_by"])
            deadline = datetime.fromisoformat(document["deadline"])  # what was certified against
            late = deadline is not None and gone_by > deadline
            found.append(CaseDeadline(
                case.tenant, case.case_id, "destroyed-late" if late else "destroyed", deadline,
                scheduled, gone_by, "all copies gone after the deadline" if late else "",
            ))  # fmt: skip
            continue
        if deadline is None:
            delivered = kinds.get("delivered")
            latest = (
                datetime.fromisoformat(delivered["at"]) + settings.acknowledgement_timeout
                + CONTRACT_DESTRUCTION_LIMIT if delivered else None
            )  # fmt: skip
            found.append(CaseDeadline(
                case.tenant, case.case_id, "waiting", None, None, None,
                f"awaiting acknowledgement; deadline at the latest {latest:%Y-%m-%d}"
                if latest else "not delivered yet",
            ))  # fmt: skip
            continue
        held = plans[-1]["kind"] == "destruction-held" or (
            kinds.get("legal-hold-placed") and (
                not kinds.get("legal-hold-lifted")
                or kinds["legal-hold-lifted"]["seq"] < kinds["legal-hold-placed"]["seq"]
            )
        )  # fmt: skip
        if now > deadline:
            status: Status = "overdue"
            note = f"past the deadline by {(now - deadline).days} day(s) and not destroyed"
        elif deadline - now <= settings.deadline_warning:
            status, note = "due-soon", f"{(deadline - now) / timedelta(days=1):.1f} day(s) left"
        else:
            status, note = ("held", "on legal hold") if held else ("scheduled", "")
        if held and status != "held":
            note += "; on legal hold"
        found.append(
            CaseDeadline(case.tenant, case.case_id, status, deadline, scheduled, None, note)
        )
    return found
