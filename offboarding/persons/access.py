"""A copy of one person's data, for the client's access or portability request (clause 2.2.7).

The same bundle a whole tenant gets (Parquet tables, original files, a signed manifest, the
README), scoped to the person by the data map's [person] table, and delivered the same way:
parts in the delivery store of the tenant's region (encrypted to the client's age key where it
gave one), one signed, expiring link per part, mailed to the client's contact, downloads
receipted. The client's administrator passes it on to the person: the operator never writes to
a person directly (the client is the controller).

One snapshot serves the whole answer. The leader takes it (pg_export_snapshot), checks the
scope against the catalogue, counts the person's rows and lists their files; each table is then
read in that snapshot by the export's own Parquet writer. Packaging reconciles the bundle with
those counts and digests, as for a case, before anyone sees a link. The signed record in the
archive names the request, the tables' row counts, the manifest's digest and the link's
digest: never a value of the person's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.records import (
    CaseRef,
    ExportResult,
    Inventory,
    LocationInventory,
)
from offboarding.datamap import PersonScope, datamap_of
from offboarding.delivery.links import link_digest, sign_part_links
from offboarding.delivery.mail import compose, send
from offboarding.export.export import package, verify_package
from offboarding.keys.recipients import Plaintext, encrypting, parse_recipient
from offboarding.locations import scratch_dir
from offboarding.locations.bundles import bundle_prefix
from offboarding.people import pseudonym
from offboarding.persons.records import archive_signed
from offboarding.persons.requests import (
    PersonRequest,
    RequestKind,
    mark_answered,
    to_carry_out,
)
from offboarding.persons.systems import accessible, home
from offboarding.registry import TenantRegistry
from offboarding.stores import ObjectStore, open_store
from offboarding.trail.records import PersonRequestAnswered

__all__ = ["PersonAnswer", "answer_access", "answer_key"]


@dataclass(frozen=True)
class PersonAnswer:
    """What an access or portability request was answered with (no value of the person's)."""

    request: str
    tenant: str
    rows: int
    tables: dict[str, int]
    files: int
    file_bytes: int
    parts: list[str]  # keys in the delivery store
    manifest_sha256: str
    link_expires_at: datetime
    record_key: str


def answer_key(request: PersonRequest) -> str:
    return f"persons/{request.tenant}/{request.ref}/answer.json"


def _snapshot_person(
    settings: Settings, scope: PersonScope, work: CaseRef, person: str
) -> tuple[Inventory, ExportResult]:
    """The person's items from every system that exports them, each from its own snapshot,
    with the inventory the bundle must reconcile with."""
    scratch = scratch_dir(settings, work) / "export"
    shutil.rmtree(scratch, ignore_errors=True)
    datamap = datamap_of(settings)
    found = home(settings, datamap).export_person(work.tenant, person, scope, scratch)
    parts = list(found.parts)
    locations = [
        LocationInventory(location="postgres", items=sum(t.rows for t in found.tables),
                          bytes=sum(t.bytes_estimate for t in found.tables), tables=found.tables),
        LocationInventory(location="files", items=len(found.files),
                          bytes=sum(f.size for f in found.files), files=found.files),
    ]  # fmt: skip
    # The other systems whose plug-in exports a person (each from its own consistent read).
    for name, declared, location in accessible(settings, datamap, scope):
        there = location.export_person(work.tenant, person, declared, scratch)
        parts += there.parts
        locations.append(
            LocationInventory(
                location=name,
                items=sum(t.rows for t in there.tables),
                bytes=sum(t.bytes_estimate for t in there.tables),
                tables=there.tables,
            )
        )
    taken_at = found.snapshot_time or datetime.now(UTC)
    inventory = Inventory(
        tenant=work.tenant, case_id=work.case_id, taken_at=taken_at, locations=locations
    )
    return inventory, ExportResult(parts=parts, snapshot_time=taken_at)


def _upload(
    store: ObjectStore, key: str, source: str, recipient: Any
) -> tuple[str, int, str, Plaintext | None]:
    """One packaged part into the delivery store; encrypted to the client where it has a key."""

    def copy(target: Any) -> None:
        with open(source, "rb") as handle:
            while chunk := handle.read(1 << 20):
                target.write(chunk)

    if recipient is None:
        stored = store.write_stream(key, copy)
        return key, stored.size, stored.sha256, None
    clear = Plaintext()
    stored = store.write_stream(key + ".age", encrypting(recipient, copy, clear))
    return key + ".age", stored.size, stored.sha256, clear


def answer_access(
    settings: Settings, ref: str, *, say: Callable[[str], None] = lambda _: None
) -> PersonAnswer:
    """Answer an open access or portability request: the person's bundle, verified, in the
    delivery store, its links mailed to the client's contact, a signed record archived, the
    request marked answered. Scratch is wiped either way."""
    request, person = to_carry_out(settings, ref, (RequestKind.ACCESS, RequestKind.PORTABILITY))
    tenant = TenantRegistry(settings).get(request.tenant)
    address = tenant.require_contact()
    scope = datamap_of(settings).require_person_scope()
    work = CaseRef(tenant=request.tenant, case_id=request.ref)
    try:
        say(f"snapshot of person {person} of {request.tenant}")
        inventory, exported = _snapshot_person(settings, scope, work, person)
        say(f"packaging {inventory.total_rows} rows and {len(inventory.files)} files")
        bundle = package(
            settings, work, inventory, exported, record=False,
            about=f"the data of one person of your organisation, as your request {ref} asked",
        )  # fmt: skip
        verify_package(settings, work, bundle, inventory, record=False)
        store = open_store(settings.delivery_store_url(tenant.region))
        recipient = (
            parse_recipient(tenant.age_recipient, tenant.id) if tenant.age_recipient else None
        )
        prefix = f"{bundle_prefix(request.tenant)}{request.ref}/"
        uploaded = []
        for part in bundle.parts:
            key, size, sha256, clear = _upload(
                store, prefix + part.path.rsplit("/", 1)[-1], part.path, recipient
            )
            if clear is None and sha256 != part.sha256:
                raise IntegrityError(f"{store.url}/{key}: stored with other bytes than packaged")
            uploaded.append((key, size, sha256))
        now = datetime.now(UTC)
        expires_at = now + settings.delivery.link_lifetime
        links = sign_part_links(settings, store, [k for k, _, _ in uploaded], expires_at)
        message = compose(
            settings, to=address, subject=f"The data of one of your people ({ref})",
            body=_body(tenant.name, request, links, expires_at, bool(recipient)),
        )  # fmt: skip
        sent = send(settings, message, outbox_name=f"request-{ref}-answer")
        record = answer_key(request)
        archive_signed(settings, record, PersonRequestAnswered(
            request=ref, tenant=request.tenant,
            kind=request.kind, person=pseudonym(settings, work, person),
            received_at=request.received_at, due_on=request.due_on.isoformat(),
            snapshot_time=exported.snapshot_time,
            tables={t.qualified: t.rows for t in inventory.tables},
            files=len(inventory.files), file_bytes=inventory.total_file_bytes,
            manifest_sha256=bundle.manifest_sha256,
            parts=[{"sha256": s, "size": n} for _, n, s in uploaded],
            encrypted=recipient is not None, link_expires_at=expires_at,
            link_sha256=[link_digest(link.url) for link in links],
            recipient_domain=tenant.contact_domain, message_id=sent.message_id,
        ))  # fmt: skip
        mark_answered(settings, ref)
    finally:
        shutil.rmtree(scratch_dir(settings, work), ignore_errors=True)
    return PersonAnswer(
        request=ref,
        tenant=request.tenant,
        rows=inventory.total_rows,
        tables={t.qualified: t.rows for t in inventory.tables},
        files=len(inventory.files),
        file_bytes=inventory.total_file_bytes,
        parts=[k for k, _, _ in uploaded],
        manifest_sha256=bundle.manifest_sha256,
        link_expires_at=expires_at,
        record_key=record,
    )


def _body(
    name: str, request: PersonRequest, links: list[Any], expires_at: datetime, sealed: bool
) -> str:
    listing = "\n".join(f"  {link.filename}\n    {link.url}" for link in links)
    return (
        f"Your administrator asked us, on {request.received_at:%Y-%m-%d}, for a copy of the "
        f"data of one of your people in {name} ({request.kind}, our reference {request.ref}). "
        "Here it is, for you to pass on: the same format as a full export (database rows as "
        "Apache Parquet, the person's files as uploaded, a manifest signed by us; the "
        "README inside says how to open and check it).\n\n"
        f"{listing}\n\n"
        f"The links expire on {expires_at:%Y-%m-%d %H:%M} UTC."
        + (" The parts are encrypted to your organisation's age key." if sealed else "")
        + "\n"
    )
