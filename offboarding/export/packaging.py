"""Stage: the export packaged into the signed ZIP bundle, straight into the delivery store of
the tenant's region (or scratch, for a copy), and the bundle verified against the inventory
before anything is delivered."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import BinaryIO

from pyrage import x25519

from exporters.bundle import ALL_OF_IT, Writable, manifest_json, package_bundle, verify_bundle
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
from offboarding.stores import LocalStore, ObjectInfo, ObjectStore, open_store
from offboarding.trail import AuditTrail, events

__all__ = ["package", "part_opener", "staging_area", "verify_package"]


def staging_area(settings: Settings, case: CaseRef) -> tuple[ObjectStore, str]:
    """The store and prefix where a distributed export's parts wait to be packaged."""
    region = TenantRegistry(settings).get(case.tenant).region
    return open_store(settings.delivery_store_url(region)), staging_prefix(case)


def part_opener(
    settings: Settings, case: CaseRef, inventory: Inventory
) -> Callable[[str], AbstractContextManager[BinaryIO]]:
    """Opens an exported part's bytes from wherever it is: this worker's scratch, the case's
    staging area, or the files store (at the generation the inventory saw, where the store
    keeps generations)."""
    scratch = scratch_dir(settings, case) / "export"
    files = open_store(settings.store_url("files"))
    generations = {f.key: f.generation for f in inventory.files}
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


def _bundle_base(case: CaseRef) -> str:
    return f"offboarding-{case.case_id}"


def _bundle_target(
    settings: Settings, case: CaseRef, directory: Path, record: bool
) -> tuple[ObjectStore, str, x25519.Recipient | None]:
    """Where the parts go, emptied of a retried packaging's: the delivery store of the
    tenant's region (encrypted to the client's age recipient, if it gave one), or, for a
    copy that is no step of a case, `directory` in scratch."""
    if not record:
        shutil.rmtree(directory, ignore_errors=True)
        return LocalStore(directory), "", None
    tenant = TenantRegistry(settings).get(case.tenant)
    tenant.require_contact()  # nothing goes to the delivery store for nobody to receive
    recipient = parse_recipient(tenant.age_recipient, case.tenant) if tenant.age_recipient else None
    store = open_store(settings.delivery_store_url(tenant.region))
    prefix = f"{bundle_prefix(case.tenant)}{case.case_id}/"
    staging = staging_prefix(case)
    for stale in list(store.list_objects(prefix)):
        if not stale.key.startswith(staging):
            store.delete(stale.key)
    return store, prefix, recipient


def package(
    settings: Settings,
    case: CaseRef,
    inventory: Inventory,
    exported: ExportResult,
    *,
    record: bool = True,
    about: str = ALL_OF_IT,
) -> BundleRef:
    """Package the export into the signed ZIP bundle. A case's bundle parts are written
    straight into the delivery store of the tenant's region as they are produced (no local
    copy: a resumable upload on Cloud Storage); `record=False` (backups, copies, which are no
    step of a case) writes them into scratch."""
    open_source = part_opener(settings, case, inventory)
    directory = scratch_dir(settings, case) / "bundle"
    store, prefix, recipient = _bundle_target(settings, case, directory, record)
    written: dict[str, ObjectInfo] = {}
    clear: dict[str, Plaintext] = {}
    suffix = ".age" if recipient is not None else ""

    def write_part(name: str, fill: Callable[[Writable], None]) -> None:
        if recipient is not None:  # only the client's identity opens it
            clear[name] = Plaintext()
            fill = encrypting(recipient, fill, clear[name])
        written[name] = store.write_stream(prefix + name + suffix, fill)
        crash_point("bundle:part-written")

    manifest, names = package_bundle(
        _bundle_base(case),
        tenant=case.tenant,
        case_id=case.case_id,
        snapshot_time=exported.snapshot_time,
        tables=inventory.tables,
        parts=exported.parts,
        open_source=open_source,
        signer=Signer.load_or_create(settings.keys_dir),
        write_part=write_part,
        part_bytes=settings.export.bundle_part_bytes,
        about=about,
        left_out=inventory.left_out,
    )
    bundle = BundleRef(
        parts=[
            BundlePart(
                path=prefix + name + suffix if record else str(directory / name),
                size=written[name].size,
                sha256=written[name].sha256,
                plaintext_sha256=clear[name].sha256 if name in clear else None,
                plaintext_size=clear[name].size if name in clear else None,
            )
            for name in names
        ],
        store_url=store.url if record else "",
        encrypted_to=str(recipient) if recipient is not None else "",
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
