"""The client's people and periods during the contract, as deployments.

    person-request    a request about one person (clause 2.2.7), with a form and a trigger on
                      the platform's `tenant.person.request` event
    retention         the clients' retention rules (clause 2.2.2), every day
    retention-rule    set or retire a rule, with a form
    forget-contacts   a former client's contacts, three years on (clause 1.1.4), every day

A person request is either of:

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

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow

from flows import adapter
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.people import statement as people_statement
from offboarding.persons import forward_statement, get_request, open_request
from offboarding.persons.carry import carry_out
from offboarding.persons.contacts import contacts_due, forget_contacts
from offboarding.persons.requests import RequestKind
from offboarding.persons.retention import retire_rule, run_rules, set_rule
from offboarding.runs import OptionalStatementRef, StatementRef

__all__ = ["forget_contacts_due", "person_request", "retention", "retention_rule"]


@flow(name="person-request", flow_run_name="person-request-{kind}-{tenant}")
def person_request(
    tenant: str,
    kind: RequestKind,
    person: str = "",
    statement: OptionalStatementRef = "",
    request: str = "",
) -> dict[str, Any]:
    """Carry out a request about one person of a tenant, or forward one sent to us directly.

    Args:
        tenant: The tenant's id, exactly as in the tenants registry.
        kind: access or portability (a copy of the person's data, delivered to the client's
            contact), or erasure (with a signed certificate); rectification and restriction
            only as a direct request, forwarded (the client edits in the application).
        person: For the client's request: the person's key in the person table (e.g. the
            user's id), never a name or an address.
        statement: For a request sent to us directly by the person: the reference (st-…) of
            their words, kept by the staff page (/staff/) or `offboard statement TENANT
            request --name … --contact … --text …`. It is forwarded to the client's contact
            and not carried out.
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
    if not kind.by_the_pipeline:
        raise TenantError(
            f"a {kind} request is carried out by the client's administrator in the application: "
            "record it with `offboard request open` and close it when done"
        )
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
    outcome = carry_out(settings, opened.ref, say=logger.info)
    adapter.publish_table(
        CaseRef(tenant=tenant, case_id=opened.ref), outcome.title, outcome.rows,
        f"{kind.capitalize()} {opened.ref}: {outcome.details}",
    )  # fmt: skip
    key = "certificate" if outcome.title == "erasure" else "record"
    return {"request": opened.ref, "status": "answered", key: outcome.record_key}


@flow(name="retention", flow_run_name="retention")
def retention(tenants: list[str] | None = None) -> dict[str, int]:
    """Run every active retention rule the clients set (or the given tenants'): delete what is
    past its period, with a signed record per tenant. A rule that could not run this time (rows
    others reference, or a catalogue change) fails the run once the others are done.

    Args:
        tenants: Only these tenants' rules (all tenants' when empty).
    """
    settings = adapter.settings()
    logger = adapter.logger()
    runs = run_rules(settings, tenants or None, say=logger.info)
    refused: list[str] = []
    for run in runs:
        if run.skipped:
            logger.info("%s: rules not run (%s)", run.tenant, run.skipped)
            refused += [f"{run.tenant} (every rule)"] if run.failed else []
            continue
        adapter.publish_table(
            CaseRef(tenant=run.tenant, case_id=f"{run.tenant}-{run.run}"), "retention",
            [{"rule": r.rule, "table": r.target, "cutoff": r.cutoff, "deleted": r.deleted,
              "files": r.files, "refused": r.refused} for r in run.results],
            f"Retention run {run.run} of {run.tenant}: record {run.record_key}",
        )  # fmt: skip
        refused += [f"{run.tenant} {r.rule}" for r in run.results if r.refused]
    if refused:
        raise TenantError(
            f"{len(refused)} retention rule(s) could not run: {', '.join(refused)}; the "
            "run's table artifact and signed record say why"
        )
    return {run.tenant: sum(r.deleted for r in run.results) for run in runs}


@flow(name="retention-rule", flow_run_name="retention-rule-{action}-{tenant}")
def retention_rule(
    tenant: str,
    action: Literal["set", "retire"],
    statement: StatementRef,
    table: str = "",
    age_column: str = "",
    period: str = "",
    files: str = "",
    rule: str = "",
) -> str:
    """Set a retention rule the client asked for, or retire one.

    Args:
        tenant: The tenant's id, exactly as in the tenants registry.
        action: set, or retire.
        statement: Who at the client asked, as a rule statement's reference (st-…, from
            the staff page, /staff/, or `offboard statement TENANT rule --name …`).
        table: To set: the schema.table, e.g. public.chat_messages.
        age_column: To set: the column dating each row, e.g. sent_at.
        period: To set: how long rows are kept, e.g. "1 year", "6 months", "90 days".
        files: To set, optionally: the column naming each row's object in the files store,
            deleted with the row.
        rule: To retire: the rule's reference (rr-…).
    """
    settings = adapter.settings()
    said = people_statement(settings, statement, tenant, "rule")
    if action == "retire":
        retired = retire_rule(settings, tenant, rule, name=said.field("name"))
        return retired.ref
    made = set_rule(
        settings, tenant, table, age_column, period, name=said.field("name"),
        files=files or None, note=said.field("note"),
    )  # fmt: skip
    adapter.logger().info("rule %s: %s by %s, kept %s", made.ref, table, age_column, made.period)
    return made.ref


@flow(name="forget-contacts", flow_run_name="forget-contacts")
def forget_contacts_due() -> list[str]:
    """Remove the contacts of every former client whose three years since the termination are
    over (clause 1.1.4), record it, and ask the roles of the operator's other systems."""
    settings = adapter.settings()
    logger = adapter.logger()
    today = datetime.now(UTC).date()
    done = []
    for tenant, due in contacts_due(settings, today):
        forgotten = forget_contacts(settings, tenant, today=today, say=logger.info)
        adapter.publish_table(
            CaseRef(tenant=tenant, case_id="contacts"), "contacts",
            [{"what": k, "removed": v} for k, v in (
                ("statements", forgotten.statements), ("pseudonym keys", forgotten.case_keys),
                ("person requests", forgotten.requests), ("retention rules", forgotten.rules),
                ("registry rows cleared", forgotten.registry_rows),
                ("notices", forgotten.notices))],
            f"Contacts of {tenant} removed (due {due}); asked: {', '.join(forgotten.asked)}",
        )  # fmt: skip
        done.append(tenant)
    return done
