"""What a deletion leaves on disk in PostgreSQL, found by canaries, and the compaction that
rewrites it away.

A DELETE marks row versions dead; VACUUM makes their space reusable but does not overwrite it,
so the tenant's bytes stay in the table's heap pages, its TOAST pages and its indexes until
something rewrites them. `compact` rewrites the touched tables (VACUUM FULL: a new file per
relation, the old ones unlinked), then CHECKPOINT and pg_switch_wal, so the WAL segments that
held the rows can be recycled. `scan` looks for canaries (values sampled from the tenant's
rows at export) in the files of given relations and in the WAL still on disk, through
`pg_read_binary_file`: the server reads its own files, so the scan needs a superuser or a role
granted pg_read_server_files (docs/security.md), and no file access on the database's host.

The cost of a scan is the size of the touched relations and of the WAL directory: the
tables the tenant had rows in, never the whole database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import PgColumn
from offboarding.locations.postgres.catalog import ident

__all__ = [
    "Canary",
    "Residue",
    "compact",
    "live",
    "relation_files",
    "sample_canaries",
    "scan",
    "wal_files",
]

_TEXT = frozenset({"text", "varchar", "bpchar", "citext", "bytea", "json", "jsonb", "xml"})
# The files are read this many bytes at a time; consecutive reads overlap by the longest
# canary, so a value across two reads is found.
_CHUNK = 8 * 1024 * 1024
_MIN_BYTES = 16


@dataclass(frozen=True)
class Canary:
    """A value sampled from the tenant's rows, and the column it came from (so a copy a live
    row still holds can be told from residue)."""

    value: bytes
    table: str
    column: str
    binary: bool  # a bytea column (else text, read as UTF-8)


def _raw(column: str, binary: bool) -> sql.Composable:
    name = sql.Identifier(column)
    return name if binary else sql.SQL("convert_to({}::text, 'UTF8')").format(name)


def sample_canaries(
    conn: psycopg.Connection[Any],
    conditions: dict[str, sql.Composable],
    columns: dict[str, list[PgColumn]],
    *,
    count: int = 64,
    min_bytes: int = _MIN_BYTES,
) -> list[Canary]:
    """Up to `count` distinct values of at least `min_bytes` bytes from the tenant's text-like
    and bytea columns, spread over the tables and columns (`conditions`: the tenant's rows of
    each table). A value is taken as the server stores it (its text or bytes), so a scan of
    the files finds it where PostgreSQL kept it uncompressed; long values PostgreSQL
    compresses are sampled by their first `min_bytes * 4` bytes, which compression of a
    short prefix rarely touches. Reads the tenant's rows only: whether another row holds the
    same value is asked at the scan, of the canaries found (`live`)."""
    per_column: list[list[Canary]] = []
    for table, cols in columns.items():
        for column in cols:
            if table not in conditions or column.type_name not in _TEXT:
                continue
            binary = column.type_name == "bytea"
            raw = _raw(column.name, binary)
            rows = conn.execute(
                sql.SQL(
                    "SELECT DISTINCT substring({raw} FROM 1 FOR %s) FROM {t} WHERE {w} "
                    "AND octet_length({raw}) >= %s LIMIT %s"
                ).format(raw=raw, t=ident(table), w=conditions[table]),
                (min_bytes * 4, min_bytes, count),
            ).fetchall()
            per_column.append([Canary(bytes(r[0]), table, column.name, binary) for r in rows])
    # Round-robin over the columns, so the sample spreads over every table and column.
    found: dict[bytes, Canary] = {}
    for rank in range(count):
        for canaries in per_column:
            if rank < len(canaries) and len(found) < count:
                found.setdefault(canaries[rank].value, canaries[rank])
    return list(found.values())


def live(conn: psycopg.Connection[Any], canaries: list[Canary]) -> set[int]:
    """Which canaries (by index) a row still in their table starts with: a neighbour's own
    value, found in the files for the right reason. Asked of the found canaries only."""
    held = set()
    for number, canary in enumerate(canaries):
        raw = _raw(canary.column, canary.binary)
        row = conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE substring({raw} FROM 1 FOR %s) = %s)"
            ).format(t=ident(canary.table), raw=raw),
            (len(canary.value), canary.value),
        ).fetchone()
        if row and row[0]:
            held.add(number)
    return held


def relation_files(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[str]:
    """The data files (paths relative to the data directory, every 1 GB segment) of each
    table, its TOAST table and every index of both."""
    rows = conn.execute(
        "WITH t AS (SELECT c.oid, c.reltoastrelid FROM pg_class c "
        "  WHERE c.oid = ANY(SELECT to_regclass(x) FROM unnest(%s::text[]) x)), "
        "rels AS (SELECT oid FROM t UNION SELECT reltoastrelid FROM t WHERE reltoastrelid <> 0 "
        "  UNION SELECT i.indexrelid FROM pg_index i WHERE i.indrelid IN "
        "  (SELECT oid FROM t UNION SELECT reltoastrelid FROM t)) "
        "SELECT pg_relation_filepath(oid), pg_relation_size(oid) FROM rels "
        "WHERE pg_relation_filepath(oid) IS NOT NULL ORDER BY 1",
        ([_regclass(t) for t in tables],),
    ).fetchall()
    segment = 1024 * 1024 * 1024
    files = []
    for path, size in rows:
        files.append(str(path))
        files += [f"{path}.{n}" for n in range(1, int(size) // segment + 1)]
    return files


def _regclass(table: str) -> str:
    return ident(table).as_string()


def wal_files(conn: psycopg.Connection[Any]) -> list[str]:
    """The WAL segments on disk (pg_wal/), oldest first."""
    rows = conn.execute("SELECT name FROM pg_ls_waldir() ORDER BY name").fetchall()
    return [f"pg_wal/{name}" for (name,) in rows if re.fullmatch(r"[0-9A-F]{24}", str(name))]


@dataclass
class Residue:
    """What a scan found: per canary (by its index in the sample) the files holding it."""

    canaries: int
    files: int = 0
    bytes: int = 0
    found: dict[int, list[str]] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)  # found, but a live row holds them too

    @property
    def holding(self) -> int:
        """How many canaries were found at least once."""
        return len(self.found)

    def summary(self) -> str:
        return (
            f"{self.holding} of {self.canaries} canaries in {self.files} files ({self.bytes} bytes)"
        )


def scan(conn: psycopg.Connection[Any], paths: list[str], canaries: list[Canary]) -> Residue:
    """Every file in `paths` read through the server (pg_read_binary_file), after a CHECKPOINT
    wrote its buffers out, in overlapping chunks, each canary looked for; a file removed
    meanwhile (a recycled WAL segment) counts as read and empty."""
    # What the server holds in its buffers reaches the files first: the scan reads the disk
    # an auditor would read, with every change made so far on it.
    conn.execute("CHECKPOINT")
    residue = Residue(canaries=len(canaries))
    values = [c.value for c in canaries]
    overlap = max((len(v) for v in values), default=1) - 1
    for path in paths:
        offset, tail = 0, b""
        while True:
            try:
                row = conn.execute(
                    "SELECT pg_read_binary_file(%s, %s, %s, true)", (path, offset, _CHUNK)
                ).fetchone()
            except psycopg.errors.UndefinedFile:
                row = None
            chunk = bytes(row[0]) if row and row[0] is not None else b""
            window = tail + chunk
            for number, canary in enumerate(values):
                if canary in window and path not in residue.found.get(number, []):
                    residue.found.setdefault(number, []).append(path)
            residue.bytes += len(chunk)
            if len(chunk) < _CHUNK:
                break
            offset += len(chunk)
            tail = window[-overlap:] if overlap else b""
        residue.files += 1
    held = live(conn, [canaries[n] for n in sorted(residue.found)])
    for number in [n for i, n in enumerate(sorted(residue.found)) if i in held]:
        residue.live.append(number)
        del residue.found[number]
    return residue


def compact(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[str]:
    """Rewrite each table (and its TOAST table and indexes) into new files, the old ones
    unlinked (VACUUM FULL, which holds an ACCESS EXCLUSIVE lock on each table while it runs:
    a window the operator chooses); then CHECKPOINT and a WAL switch, so the segments that
    held the deleted rows stop being current. Returns the tables rewritten. `conn` must be in
    autocommit mode (VACUUM cannot run in a transaction)."""
    done = []
    for table in sorted(set(tables)):
        conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(ident(table)))
        done.append(table)
    conn.execute("CHECKPOINT")
    conn.execute("SELECT pg_switch_wal()")
    conn.execute("CHECKPOINT")
    return done
