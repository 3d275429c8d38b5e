"""The ZIP bundle the client receives: tables, files, README, manifest and its signature.

Layout (ZIP64, deterministic: fixed entry times, sorted entries):

    README.txt                 what is inside, how to open it, how to check it
    SHA256SUMS                 for `sha256sum -c` after unzipping (SHA256SUMS.part-NNN if split)
    metadata/schema.json       table definitions: columns, types, keys
    tables/<schema>.<table>/part-00000.parquet
    files/<original path, made safe>
    manifest.json              sha256, size and part of every entry above, row counts, schemas
    manifest.json.sig          raw Ed25519 signature of manifest.json
    signing-key.pem            the public key (authoritative copy: published by the operator)

A bundle larger than the part size is split into `<name>.part-NNN-of-MMM.zip`. Every part
carries the README, the same signed manifest and the key, so each part verifies on its own;
all parts together prove the export complete.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

import pyarrow.parquet as pq

from offboarding.core.canonical import canonical_json
from offboarding.core.errors import IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.names import safe_segment, table_folder
from offboarding.core.records import (
    ExportedPart,
    Manifest,
    ManifestEntry,
    ManifestTable,
    TableItem,
)
from offboarding.core.signing import Signer, fingerprint, load_public_key, verify_signature

__all__ = [
    "BundleReport",
    "Writable",
    "WritePart",
    "directory_writer",
    "package_bundle",
    "part_names",
    "plan_parts",
    "safe_entry_paths",
    "verify_bundle",
]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
PUBLIC_KEY = "signing-key.pem"
CHECKSUMS = "SHA256SUMS"
README = "README.txt"
# What a bundle holds, in its README: a whole tenant's data, unless said otherwise (one person's).
ALL_OF_IT = "all the data your organisation stored on the platform"
SCHEMA = "metadata/schema.json"
_UNLISTED = {MANIFEST, SIGNATURE, PUBLIC_KEY}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024


def safe_entry_paths(folder: str, names: Sequence[str]) -> list[str]:
    """Make object keys safe entry names: no '..', no absolute paths, no control characters,
    and no two entries that collide once normalised (the later ones get '~N' added)."""
    taken: set[str] = set()
    result: list[str] = []
    for name in names:
        segments = [safe_segment(s) for s in name.split("/") if s not in ("", ".", "..")]
        candidate = folder + "/".join(segments or ["_"])
        stem, dot, suffix = candidate.rpartition(".")
        if not dot or "/" in suffix:
            stem, dot, suffix = candidate, "", ""
        n = 1
        while candidate.casefold() in taken:
            candidate = f"{stem}~{n}{dot}{suffix}"
            n += 1
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    # Parquet is compressed already; text compresses well.
    info.compress_type = (
        zipfile.ZIP_STORED if name.endswith(".parquet") or name.startswith("files/")
        else zipfile.ZIP_DEFLATED
    )  # fmt: skip
    return info


def _write_stream(
    archive: zipfile.ZipFile, name: str, source: BinaryIO, hasher: ThreadPoolExecutor
) -> tuple[int, str]:
    """Copy `source` into the archive while hashing it: one pass over the bytes. The sha256
    of each chunk runs on `hasher`'s thread while this one writes it (CRC-32 and the write);
    both release the GIL, so the hash costs no wall time on a second core. One chunk is
    hashed at a time, in order."""
    digest = hashlib.sha256()
    size = 0
    hashing: Future[None] | None = None
    with archive.open(_zip_info(name), "w", force_zip64=True) as target:
        while chunk := source.read(_CHUNK):
            if hashing is not None:
                hashing.result()
            hashing = hasher.submit(digest.update, chunk)
            target.write(chunk)
            size += len(chunk)
            crash_point("bundle:chunk-written")
        if hashing is not None:
            hashing.result()
    return size, digest.hexdigest()


def _write_bytes(archive: zipfile.ZipFile, name: str, data: bytes) -> tuple[int, str]:
    archive.writestr(_zip_info(name), data)
    return len(data), hashlib.sha256(data).hexdigest()


def _readme(
    tenant: str, case_id: str, tables: list[ManifestTable], files: int, about: str
) -> bytes:
    listing = "\n".join(
        f"  {table_folder(t.name)}  ({t.rows} rows"
        + ("" if table_folder(t.name) == f"tables/{t.name}/" else f" of table {t.name}")
        + ")"
        for t in tables
    )
    return f"""\
Data export of tenant {tenant} (case {case_id})
{"=" * 60}

This archive holds {about}, in open formats.
A large export comes in several parts (*.part-001-of-003.zip ...): each part holds some of
the entries below and this same README and manifest; unzip all parts into one folder.

What is inside
  tables/<schema>.<table>/part-*.parquet  your database rows, one folder per table:
{listing}
  files/                                   your uploaded files, original bytes ({files} files)
  metadata/schema.json                     column types and keys, to rebuild the database
  manifest.json                            size, SHA-256 and part of every entry, row counts
  manifest.json.sig                        Ed25519 signature of manifest.json
  signing-key.pem                          the operator's public signing key
  SHA256SUMS (SHA256SUMS.part-NNN)         checksums for the sha256sum tool

Opening the tables (Apache Parquet)
  DuckDB:  duckdb -c "SELECT * FROM 'tables/public.posts/*.parquet'"
  pandas:  pandas.read_parquet('tables/public.posts')
  Spreadsheet: convert first, e.g.
           duckdb -c "COPY (SELECT * FROM 'tables/public.posts/*.parquet') TO 'posts.csv'"
  Columns PostgreSQL has no exact Parquet type for hold PostgreSQL's text form; manifest.json
  marks them with "as_text": true.

Encrypted delivery
  If the parts reached you as *.zip.age, they were encrypted to your organisation's age key
  (the recipient you gave the operator): only your identity opens them. Decrypt each part
  with the age tool (https://age-encryption.org) before anything else:
           age -d -i <your identity file> -o <part>.zip <part>.zip.age
  The delivery notice lists the sha256 of each part before and after decryption.

Checking the archive
  1. Checksums:  unzip the archive(s), then run  sha256sum -c SHA256SUMS*
  2. Signature:  openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin \\
                     -in manifest.json -sigfile manifest.json.sig
     Compare signing-key.pem with the key the operator published, so the check proves origin
     and not only integrity.
  3. Or both at once, without unzipping:  offboard verify <all parts> --public-key <key>
""".encode()


def plan_parts(sizes: Sequence[int], limit: int | None) -> list[int]:
    """Part number (from 1) of each entry, filling parts in order up to `limit` bytes.
    An entry larger than the limit gets a part of its own; entries are never split."""
    assignment: list[int] = []
    part, used = 1, 0
    for size in sizes:
        if limit and used and used + size > limit:
            part, used = part + 1, 0
        assignment.append(part)
        used += size
    return assignment


def part_names(base: str, count: int) -> list[str]:
    if count == 1:
        return [f"{base}.zip"]
    return [f"{base}.part-{n:03d}-of-{count:03d}.zip" for n in range(1, count + 1)]


class Writable(Protocol):
    """Where a ZIP part goes: a store's streamed upload, or a local file."""

    def write(self, data: bytes, /) -> int: ...

    def tell(self) -> int: ...

    def flush(self) -> None: ...


# Writes the part named by the first argument by calling the second with a stream to fill.
WritePart = Callable[[str, Callable[[Writable], None]], None]


def directory_writer(directory: Path) -> WritePart:
    """Parts as files in a local directory."""

    def write(name: str, fill: Callable[[Writable], None]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / name).open("wb") as handle:
            fill(handle)

    return write


def _source_digest(
    part: ExportedPart, open_source: Callable[[str], AbstractContextManager[BinaryIO]]
) -> ExportedPart:
    """A part whose writer did not record its digest is read once to get it."""
    if part.sha256 is not None:
        return part
    digest, size = hashlib.sha256(), 0
    with open_source(part.source) as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return part.model_copy(update={"sha256": digest.hexdigest(), "size": size})


def package_bundle(
    base_name: str,
    *,
    tenant: str,
    case_id: str,
    snapshot_time: datetime,
    tables: list[TableItem],
    parts: list[ExportedPart],
    open_source: Callable[[str], AbstractContextManager[BinaryIO]],
    signer: Signer,
    write_part: WritePart,
    part_bytes: int | None = None,
    about: str = ALL_OF_IT,
) -> tuple[Manifest, list[str]]:
    """Write the bundle (one or more ZIP parts) through `write_part`; return the manifest and
    the parts' names.

    The manifest is planned and signed first, from every entry's known digest and size, so
    each part is written in one pass and closed by the same signed manifest: a part can go
    straight to its store as it is produced, with no local copy. Each entry's bytes are
    hashed again as they are copied in; bytes that differ from the digest planned (a source
    changed since it was written) stop the part."""
    parts = sorted(
        (_source_digest(p, open_source) for p in parts), key=lambda p: (p.kind != "table", p.path)
    )
    written = {p.table: p.columns for p in parts if p.table and p.columns}
    manifest_tables = [
        ManifestTable(
            name=t.qualified,
            scope=t.scope,
            rows=sum(p.rows or 0 for p in parts if p.table == t.qualified),
            columns=written.get(t.qualified) or t.columns,
            primary_key=t.primary_key,
            foreign_keys=t.foreign_keys,
            parts=[p.path for p in parts if p.table == t.qualified],
        )
        for t in tables
    ]
    schema_doc = canonical_json(
        {
            t.name: {"columns": [c.model_dump() for c in t.columns], "primary_key": t.primary_key,
                     "foreign_keys": [fk.model_dump() for fk in t.foreign_keys]}
            for t in manifest_tables
        }
    )  # fmt: skip
    readme = _readme(tenant, case_id, manifest_tables, sum(p.kind == "file" for p in parts), about)
    assignment = plan_parts([len(schema_doc), *(p.size for p in parts)], part_bytes)
    count = assignment[-1]
    names = part_names(base_name, count)
    readme_entry = ManifestEntry(
        path=README, size=len(readme), sha256=hashlib.sha256(readme).hexdigest(), kind="readme"
    )
    entries: list[ManifestEntry] = [readme_entry]
    contents: list[list[tuple[ManifestEntry, ExportedPart | None, bytes | None]]] = []
    for number in range(1, count + 1):
        in_part: list[tuple[ManifestEntry, ExportedPart | None, bytes | None]] = []
        if assignment[0] == number:
            in_part.append((ManifestEntry(
                path=SCHEMA, size=len(schema_doc), sha256=hashlib.sha256(schema_doc).hexdigest(),
                kind="metadata", part=number,
            ), None, schema_doc))  # fmt: skip
        for part, part_number in zip(parts, assignment[1:], strict=True):
            if part_number != number:
                continue
            original = part.source.removeprefix("store:") if part.kind == "file" else None
            in_part.append((ManifestEntry(
                path=part.path, size=part.size, sha256=str(part.sha256), kind=part.kind,
                table=part.table, rows=part.rows, part=number, source_key=original,
            ), part, None))  # fmt: skip
        sums_name = CHECKSUMS if count == 1 else f"{CHECKSUMS}.part-{number:03d}"
        listed = [readme_entry, *(entry for entry, _, _ in in_part)]
        sums = "".join(f"{e.sha256}  {e.path}\n" for e in listed).encode()
        in_part.append((ManifestEntry(
            path=sums_name, size=len(sums), sha256=hashlib.sha256(sums).hexdigest(),
            kind="metadata", part=number,
        ), None, sums))  # fmt: skip
        entries.extend(entry for entry, _, _ in in_part)
        contents.append(in_part)
    manifest = Manifest(
        tenant=tenant,
        case_id=case_id,
        snapshot_time=snapshot_time,
        tables=manifest_tables,
        file_count=sum(e.kind == "file" for e in entries),
        file_bytes=sum(e.size for e in entries if e.kind == "file"),
        entries=entries,
        parts=names,
        signing_key=signer.fingerprint,
    )
    manifest_bytes = manifest_json(manifest)
    signature = signer.sign(manifest_bytes)

    for name, in_part in zip(names, contents, strict=True):

        def fill(target: Writable, in_part: list[Any] = in_part) -> None:
            with (
                zipfile.ZipFile(cast(IO[bytes], target), "w", allowZip64=True) as archive,
                ThreadPoolExecutor(1, thread_name_prefix="bundle-sha256") as hasher,
            ):
                _write_bytes(archive, README, readme)
                for entry, part, data in in_part:
                    if data is not None:
                        _write_bytes(archive, entry.path, data)
                        continue
                    with open_source(part.source) as source:
                        size, digest = _write_stream(archive, entry.path, source, hasher)
                    if (size, digest) != (entry.size, entry.sha256):
                        raise IntegrityError(
                            f"{entry.path}: its source changed since it was written (sha256 "
                            f"{digest}, {size} bytes; {entry.sha256}, {entry.size} expected): "
                            "export again"
                        )
                _write_bytes(archive, MANIFEST, manifest_bytes)
                _write_bytes(archive, SIGNATURE, signature)
                _write_bytes(archive, PUBLIC_KEY, signer.public_pem)

        write_part(name, fill)
    return manifest, names


def manifest_json(manifest: Manifest) -> bytes:
    return canonical_json(manifest.model_dump(mode="json"))


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
        while chunk := handle.read(_CHUNK):
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
        unexpected = sorted(set(names) - set(by_path) - _UNLISTED)
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
