"""A bundle checked offline, part by part: every entry's digest and size against the signed
manifest, the manifest's signature against the operator's key (or the one embedded, named
as such), every table's rows read back."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq

from exporters.layout import CHUNK, MANIFEST, PUBLIC_KEY, SIGNATURE, UNLISTED
from offboarding.core.errors import IntegrityError
from offboarding.core.records import Manifest
from offboarding.core.signing import fingerprint, load_public_key, verify_signature

__all__ = ["BundleReport", "verify_bundle"]


@dataclass(frozen=True)
class BundleReport:
    manifest: Manifest
    parts_checked: list[int]
    entries_checked: int
    rows: int
    signature_key: str
    key_from_bundle: bool

    @property
    def complete(self) -> bool:
        return sorted(self.parts_checked) == list(range(1, len(self.manifest.parts) + 1))


def _digest_entry(archive: zipfile.ZipFile, name: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _read_embedded_key(archive: zipfile.ZipFile, names: list[str]) -> bytes | None:
    if PUBLIC_KEY not in names:
        return None
    try:
        pem = archive.read(PUBLIC_KEY)
        load_public_key(pem)
    except (zipfile.BadZipFile, zlib.error, IntegrityError) as error:
        raise IntegrityError(f"{PUBLIC_KEY}: corrupted ({error})") from error
    return pem


def _verify_part(
    source: Path | BinaryIO, path: str, public_key_pem: bytes | None
) -> tuple[Manifest, bytes, int, int, str, bool]:
    """Check one ZIP part (a file, or an open seekable stream such as a store object named
    `path`); return its manifest (and raw bytes), part number, rows, key."""
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as error:
        raise IntegrityError(f"{path}: not a readable ZIP bundle ({error})") from error
    with archive:
        names = archive.namelist()
        if len(names) != len(set(names)):
            raise IntegrityError(f"{path}: duplicate entry names")
        for required in (MANIFEST, SIGNATURE):
            if required not in names:
                raise IntegrityError(f"{path}: {required} is missing: this is not a signed bundle")
        try:
            manifest_bytes = archive.read(MANIFEST)
            signature = archive.read(SIGNATURE)
        except (zipfile.BadZipFile, zlib.error) as error:
            raise IntegrityError(f"{MANIFEST}: unreadable ({error})") from error
        embedded_pem = _read_embedded_key(archive, names)
        key_pem = public_key_pem or embedded_pem
        if key_pem is None:
            raise IntegrityError(f"{path}: no public key given and none inside the bundle")
        public_key = load_public_key(key_pem)
        if not verify_signature(public_key, manifest_bytes, signature):
            raise IntegrityError(
                f"{MANIFEST}: the signature does not match (key {fingerprint(public_key)}): the "
                "manifest was altered or signed by another key"
            )
        if (
            public_key_pem
            and embedded_pem
            and fingerprint(load_public_key(embedded_pem))
            != fingerprint(load_public_key(public_key_pem))
        ):
            raise IntegrityError(f"{PUBLIC_KEY}: differs from the public key given to check with")
        manifest = Manifest.model_validate_json(manifest_bytes)
        if manifest.signing_key != fingerprint(public_key):
            raise IntegrityError(
                f"{MANIFEST}: names signing key {manifest.signing_key} but was verified with "
                f"{fingerprint(public_key)}"
            )
        by_path = {e.path: e for e in manifest.entries}
        unexpected = sorted(set(names) - set(by_path) - UNLISTED)
        if unexpected:
            raise IntegrityError(f"{unexpected[0]}: entry not listed in the manifest")
        numbers = {p for n in names if n in by_path and (p := by_path[n].part) is not None}
        if len(numbers) != 1:
            raise IntegrityError(f"{path}: entries of parts {sorted(numbers)} mixed in one file")
        number = numbers.pop()
        rows = 0
        for entry in manifest.entries:
            if entry.part not in (None, number):
                continue
            if entry.path not in names:
                raise IntegrityError(f"{entry.path}: listed in the manifest but missing")
            try:
                size, digest = _digest_entry(archive, entry.path)
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise IntegrityError(f"{entry.path}: corrupted ({error})") from error
            if size != entry.size or digest != entry.sha256:
                raise IntegrityError(
                    f"{entry.path}: sha256 {digest} and size {size} do not match the manifest "
                    f"({entry.sha256}, {entry.size})"
                )
            if entry.kind == "table":
                with archive.open(entry.path) as handle:
                    counted = pq.ParquetFile(handle).metadata.num_rows
                if counted != entry.rows:
                    raise IntegrityError(
                        f"{entry.path}: holds {counted} rows, the manifest says {entry.rows}"
                    )
                rows += counted
    return manifest, manifest_bytes, number, rows, fingerprint(public_key), public_key_pem is None


def verify_bundle(
    paths: Path | Sequence[Path | BinaryIO], public_key_pem: bytes | None = None
) -> BundleReport:
    """Check the signature, every entry's size and sha256, and the Parquet row counts of each
    part given (files, or open seekable streams: a store's objects); with all parts, also
    that nothing is missing. Raises IntegrityError naming the first entry that does not
    check out."""
    sources = [paths] if isinstance(paths, Path) else list(paths)
    checked: dict[int, str] = {}
    manifests: set[bytes] = set()
    rows = entries = 0
    result: tuple[Manifest, bytes, int, int, str, bool] | None = None
    for index, source in enumerate(sources, start=1):
        path = str(source) if isinstance(source, Path) else f"part {index} given"
        result = _verify_part(source, path, public_key_pem)
        manifest, raw, number, part_rows, _, _ = result
        if number in checked:
            raise IntegrityError(f"{path}: part {number} given twice (also {checked[number]})")
        checked[number] = path
        manifests.add(raw)
        rows += part_rows
        entries += sum(e.part in (None, number) for e in manifest.entries)
    if result is None:
        raise IntegrityError("no bundle given")
    if len(manifests) > 1:
        raise IntegrityError("the parts given belong to different bundles (manifests differ)")
    manifest, _, _, _, key, from_bundle = result
    report = BundleReport(manifest, sorted(checked), entries, rows, key, from_bundle)
    if report.complete:
        for table in manifest.tables:
            if sum(e.rows or 0 for e in manifest.entries if e.table == table.name) != table.rows:
                raise IntegrityError(
                    f"table {table.name}: parts do not add up to {table.rows} rows"
                )
    return report
