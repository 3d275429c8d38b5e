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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import PgColumn
from offboarding.core.config import Settings
from offboarding.datamap import platform_shape
from offboarding.locations.plugin import Canary, Residue, ResidueSite
from offboarding.locations.postgres.catalog import classify, ident
from offboarding.locations.postgres.repack import repack
from offboarding.locations.postgres.scope import Scope
from offboarding.locations.postgres.snapshot import wait_for_replay
from offboarding.locations.residue import CHUNK, Finder, blocks, spread

__all__ = [
    "PAGES",
    "REPLICA",
    "SITES",
    "WAL",
    "canaries_of",
    "compact",
    "compact_tables",
    "held",
    "relation_files",
    "sample_canaries",
    "scan",
    "scan_places",
    "sites",
    "wal_files",
]

PAGES = ResidueSite(
    place="heap, TOAST and index pages",
    ends="the compact flow's next run rewrites the tables",
    rewritten=True,
    method="each table rewritten (VACUUM FULL or pg_repack: new files, the old unlinked), then "
    "every file of the table, its TOAST table and their indexes read by the server "
    "(pg_read_binary_file) after a CHECKPOINT",
)
WAL = ResidueSite(
    place="write-ahead log on disk",
    ends="checkpoints recycle its segments; the WAL archive's retention",
    rewritten=False,
    method="a WAL switch and a CHECKPOINT, then every segment in pg_wal read by the server",
)
REPLICA = ResidueSite(
    place="replica's heap, TOAST and index pages",
    ends="the hot standby replays the compaction's rewrite",
    rewritten=True,
    method="the rewrite replayed by the hot standby (OFFBOARD_EXPORT_REPLICA_URL), waited for "
    "past the primary's position, then every file of the tables read by the standby's server",
)
SITES = [PAGES, WAL]


def sites(settings: Settings) -> list[ResidueSite]:
    """The places, with the replica's pages when the export reads a hot standby."""
    return [*SITES, REPLICA] if settings.export.replica_url else SITES


_TEXT = frozenset({"text", "varchar", "bpchar", "citext", "bytea", "json", "jsonb", "xml"})
_MIN_BYTES = 16


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
                # Bounded: a few times the sample's rows are read, however big the tenant.
                sql.SQL(
                    "SELECT DISTINCT x FROM (SELECT substring({raw} FROM 1 FOR %s) AS x "
                    "FROM {t} WHERE {w} AND octet_length({raw}) >= %s LIMIT %s) s LIMIT %s"
                ).format(raw=raw, t=ident(table), w=conditions[table]),
                (min_bytes * 4, min_bytes, count * 4, count),
            ).fetchall()
            per_column.append([Canary(bytes(r[0]), table, column.name, binary) for r in rows])
    return spread(per_column, count)


def held(conn: psycopg.Connection[Any], asked: dict[str, list[Canary]]) -> set[bytes]:
    """Of the canaries asked per table, the values a live row of that table holds in a
    text-like or bytea column: each table read once (those columns, binary COPY), every
    canary looked for in one pass, whatever their number. A value split by a field boundary
    is not matched: the canary then counts as residue (the scan errs towards reporting)."""
    found: set[bytes] = set()
    for table, canaries in asked.items():
        columns = conn.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t "
            "ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            (_regclass(table),),
        ).fetchall()
        names = [sql.Identifier(str(name)) for name, kind in columns if str(kind) in _TEXT]
        if not names:
            continue
        finder = Finder(canaries)
        query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)").format(
            sql.SQL(", ").join(names), ident(table)
        )
        with conn.cursor() as cur, cur.copy(query) as copy:
            finder.read(table, blocks(bytes(piece) for piece in copy))
        found |= {canaries[number].value for number in finder.residue.found}
    return found


def relation_files(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, str]:
    """The data files (paths relative to the data directory, every 1 GB segment) of each
    table, its TOAST table and every index of both, each with the table it belongs to."""
    rows = conn.execute(
        "WITH t AS (SELECT x AS name, to_regclass(x) AS oid FROM unnest(%s::text[]) x "
        "  WHERE to_regclass(x) IS NOT NULL), "
        "own AS (SELECT t.name, c.oid, c.reltoastrelid FROM t JOIN pg_class c ON c.oid = t.oid), "
        "rels AS (SELECT name, oid FROM own "
        "  UNION SELECT name, reltoastrelid FROM own WHERE reltoastrelid <> 0 "
        "  UNION SELECT own.name, i.indexrelid FROM own JOIN pg_index i "
        "  ON i.indrelid IN (own.oid, own.reltoastrelid)) "
        "SELECT pg_relation_filepath(oid), pg_relation_size(oid), name FROM rels "
        "WHERE pg_relation_filepath(oid) IS NOT NULL ORDER BY 1",
        ([_regclass(t) for t in tables],),
    ).fetchall()
    by_name = {_regclass(t): t for t in tables}
    segment = 1024 * 1024 * 1024
    files: dict[str, str] = {}
    for path, size, name in rows:
        for suffix in ["", *(f".{n}" for n in range(1, int(size) // segment + 1))]:
            files[f"{path}{suffix}"] = by_name[str(name)]
    return files


def _regclass(table: str) -> str:
    return ident(table).as_string()


def wal_files(conn: psycopg.Connection[Any]) -> list[str]:
    """The WAL segments on disk (pg_wal/), oldest first."""
    rows = conn.execute("SELECT name FROM pg_ls_waldir() ORDER BY name").fetchall()
    return [f"pg_wal/{name}" for (name,) in rows if re.fullmatch(r"[0-9A-F]{24}", str(name))]


def scan(
    conn: psycopg.Connection[Any], paths: Mapping[str, str] | list[str], canaries: list[Canary]
) -> Residue:
    """Every file in `paths` read through the server (pg_read_binary_file), after a CHECKPOINT
    wrote its buffers out, each canary looked for; a file removed meanwhile (a recycled WAL
    segment) counts as read and empty."""
    # What the server holds in its buffers reaches the files first: the scan reads the disk
    # an auditor would read, with every change made so far on it.
    conn.execute("CHECKPOINT")
    finder = Finder(canaries)
    for path in paths:
        finder.read(path, _server_chunks(conn, path))
    owners = paths if isinstance(paths, Mapping) else {}
    return finder.settle(owners, lambda asked: held(conn, asked))


def _server_chunks(conn: psycopg.Connection[Any], path: str) -> Iterator[bytes]:
    offset = 0
    while True:
        try:
            row = conn.execute(
                "SELECT pg_read_binary_file(%s, %s, %s, true)", (path, offset, CHUNK)
            ).fetchone()
        except psycopg.errors.UndefinedFile:
            row = None
        chunk = bytes(row[0]) if row and row[0] is not None else b""
        if chunk:
            yield chunk
        if len(chunk) < CHUNK:
            return
        offset += len(chunk)


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


def canaries_of(settings: Settings, tenant: str) -> list[Canary]:
    """The tenant's canaries, from its rows as the inventory selects them."""
    with psycopg.connect(settings.require_database()) as conn:
        classification, _, columns = classify(conn, settings)
        scope = Scope(classification, tenant, platform_shape(settings).shared_rows)
        return sample_canaries(conn, {t: scope.where(t) for t in classification.owned}, columns)


def compact_tables(settings: Settings, tables: list[str]) -> list[str]:
    """Those of `tables` that are tables of this database (others are another system's,
    named in the same inventory) rewritten by OFFBOARD_COMPACTION_METHOD: `compact` (VACUUM
    FULL, in a window) or `repack` (online)."""
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        known = "SELECT to_regclass(%s) IS NOT NULL"
        present = [t for t in tables if conn.execute(known, (_regclass(t),)).fetchone() == (True,)]
        if settings.destruction.compaction_method == "vacuum-full":
            return compact(conn, present)
    return repack(settings.require_database(), present)


def scan_places(
    settings: Settings, tables: list[str], canaries: list[Canary]
) -> dict[str, Residue]:
    """The canaries looked for in the tables' pages (heap, TOAST, indexes) and in the WAL."""
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        found = {
            PAGES.place: scan(conn, relation_files(conn, tables), canaries),
            WAL.place: scan(conn, wal_files(conn), canaries),
        }
    if replica := settings.export.replica_url:
        # The standby's files are its own: what it replayed of the rewrite, once it has.
        wait_for_replay(settings.require_database(), replica, settings.export.replica_wait)
        with psycopg.connect(replica, autocommit=True) as conn:
            found[REPLICA.place] = scan(conn, relation_files(conn, tables), canaries)
    return found
