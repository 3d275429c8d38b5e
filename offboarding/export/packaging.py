"""Stage: the export packaged into the signed ZIP bundle, straight into the delivery store of
the tenant's region (or scratch, for a copy), and the bundle verified against the inventory
before anything is delivered."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pyrage import x25519

from exporters.bundle import (
    ALL_OF_IT,
    BundlePlan,
    PartPlan,
    SourceChanged,
    Writable,
    manifest_json,
    plan_bundle,
    verify_bundle,
    write_part,
    write_parts,
)
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.names import inside
from offboarding.core.records import (
    BundlePart,
    BundleRef,
    CaseRef,
    ExportResult,
    Inventory,
)
from offboarding.core.signing import Signer
from offboarding.keys.recipients import AGE_HEADER, Plaintext, encrypting, parse_recipient
from offboarding.locations import scratch_dir
from offboarding.locations.base import (
    write_case_report,
)
from offboarding.locations.bundles import bundle_prefix, staging_prefix
from offboarding.registry import TenantRegistry
from offboarding.stores import LocalStore, ObjectStore, open_store
from offboarding.trail import AuditTrail, events

__all__ = [
    "PartWritten",
    "WriteParts",
    "generations_of",
    "package",
    "part_opener",
    "staging_area",
    "verify_package",
    "write_bundle_part",
]


def staging_area(settings: Settings, case: CaseRef) -> tuple[ObjectStore, str]:
    """The store and prefix where a distributed export's parts wait to be packaged."""
    region = TenantRegistry(settings).get(case.tenant).region
    return open_store(settings.delivery_store_url(region)), staging_prefix(case)


def part_opener(
    settings: Settings, case: CaseRef, generations: Mapping[str, int | None]
) -> Callable[[str], AbstractContextManager[BinaryIO]]:
    """Opens an exported part's bytes from wherever it is: this worker's scratch, the case's
    staging area, or the files store (at the generation the inventory saw, `generations`,
    where the store keeps generations)."""
    scratch = scratch_dir(settings, case) / "export"
    files = open_store(settings.store_url("files"))
    staging: tuple[ObjectStore, str] | None = None

    def open_source(source: str) -> AbstractContextManager[BinaryIO]:
        nonlocal staging
        kind, _, ref = source.partition(":")
        if kind == "scratch":
            return inside(scratch, ref).open("rb")
        if kind == "staged":
            staging = staging or staging_area(settings, case)
            store, prefix = staging
            return store.open_read(prefix + ref)
        return files.open_read(ref, generation=generations.get(ref))

    return open_source


def generations_of(inventory: Inventory) -> dict[str, int | None]:
    """The generation of each file the inventory saw (None where the store keeps none)."""
    return {f.key: f.generation for f in inventory.files}


def _bundle_base(case: CaseRef) -> str:
    return f"offboarding-{case.case_id}"


@dataclass(frozen=True)
class PartWritten:
    """What one part's writer wrote: its name and stored bytes (and, encrypted, what it
    encrypted)."""

    name: str
    size: int
    sha256: str
    plaintext_sha256: str | None = None
    plaintext_size: int | None = None


# Writes the planned parts elsewhere (a Dask cluster's workers): what each wrote, in order.
WriteParts = Callable[[list[PartPlan]], list[PartWritten]]


@dataclass(frozen=True)
class _Target:
    """Where a case's parts go: the delivery store of the tenant's region (encrypted to the
    client's age recipient, if it gave one), or, for a copy that is no step of a case, a
    directory in scratch."""

    settings: Settings
    case: CaseRef
    store: ObjectStore
    prefix: str
    recipient: x25519.Recipient | None
    directory: Path | None = None  # the copy's directory in scratch

    def key(self, name: str) -> str:
        return self.prefix + name + (".age" if self.recipient is not None else "")

    def path(self, name: str) -> str:
        """The part as the bundle's record names it: its key, or the copy's file."""
        return str(self.directory / name) if self.directory else self.key(name)

    def write(
        self, part: PartPlan, open_source: Callable[[str], AbstractContextManager[BinaryIO]]
    ) -> PartWritten:
        def fill(target: Writable) -> None:
            try:
                write_part(part, target, open_source)
            except SourceChanged as changed:  # its message names an entry: maybe a file's name
                details = write_case_report(
                    self.settings, self.case, f"packaging-{part.name}.txt", [str(changed)]
                )
                raise IntegrityError(
                    f"bundle part {part.name} of tenant {self.case.tenant!r}: an exported part "
                    f"changed since it was written (details in {details} on the worker); "
                    "nothing was delivered: export again"
                ) from None

        clear = Plaintext() if self.recipient is not None else None
        writer: Callable[[Any], None] = fill
        if self.recipient is not None and clear is not None:  # only the client's identity opens it
            writer = encrypting(self.recipient, fill, clear)
        info = self.store.write_stream(self.key(part.name), writer)
        crash_point("bundle:part-written")
        return PartWritten(
            name=part.name, size=info.size, sha256=info.sha256,
            plaintext_sha256=clear.sha256 if clear else None,
            plaintext_size=clear.size if clear else None,
        )  # fmt: skip


def _target(settings: Settings, case: CaseRef, record: bool) -> _Target:
    if not record:
        directory = scratch_dir(settings, case) / "bundle"
        return _Target(settings, case, LocalStore(directory), "", None, directory)
    tenant = TenantRegistry(settings).get(case.tenant)
    tenant.require_contact()  # nothing goes to the delivery store for nobody to receive
    recipient = parse_recipient(tenant.age_recipient, case.tenant) if tenant.age_recipient else None
    store = open_store(settings.delivery_store_url(tenant.region))
    return _Target(settings, case, store, f"{bundle_prefix(case.tenant)}{case.case_id}/", recipient)


def _emptied(target: _Target) -> None:
    """A retried packaging's parts removed first (the staging area stays: it holds the
    distributed export's parts)."""
    if target.directory is not None:
        shutil.rmtree(target.directory, ignore_errors=True)
        return
    staging = staging_prefix(target.case)
    for stale in list(target.store.list_objects(target.prefix)):
        if not stale.key.startswith(staging):
            target.store.delete(stale.key)


def write_bundle_part(
    settings: Settings, case: CaseRef, part: PartPlan, generations: Mapping[str, int | None]
) -> PartWritten:
    """One planned part written to the case's delivery store by this process (a worker of
    the cluster): its sources opened here, each entry checked against the signed plan."""
    return _target(settings, case, record=True).write(
        part, part_opener(settings, case, generations)
    )


def _write_all(
    plan: BundlePlan,
    target: _Target,
    open_source: Callable[[str], AbstractContextManager[BinaryIO]],
    workers: int,
    elsewhere: WriteParts | None,
) -> list[PartWritten]:
    """Every planned part, in order: `workers` at once here or, with `elsewhere`, on the
    cluster, except a part reading this process's scratch (a location that wrote its parts
    here), which is written here."""
    here = plan.parts
    written: list[PartWritten] = []
    if elsewhere is not None:
        here = [p for p in plan.parts if any(s.startswith("scratch:") for s in p.sources)]
        away = [p for p in plan.parts if p not in here]
        written = elsewhere(away) if away else []
    written += write_parts(here, lambda part: target.write(part, open_source), workers)
    order = {name: n for n, name in enumerate(plan.names)}
    return sorted(written, key=lambda w: order.get(w.name, len(order)))


def package(
    settings: Settings,
    case: CaseRef,
    inventory: Inventory,
    exported: ExportResult,
    *,
    record: bool = True,
    about: str = ALL_OF_IT,
    elsewhere: WriteParts | None = None,
) -> BundleRef:
    """Package the export into the signed ZIP bundle. The manifest is planned and signed here;
    then the parts are written, `export.bundle_workers` at once by this process or, with
    `elsewhere`, by a cluster's workers. A case's parts go straight into the delivery store
    of the tenant's region as they are produced (no local copy: a resumable upload on Cloud
    Storage); `record=False` (backups, copies, which are no step of a case) writes them into
    scratch."""
    generations = generations_of(inventory)
    open_source = part_opener(settings, case, generations)
    target = _target(settings, case, record)
    _emptied(target)
    plan = plan_bundle(
        _bundle_base(case),
        tenant=case.tenant,
        case_id=case.case_id,
        snapshot_time=exported.snapshot_time,
        tables=inventory.tables,
        parts=exported.parts,
        open_source=open_source,
        signer=Signer.load_or_create(settings.keys_dir),
        part_bytes=settings.export.bundle_part_bytes,
        about=about,
        left_out=inventory.left_out,
    )
    written = _write_all(
        plan, target, open_source, settings.export.bundle_workers,
        elsewhere if record else None,
    )  # fmt: skip
    if [w.name for w in written] != plan.names:
        raise IntegrityError(
            f"bundle of tenant {case.tenant!r}: the parts written ({len(written)}) are not the "
            f"{len(plan.names)} planned; rerun the packaging"
        )
    manifest = plan.manifest
    bundle = BundleRef(
        parts=[
            BundlePart(
                path=target.path(w.name),
                size=w.size,
                sha256=w.sha256,
                plaintext_sha256=w.plaintext_sha256,
                plaintext_size=w.plaintext_size,
            )
            for w in written
        ],
        store_url=target.store.url if record else "",
        encrypted_to=str(target.recipient) if target.recipient is not None else "",
        table_rows={t.name: t.rows for t in manifest.tables},
        manifest_sha256=hashlib.sha256(manifest_json(manifest)).hexdigest(),
        entries=len(manifest.entries),
        rows=sum(t.rows for t in manifest.tables),
        files=manifest.file_count,
    )
    if not record:
        return bundle
    AuditTrail.open(settings, case).record(
        events.Packaged(
            parts=[events.PackagedPart(sha256=p.sha256, size=p.size) for p in bundle.parts],
            manifest_sha256=bundle.manifest_sha256, entries=bundle.entries, rows=bundle.rows,
            files=bundle.files, snapshot_time=exported.snapshot_time,
        ),
        once="packaged",
    )  # fmt: skip
    return bundle


def verify_package(
    settings: Settings,
    case: CaseRef,
    bundle: BundleRef,
    inventory: Inventory,
    *,
    record: bool = True,
) -> int:
    """Re-read every part, from the delivery store for a case, and reconcile the bundle with
    the inventory before anyone sees a link: the snapshot must hold exactly what the
    inventory of the frozen tenant counted."""
    signer = Signer.load_or_create(settings.keys_dir)
    if bundle.encrypted_to:
        return _verify_sealed(settings, case, bundle, inventory, signer, record=record)
    try:
        with ExitStack() as opened:
            if bundle.store_url:
                store = open_store(bundle.store_url)
                sources: list[Path | BinaryIO] = [
                    opened.enter_context(store.open_read(p.path)) for p in bundle.parts
                ]
            else:
                sources = [Path(p.path) for p in bundle.parts]
            report = verify_bundle(sources, signer.public_pem)
    except IntegrityError as error:  # the message names an entry, i.e. maybe a file name
        details = write_case_report(settings, case, "bundle-verification.txt", [str(error)])
        raise IntegrityError(
            f"the bundle of tenant {case.tenant!r} failed its own verification (details in "
            f"{details} on the worker): nothing was delivered; rerun the export"
        ) from None
    if not report.complete:
        raise IntegrityError(f"bundle of tenant {case.tenant!r}: parts missing from the check")
    expected = {t.qualified: t.rows for t in inventory.tables}
    found = {t.name: t.rows for t in report.manifest.tables}
    if found != expected:
        raise IntegrityError(
            f"bundle of tenant {case.tenant!r} does not reconcile with the inventory: "
            f"{ {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v} } "
            "(bundle, inventory) rows: the tenant changed after the freeze. Check that the "
            "platform honours the freeze, then rerun the case"
        )
    file_digests = sorted(f.sha256 for f in inventory.files)
    bundle_digests = sorted(e.sha256 for e in report.manifest.entries if e.kind == "file")
    if file_digests != bundle_digests:
        raise IntegrityError(
            f"bundle of tenant {case.tenant!r}: files differ from the inventory "
            f"({len(bundle_digests)} in the bundle, {len(file_digests)} inventoried)"
        )
    if record:
        _record_verified(settings, case, report.entries_checked, report.rows,
                         report.signature_key, len(bundle.parts))  # fmt: skip
    return report.rows


def _record_verified(
    settings: Settings, case: CaseRef, entries: int, rows: int, key: str, parts: int
) -> None:
    AuditTrail.open(settings, case).record(
        events.BundleVerified(entries=entries, rows=rows, key=key, parts=parts),
        once="bundle-verified",
    )


def _verify_sealed(
    settings: Settings,
    case: CaseRef,
    bundle: BundleRef,
    inventory: Inventory,
    signer: Signer,
    *,
    record: bool,
) -> int:
    """A bundle encrypted to the client cannot be opened here: each entry was checked against
    the signed manifest's digest as it went into the ZIP. What is re-read from the store is
    each part's ciphertext: its digest, and an age header with the one X25519 recipient
    stanza (the client's). The manifest's row counts and files are reconciled with the
    inventory as for any bundle."""
    store = open_store(bundle.store_url)
    for part in bundle.parts:
        digest, size, head = hashlib.sha256(), 0, b""
        with store.open_read(part.path) as handle:
            while chunk := handle.read(1024 * 1024):
                head = head or chunk[:4096]
                digest.update(chunk)
                size += len(chunk)
        header = head.split(b"\n--- ", 1)[0]
        # One X25519 stanza (the client's); rage may add a random "grease" stanza beside it.
        stanzas = [line for line in header.split(b"\n") if line.startswith(b"-> X25519 ")]
        if (digest.hexdigest(), size) != (part.sha256, part.size):
            raise IntegrityError(
                f"{store.url}/{part.path}: the stored ciphertext differs from what was written; "
                "nothing was delivered: rerun the export"
            )
        if not head.startswith(AGE_HEADER) or len(stanzas) != 1:
            raise IntegrityError(
                f"{store.url}/{part.path}: not an age file for one X25519 recipient; nothing "
                "was delivered: rerun the export"
            )
    expected = {t.qualified: t.rows for t in inventory.tables}
    if bundle.table_rows != expected or bundle.files != len(inventory.files):
        raise IntegrityError(
            f"the encrypted bundle of tenant {case.tenant!r} does not reconcile with the "
            "inventory (rows per table, or files): the tenant changed after the freeze. Check "
            "that the platform honours the freeze, then rerun the case"
        )
    if record:
        _record_verified(settings, case, bundle.entries, bundle.rows, signer.fingerprint,
                         len(bundle.parts))  # fmt: skip
    return bundle.rows
