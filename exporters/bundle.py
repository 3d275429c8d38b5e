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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, BinaryIO, Protocol, TypeVar, cast

from exporters.layout import (
    ALL_OF_IT,
    CHECKSUMS,
    CHUNK,
    MANIFEST,
    PUBLIC_KEY,
    README,
    SCHEMA,
    SIGNATURE,
    readme_text,
    write_bytes,
    write_stream,
)
from offboarding.core.canonical import canonical_json
from offboarding.core.errors import IntegrityError
from offboarding.core.names import safe_segment
from offboarding.core.records import (
    ExportedPart,
    LeftOut,
    Manifest,
    ManifestEntry,
    ManifestTable,
    TableItem,
)
from offboarding.core.signing import Signer

__all__ = [  # the layout's names too, as importers of this module knew them
    "ALL_OF_IT",
    "CHECKSUMS",
    "MANIFEST",
    "PUBLIC_KEY",
    "README",
    "SCHEMA",
    "SIGNATURE",
    "BundlePlan",
    "BundleReport",
    "PartPlan",
    "SourceChanged",
    "Writable",
    "WritePart",
    "directory_writer",
    "part_names",
    "plan_bundle",
    "plan_parts",
    "safe_entry_paths",
    "to_directory",
    "verify_bundle",
    "write_part",
    "write_parts",
]

# The reader: below the writer's names, which it does not need (no import cycle).
from exporters.verify import BundleReport, verify_bundle


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


T = TypeVar("T")

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
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return part.model_copy(update={"sha256": digest.hexdigest(), "size": size})


_Content = tuple[ManifestEntry, ExportedPart | None, bytes | None]


def _manifest_tables(tables: list[TableItem], parts: list[ExportedPart]) -> list[ManifestTable]:
    written = {p.table: p.columns for p in parts if p.table and p.columns}
    return [
        ManifestTable(
            name=t.qualified,
            scope=t.scope,
            rows=sum(p.rows or 0 for p in parts if p.table == t.qualified),
            columns=written.get(t.qualified) or t.columns,
            primary_key=t.primary_key,
            foreign_keys=t.foreign_keys,
            parts=[p.path for p in parts if p.table == t.qualified],
            withheld=t.withheld,
        )
        for t in tables
    ]


def _part_contents(
    number: int,
    count: int,
    assignment: list[int],
    parts: list[ExportedPart],
    schema_doc: bytes,
    readme_entry: ManifestEntry,
) -> list[_Content]:
    """Part `number`'s entries in order: the schema (in the part the plan gives it), the
    exported parts assigned to it, and its checksums file (the README is in every part)."""
    in_part: list[_Content] = []
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
    return in_part


class SourceChanged(IntegrityError):
    """An entry's bytes differ from the signed plan's digest. The message names the entry,
    which may be a file's name: the pipeline keeps it in a case report."""


@dataclass(frozen=True)
class PartPlan:
    """Everything one ZIP part's writer needs, planned and signed on the coordinator: its
    name, its entries in order (each with the digest the signed manifest gives it), the README
    and the closing manifest, signature and key. Plain data: it travels to a cluster's worker."""

    name: str
    contents: list[_Content]
    readme: bytes
    closing: tuple[bytes, bytes, bytes]

    @property
    def sources(self) -> list[str]:
        return [part.source for _, part, _ in self.contents if part is not None]


@dataclass(frozen=True)
class BundlePlan:
    """The bundle planned: its signed manifest, and one plan per part (in order)."""

    manifest: Manifest
    parts: list[PartPlan]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parts]


def write_part(
    plan: PartPlan,
    target: Writable,
    open_source: Callable[[str], AbstractContextManager[BinaryIO]],
) -> None:
    """One ZIP part: the README, its entries (each source's bytes hashed again as they are
    copied in, and refused if they differ from the signed plan), then the signed manifest, its
    signature and the public key. Memory: a few chunks of each entry in flight, whatever the
    part's size."""
    with (
        zipfile.ZipFile(cast(IO[bytes], target), "w", allowZip64=True) as archive,
        ThreadPoolExecutor(1, thread_name_prefix="bundle-sha256") as hasher,
    ):
        write_bytes(archive, README, plan.readme)
        for entry, part, data in plan.contents:
            if data is not None:
                write_bytes(archive, entry.path, data)
                continue
            assert part is not None
            with open_source(part.source) as source:
                size, digest = write_stream(archive, entry.path, source, hasher)
            if (size, digest) != (entry.size, entry.sha256):
                raise SourceChanged(
                    f"{entry.path}: its source changed since it was written (sha256 "
                    f"{digest}, {size} bytes; {entry.sha256}, {entry.size} expected): "
                    "export again"
                )
        for name, data in zip((MANIFEST, SIGNATURE, PUBLIC_KEY), plan.closing, strict=True):
            write_bytes(archive, name, data)


def plan_bundle(
    base_name: str,
    *,
    tenant: str,
    case_id: str,
    snapshot_time: datetime,
    tables: list[TableItem],
    parts: list[ExportedPart],
    open_source: Callable[[str], AbstractContextManager[BinaryIO]],
    signer: Signer,
    part_bytes: int | None = None,
    about: str = ALL_OF_IT,
    left_out: list[LeftOut] | None = None,
) -> BundlePlan:
    """The manifest planned and signed first, from every entry's known digest and size, so
    each part can then be written in one pass, on its own, and closed by the same signed
    manifest: parts go straight to their store as they are produced, with no local copy, and
    as many at once as there are writers."""
    parts = sorted(
        (_source_digest(p, open_source) for p in parts), key=lambda p: (p.kind != "table", p.path)
    )
    manifest_tables = _manifest_tables(tables, parts)
    schema_doc = canonical_json(
        {
            t.name: {"columns": [c.model_dump() for c in t.columns], "primary_key": t.primary_key,
                     "foreign_keys": [fk.model_dump() for fk in t.foreign_keys]}
            for t in manifest_tables
        }
    )  # fmt: skip
    readme = readme_text(
        tenant, case_id, manifest_tables, sum(p.kind == "file" for p in parts), about, left_out
    )
    assignment = plan_parts([len(schema_doc), *(p.size for p in parts)], part_bytes)
    count = assignment[-1]
    names = part_names(base_name, count)
    readme_entry = ManifestEntry(
        path=README, size=len(readme), sha256=hashlib.sha256(readme).hexdigest(), kind="readme"
    )
    contents = [
        _part_contents(number, count, assignment, parts, schema_doc, readme_entry)
        for number in range(1, count + 1)
    ]
    entries = [readme_entry, *(entry for in_part in contents for entry, _, _ in in_part)]
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
        left_out=list(left_out or []),
    )
    manifest_bytes = manifest_json(manifest)
    closing = (manifest_bytes, signer.sign(manifest_bytes), signer.public_pem)
    return BundlePlan(
        manifest=manifest,
        parts=[
            PartPlan(name=name, contents=in_part, readme=readme, closing=closing)
            for name, in_part in zip(names, contents, strict=True)
        ],
    )


def write_parts(parts: list[PartPlan], write: Callable[[PartPlan], T], workers: int = 1) -> list[T]:
    """`write` applied to every part, `workers` of them at once (threads: hashing, CRC and I/O
    release the interpreter); what each returned, in the parts' order. The first failure
    stops the parts not yet begun and is raised once those running have ended; a retry
    writes every part again."""
    if workers <= 1 or len(parts) <= 1:
        return [write(part) for part in parts]
    with ThreadPoolExecutor(min(workers, len(parts)), "bundle-part") as pool:
        futures = [pool.submit(write, part) for part in parts]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def to_directory(
    directory: Path, open_source: Callable[[str], AbstractContextManager[BinaryIO]]
) -> Callable[[PartPlan], None]:
    """Writes a planned part as a file in a local directory."""
    write = directory_writer(directory)
    return lambda part: write(part.name, lambda target: write_part(part, target, open_source))


def manifest_json(manifest: Manifest) -> bytes:
    return canonical_json(manifest.model_dump(mode="json"))
