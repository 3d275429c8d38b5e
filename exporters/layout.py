"""The bundle's fixed names, its README, and how one entry is written into a ZIP part
(deterministic: fixed entry times; each entry's bytes hashed as they are copied in)."""

from __future__ import annotations

import hashlib
import textwrap
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from offboarding.core.faults import crash_point
from offboarding.core.names import table_folder
from offboarding.core.records import LeftOut, ManifestTable

__all__ = [
    "ALL_OF_IT",
    "CHECKSUMS",
    "CHUNK",
    "MANIFEST",
    "PUBLIC_KEY",
    "README",
    "SCHEMA",
    "SIGNATURE",
    "UNLISTED",
    "holds_less",
    "readme_text",
    "write_bytes",
    "write_stream",
    "zip_info",
]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
PUBLIC_KEY = "signing-key.pem"
CHECKSUMS = "SHA256SUMS"
README = "README.txt"
# What a bundle holds, in its README: a whole tenant's data, unless said otherwise (one person's).
ALL_OF_IT = "all the data your organisation stored on the platform"
SCHEMA = "metadata/schema.json"
UNLISTED = {MANIFEST, SIGNATURE, PUBLIC_KEY}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1024 * 1024


def zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    # Parquet is compressed already; text compresses well.
    info.compress_type = (
        zipfile.ZIP_STORED if name.endswith(".parquet") or name.startswith("files/")
        else zipfile.ZIP_DEFLATED
    )  # fmt: skip
    return info


def write_stream(
    archive: zipfile.ZipFile, name: str, source: BinaryIO, hasher: ThreadPoolExecutor
) -> tuple[int, str]:
    """Copy `source` into the archive while hashing it: one pass over the bytes. The sha256
    of each chunk runs on `hasher`'s thread while this one writes it (CRC-32 and the write);
    both release the GIL, so the hash costs no wall time on a second core. One chunk is
    hashed at a time, in order."""
    digest = hashlib.sha256()
    size = 0
    hashing: Future[None] | None = None
    with archive.open(zip_info(name), "w", force_zip64=True) as target:
        while chunk := source.read(CHUNK):
            if hashing is not None:
                hashing.result()
            hashing = hasher.submit(digest.update, chunk)
            target.write(chunk)
            size += len(chunk)
            crash_point("bundle:chunk-written")
        if hashing is not None:
            hashing.result()
    return size, digest.hexdigest()


def write_bytes(archive: zipfile.ZipFile, name: str, data: bytes) -> tuple[int, str]:
    archive.writestr(zip_info(name), data)
    return len(data), hashlib.sha256(data).hexdigest()


def _left_out(left_out: list[LeftOut]) -> str:
    if not left_out:
        return "  Nothing: the inventory covered every table and system of the platform's data map."
    lines = [f"  - {entry.describe()}" for entry in left_out]
    return "\n".join(_wrap_lines(lines))


def _wrap_lines(lines: list[str], width: int = 92) -> list[str]:
    wrapped = []
    for line in lines:
        wrapped += textwrap.wrap(line, width, subsequent_indent="      ") or [line]
    return wrapped


def holds_less(left_out: list[LeftOut]) -> bool:
    """Some of the tenant's data is elsewhere: an excluded table holding its rows, a system a
    role destroys."""
    return any(
        (e.kind == "excluded table" and e.tenant_rows)
        or e.kind in ("attested system", "unbound system")
        for e in left_out
    )


def readme_text(
    tenant: str,
    case_id: str,
    tables: list[ManifestTable],
    files: int,
    about: str,
    left_out: list[LeftOut] | None = None,
) -> bytes:
    listing = "\n".join(
        f"  {table_folder(t.name)}  ({t.rows} rows"
        + ("" if table_folder(t.name) == f"tables/{t.name}/" else f" of table {t.name}")
        + (f"; withheld on others' rows: {', '.join(t.withheld)}" if t.withheld else "")
        + ")"
        for t in tables
    )
    if any(t.withheld for t in tables):
        listing += (
            "\n  Some rows are other people's that point at this person (a ticket assigned to"
            "\n  them, a colleague they manage): those rows hold their keys and references, and"
            "\n  NULL in the withheld columns, which are those people's own (GDPR Art. 15(4))."
        )
    left_out = left_out or []
    if about == ALL_OF_IT and holds_less(left_out):
        about += ' that the inventory covered: "What this archive does not hold" lists the rest'
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

What this archive does not hold
  Each table or system of the platform's data map left out, with the reason the operator
  declared (manifest.json lists them too, under "left_out"):
{_left_out(left_out)}

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
