"""A MariaDB database read for an export: connections that share one consistent snapshot, and
a table's rows streamed in key order into Parquet with the Arrow types of their declared ones."""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import MySQLdb
import MySQLdb.cursors
import pyarrow as pa
from MySQLdb.constants import FIELD_TYPE

from exporters.parquet import repeating_text, row_groups, write_row_groups
from offboarding.core.errors import IntegrityError
from offboarding.core.names import inside, table_folder
from offboarding.core.records import ColumnSchema, ExportedPart, LocationInventory, TableItem
from offboarding.locations.base import ExportProgress, LocationExport
from offboarding.locations.mariadb.catalogue import (
    Column,
    Connection,
    arrow_type,
    column_schema,
    convert,
)
from offboarding.locations.mariadb.dialect import quote
from offboarding.planning import CatalogTable

__all__ = ["Snapshot", "Source", "export_tables", "write_table"]

_ROWS_PER_BATCH = 10_000
# Field types read as the server's text and parsed by Arrow a batch at a time, not decoded
# into a Python object per value by the driver: the export of a table of decimals and
# timestamps takes half the time.
_PARSED_BY_ARROW = (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL, FIELD_TYPE.FLOAT,
                    FIELD_TYPE.DOUBLE, FIELD_TYPE.DATE, FIELD_TYPE.DATETIME,
                    FIELD_TYPE.TIMESTAMP)  # fmt: skip


class Snapshot:
    """Connections that all read one consistent snapshot. MariaDB cannot hand a snapshot to
    another connection (PostgreSQL's pg_export_snapshot), so the way mydumper does it: block
    commits for a moment (MariaDB's BACKUP STAGE BLOCK_COMMIT; FLUSH TABLES WITH READ LOCK on
    MySQL), start a consistent-snapshot transaction on every reader, release. No commit can
    fall between two readers' snapshots, so they see the same database. Without the RELOAD
    privilege that blocking needs, one connection reads everything (same guarantee, no
    parallelism)."""

    def __init__(
        self, connect: Callable[..., AbstractContextManager[Connection]], readers: int
    ) -> None:
        self.connect = connect
        self.wanted = readers
        self.readers: list[Connection] = []
        self.taken_at: dt.datetime | None = None
        self._stack = ExitStack()
        self._mariadb = True

    def __enter__(self) -> Snapshot:
        connect = self.connect
        try:
            leader = self._stack.enter_context(connect())
            blocked = self.wanted > 1 and self._block(leader)
            count = self.wanted if blocked else 1
            for _ in range(count):
                reader = self._stack.enter_context(connect(cursorclass=MySQLdb.cursors.SSCursor))
                with reader.cursor() as cur:
                    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                self.readers.append(reader)
            with self.readers[0].cursor() as cur:
                cur.execute("SELECT UTC_TIMESTAMP(6)")
                stamp = cur.fetchone()
            self.taken_at = stamp[0].replace(tzinfo=dt.UTC) if stamp else None
            if blocked:
                self._release(leader)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _block(self, leader: Connection) -> bool:
        with leader.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
            self._mariadb = bool(row and "MariaDB" in str(row[0]))
            try:
                if self._mariadb:
                    cur.execute("BACKUP STAGE START")
                    cur.execute("BACKUP STAGE BLOCK_COMMIT")
                else:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
            except MySQLdb.OperationalError as error:
                if error.args and error.args[0] == 1227:  # access denied: no RELOAD privilege
                    return False
                raise
        return True

    def _release(self, leader: Connection) -> None:
        with leader.cursor() as cur:
            cur.execute("BACKUP STAGE END" if self._mariadb else "UNLOCK TABLES")

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            with contextlib.suppress(MySQLdb.Error):
                reader.rollback()
        self._stack.close()


def write_table(
    system: str,
    conn: Connection,
    table: CatalogTable,
    columns: list[Column],
    where: str,
    params: dict[str, Any],
    target: Path,
    *,
    database: str | None = None,
    withheld: tuple[list[str], str] = ([], "FALSE"),
    row_group_rows: int,
) -> tuple[int, list[ColumnSchema]]:
    """The rows of `table` (as `t`) matching `where`, in key order (where it has a key), into
    Parquet, in row groups of `row_group_rows`. `database`: the table is in that database,
    not the connection's. `withheld`: columns given only where a condition holds (a person's
    own rows), NULL elsewhere. A date or time column found holding a value no calendar has
    (a zero date) is kept as the server's text, marked so in the manifest: the table is read
    again, in the same snapshot, with that column as text."""
    while True:
        try:
            return _write_table(
                system, conn, table, columns, where, params, target, database=database,
                withheld=withheld, row_group_rows=row_group_rows,
            )  # fmt: skip
        except _Calendarless as found:
            columns = [replace(c, text=True) if c.name == found.column else c for c in columns]


class _Calendarless(Exception):
    """A date or time column holds a value no calendar has: read it as text."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


def _write_table(
    system: str,
    conn: Connection,
    table: CatalogTable,
    columns: list[Column],
    where: str,
    params: dict[str, Any],
    target: Path,
    *,
    database: str | None,
    withheld: tuple[list[str], str],
    row_group_rows: int,
) -> tuple[int, list[ColumnSchema]]:
    hidden, shown_where = withheld
    columns = [replace(c, nullable=True) if c.name in hidden else c for c in columns]
    types = [arrow_type(c) for c in columns]
    schema = pa.schema(
        [pa.field(c.name, t, nullable=c.nullable) for c, (t, _) in zip(columns, types, strict=True)]
    )
    select = ", ".join(
        f"CASE WHEN COALESCE({shown_where}, FALSE) THEN t.{quote(c.name)} END"
        if c.name in hidden
        else f"t.{quote(c.name)}"
        for c in columns
    )
    order = ", ".join(f"t.{quote(c)}" for c in table.primary_key)
    source = f"{quote(database)}.{quote(table.name)}" if database else quote(table.name)
    with _text_decoding(conn) as decoders, conn.cursor() as cur:
        cur.execute(
            f"SELECT {select} FROM {source} t WHERE {where}"
            + (f" ORDER BY {order}" if order else ""),
            params,
        )
        fields = [d[1] for d in cur.description]

        def batches() -> Iterator[pa.RecordBatch]:
            while batch := cur.fetchmany(_ROWS_PER_BATCH):
                arrays = []
                for i, (column, typed) in enumerate(zip(columns, types, strict=True)):
                    try:
                        arrays.append(
                            _array([row[i] for row in batch], *typed, fields[i], decoders)
                        )
                    except _NotACalendarValue:
                        raise _Calendarless(column.name) from None
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
                        # Arrow's message may quote the value, the tenant's: only its kind.
                        raise IntegrityError(
                            f"system {system!r}: column {table.name}.{column.name} "
                            f"({column.column_type}) holds a value Parquet cannot keep as "
                            f"{typed[0]} ({type(error).__name__}): find it with a query on "
                            "the column. Nothing was delivered"
                        ) from None
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

        rows = write_row_groups(
            row_groups(batches(), row_group_rows), schema, target, row_group_rows, repeating_text
        )
    return rows, [column_schema(c) for c in columns]


@contextlib.contextmanager
def _text_decoding(conn: Connection) -> Iterator[dict[Any, Any]]:
    """While a table is read: the field types Arrow parses come as the server's text. Yields
    the driver's own decoders, for a batch Arrow cannot parse."""
    decoders = conn.converter
    conn.converter = {k: v for k, v in decoders.items() if k not in _PARSED_BY_ARROW}
    try:
        yield decoders
    finally:
        conn.converter = decoders


class _NotACalendarValue(Exception):
    """A date or timestamp Arrow cannot parse: a zero date, or a zero month or day."""


def _array(
    values: list[Any], target: pa.DataType, as_text: bool, field: int, decoders: dict[Any, Any]
) -> pa.Array:
    """One column of a batch as `target`. Values of a parsed field type are the server's text
    (bytes), parsed by Arrow (or kept, for a column read as text). A date or timestamp Arrow
    refuses raises _NotACalendarValue (the driver would give None for it: a value lost);
    another refused number is decoded as the driver would have, value by value."""
    if field in _PARSED_BY_ARROW:
        text = pa.array(values, pa.binary()).cast(pa.string())
        if as_text:
            return text
        parsed_as = pa.timestamp(target.unit) if pa.types.is_timestamp(target) else target
        try:
            return text.cast(parsed_as).cast(target)  # a zone-less text is UTC (the session's)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if pa.types.is_temporal(target):
                raise _NotACalendarValue from None
            decode = decoders.get(field, str)
            values = [None if v is None else decode(v.decode()) for v in values]
    if as_text or pa.types.is_binary(target):
        values = [convert(v, target, as_text) for v in values]
    return pa.array(values, type=target)


Source = tuple[CatalogTable, list[Column], str, "str | None"]


def export_tables(
    system: str,
    connect: Callable[..., AbstractContextManager[Connection]],
    sources_of: Callable[[Connection], dict[str, Source]],
    tenant: str,
    inventory: LocationInventory,
    scratch: Path,
    progress: ExportProgress | None,
    workers: int,
    row_group_rows: int,
) -> LocationExport:
    """Every table of the inventory from one consistent snapshot, in key order, read by up to
    `workers` connections that share it (`Snapshot`). `sources_of` says, in the snapshot, per
    table: the table, its columns, which of its rows (`t`, with %(tenant)s), and the database
    it is in if not the connection's."""
    wanted = max(1, min(workers, len(inventory.tables)))
    with Snapshot(connect, wanted) as snapshot:
        sources = sources_of(snapshot.readers[0])
        for item in inventory.tables:
            if item.qualified not in sources:
                raise IntegrityError(
                    f"table {item.qualified} of the inventory disappeared before the export "
                    f"of tenant {tenant!r}: take the inventory again"
                )
        if progress:
            progress(0, len(inventory.tables), 0)
        lock = threading.Lock()
        tally = {"tables": 0, "rows": 0}
        free = queue.SimpleQueue[Connection]()
        for reader in snapshot.readers:
            free.put(reader)

        def export_one(item: TableItem) -> ExportedPart:
            table, columns, where, database = sources[item.qualified]
            relative = f"{table_folder(item.qualified)}part-00000.parquet"
            reader = free.get()
            try:
                rows, schemas = write_table(
                    system, reader, table, columns, where, {"tenant": tenant},
                    inside(scratch, relative), database=database, row_group_rows=row_group_rows,
                )  # fmt: skip
            finally:
                free.put(reader)
            with lock:
                tally["tables"] += 1
                tally["rows"] += rows
                if progress:
                    progress(tally["tables"], len(inventory.tables), tally["rows"])
            return ExportedPart(
                path=relative, source=f"scratch:{relative}", kind="table",
                table=item.qualified, rows=rows, columns=schemas,
                size=inside(scratch, relative).stat().st_size,
            )  # fmt: skip

        with ThreadPoolExecutor(len(snapshot.readers)) as pool:
            parts = list(pool.map(export_one, inventory.tables))
    return LocationExport(parts=parts, snapshot_time=snapshot.taken_at)
