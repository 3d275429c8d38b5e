"""Erasing one person of a tenant, for the client's erasure request (clause 2.2.7), with a
signed certificate.

Each table follows the data map's policy. Rows the person owns alone are deleted; rows others
depend on (a post with comments, a comment with answers) are kept with their personal columns
replaced, text by the request's pseudonym (`erased-` and random hex, linked to nothing) and
anything else by NULL, and their reference to the person cleared where the person's own row
goes. Everything happens in one REPEATABLE READ transaction that holds the person's row locked,
so no row can start pointing at the person meanwhile (inserting one takes a key-share lock on
it), and commits only when the construction checks out:

- every statement's condition is the tenant's own rows AND the person's key (the same scope as
  the export and the destruction), and each affected exactly the rows counted before it;
- no row outside the doomed set references a row about to be deleted (so no cascade, set-null
  or refused delete reaches someone else's row): otherwise nothing changes and the error names
  the table and foreign key to declare;
- afterwards no row of any table matches the person and the kept rows hold no personal value.

In REPEATABLE READ a statement finds its rows in the transaction's snapshot (a row changed by
someone else since fails the transaction instead), so the rows each statement changes are the
rows marked before it, and the exact counts confirm it; what a delete could do to other rows is
ruled out by the reference check. What the pipeline cannot see is a platform trigger that
writes elsewhere: the touched tables' triggers are named in the certificate. Every query is
served by the person's key and the tables' keys: the cost is the person's rows, not the
tenant's or the platform's (benchmarks/persons.py). An earlier draft compared a digest of the
tenant's other rows before and after; on a derived table that read the whole platform's table
(measured 1.4 s of a 1.5 s erasure with 200 neighbours), for nothing the snapshot and the counts
do not already prove.

The person's files go, every generation, before the commit (a rerun after a failed commit finds
them gone and goes on). Backups: the tenant's backups made by this pipeline are encrypted with
the tenant's key and hold every person, so they are re-based: a new backup, taken and checked
after the erasure, then every older one deleted. Per-person keys (crypto-shredding) would need
a backup format that encrypts each person's rows apart, which ours does not; re-basing gives
the same result with no new format. Copies the pipeline cannot rewrite (the platform's
pgBackRest repository, soft-deleted objects, the cache) are listed as lingering, dated by the
same rules as a case; systems a role erases (the data map's `attested`) are listed as requested
from that role, with the date they are due.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

from offboarding.backup.backup import restore_check, take_backup
from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError, TenantError
from offboarding.core.records import CaseRef
from offboarding.datamap import DataMap, PersonScope, datamap_of
from offboarding.delivery.mail import compose, send
from offboarding.destruction.compaction import queue_erasure
from offboarding.locations import (
    Capability,
    capable,
    get_location,
    lingering,
    physical_residue,
)
from offboarding.locations.backups import backup_prefix
from offboarding.locations.base import KeptLink, Lingering, PersonErased
from offboarding.locations.bundles import bundle_prefix
from offboarding.people import keep_statement, pseudonym
from offboarding.persons.records import archive_signed
from offboarding.persons.requests import (
    PersonRequest,
    RequestKind,
    get_request,
    mark_answered,
    to_carry_out,
)
from offboarding.persons.scope import person_footprint
from offboarding.persons.systems import erasable, home
from offboarding.registry import TenantRecord, TenantRegistry
from offboarding.stores import delete_every_version, open_store
from offboarding.trail.records import PersonErasureCertificate, PersonSystemAttested

__all__ = ["PersonErasure", "attest_person_system", "certificate_key", "erase_person"]

# The kinds answered with a copy of the person's data, withdrawn when the person is erased.
_ANSWERED_WITH_A_COPY = (RequestKind.ACCESS, RequestKind.PORTABILITY)


@dataclass(frozen=True)
class PersonErasure:
    """What an erasure did (counts only) and where its certificate is."""

    request: str
    tenant: str
    deleted: dict[str, int]
    pseudonymised: dict[str, int]
    files: int
    file_bytes: int
    backups_rebased: int
    certificate_key: str


def certificate_key(request: PersonRequest) -> str:
    return f"persons/{request.tenant}/{request.ref}/certificate.json"


def _days(delay: timedelta) -> str:
    days = delay.total_seconds() / 86400
    return f"{days:g} day(s)" if days >= 1 else f"{delay.total_seconds() / 3600:g} hour(s)"


def _lingers(settings: Settings, name: str, declared: timedelta) -> tuple[timedelta, str]:
    """How long a system's copies of the person live on: as declared, or, for a system whose
    plug-in dates its copies (pgBackRest's backup sets), that date (whichever is later)."""
    if name in capable(settings, Capability.LINGERING):
        location = get_location(name, settings)
        if isinstance(location, Lingering):  # its plug-in dates its copies: the later date
            delay, why = location.lingering_delay()
            if delay > declared:
                return delay, f"in backup sets until they expire ({why})"
    return declared, f"copies expire by themselves within {_days(declared)}"


def _rebase_backups(settings: Settings, tenant: str) -> int:
    """A fresh backup of the tenant after the erasure, restored and checked, then every older
    one deleted in every location. Returns how many older backups went (0: none existed)."""
    stores = [open_store(url) for url in settings.backup_store_urls()]
    prefix = backup_prefix(tenant)
    older = {o.key[len(prefix) :].split("/", 1)[0] for s in stores for o in s.list_objects(prefix)}
    if not older:
        return 0
    fresh = take_backup(settings, tenant)
    checks = restore_check(settings, tenant, fresh.backup_id)  # raises if it does not restore
    if not checks or any(c.backup_id != fresh.backup_id for c in checks):
        raise DestructionIncompleteError(
            f"the backup taken after the erasure ({fresh.backup_id}) did not restore in every "
            "location: the older backups are kept. Check `offboard backup check` and retry"
        )
    for backup_id in sorted(older - {fresh.backup_id}):
        for store in stores:
            delete_every_version(store, f"{prefix}{backup_id}/")
    return len(older - {fresh.backup_id})


def _withdraw_answers(settings: Settings, request: PersonRequest) -> dict[str, int]:
    """Every earlier access or portability answer about the person, in every delivery store:
    deleted (every generation), so its links answer "gone". Per request, the objects removed."""
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            "SELECT ref FROM offboarding.person_requests WHERE tenant = %s AND person = %s "
            "AND kind = ANY(%s) AND ref <> %s ORDER BY ref",
            (
                request.tenant,
                request.person,
                [str(k) for k in _ANSWERED_WITH_A_COPY],
                request.ref,
            ),
        ).fetchall()
    withdrawn: dict[str, int] = {}
    for row in rows:
        prefix = f"{bundle_prefix(request.tenant)}{row['ref']}/"
        removed = [delete_every_version(open_store(url), prefix)[2]
                   for url in settings.delivery_store_urls()]  # fmt: skip
        left = [url for url in settings.delivery_store_urls()
                if any(True for _ in open_store(url).list_objects(prefix))]  # fmt: skip
        if left:
            raise DestructionIncompleteError(
                f"request {request.ref}: the earlier answer {row['ref']} is still in "
                f"{', '.join(left)} after its deletion; the database erasure is done. Retry"
            )
        withdrawn[str(row["ref"])] = sum(removed)
    return withdrawn


def _systems(
    settings: Settings,
    datamap: DataMap,
    request: PersonRequest,
    tenant_name: str,
    completed_at: datetime,
    by_plugin: dict[str, PersonErased],
) -> list[dict[str, Any]]:
    """Every other system of the data map, as the certificate lists it for one person: erased
    by its plug-in, lingering until a date, requested from its role (who is told), or holding
    nothing of a person."""
    scope = datamap.require_person_scope()
    systems: list[dict[str, Any]] = [
        {"name": name, "status": "erased", "method": erased_there.verification,
         "deleted": erased_there.deleted, "pseudonymised": erased_there.pseudonymised,
         "links": [asdict(link) for link in erased_there.links]}
        for name, erased_there in by_plugin.items()
    ]  # fmt: skip
    for name, system in scope.systems.items():
        if system.by_plugin:
            continue
        if system.lingers is not None:
            delay, expires = _lingers(settings, name, system.lingers)
            systems.append({"name": name, "status": "lingering", "method": expires,
                            "until": (completed_at + delay).isoformat()})  # fmt: skip
        elif system.attested is not None:
            due = completed_at + system.attested.within
            asked = f"erasure requested from the {system.attested.role}"
            systems.append({"name": name, "status": "requested", "until": due.isoformat(),
                            "method": asked})  # fmt: skip
            _notify(settings, request, name, system.attested, due, tenant_name)
        else:
            systems.append({"name": name, "status": "holds nothing of a person",
                            "method": system.holds_nothing})  # fmt: skip
    return systems


def _erase_elsewhere(
    settings: Settings,
    datamap: DataMap,
    tenant: str,
    person: str,
    replacement: str,
    say: Callable[[str], None],
) -> dict[str, PersonErased]:
    """The person erased in every system whose plug-in can, but the person table's own (the
    caller has found the person, the data map complete and nothing to refuse)."""
    scope = datamap.require_person_scope()
    others = erasable(settings, datamap, scope)
    by_plugin: dict[str, PersonErased] = {}
    for name, declared, location in others:
        there = location.erase_person(
            tenant, person, declared, replacement, person_kept=scope.erase != "delete", say=say
        )
        by_plugin[name] = there
        say(f"{name}: {sum(there.deleted.values())} item(s) deleted, "
            f"{sum(there.pseudonymised.values())} kept with personal values replaced")  # fmt: skip
    return by_plugin


def _require_erasable(settings: Settings, request: PersonRequest, person: str) -> TenantRecord:
    """The tenant, active; and every refusal the erasure would meet, found before any system
    is erased or any role asked: one refusal at the platform database would otherwise come
    after the others."""
    tenant = TenantRegistry(settings).get(request.tenant)
    if tenant.status != "active":
        raise TenantError(
            f"tenant {request.tenant!r} is {tenant.status} (case {tenant.offboarding_case}): its "
            "data is frozen for the hand-over and goes whole at the case's destruction. Tell "
            "the client: the person's erasure comes with it, on the certificate's date"
        )
    refusals = person_footprint(settings, request.tenant, person).refusals
    if refusals:
        raise TenantError(
            f"the erasure of request {request.ref} would be refused, so nothing was changed "
            f"and no one was asked ({len(refusals)}): " + " ".join(refusals)
        )
    return tenant


def erase_person(
    settings: Settings, ref: str, *, say: Callable[[str], None] = lambda _: None
) -> PersonErasure:
    """Carry out an open erasure request; archive its signed certificate; mark it answered.
    Refused before anything changes when the erasure would reach another person's rows."""
    request, person = to_carry_out(settings, ref, (RequestKind.ERASURE,))
    tenant = _require_erasable(settings, request, person)
    datamap = datamap_of(settings)
    scope = datamap.require_person_scope()
    replacement = f"erased-{secrets.token_hex(6)}"
    started_at = datetime.now(UTC)
    # The person's pseudonym for the archive, while their key still names a row.
    named = pseudonym(settings, CaseRef(tenant=request.tenant, case_id=ref), person)
    say(f"erasing person {person} of {request.tenant}")
    # The systems whose plug-in erases the person go first, each final on its own; the
    # platform database last, so a refusal there leaves the request open, and a rerun finds
    # the systems before it already empty.
    by_plugin = _erase_elsewhere(settings, datamap, request.tenant, person, replacement, say)
    # The person table's own system: its rows and the objects they name, in one transaction.
    erased = home(settings, datamap).erase_person(
        request.tenant, person, scope, replacement, say=say
    )
    deleted, kept = erased.deleted, erased.pseudonymised
    rows_deleted, rows_kept = sum(deleted.values()), sum(kept.values())
    say(f"database and files done: {rows_deleted} rows deleted, {rows_kept} kept with their "
        f"personal columns replaced, {erased.objects} files")  # fmt: skip
    withdrawn = _withdraw_answers(settings, request)
    say(f"earlier answers about the person withdrawn: {len(withdrawn)}")
    rebased = _rebase_backups(settings, request.tenant)
    completed_at = datetime.now(UTC)
    delay, why = lingering(settings)
    systems = _systems(settings, datamap, request, tenant.name, completed_at, by_plugin)
    certificate = archive_signed(settings, certificate_key(request), PersonErasureCertificate(
        request=ref, tenant=request.tenant,
        person=named, received_at=request.received_at,
        due_on=request.due_on.isoformat(), started_at=started_at,
        completed_at=completed_at,
        deadline_met=completed_at.date() <= request.due_on,
        database={"deleted": deleted, "pseudonymised": kept,
                     "replacement": "text by the request's pseudonym, other values by NULL",
                     "links": [asdict(link) for link in erased.links],
                     "linkable": _linkable(scope, [
                         *erased.links, *(k for e in by_plugin.values() for k in e.links)])},
        files={"objects": erased.objects, "generations_deleted": erased.generations,
               "bytes": erased.object_bytes},
        earlier_answers={"requests": withdrawn,
                            "method": "every object of each earlier access or portability "
                            "answer about the person deleted in every delivery store, every "
                            "generation; their links answer gone"},
        verification=erased.verification,
        triggers=erased.triggers,
        backups={"rebased": rebased,
                    "method": "a new backup after the erasure, restored and verified, then "
                    "every older backup of the tenant deleted in every location"
                    if rebased else "the tenant had no backup made by the pipeline"},
        lingering={"until": (completed_at + delay).isoformat(), "because": why}
        if delay else None,
        systems=systems,
        tool="tenant-offboarding", tool_version=version("tenant-offboarding"),
        performed_by=settings.operator_name,
        physical_residue=_residue(settings, completed_at),
    ))  # fmt: skip
    # The touched tables join the next compaction; the client is told; the request answered.
    queue_erasure(settings, request.tenant, ref, [t for t, n in {**deleted, **kept}.items() if n])
    _tell_client(settings, request, tenant.name, tenant.require_contact(), certificate, systems)
    return PersonErasure(
        request=ref,
        tenant=request.tenant,
        deleted=deleted,
        pseudonymised=kept,
        files=erased.objects,
        file_bytes=erased.object_bytes,
        backups_rebased=rebased,
        certificate_key=str(certificate and certificate_key(request)),
    )


def _residue(settings: Settings, at: datetime) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in physical_residue(settings, at)]


def _linkable(scope: PersonScope, links: list[KeptLink]) -> list[dict[str, Any]]:
    """What stays linkable to the erased person, and why: each kept link with rows, and the
    person's own row where it is kept (pseudonymised, still one row others point at)."""
    found = [
        {"table": link.table, "column": link.column, "rows": link.rows, "why": link.why}
        for link in links
        if link.rule == "keep" and link.rows
    ]
    if scope.erase == "pseudonymise":
        found.append({
            "table": scope.table, "column": scope.key, "rows": 1,
            "why": "the person's row is kept, its personal columns replaced: the rows that "
            "still point at it stay together, though no longer named",
        })  # fmt: skip
    return found


def _tell_client(
    settings: Settings,
    request: PersonRequest,
    tenant_name: str,
    to: str,
    certificate: dict[str, Any],
    systems: list[dict[str, Any]],
) -> None:
    """Tell the client's contact that the erasure is done, with the certificate's reference
    (its archive key, digest and signing key) and what other systems still owe: counts and
    dates, no value of the person. Then the request is answered."""
    digest = hashlib.sha256(canonical_json(certificate)).hexdigest()
    database = certificate["database"]
    pending = [f"  {s['name']}: {s['status']} until {s['until'][:10]} ({s['method']})"
               for s in systems if s.get("until")]  # fmt: skip
    body = (
        f"The erasure you asked for in request {request.ref} ({tenant_name}, received "
        f"{request.received_at:%Y-%m-%d}) is done, on {certificate['completed_at'][:10]}, "
        f"within the month the law gives (due {request.due_on:%Y-%m-%d}).\n\n"
        f"  rows deleted:             {sum(database['deleted'].values())}\n"
        f"  rows kept, pseudonymised: {sum(database['pseudonymised'].values())}\n"
        f"  links cleared or reassigned: "
        f"{sum(k['rows'] for k in database['links'] if k['rule'] != 'keep')}\n"
        f"  links that remain:        {sum(k['rows'] for k in database['linkable'])}\n"
        f"  files deleted:            {certificate['files']['objects']}\n\n"
        "Its signed certificate, for your records of processing:\n"
        f"  reference:    {certificate_key(request)}\n"
        f"  sha256:       {digest}\n"
        f"  signed by:    {certificate['signing_key']}\n"
        + ("\nStill to come, by the dates given:\n" + "\n".join(pending) + "\n" if pending else "")
    )
    message = compose(
        settings, to=to, subject=f"Erasure done for request {request.ref} ({tenant_name})",
        body=body,
    )  # fmt: skip
    send(settings, message, outbox_name=f"request-{request.ref}-erased")
    mark_answered(settings, request.ref)


def _notify(
    settings: Settings, request: PersonRequest, system: str, attested: Any, due: datetime,
    tenant_name: str,
) -> None:  # fmt: skip
    """Ask the role that erases a person in `system` to do it (the person by their key)."""
    procedure = attested.procedure.replace("{tenant}", request.tenant)
    message = compose(
        settings,
        to=attested.notify,
        subject=f"Erase a person of {tenant_name} in {system} by {due:%Y-%m-%d} ({request.ref})",
        body=(
            f"The client {tenant_name} ({request.tenant}) asked for the erasure of its person "
            f"{request.person} (request {request.ref}). The database and files are done; "
            f"{system} is yours, as the {attested.role}:\n\n  {procedure}\n\n"
            f"Due by {due:%Y-%m-%d}. Then confirm with:\n"
            f"  offboard request attest {request.ref} {system} --by <you> --action <what was "
            "done> --evidence <ticket>\n"
        ),
    )
    send(settings, message, outbox_name=f"request-{request.ref}-{system}")


def attest_person_system(
    settings: Settings, ref: str, system: str, *, name: str, action: str, evidence: str
) -> str:
    """The role of an attested system confirms it erased the person there: a signed record
    beside the certificate (who, as a pseudonym; what was done; where the evidence is)."""
    request = get_request(settings, ref)
    scope = datamap_of(settings).require_person_scope()
    attested = scope.systems.get(system)
    if request.kind != RequestKind.ERASURE or request.status != "answered":
        raise TenantError(
            f"request {ref} is not a carried-out erasure ({request.kind}, {request.status}): "
            "attest a system once the erasure's certificate is issued"
        )
    if attested is None or attested.attested is None:
        named = ", ".join(n for n, s in scope.systems.items() if s.attested) or "none"
        raise TenantError(
            f"{system!r} is no attested system of the data map's [person.systems] ({named})"
        )
    said = keep_statement(settings, request.tenant, "attestation", name=name)
    key = f"persons/{request.tenant}/{ref}/attested-{system}.json"
    archive_signed(settings, key, PersonSystemAttested(
        request=ref, tenant=request.tenant,
        system=system, role=attested.attested.role, statement=said,
        by=pseudonym(settings, CaseRef(tenant=request.tenant, case_id=ref), name),
        action=action, evidence=evidence,
    ))  # fmt: skip
    return key
