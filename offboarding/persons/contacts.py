"""The client's contacts, kept no longer than three years after the relationship ends (clause
1.1.4). The end is the termination (the ledger's `frozen_at`, when the case started), not the
destruction up to 90 days later: `TenantRegistry.mark_destroyed` dates `contact_delete_after`.

On that date, not before, the forget-contacts flow removes for the tenant:

- what people said to its cases and requests (statements) and the per-case pseudonym keys:
  the archive's `hmac-sha256:` pseudonyms can no longer be linked to a name;
- its requests about one person (the person keys they name) and its retention rules;
- the contact columns of its row in the tenants table, where the platform kept the row;
- the notices the pipeline sent it, in the outbox (they hold the contact's address);

and asks each role the data map's [contacts.systems] names to erase the contacts in the
operator's other systems (a CRM, billing). A signed record (`contacts/<tenant>.json`) counts
what went and lists the roles asked, with the date each is due.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from psycopg import sql

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.core.names import split_qualified
from offboarding.datamap import datamap_of
from offboarding.delivery.mail import compose, send
from offboarding.people import forget_tenant
from offboarding.persons.records import archive_signed
from offboarding.registry import TenantRegistry, registry_table
from offboarding.scheduling.scheduling import cases_of
from offboarding.trail.records import ContactsForgottenRecord, ContactsSystemAttested, RoleAsked

__all__ = [
    "ContactsForgotten",
    "attest_contacts_system",
    "contacts_due",
    "forget_contacts",
    "record_key",
]


@dataclass(frozen=True)
class ContactsForgotten:
    tenant: str
    due_on: date
    statements: int
    case_keys: int
    requests: int
    rules: int
    registry_rows: int
    notices: int
    asked: list[str]  # the data map's contact systems whose role was asked
    record_key: str


def record_key(tenant: str) -> str:
    return f"contacts/{tenant}.json"


def contacts_due(settings: Settings, today: date) -> list[tuple[str, date]]:
    """Destroyed tenants whose contacts are due to go by `today` and are still here."""
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            "SELECT tenant, contact_delete_after FROM offboarding.ledger WHERE status = "
            "'destroyed' AND contact_delete_after <= %s AND contacts_forgotten_at IS NULL "
            "ORDER BY contact_delete_after, tenant",
            (today,),
        ).fetchall()
    return [(str(r["tenant"]), r["contact_delete_after"]) for r in rows]


# What follows a case id in a notice's name is its purpose (delivery, reminder, attest…),
# never 12 hex digits: those would make it another tenant's case (tenant `acme-0123456789ab`,
# whose cases start with acme's case id `acme-0123456789ab`).
_ANOTHER_CASE = re.compile(r"[0-9a-f]{12}-")


def _outbox_notices(settings: Settings, tenant: str, refs: list[str]) -> int:
    """Delete the notices sent for the tenant's own cases (`<case id>-<purpose>-….eml`, the
    case ids read from its audit trails, never matched by pattern) and requests
    (`request-<ref>.eml`, `request-<ref>-….eml`). The case ids are its audit trails' and the
    ledger's."""
    outbox = settings.root / "outbox"
    if not outbox.is_dir():
        return 0
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "SELECT offboarding_case FROM offboarding.ledger WHERE tenant = %s", (tenant,)
        ).fetchone()
    known = {case.case_id for case in cases_of(settings, tenant)}
    known |= {row["offboarding_case"]} if row and row["offboarding_case"] else set()
    cases = [f"{case_id}-" for case_id in sorted(known)]
    requests = [f"request-{ref}" for ref in refs]

    def ours(name: str) -> bool:
        stem = name.removesuffix(".eml")
        if any(stem == r or stem.startswith(f"{r}-") for r in requests):
            return True
        return any(stem.startswith(c) and not _ANOTHER_CASE.match(stem[len(c) :]) for c in cases)

    removed = 0
    for path in outbox.glob("*.eml"):
        if ours(path.name):
            path.unlink()
            removed += 1
    return removed


def _clear_registry_contact(settings: Settings, conn: Any, tenant: str) -> int:
    """The contact columns of the tenant's row, where the platform kept the row."""
    mapping = datamap_of(settings).tenants
    columns = [c for c in (mapping.contact, mapping.recipient) if c]
    if not columns:
        return 0
    schema, name = split_qualified(registry_table(settings))
    return int(
        conn.execute(
            sql.SQL("UPDATE {t} SET {sets} WHERE {id}::text = %s").format(
                t=sql.Identifier(schema, name),
                sets=sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c))
                                        for c in columns),
                id=sql.Identifier(mapping.id),
            ),
            (tenant,),
        ).rowcount
    )  # fmt: skip


def _ask_roles(settings: Settings, tenant: str) -> list[RoleAsked]:
    """Each role of the data map's [contacts] systems asked to erase the tenant's contacts in
    its system by the date its `within` gives (a mail where it names an address)."""
    now = datetime.now(UTC)
    asked: list[RoleAsked] = []
    for name, system in datamap_of(settings).contacts.systems.items():
        attested = system.attested
        by = now + attested.within
        procedure = attested.procedure.replace("{tenant}", tenant)
        if attested.notify:
            send(settings, compose(
                settings, to=attested.notify,
                subject=f"Erase the contacts of former client {tenant} in {name} by {by:%Y-%m-%d}",
                body=f"Three years have passed since the contract with {tenant} ended (clause "
                f"1.1.4). As the {attested.role}:\n\n  {procedure}\n\nby {by:%Y-%m-%d}.\n",
            ), outbox_name=f"contacts-{tenant}-{name}")  # fmt: skip
        asked.append(RoleAsked(system=name, role=attested.role, due=by.isoformat()))
    return asked


def forget_contacts(
    settings: Settings,
    tenant: str,
    *,
    today: date | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ContactsForgotten:
    """Remove the tenant's contacts from everything the pipeline keeps, ask the roles of the
    operator's other systems, and record it. Refused before the date (three years after the
    termination) and for a tenant not destroyed."""
    tenant = validate_tenant_id(tenant)
    today = today or datetime.now(UTC).date()
    registry = TenantRegistry(settings)
    with registry.connect() as conn:
        row = conn.execute(
            "SELECT status, contact_delete_after, contacts_forgotten_at FROM offboarding.ledger "
            "WHERE tenant = %s",
            (tenant,),
        ).fetchone()
    if row is None or row["status"] != "destroyed" or row["contact_delete_after"] is None:
        raise TenantError(
            f"tenant {tenant!r} is not destroyed: its contacts are kept while the contract "
            "and its offboarding run, and for three years after the termination"
        )
    due: date = row["contact_delete_after"]
    if today < due:
        raise TenantError(
            f"tenant {tenant!r}'s contacts are kept until {due} (three years after the "
            "termination, clause 1.1.4): not before"
        )
    forgotten = forget_tenant(settings, tenant)
    with registry.connect() as conn, conn.transaction():
        refs = [
            str(r["ref"])
            for r in conn.execute(
                "SELECT ref FROM offboarding.person_requests WHERE tenant = %s", (tenant,)
            )
        ]
        requests = conn.execute(
            "DELETE FROM offboarding.person_requests WHERE tenant = %s", (tenant,)
        ).rowcount
        rules = conn.execute(
            "DELETE FROM offboarding.retention_rules WHERE tenant = %s", (tenant,)
        ).rowcount
        cleared = _clear_registry_contact(settings, conn, tenant)
    notices = _outbox_notices(settings, tenant, refs)
    asked = _ask_roles(settings, tenant)
    key = record_key(tenant)
    archive_signed(settings, key, ContactsForgottenRecord(
        tenant=tenant, due_on=due.isoformat(),
        statements=forgotten.statements, case_keys=forgotten.case_keys,
        person_requests=requests, retention_rules=rules, registry_rows=cleared,
        notices=notices, asked=asked,
    ))  # fmt: skip
    with registry.connect() as conn:
        conn.execute(
            "UPDATE offboarding.ledger SET contacts_forgotten_at = now() WHERE tenant = %s",
            (tenant,),
        )
    say(
        f"{tenant}: {forgotten.statements} statement(s), {forgotten.case_keys} key(s), "
        f"{requests} request(s), {notices} notice(s) removed; {len(asked)} role(s) asked"
    )
    return ContactsForgotten(
        tenant=tenant, due_on=due, statements=forgotten.statements,
        case_keys=forgotten.case_keys, requests=requests, rules=rules, registry_rows=cleared,
        notices=notices, asked=[a.system for a in asked], record_key=key,
    )  # fmt: skip


def attest_contacts_system(
    settings: Settings, tenant: str, system: str, *, action: str, evidence: str
) -> str:
    """The role of one of the operator's contact systems confirms it erased the former
    client's contacts there: a signed record beside the tenant's, naming the role (the
    operator's staff answer for it; no name is kept, the tenant's pseudonym keys being gone)."""
    tenant = validate_tenant_id(tenant)
    systems = datamap_of(settings).contacts.systems
    if system not in systems:
        raise TenantError(
            f"{system!r} is not in the data map's [contacts.systems] "
            f"({', '.join(systems) or 'none'})"
        )
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "SELECT contacts_forgotten_at FROM offboarding.ledger WHERE tenant = %s", (tenant,)
        ).fetchone()
    if row is None or row["contacts_forgotten_at"] is None:
        raise TenantError(
            f"tenant {tenant!r}'s contacts were not removed yet: the forget-contacts run asks "
            "the roles, then they confirm"
        )
    key = f"contacts/{tenant}/{system}.json"
    archive_signed(settings, key, ContactsSystemAttested(
        tenant=tenant, system=system, role=systems[system].attested.role,
        action=action, evidence=evidence,
    ))  # fmt: skip
    return key
