"""Signed records about a tenant beside its cases, chained per tenant: a person request's
answer, closing, attestations and erasure certificate; a retention rule set or retired and
each retention run; a former client's contacts forgotten and each system's attestation.

Each record is a typed model (`TenantRecord`, JSON Schema in schemas/), a canonical JSON
document written once at its key beside its Ed25519 signature. Like a case's events it names
its signing key and carries its date (`at`). Every record is also named by an entry of its
tenant's chain, `records/<tenant>/NNNNNN.json` (+ `.sig`): the record's key and sha256, the
previous entry's sha256, signed. `offboard audit verify` walks each chain, so a record
deleted, changed or moved, or an entry removed or reordered, is reported, not missed.

They hold references, counts and digests: a person appears only as a keyed pseudonym.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from offboarding.core.canonical import canonical_json, compact_json
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.signing import KeyList, Signer, load_key_list, signed_date, signed_fields
from offboarding.stores import ObjectStore, open_store
from offboarding.trail.state import GENESIS

__all__ = [
    "CHAINED_PREFIXES",
    "ChainReport",
    "ContactsForgottenRecord",
    "ContactsSystemAttested",
    "PersonErasureCertificate",
    "PersonErasureCompacted",
    "PersonRequestAnswered",
    "PersonRequestClosed",
    "PersonSystemAttested",
    "RecordFamily",
    "RetentionRuleRecorded",
    "RetentionRunRecorded",
    "RoleAsked",
    "RuleRun",
    "TenantRecord",
    "TenantRecordModel",
    "archive_record",
    "chain_prefix",
    "read_record",
    "verify_tenant_chains",
]


class RecordFamily(StrEnum):
    """Where a tenant's records live in the archive, by what they are about."""

    PERSONS = "persons"
    RETENTION = "retention"
    CONTACTS = "contacts"


CHAINED_PREFIXES = tuple(f"{family.value}/" for family in RecordFamily)
_CHAINS = "records/"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    # Added when the record is signed: when, and by which key (its validity is checked then).
    at: datetime | None = None
    signing_key: str | None = None


class PersonRequestAnswered(_Record):
    """An access or portability request answered: what the bundle held, how it was sent."""

    record: Literal["person-request-answered"] = "person-request-answered"
    request: str
    kind: str
    person: str = Field(description="The person's keyed pseudonym (hmac-sha256:...).")
    received_at: datetime
    due_on: str
    snapshot_time: datetime
    tables: dict[str, int]
    files: int
    file_bytes: int
    manifest_sha256: str
    parts: list[dict[str, Any]]
    encrypted: bool
    link_expires_at: datetime
    link_sha256: list[str]
    recipient_domain: str | None
    message_id: str


class PersonRequestClosed(_Record):
    """A request closed by staff with their statement (an objection settled, a refusal)."""

    record: Literal["person-request-closed"] = "person-request-closed"
    request: str
    kind: str
    received_at: datetime
    due_on: str
    statement: str
    by: str


class PersonSystemAttested(_Record):
    """A role's confirmation that it erased a person in a system the pipeline cannot reach."""

    record: Literal["person-system-attested"] = "person-system-attested"
    request: str
    system: str
    role: str
    statement: str
    by: str
    action: str
    evidence: str


class PersonErasureCertificate(_Record):
    """An erasure's certificate: what was deleted or pseudonymised where, verified how."""

    record: Literal["person-erasure-certificate"] = "person-erasure-certificate"
    request: str
    person: str
    received_at: datetime
    due_on: str
    started_at: datetime
    completed_at: datetime
    deadline_met: bool
    database: dict[str, Any]
    files: dict[str, int]
    earlier_answers: dict[str, Any]
    verification: str
    triggers: dict[str, list[str]]  # the platform's triggers on the touched tables, by name
    backups: dict[str, Any]
    lingering: dict[str, Any] | None
    systems: list[dict[str, Any]]
    tool: str
    tool_version: str
    performed_by: str
    # Where the erased values' bytes stay on disk, and until when (the next compaction run
    # rewrites the touched tables; its record, person-erasure-compacted, says it did).
    physical_residue: list[dict[str, Any]] = Field(default_factory=list)


class PersonErasureCompacted(_Record):
    """The tables an erasure touched, rewritten by a compaction run."""

    record: Literal["person-erasure-compacted"] = "person-erasure-compacted"
    request: str
    run: str
    compacted_at: datetime
    tables: int
    method: str


class RetentionRuleRecorded(_Record):
    """A retention rule set or retired by the client's person."""

    record: Literal["retention-rule-set", "retention-rule-retired"]
    rule: str
    table: str
    age_column: str
    period: str  # PostgreSQL's text form of the interval, e.g. "1 year"
    files: str | None  # the column naming the rows' objects, deleted with them
    statement: str | None
    by: str


class RuleRun(BaseModel):
    """One rule in a retention run: what was past its cutoff and deleted, or why nothing was."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    table: str
    cutoff: datetime
    deleted: int
    files: int
    refused: str | None
    period: str
    age_column: str


class RetentionRunRecorded(_Record):
    """One run of a tenant's retention rules: per rule, the cutoff and what was deleted."""

    record: Literal["retention-run"] = "retention-run"
    run: str
    now: datetime
    rules: list[RuleRun]
    proof: str


class RoleAsked(BaseModel):
    """A role asked to erase the contacts from its system, by a date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    role: str
    due: str


class ContactsForgottenRecord(_Record):
    """A former client's contacts removed three years after the contract's end (1.1.4)."""

    record: Literal["contacts-forgotten"] = "contacts-forgotten"
    due_on: str
    statements: int
    case_keys: int
    person_requests: int
    retention_rules: int
    registry_rows: int
    notices: int
    asked: list[RoleAsked]


class ContactsSystemAttested(_Record):
    """A role's confirmation that it erased the client's contacts from one of its systems."""

    record: Literal["contacts-system-attested"] = "contacts-system-attested"
    system: str
    role: str
    action: str
    evidence: str


TenantRecordModel = (
    PersonRequestAnswered
    | PersonRequestClosed
    | PersonSystemAttested
    | PersonErasureCertificate
    | PersonErasureCompacted
    | RetentionRuleRecorded
    | RetentionRunRecorded
    | ContactsForgottenRecord
    | ContactsSystemAttested
)
TenantRecord: TypeAdapter[TenantRecordModel] = TypeAdapter(
    Annotated[TenantRecordModel, Field(discriminator="record")]
)


def _family(key: str) -> RecordFamily:
    for family in RecordFamily:
        if key.startswith(f"{family.value}/"):
            return family
    raise ValueError(f"{key}: a tenant record lives under {', '.join(CHAINED_PREFIXES)}")


def chain_prefix(tenant: str) -> str:
    return f"{_CHAINS}{tenant}/"


def _read(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


def _entries(store: ObjectStore, tenant: str) -> list[str]:
    return sorted(
        o.key for o in store.list_objects(chain_prefix(tenant)) if o.key.endswith(".json")
    )


def _chain(settings: Settings, store: ObjectStore, tenant: str, key: str, body: bytes) -> None:
    """Name the record in its tenant's chain, once: a rerun finds its entry. Two writers racing
    for one position: the second finds the position taken (the store is write-once) and takes
    the next."""
    digest = hashlib.sha256(body).hexdigest()
    for _attempt in range(20):
        entries = _entries(store, tenant)
        documents = [json.loads(_read(store, e)) for e in entries]
        if any(d.get("key") == key for d in documents):
            return
        previous = hashlib.sha256(_read(store, entries[-1])).hexdigest() if entries else GENESIS
        signer = Signer.load_or_create(settings.keys_dir)
        entry = compact_json({
            "seq": len(entries), "prev": previous, "tenant": tenant, "key": key,
            "sha256": digest, "record": json.loads(body).get("record"),
            "at": datetime.now(UTC).isoformat(), "signing_key": signer.fingerprint,
        })  # fmt: skip
        name = f"{chain_prefix(tenant)}{len(entries):06d}.json"
        if store.exists(name):
            continue  # another writer took this position
        try:
            store.put_bytes(name + ".sig", signer.sign(entry))
            store.put_bytes(name, entry)
        except IntegrityError:
            continue  # taken between the look and the write
        return
    raise IntegrityError(f"{chain_prefix(tenant)}: could not take a position in the chain")


def archive_record(settings: Settings, key: str, record: TenantRecordModel) -> dict[str, Any]:
    """Sign `record` (adding `at` and `signing_key`), write it at `key` once, and name it in
    its tenant's chain. A rerun finds the record already there and returns it unchanged, so
    evidence is never rewritten; it is chained if an earlier attempt stopped before."""
    _family(key)
    archive = open_store(settings.store_url("archive"), write_once=True)
    if archive.exists(key):
        document = read_record(settings, key)
        _chain(settings, archive, record.tenant, key, _read(archive, key))
        return document
    signer = Signer.load_or_create(settings.keys_dir)
    signed = record.model_copy(update={"at": datetime.now(UTC), "signing_key": signer.fingerprint})
    document = signed.model_dump(mode="json")
    body = canonical_json(document)
    if not archive.exists(key + ".sig"):
        archive.put_bytes(key + ".sig", signer.sign(body))
    archive.put_bytes(key, body)
    _chain(settings, archive, record.tenant, key, body)
    return document


def read_record(settings: Settings, key: str) -> dict[str, Any]:
    """A record of the archive, its signature checked with the operator's keys."""
    archive = open_store(settings.store_url("archive"))
    body = _read(archive, key)
    signature = _read(archive, key + ".sig")
    keys = load_key_list(settings.keys_dir)
    keys.verify(body, signature, key, signing_key=signed_fields(body).get("signing_key"))
    document: dict[str, Any] = json.loads(body)
    return document


class ChainReport(BaseModel):
    """What `verify_tenant_chains` checked: records per kind, chains, entries, and records
    written before chaining began (accepted, counted apart)."""

    chains: int = 0
    entries: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)
    unchained: int = 0
    signing_keys: set[str] = Field(default_factory=set)


def _verified(store: ObjectStore, key: str, keys: KeyList, report: ChainReport) -> bytes:
    body = _read(store, key)
    if not store.exists(key + ".sig"):
        raise IntegrityError(f"{key}: its signature ({key}.sig) is missing")
    document = signed_fields(body)
    at = signed_date(document, "at")
    used = keys.verify(
        body, _read(store, key + ".sig"), key, signing_key=document.get("signing_key"), at=at
    )
    report.signing_keys.add(used.fingerprint)
    return body


def _walk_chain(
    store: ObjectStore, tenant: str, keys: KeyList, report: ChainReport
) -> tuple[dict[str, str], datetime | None]:
    """Every entry of a tenant's chain in order: signed, numbered, linked, naming a record
    that is there with the digest it names. The records named, and the chain's start."""
    named: dict[str, str] = {}
    previous, started = GENESIS, None
    for number, name in enumerate(_entries(store, tenant)):
        body = _verified(store, name, keys, report)
        entry = json.loads(body)
        if entry.get("seq") != number or name != f"{chain_prefix(tenant)}{number:06d}.json":
            raise IntegrityError(
                f"{name}: entry {number} of {tenant}'s records is missing or moved"
            )
        if entry.get("prev") != previous:
            raise IntegrityError(f"{name}: does not follow the previous entry (chain broken)")
        if entry.get("tenant") != tenant:
            raise IntegrityError(f"{name}: names tenant {entry.get('tenant')!r}, not {tenant!r}")
        key = str(entry.get("key"))
        if not store.exists(key):
            raise IntegrityError(
                f"{name}: names the record {key}, which is not in the archive (deleted?)"
            )
        if hashlib.sha256(_read(store, key)).hexdigest() != entry.get("sha256"):
            raise IntegrityError(f"{key}: differs from the digest its chain entry {name} names")
        named[key] = name
        previous = hashlib.sha256(body).hexdigest()
        started = started or datetime.fromisoformat(entry["at"])
    report.entries += len(named)
    return named, started


def verify_tenant_chains(store: ObjectStore, keys: KeyList) -> ChainReport:
    """Every tenant record of the archive: signed by a key valid at its date, a model the
    pipeline writes, about the tenant its key names, and named by its tenant's chain (a record
    older than the tenant's chain is counted apart). Raises IntegrityError naming the first
    problem."""
    report = ChainReport()
    records: dict[str, list[str]] = {}
    for prefix in CHAINED_PREFIXES:
        for info in store.list_objects(prefix):
            if info.key.endswith(".json"):
                head, _, rest = info.key.removeprefix(prefix).partition("/")
                tenant = head if rest else head.removesuffix(".json")  # contacts/<tenant>.json
                records.setdefault(tenant, []).append(info.key)
    tenants = {o.key.removeprefix(_CHAINS).split("/", 1)[0] for o in store.list_objects(_CHAINS)}
    for tenant in sorted(tenants | set(records)):
        named, started = _walk_chain(store, tenant, keys, report)
        report.chains += 1 if named else 0
        for key in sorted(records.get(tenant, [])):
            body = _verified(store, key, keys, report)
            try:
                record = TenantRecord.validate_json(body)
            except ValidationError as error:
                raise IntegrityError(f"{key}: not a record the pipeline writes ({error})") from None
            if record.tenant != tenant:
                raise IntegrityError(f"{key}: names tenant {record.tenant!r}, not {tenant!r}")
            if key not in named:
                if started is not None and (record.at is None or record.at >= started):
                    raise IntegrityError(
                        f"{key}: written after {tenant}'s chain began, yet no entry names it"
                    )
                report.unchained += 1
            report.by_kind[record.record] = report.by_kind.get(record.record, 0) + 1
    return report
