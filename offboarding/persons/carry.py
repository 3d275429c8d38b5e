"""An open request carried out by the kind's one handler: the CLI (`offboard request run`) and
the person-request deployment both come here, and read the same outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from offboarding.core.config import Settings
from offboarding.core.errors import TenantError
from offboarding.persons.access import answer_access
from offboarding.persons.erasure import erase_person
from offboarding.persons.requests import RequestKind, get_request

__all__ = ["HANDLERS", "Outcome", "carry_out"]


@dataclass(frozen=True)
class Outcome:
    """What carrying out a request did, for people: a line, a table of counts (what the UI
    publishes), and the signed record's key. Counts and references only."""

    request: str
    summary: str
    details: str  # the UI table's description, after the request's kind and reference
    title: str  # the table's name in the Prefect UI: "answer" or "erasure"
    rows: list[dict[str, Any]]
    record_key: str


def _answer(settings: Settings, ref: str, say: Callable[[str], None]) -> Outcome:
    answer = answer_access(settings, ref, say=say)
    rows: list[dict[str, Any]] = [{"table": t, "rows": n} for t, n in answer.tables.items()]
    rows.append({"table": "files", "rows": answer.files})
    return Outcome(
        request=ref,
        summary=f"answered: {answer.rows} row(s) in {len(answer.tables)} table(s) and "
        f"{answer.files} file(s) ({answer.file_bytes:,} bytes), links to the client's contact "
        f"until {answer.link_expires_at:%Y-%m-%d %H:%M} UTC; record {answer.record_key}",
        details=f"links sent to the client's contact, valid until "
        f"{answer.link_expires_at:%Y-%m-%d %H:%M} UTC; record {answer.record_key}",
        title="answer",
        rows=rows,
        record_key=answer.record_key,
    )


def _erase(settings: Settings, ref: str, say: Callable[[str], None]) -> Outcome:
    erased = erase_person(settings, ref, say=say)
    kept = "kept, personal columns replaced"
    rows: list[dict[str, Any]] = [
        {"table": t, "deleted": n, kept: 0} for t, n in erased.deleted.items()
    ] + [{"table": t, "deleted": 0, kept: n} for t, n in erased.pseudonymised.items()]
    rows.append({"table": "files", "deleted": erased.files, kept: 0})
    return Outcome(
        request=ref,
        summary=f"erased: {sum(erased.deleted.values())} row(s) deleted, "
        f"{sum(erased.pseudonymised.values())} kept with personal columns replaced, "
        f"{erased.files} file(s), {erased.backups_rebased} older backup(s) replaced; "
        f"certificate {erased.certificate_key} in the archive",
        details=f"certificate {erased.certificate_key}; {erased.backups_rebased} older "
        "backup(s) replaced",
        title="erasure",
        rows=rows,
        record_key=erased.certificate_key,
    )


# Each kind the pipeline carries out, and how; the others are the client administrator's.
HANDLERS: dict[RequestKind, Callable[[Settings, str, Callable[[str], None]], Outcome]] = {
    RequestKind.ACCESS: _answer,
    RequestKind.PORTABILITY: _answer,
    RequestKind.ERASURE: _erase,
}


def carry_out(settings: Settings, ref: str, say: Callable[[str], None] = print) -> Outcome:
    """Carry out the open request `ref` by its kind's handler."""
    request = get_request(settings, ref)
    handler = HANDLERS.get(request.kind)
    if handler is None:
        raise TenantError(
            f"request {ref} is a {request.kind} request: the client's administrator carries it "
            "out in the application (the pipeline copies and erases a person's data; it does "
            "not edit it). It stays on the deadline watch until closed (offboard request close)"
        )
    return handler(settings, ref, say)
