"""Requests about one person (clause 2.2.7), as a deployment with a form in the Prefect UI and a
trigger on the platform's `tenant.person.request` event.

    a client's request     tenant, kind, person (the key in the data map's person table):
                           recorded with its month, then carried out: access or portability
                           answered with the person's bundle, erasure with a certificate
    a direct request       tenant, kind, statement (st-…: the person's name, address and words,
                           kept by `offboard statement TENANT request`): recorded and
                           forwarded to the client's contact, never carried out

Prefect sees references, counts and dates: the person's key, the request's reference, the
statement's reference, rows and files per table. Never a value of the person's.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows import adapter
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.persons import forward_statement, get_request, open_request
from offboarding.persons.access import answer_access
from offboarding.persons.erasure import erase_person
from offboarding.runs import OptionalStatementRef

__all__ = ["person_request"]


@flow(name="person-request", flow_run_name="person-request-{kind}-{tenant}")
def person_request(
    tenant: str,
    kind: Literal["access", "portability", "erasure"],
    person: str = "",
    statement: OptionalStatementRef = "",
    request: str = "",
) -> dict[str, Any]:
    """Carry out a request about one person of a tenant, or forward one sent to us directly.

    Args:
        tenant: The tenant's id, exactly as in the tenants registry.
        kind: access or portability (a copy of the person's data, delivered to the client's
            contact), or erasure (with a signed certificate).
        person: For the client's request: the person's key in the person table (e.g. the
            user's id), never a name or an address.
        statement: For a request sent to us directly by the person: the reference (st-…) of
            their words, kept by `offboard statement TENANT request --name … --contact …
            --text …`. It is forwarded to the client's contact and not carried out.
        request: An already recorded request to carry out (pr-…, from `offboard request
            open`), instead of recording a new one.
    """
    settings = adapter.settings()
    logger = adapter.logger()
    if statement:
        if person or request:
            raise TenantError(
                "a direct request (statement) names no person and no request: the client "
                "identifies the person, then opens its own request"
            )
        forwarded = forward_statement(settings, tenant, kind, statement)
        logger.info(
            "direct %s request %s of %s forwarded to the client's contact, not carried out; "
            "the client's answer is due by %s",
            kind, forwarded.ref, tenant, forwarded.due_on,
        )  # fmt: skip
        return {"request": forwarded.ref, "status": forwarded.status}
    if request:
        opened = get_request(settings, request)
        if (opened.tenant, opened.kind) != (tenant, kind) or (person and opened.person != person):
            raise TenantError(
                f"request {request} is a {opened.kind} request of tenant {opened.tenant!r} "
                f"for person {opened.person}: the form's tenant, kind and person must match it"
            )
    elif person:
        opened = open_request(settings, tenant, person, kind)
        logger.info("%s request %s recorded, due by %s", kind, opened.ref, opened.due_on)
    else:
        raise TenantError(
            "give the person's key (the client's request) or the statement of a request sent "
            "to us directly"
        )
    say = logger.info
    where = CaseRef(tenant=tenant, case_id=opened.ref)
    if kind == "erasure":
        erased = erase_person(settings, opened.ref, say=say)
        rows = [
            {"table": t, "deleted": n, "kept, personal columns replaced": 0}
            for t, n in erased.deleted.items()
        ] + [
            {"table": t, "deleted": 0, "kept, personal columns replaced": n}
            for t, n in erased.pseudonymised.items()
        ]
        rows.append({"table": "files", "deleted": erased.files,
                     "kept, personal columns replaced": 0})  # fmt: skip
        adapter.publish_table(
            where, "erasure", rows,
            f"Erasure {opened.ref}: certificate {erased.certificate_key}; "
            f"{erased.backups_rebased} older backup(s) replaced",
        )  # fmt: skip
        return {"request": opened.ref, "status": "answered",
                "certificate": erased.certificate_key}  # fmt: skip
    answer = answer_access(settings, opened.ref, say=say)
    rows = [{"table": t, "rows": n} for t, n in answer.tables.items()]
    rows.append({"table": "files", "rows": answer.files})
    adapter.publish_table(
        where, "answer", rows,
        f"{kind.capitalize()} {opened.ref}: links sent to the client's contact, valid until "
        f"{answer.link_expires_at:%Y-%m-%d %H:%M} UTC; record {answer.record_key}",
    )  # fmt: skip
    return {"request": opened.ref, "status": "answered", "record": answer.record_key}
