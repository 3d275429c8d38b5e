"""What people say to a case, kept out of the orchestrator and out of the archive.

A case meets people: the client's contact who acknowledges (a name, a note), the platform's
reason for the termination, the staff member who places a hold or attests a system. Prefect's
database keeps every form's input and every flow parameter, and the archive is write-once: a
name in either outlives the contract. So:

    keep_statement   a person's words go to the pipeline's own ledger database (the schema
                     `offboarding`, beside the registry) under an opaque reference, `st-` and 32
                     hex digits; forms, flow parameters and events carry only the reference
    statement        the reference resolved, for the tenant and the kind expected
    pseudonym        a person in the archive is an HMAC-SHA256 of their name under the case's
                     own random key, never a plain digest that anyone can test against a guess
    matches          whether a name is the one behind a pseudonym: answerable only while the
                     case's key exists
    forget_tenant    the statements and the case keys go with the contact details, three years
                     after the contract's end (clause 1.1.4); the pseudonyms in the archive then
                     name nobody

The key never leaves the ledger database: the archive can be handed to an auditor whole.
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Literal

from psycopg.types.json import Jsonb

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.registry import TenantRegistry
from offboarding.runs import STATEMENT_PATTERN

__all__ = [
    "PSEUDONYM_PREFIX",
    "STATEMENT_PATTERN",
    "Forgotten",
    "Statement",
    "StatementKind",
    "discard_statement",
    "forget_tenant",
    "keep_statement",
    "matches",
    "pseudonym",
    "same_person",
    "statement",
    "statement_fields",
]

PSEUDONYM_PREFIX = "hmac-sha256:"
StatementKind = Literal[
    "acknowledgement", "termination", "attestation", "hold", "postponement", "request",
    "extension", "answer", "rule", "approval",
]  # fmt: skip
# The fields a kind of statement may hold; each is a person's free text.
_FIELDS: dict[str, frozenset[str]] = {
    "acknowledgement": frozenset({"name", "note"}),
    "termination": frozenset({"reason"}),
    "attestation": frozenset({"name"}),
    "hold": frozenset({"name", "reason"}),
    "postponement": frozenset({"name"}),
    # A person's request that reached the operator directly, and why an answer is extended.
    "request": frozenset({"name", "contact", "text"}),
    "extension": frozenset({"name", "reason"}),
    # Who says a request the pipeline does not carry out (rectification, restriction) is done.
    "answer": frozenset({"name", "note"}),
    # Who, at the client, set or retired a retention rule.
    "rule": frozenset({"name", "note"}),
    # The second person who approves an action that shortens or lifts a protection.
    "approval": frozenset({"name", "note"}),
}


@dataclass(frozen=True)
class Statement:
    ref: str
    tenant: str
    kind: str
    fields: dict[str, str]
    recorded_at: datetime

    def field(self, name: str) -> str:
        return self.fields.get(name, "")


def keep_statement(
    settings: Settings, tenant: str, kind: StatementKind, **fields: str | None
) -> str:
    """Keep what a person said for a case of `tenant`; the opaque reference to pass on."""
    validate_tenant_id(tenant)
    unknown = set(fields) - _FIELDS[kind]
    if unknown:
        raise TenantError(
            f"a {kind} statement has no field {sorted(unknown)}: use {sorted(_FIELDS[kind])}"
        )
    kept = {name: value.strip() for name, value in fields.items() if value and value.strip()}
    if kind != "termination" and not kept.get("name"):
        raise TenantError(f"a {kind} statement needs the name of who makes it")
    ref = "st-" + secrets.token_hex(16)
    with TenantRegistry(settings).connect() as conn:
        conn.execute(
            "INSERT INTO offboarding.statements (ref, tenant, kind, fields) "
            "VALUES (%s, %s, %s, %s)",
            (ref, tenant, kind, Jsonb(kept)),
        )
    return ref


def discard_statement(settings: Settings, ref: str) -> None:
    """Remove a statement nothing came to refer to (an acknowledgement the orchestrator
    refused): a person's words are not kept for nothing."""
    with TenantRegistry(settings).connect() as conn:
        conn.execute("DELETE FROM offboarding.statements WHERE ref = %s", (ref,))


def statement(settings: Settings, ref: str, tenant: str, kind: StatementKind) -> Statement:
    """The statement behind a reference, which must be of `tenant` and of `kind`."""
    if not re.fullmatch(STATEMENT_PATTERN, ref):
        raise TenantError(
            f"{ref[:40]!r} is not a statement reference (st- and 32 hex digits): record what "
            "the person said with `offboard statement` and pass the reference it prints"
        )
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "SELECT tenant, kind, fields, recorded_at FROM offboarding.statements WHERE ref = %s",
            (ref,),
        ).fetchone()
    if row is None or row["tenant"] != tenant or row["kind"] != kind:
        raise TenantError(
            f"statement {ref} is not a {kind} statement of tenant {tenant!r} (unknown, of "
            f"another tenant, or forgotten after the contact-data period): record one with "
            f"`offboard statement {tenant} {kind} ...`"
        )
    return Statement(ref, row["tenant"], row["kind"], dict(row["fields"]), row["recorded_at"])


def statement_fields(kind: StatementKind) -> frozenset[str]:
    """The fields a kind of statement holds (what a form asks for)."""
    return _FIELDS[kind]


def same_person(one: str, other: str) -> bool:
    """Two names for one person, whatever the spacing, the case or the Unicode form."""
    return _normalised(one) == _normalised(other)


def _normalised(text: str) -> bytes:
    """The same person whatever the spacing, the case or the Unicode form of their name."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split()).encode()


def _case_key(settings: Settings, case: CaseRef, *, create: bool) -> bytes | None:
    with TenantRegistry(settings).connect() as conn:
        if create:
            conn.execute(
                "INSERT INTO offboarding.case_keys (case_id, tenant, key) VALUES (%s, %s, %s) "
                "ON CONFLICT (case_id) DO NOTHING",
                (case.case_id, case.tenant, secrets.token_bytes(32)),
            )
        row = conn.execute(
            "SELECT key FROM offboarding.case_keys WHERE case_id = %s", (case.case_id,)
        ).fetchone()
    return bytes(row["key"]) if row else None


def pseudonym(settings: Settings, case: CaseRef, text: str) -> str:
    """`hmac-sha256:<hex>` of the text under the case's key (created on first use)."""
    key = _case_key(settings, case, create=True)
    assert key is not None  # created just above
    return PSEUDONYM_PREFIX + hmac.new(key, _normalised(text), sha256).hexdigest()


def matches(settings: Settings, case: CaseRef, text: str, recorded: str) -> bool | None:
    """Whether `text` is what `recorded` (a pseudonym of the case) stands for; None once the
    case's key is gone, when nobody can tell any more."""
    key = _case_key(settings, case, create=False)
    if key is None:
        return None
    expected = PSEUDONYM_PREFIX + hmac.new(key, _normalised(text), sha256).hexdigest()
    return hmac.compare_digest(expected, recorded)


@dataclass(frozen=True)
class Forgotten:
    tenant: str
    statements: int
    case_keys: int


def forget_tenant(settings: Settings, tenant: str) -> Forgotten:
    """Delete the tenant's statements and case keys: its people can no longer be named."""
    validate_tenant_id(tenant)
    with TenantRegistry(settings).connect() as conn, conn.transaction():
        statements = conn.execute(
            "DELETE FROM offboarding.statements WHERE tenant = %s", (tenant,)
        ).rowcount
        keys = conn.execute(
            "DELETE FROM offboarding.case_keys WHERE tenant = %s", (tenant,)
        ).rowcount
    return Forgotten(tenant, statements, keys)
