"""What a deletion leaves on disk in MariaDB, found by canaries, and the rebuild that clears
the tables' own files.

InnoDB delete-marks a row; purge removes it from its page once no reader's snapshot can see
it, and a reader that stays open holds purge back, so the deleted values stay in the table's
tablespace file meanwhile. The undo log (in the system tablespace or its own files) and the
circular redo log hold the row too, until purge and later writes reuse their space, and a
row-based binary log holds it until the log expires. `compact` rebuilds each touched table
online (ALTER TABLE ... FORCE: a new tablespace file, the old one deleted) and rotates the
binary log, so the log holding the deletion can expire. `scan` reads the files from the
server's data directory (the data map's `data_dir`, as this host reads it, else the
server's @@datadir on this host): the pipeline's user must be able to read them (a member of
the `mysql` group, or a read-only mount), and its database user needs RELOAD and LOCK TABLES
for FLUSH TABLES ... FOR EXPORT, which writes a table's pages out before they are read.

The cost is the size of the touched tables' files, the logs and the binary logs: never the
other tables of the platform.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import MySQLdb
import MySQLdb.cursors

from offboarding.core.errors import ConfigurationError
from offboarding.core.names import split_qualified
from offboarding.locations.mariadb.catalogue import Catalogue, Connection
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.plugin import Canary, Residue, ResidueSite
from offboarding.locations.relational.scope import RelationalScope
from offboarding.locations.residue import Finder, blocks, read_local, spread

__all__ = [
    "LOGS",
    "TABLESPACES",
    "binary_logs",
    "compact",
    "data_directory",
    "log_files",
    "sample_canaries",
    "scan",
    "sites",
    "tablespace_files",
]

_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "binary",
                   "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "json"})  # fmt: skip
_MIN_BYTES = 16
# Never dated by the server: the circular redo log is overwritten as it wraps, the undo
# pages as purge frees and reuses them.
_NEVER = timedelta(days=3650)

TABLESPACES = ResidueSite(
    place="tablespace pages",
    ends="the compact flow's next run rebuilds the tables",
    rewritten=True,
    method="each table rebuilt online (ALTER TABLE ... FORCE: a new tablespace file, the old "
    "one deleted), its pages written out (FLUSH TABLES ... FOR EXPORT), then every file of "
    "its tablespace read from the data directory",
)
LOGS = ResidueSite(
    place="redo log, undo log and system tablespace",
    ends="the circular redo log wraps (innodb_log_file_size of later writes) and purge reuses "
    "the undo pages",
    rewritten=False,
    method="ib_logfile*, ibdata* and undo* read from the data directory",
)


def sites(conn: Connection, interval: timedelta) -> list[ResidueSite]:
    """The places, with the binary logs when the server keeps them: closed by the compact
    flow's next run (FLUSH BINARY LOGS), expired binlog_expire_logs_seconds later, and
    removed at the first rotation after that (the run after)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@binlog_expire_logs_seconds")
        log_bin, expiry = cur.fetchone()
    if not int(log_bin):
        return [TABLESPACES, LOGS]
    seconds = int(expiry)
    binary = ResidueSite(
        place="binary logs",
        ends=(
            f"the logs expire (binlog_expire_logs_seconds = {seconds}) after the compact "
            "flow's next run closes them"
            if seconds
            else "never: binlog_expire_logs_seconds = 0 keeps every binary log; set it so "
            "they expire before the contract's deadline"
        ),
        rewritten=False,
        method="FLUSH BINARY LOGS (the log holding the deletion closed), then every binary "
        "log the server lists read from the data directory",
        lingers=2 * interval + timedelta(seconds=seconds) if seconds else _NEVER,
    )
    return [TABLESPACES, LOGS, binary]


def sample_canaries(
    conn: Connection,
    catalogue: Catalogue,
    scope: RelationalScope[str],
    tables: Iterable[str],
    tenant: str,
    *,
    count: int = 64,
) -> list[Canary]:
    """Up to `count` distinct values of at least 16 bytes, as InnoDB stores them (the column's
    own bytes), from the tenant's rows of `tables` (qualified), spread round-robin over every
    table and text-like or binary column; a few times the sample's rows read, at most."""
    per_column: list[list[Canary]] = []
    with conn.cursor() as cur:
        for table in tables:
            name = split_qualified(table)[1]
            for column in catalogue.columns.get(name, []):
                if column.data_type.lower() not in _TEXT:
                    continue
                raw = f"CAST({quote(column.name)} AS BINARY)"
                cur.execute(
                    f"SELECT DISTINCT x FROM (SELECT SUBSTRING({raw}, 1, %(n)s) AS x FROM "
                    f"{quote(name)} t WHERE {scope.where(table, 't')} AND OCTET_LENGTH({raw}) "
                    ">= %(min)s LIMIT %(rows)s) s LIMIT %(count)s",
                    {"tenant": tenant, "n": _MIN_BYTES * 4, "min": _MIN_BYTES,
                     "rows": count * 4, "count": count},
                )  # fmt: skip
                per_column.append([Canary(bytes(r[0]), table, column.name, True) for r in cur])
    return spread(per_column, count)


def data_directory(conn: Connection, declared: str | None) -> Path:
    """Where this host reads the server's files: the data map's `data_dir`, else the
    server's own @@datadir, which must then be on this host."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        (own,) = cur.fetchone()
    folder = Path(declared or str(own))
    if not (folder / "ibdata1").exists():
        raise ConfigurationError(
            f"the residue scan reads MariaDB's files, and {folder} is not its data directory as "
            "this host sees it (no ibdata1 readable there). Run the pipeline where it can read "
            "the server's data directory (a member of the mysql group, or a read-only mount) "
            "and name it in the data map's data_dir for this system"
        )
    return folder


def _encoded(cur: Any, name: str) -> str:
    """A database or table name as InnoDB names its file (MariaDB's own `filename` set)."""
    cur.execute("SELECT CONVERT(CONVERT(%s USING filename) USING binary)", (name,))
    return bytes(cur.fetchone()[0]).decode("ascii")


def tablespace_files(
    conn: Connection, database: str, folder: Path, tables: Iterable[str]
) -> dict[str, str]:
    """Each table's tablespace files (a partitioned table has one per partition), by path,
    with the table (qualified) each belongs to."""
    files: dict[str, str] = {}
    with conn.cursor() as cur:
        prefix = _encoded(cur, database) + "/"
        cur.execute(
            "SELECT NAME, FILENAME FROM information_schema.INNODB_SYS_TABLESPACES "
            "WHERE NAME LIKE CONCAT(REPLACE(REPLACE(%s, '_', '\\\\_'), '%%', '\\\\%%'), '%%')",
            (prefix,),
        )
        spaces = [(str(name), str(path)) for name, path in cur.fetchall()]
        for table in tables:
            own = prefix + _encoded(cur, split_qualified(table)[1])
            for name, path in spaces:
                if name == own or name.startswith(own + "#P#") or name.startswith(own + "#p#"):
                    files[str(folder / path) if not Path(path).is_absolute() else path] = table
    return files


def log_files(folder: Path) -> list[str]:
    """The redo log, the system tablespace (its undo log, doublewrite buffer and change
    buffer) and any undo tablespaces."""
    names = ("ib_logfile*", "ibdata*", "undo[0-9]*")
    return sorted(str(p) for pattern in names for p in folder.glob(pattern) if p.is_file())


def binary_logs(conn: Connection, folder: Path) -> list[str]:
    """The binary logs the server lists (none when it keeps none)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@log_bin_basename")
        log_bin, basename = cur.fetchone()
        if not int(log_bin):
            return []
        cur.execute("SHOW BINARY LOGS")
        logs = [str(row[0]) for row in cur.fetchall()]
    where = Path(str(basename)).parent if basename else folder
    return [str((where if where.is_absolute() else folder / where) / log) for log in logs]


@contextmanager
def _flushed(conn: Connection, tables: list[str]) -> Iterator[None]:
    """The tables' pages written out to their files, and kept so (read lock) while read."""
    with conn.cursor() as cur:
        if tables:
            names = ", ".join(quote(split_qualified(t)[1]) for t in tables)
            cur.execute(f"FLUSH TABLES {names} FOR EXPORT")
        try:
            yield
        finally:
            cur.execute("UNLOCK TABLES")


def _held(conn: Connection, catalogue: Catalogue, asked: dict[str, list[Canary]]) -> set[bytes]:
    """Of the canaries asked per table, the values a live row of that table holds in a
    text-like or binary column: each table read once (those columns, streamed), every canary
    looked for in one pass. Values are joined by a random separator, so no canary can match
    across two of them: a value split that way counts as residue (the scan errs towards
    reporting)."""
    found: set[bytes] = set()
    separator = os.urandom(16)
    for table, canaries in asked.items():
        name = split_qualified(table)[1]
        columns = [f"CAST({quote(c.name)} AS BINARY)" for c in catalogue.columns.get(name, [])
                   if c.data_type.lower() in _TEXT]  # fmt: skip
        if not columns:
            continue
        finder = Finder(canaries)
        cur = cast(Any, conn).cursor(MySQLdb.cursors.SSCursor)  # streamed, not fetched whole
        try:
            cur.execute(f"SELECT {', '.join(columns)} FROM {quote(name)}")
            values = (bytes(v) + separator for row in cur for v in row if v is not None)
            finder.read(table, blocks(values))
        finally:
            cur.close()
        found |= {canaries[number].value for number in finder.residue.found}
    return found


def scan(
    conn: Connection,
    catalogue: Catalogue,
    files: dict[str, str] | list[str],
    canaries: list[Canary],
) -> Residue:
    """Every file read from this host, each canary looked for; found ones a live row of
    their table (or of the table whose file held them) still holds are set apart."""
    finder = Finder(canaries)
    for path in files:
        finder.read(path, read_local(Path(path)))
    owners = files if isinstance(files, dict) else {}

    return finder.settle(owners, lambda asked: _held(conn, catalogue, asked))


def scan_all(
    conn: Connection,
    catalogue: Catalogue,
    database: str,
    declared: str | None,
    tables: list[str],
    canaries: list[Canary],
) -> dict[str, Residue]:
    """The canaries in the tables' tablespaces (their pages written out first), in the
    logs and the system tablespace, and in the binary logs when the server keeps them."""
    folder = data_directory(conn, declared)
    present = [t for t in tables if split_qualified(t)[1] in catalogue.columns]
    with _flushed(conn, present):
        found = {
            TABLESPACES.place: scan(
                conn, catalogue, tablespace_files(conn, database, folder, present), canaries
            )
        }
    found[LOGS.place] = scan(conn, catalogue, log_files(folder), canaries)
    if logs := binary_logs(conn, folder):
        found["binary logs"] = scan(conn, catalogue, logs, canaries)
    for place, why in _encrypted(conn).items():
        if place in found and not found[place].holding:
            found[place].unreadable = why
    return found


def _encrypted(conn: Connection) -> dict[str, str]:
    """The places whose files the server encrypts at rest: a scan of ciphertext that finds
    nothing proves nothing, so they are reported unverified, never purged."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('innodb_encrypt_tables', "
                    "'innodb_encrypt_log', 'encrypt_binlog')")  # fmt: skip
        on = {str(name) for name, value in cur.fetchall() if str(value).upper() not in ("OFF", "0")}
    why = "the server encrypts these files at rest ({}): the scan reads ciphertext"
    return {place: why.format(variable) for place, variable in (
        (TABLESPACES.place, "innodb_encrypt_tables"), (LOGS.place, "innodb_encrypt_log"),
        ("binary logs", "encrypt_binlog"),
    ) if variable in on}  # fmt: skip


def compact(conn: Connection, catalogue: Catalogue, tables: Iterable[str]) -> list[str]:
    """Each table rebuilt online where InnoDB can (LOCK=NONE: reads and writes go on), else
    with the lock the rebuild needs (a FULLTEXT index, say); then the binary log rotated.
    Returns the tables rebuilt."""
    done = []
    with conn.cursor() as cur:
        for table in sorted(set(tables)):
            name = split_qualified(table)[1]
            if name not in catalogue.columns:
                continue
            try:
                cur.execute(f"ALTER TABLE {quote(name)} FORCE, ALGORITHM=INPLACE, LOCK=NONE")
            except MySQLdb.Error:  # the rebuild cannot be online for this table
                cur.execute(f"ALTER TABLE {quote(name)} FORCE")
            done.append(table)
        cur.execute("SELECT @@log_bin")
        if int(cur.fetchone()[0]):
            cur.execute("FLUSH BINARY LOGS")
    return done
