"""A MariaDB or MySQL database of the platform, with the PostgreSQL location's guarantees.

- **Catalogue** from the server's own information_schema: every table, column, primary and
  foreign key (with its ON DELETE rule). Classification is planning's, the same as for
  PostgreSQL: the tenant column, or foreign keys reaching tenant rows at any depth. Fail
  closed: an unclassified table, a table the pipeline cannot read by key (not InnoDB, so no
  consistent snapshot and no transaction; system-versioned, so deleted rows stay in its
  history; a key into another database) or a table type it does not know stops the case
  until declared.
- **Scope**: a derived row is the tenant's when every foreign key it sets reaches the
  tenant's rows (the PostgreSQL location's rule).
- **Export**: one consistent snapshot shared by OFFBOARD_EXPORT_WORKERS connections (commits
  blocked for the moment their snapshots start, as mydumper does: `_Snapshot`), each table
  streamed in key order (mysqlclient's server-side cursor: the reader `make bench-mariadb`
  chose) into Parquet with Arrow types from the declared ones (unsigned
  integers, DECIMAL(p,s), TIME as a duration, TIMESTAMP in UTC...); the declared type is in
  the manifest.
- **Destruction**, proved by construction: the tenant's keys are listed per table in
  session temporary tables and compared with the frozen inventory; every foreign key of the
  database into a listed table is checked for a referencing row outside the lists (the
  case stops, nothing deleted, an incident when the row is another tenant's); then children
  first, in batches, `DELETE ... RETURNING` the owner columns, each returned row checked to
  be the tenant's, rows deleted equal to rows listed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import MySQLdb
import MySQLdb.cursors
import pyarrow as pa
import pyarrow.parquet as pq

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IntegrityError,
    IsolationBreachError,
    ServiceError,
    SharedRowsError,
    UnclassifiedDataError,
)
from offboarding.core.names import inside, qualified, split_qualified, table_folder
from offboarding.core.records import (
    CaseRef,
    ColumnSchema,
    ExportedPart,
    LocationInventory,
    TableItem,
)
from offboarding.datamap import MariaDBSystem, PersonDeclaration
from offboarding.locations.base import (
    Capability,
    ExportProgress,
    LocationExport,
    LocationFacts,
    PersonErased,
    PersonExport,
    PersonItems,
    Plugin,
    Remaining,
    Removal,
    Stage,
    foreign_key_schemas,
    quiet,
    require_system_declaration,
)
from offboarding.locations.mariadb.dialect import MariaDBDialect, quote
from offboarding.locations.relational import RelationalScope
from offboarding.planning import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    deletion_order,
)

__all__ = ["PLUGIN", "MariaDBLocation", "arrow_type"]

# Imported here, after the names persons.py reads from this module (for types only).
from offboarding.locations.mariadb import persons

_ROWS_PER_BATCH = 10_000
_DELETE_RULES = {"CASCADE": "c", "SET NULL": "n", "RESTRICT": "r", "NO ACTION": "a",
                 "SET DEFAULT": "d"}  # fmt: skip
_ENGINES = frozenset({"InnoDB"})  # transactions and consistent snapshots


class _Connection(Protocol):
    """What the location uses of a mysqlclient connection (its stubs leave these untyped)."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # information_schema DATA_TYPE, e.g. "int", "decimal"
    column_type: str  # the declared type, e.g. "int(10) unsigned", "decimal(12,4)"
    nullable: bool
    precision: int | None
    scale: int | None
    fraction: int | None  # fractional seconds


def arrow_type(column: Column) -> tuple[pa.DataType, bool]:
    """The Arrow type of a declared MariaDB type, and whether values are kept as text (no
    exact Arrow equivalent: ENUM, SET, JSON documents, UUID, INET addresses, GEOMETRY as WKB
    is binary)."""
    kind, declared = column.data_type.lower(), column.column_type.lower()
    unsigned = "unsigned" in declared
    integers = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "bigint": 64}
    if kind in integers:
        signed = {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}
        unsigned_types = {8: pa.uint8(), 16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}
        return (unsigned_types if unsigned else signed)[integers[kind]], False
    if kind == "decimal":
        return pa.decimal128(column.precision or 10, column.scale or 0), False
    if kind == "float":
        return pa.float32(), False
    if kind == "double":
        return pa.float64(), False
    if kind == "year":
        return pa.int16(), False
    if kind == "date":
        return pa.date32(), False
    if kind == "datetime":
        return pa.timestamp("us"), False
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC"), False  # the session's time zone is UTC
    if kind == "time":
        return pa.duration("us"), False
    if kind in ("bit", "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
                "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                "multipolygon", "geometrycollection"):  # fmt: skip
        return pa.binary(), False
    if kind in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext"):
        return pa.string(), False
    # ENUM, SET, JSON (a LONGTEXT alias with a check), UUID, INET4, INET6 and anything newer:
    # the server's text form, flagged as such in the manifest.
    return pa.string(), True


def _convert(value: Any, target: pa.DataType, as_text: bool) -> Any:
    if value is None:
        return None
    if as_text:
        if isinstance(value, set):
            return ",".join(sorted(value))
        return value.decode() if isinstance(value, bytes) else str(value)
    if pa.types.is_binary(target) and isinstance(value, str):
        return value.encode()
    return value


@dataclass(frozen=True)
class Catalogue:
    tables: list[CatalogTable]
    columns: dict[str, list[Column]]
    hazards: dict[str, str]  # table -> why the pipeline cannot read it by key
    rows_estimate: dict[str, tuple[int, int]] = field(default_factory=dict)  # rows, avg length


def _count(cur: Any, table: str, where: str, tenant: str) -> int:
    """Rows of `table` (as `t`) matching `where`, with %(tenant)s bound."""
    cur.execute(f"SELECT COUNT(*) FROM {quote(table)} t WHERE {where}", {"tenant": tenant})
    row = cur.fetchone()
    return int(row[0]) if row else 0


class MariaDBLocation:
    def __init__(self, settings: Settings, name: str, system: MariaDBSystem) -> None:
        self.settings = settings
        self.name = name
        self.system = system
        url = urlsplit(system.url)
        if url.scheme not in ("mysql", "mariadb") or not url.path.strip("/"):
            raise ConfigurationError(
                f"system {name!r}: url must be mysql://user:password@host:port/database "
                f"(got scheme {url.scheme!r}{'' if url.path.strip('/') else ', no database'})"
            )
        self.database = unquote(url.path.strip("/"))
        self._connect_args: dict[str, Any] = {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 3306,
            "user": unquote(url.username or ""),
            "password": unquote(url.password or ""),
            "database": self.database,
            "charset": "utf8mb4",
            "connect_timeout": 10,
            "autocommit": False,
            "init_command": "SET time_zone = '+00:00', SESSION sql_mode = "
            "CONCAT(@@sql_mode, ',NO_ZERO_DATE,NO_ZERO_IN_DATE')",
        }

    # -- connections and the catalogue ---------------------------------------------------------

    @property
    def _address(self) -> str:
        return f"{self._connect_args['host']}:{self._connect_args['port']}/{self.database}"

    @contextmanager
    def _connect(self, **extra: Any) -> Iterator[_Connection]:
        try:
            conn = cast(_Connection, MySQLdb.connect(**{**self._connect_args, **extra}))
        except MySQLdb.Error as error:
            raise ServiceError(
                f"the data map's system {self.name!r} (MariaDB at {self._address}) did not "
                f"answer: {error.args[-1] if error.args else error}. Check its url and that the "
                "server is running"
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    def _qualified(self, table: str) -> str:
        return qualified(self.name, table)

    def _catalogue(self, conn: _Connection) -> Catalogue:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, AVG_ROW_LENGTH "
                "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            )
            kinds = {str(r[0]): (str(r[1]), r[2], int(r[3] or 0), int(r[4] or 0)) for r in cur}
            cur.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, "
                "NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION"
            )
            columns: dict[str, list[Column]] = {}
            for table, name, kind, declared, nullable, precision, scale, fraction in cur:
                columns.setdefault(str(table), []).append(
                    Column(
                        str(name),
                        str(kind),
                        str(declared),
                        nullable == "YES",
                        precision,
                        scale,
                        fraction,
                    )
                )
            cur.execute(
                "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, "
                "k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE "
                "FROM information_schema.KEY_COLUMN_USAGE k "
                "LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
                "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
                "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
                "WHERE k.TABLE_SCHEMA = DATABASE() "
                "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
            )
            keys: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
            for row in cur:
                keys.setdefault((str(row[0]), str(row[1])), []).append(row)
        hazards: dict[str, str] = {}
        primary: dict[str, tuple[str, ...]] = {}
        foreign: dict[str, list[ForeignKey]] = {}
        for (table, constraint), rows in keys.items():
            if constraint == "PRIMARY":
                primary[table] = tuple(str(r[2]) for r in rows)
            elif rows[0][4] is not None:
                if rows[0][3] != self.database:
                    hazards[table] = f"foreign key {constraint} into database {rows[0][3]}"
                    continue
                foreign.setdefault(table, []).append(
                    ForeignKey(
                        columns=tuple(str(r[2]) for r in rows),
                        references=self._qualified(str(rows[0][4])),
                        referenced_columns=tuple(str(r[5]) for r in rows),
                        name=constraint,
                        on_delete=_DELETE_RULES.get(str(rows[0][6]), "a"),
                    )
                )
        tables = []
        for table, (kind, engine, _, _) in sorted(kinds.items()):
            if kind in ("VIEW", "SEQUENCE"):
                continue  # no rows of their own
            if kind == "SYSTEM VERSIONED":
                hazards[table] = "system-versioned: deleted rows stay in its history"
            elif kind != "BASE TABLE":
                hazards[table] = f"table type {kind}"
            elif engine not in _ENGINES:
                hazards[table] = f"engine {engine}: no transactions, no consistent snapshot"
            if table not in primary and table not in hazards:
                hazards[table] = "no primary key: its rows cannot be listed by key"
            if "%" in table or any("%" in c.name for c in columns.get(table, [])):
                # mysqlclient reads every % of a statement with parameters as a placeholder
                hazards[table] = "a % in its own or a column's name: no statement can name it"
            tables.append(
                CatalogTable(
                    schema=self.name,
                    name=table,
                    columns=tuple(c.name for c in columns.get(table, [])),
                    primary_key=primary.get(table, ()),
                    foreign_keys=tuple(foreign.get(table, ())),
                )
            )
        estimates = {t: (rows, length) for t, (_, _, rows, length) in kinds.items()}
        return Catalogue(tables, columns, hazards, estimates)

    def _classify(
        self, catalogue: Catalogue, *, strict: bool = True
    ) -> tuple[Classification, list[str]]:
        declared = {
            self._qualified(t): why
            for t, why in {**self.system.global_tables, **self.system.excluded_tables}.items()
        }
        undeclared = [
            f"{self._qualified(t)} ({why})"
            for t, why in sorted(catalogue.hazards.items())
            if self._qualified(t) not in declared
        ]
        unreadable = {
            t for t in catalogue.hazards if self._qualified(t) not in declared
        }  # classified as nothing: a dry run lists them, no statement names them
        classification = classify_tables(
            [t for t in catalogue.tables if t.name not in unreadable],
            tenant_column=self.system.tenant_column,
            registry="",
            global_tables={self._qualified(t): w for t, w in self.system.global_tables.items()},
            excluded={self._qualified(t): w for t, w in self.system.excluded_tables.items()},
            tenant_schema_pattern=None,
        )
        unclassified = [*classification.unclassified, *undeclared]
        if strict and undeclared:
            raise UnclassifiedDataError(
                f"system {self.name!r}: {', '.join(undeclared)}: the pipeline cannot export or "
                "destroy these tables by key. Declare each in the data map (global_tables, or "
                "excluded_tables with how the tenant's rows there go), or fix the table"
            )
        if strict and classification.unclassified:
            raise UnclassifiedDataError(
                f"system {self.name!r}: tables nobody classified: "
                f"{', '.join(classification.unclassified)}. Give each the tenant column "
                f"({self.system.tenant_column}) or a foreign key to a tenant table, or declare it "
                "in the data map's global_tables or excluded_tables with the reason"
            )
        return classification, unclassified

    # -- which rows are the tenant's -------------------------------------------------------------

    def _where(self, classification: Classification, table: str, alias: str) -> str:
        """The tenant's rows of `table` (as `alias`), with %(tenant)s: the relational core's
        scope, written in MariaDB's dialect."""
        return RelationalScope(classification, MariaDBDialect()).where(table, alias)

    def _shared(self, classification: Classification, table: str, alias: str) -> str:
        """Rows of a derived table reaching the tenant's rows and another tenant's at once."""
        return RelationalScope(classification, MariaDBDialect()).shared_rows(table, alias)

    # -- the four verbs --------------------------------------------------------------------------

    def reach(self) -> str:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        return f"MariaDB {row[0] if row else '?'} at {self._address}"

    def describe(self) -> LocationFacts:
        return LocationFacts(
            media=f"MariaDB database {self.name} at {self._address}",
            method="clear",
            technique="list the tenant's rows by key and prove no other row references them; "
            "delete children first in batches, each deleted row's owner checked",
            verification_method="count of the tenant's rows in every tenant table, on a new "
            "connection",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, unclassified = self._classify(catalogue, strict=not dry_run)
            by_name = {t.qualified: t for t in catalogue.tables}
            items: list[TableItem] = []
            shared: dict[str, int] = {}
            with conn.cursor() as cur:
                for name in classification.owned:
                    table = by_name[name]
                    where = self._where(classification, name, "t")
                    rows = _count(cur, table.name, where, case.tenant)
                    if name in classification.derived:
                        both = _count(
                            cur, table.name, self._shared(classification, name, "t"), case.tenant
                        )
                        if both:
                            shared[name] = both
                    average = catalogue.rows_estimate.get(table.name, (0, 0))[1]
                    items.append(self._item(classification, table, catalogue, rows, rows * average))
        if shared and not dry_run:
            raise SharedRowsError(
                f"system {self.name!r}: rows reference this tenant's rows and another tenant's "
                f"at once: {shared}. Such rows are neither this tenant's to hand over nor to "
                "destroy: settle them on the platform (one owner per row), then retry"
            )
        return LocationInventory(
            location=self.name,
            items=sum(t.rows for t in items),
            bytes=sum(t.bytes_estimate for t in items),
            tables=items,
            global_tables=dict(classification.global_tables),
            excluded_tables=dict(classification.excluded),
            shared_rows=shared,
            unclassified=unclassified,
        )

    def _item(
        self,
        classification: Classification,
        table: CatalogTable,
        catalogue: Catalogue,
        rows: int,
        size: int,
    ) -> TableItem:
        return TableItem(
            schema_name=self.name,
            table=table.name,
            scope="tenant" if table.qualified in classification.tenant_scoped else "derived",
            tenant_column=self.system.tenant_column
            if table.qualified in classification.tenant_scoped
            else None,
            rows=rows,
            bytes_estimate=size,
            columns=[_schema(c) for c in catalogue.columns.get(table.name, [])],
            primary_key=list(table.primary_key),
            parents=sorted(
                {fk.references for fk in classification.derived.get(table.qualified, ())}
            ),
            foreign_keys=foreign_key_schemas(table),
        )

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        """Every table of the inventory from one consistent snapshot, in key order, read by
        up to OFFBOARD_EXPORT_WORKERS connections that share it (`_Snapshot`)."""
        wanted = max(1, min(self.settings.export.workers, len(inventory.tables)))
        with _Snapshot(self, wanted) as snapshot:
            catalogue = self._catalogue(snapshot.readers[0])
            classification, _ = self._classify(catalogue)
            by_name = {t.qualified: t for t in catalogue.tables}
            for item in inventory.tables:
                if item.qualified not in by_name:
                    raise IntegrityError(
                        f"table {item.qualified} of the inventory disappeared before the export "
                        f"of tenant {case.tenant!r}: take the inventory again"
                    )
            if progress:
                progress(0, len(inventory.tables), 0)
            lock = threading.Lock()
            tally = {"tables": 0, "rows": 0}
            free = queue.SimpleQueue[_Connection]()
            for reader in snapshot.readers:
                free.put(reader)

            def export_one(item: TableItem) -> ExportedPart:
                table = by_name[item.qualified]
                relative = f"{table_folder(item.qualified)}part-00000.parquet"
                reader = free.get()
                try:
                    rows, columns = self._write_table(
                        reader, table, catalogue.columns[table.name],
                        self._where(classification, table.qualified, "t"),
                        {"tenant": case.tenant}, inside(scratch, relative),
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
                    table=item.qualified, rows=rows, columns=columns,
                    size=inside(scratch, relative).stat().st_size,
                )  # fmt: skip

            with ThreadPoolExecutor(len(snapshot.readers)) as pool:
                parts = list(pool.map(export_one, inventory.tables))
        return LocationExport(parts=parts, snapshot_time=snapshot.taken_at)

    def _write_table(
        self,
        conn: _Connection,
        table: CatalogTable,
        columns: list[Column],
        where: str,
        params: dict[str, Any],
        target: Path,
    ) -> tuple[int, list[ColumnSchema]]:
        """The rows of `table` (as `t`) matching `where`, in key order, into Parquet."""
        types = [arrow_type(c) for c in columns]
        schema = pa.schema(
            [
                pa.field(c.name, t, nullable=c.nullable)
                for c, (t, _) in zip(columns, types, strict=True)
            ]
        )
        select = ", ".join(f"t.{quote(c.name)}" for c in columns)
        order = ", ".join(f"t.{quote(c)}" for c in table.primary_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        with pq.ParquetWriter(target, schema, compression="zstd") as writer, conn.cursor() as cur:
            cur.execute(
                f"SELECT {select} FROM {quote(table.name)} t WHERE {where} ORDER BY {order}",
                params,
            )
            # Only text-kept and binary columns need a conversion; the others go to Arrow as
            # the driver returns them.
            converted = [
                as_text or pa.types.is_binary(target_type) for target_type, as_text in types
            ]
            while batch := cur.fetchmany(_ROWS_PER_BATCH):
                arrays = []
                for i, (column, typed) in enumerate(zip(columns, types, strict=True)):
                    target_type, as_text = typed
                    values = (
                        [_convert(row[i], target_type, as_text) for row in batch]
                        if converted[i]
                        else [row[i] for row in batch]
                    )
                    try:
                        arrays.append(pa.array(values, type=target_type))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
                        raise IntegrityError(
                            f"system {self.name!r}: column {table.name}.{column.name} "
                            f"({column.column_type}) holds a value Parquet cannot keep as "
                            f"{target_type}: {str(error).splitlines()[0]}"
                        ) from None
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                rows += len(batch)
        return rows, [_schema(c) for c in columns]

    # -- one person (the data map's [person.systems.<name>] tables: persons.py) ---------------

    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems:
        return persons.find_person(
            self, tenant, person, require_system_declaration(declared, self.name)
        )

    def export_person(
        self, tenant: str, person: str, declared: PersonDeclaration, scratch: Path
    ) -> PersonExport:
        return persons.export_person(
            self, tenant, person, require_system_declaration(declared, self.name), scratch
        )

    def erase_person(
        self, tenant: str, person: str, declared: PersonDeclaration, replacement: str,
        *, person_kept: bool = False, say: Callable[[str], None] = quiet,
    ) -> PersonErased:  # fmt: skip
        return persons.erase_person(
            self, tenant, person, require_system_declaration(declared, self.name), replacement,
            person_kept=person_kept,
        )  # fmt: skip

    # -- destruction ----------------------------------------------------------------------------

    def check_isolation(
        self, case: CaseRef, inventoried: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        """The destroy's own checks, before any system is touched, deleting nothing: the
        tenant's rows listed, no more than inventoried, none referenced from outside the
        lists. (The destroy repeats them on its own lists, right before deleting.)"""
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue)
            self._listed_and_isolated(conn, catalogue, classification, case, inventoried)
            conn.rollback()
        return {}

    def _listed_and_isolated(
        self,
        conn: _Connection,
        catalogue: Catalogue,
        classification: Classification,
        case: CaseRef,
        inventoried: Mapping[str, int] | None,
    ) -> dict[str, _Listed]:
        by_name = {t.qualified: t for t in catalogue.tables}
        owned = list(classification.owned)
        listed = self._list(conn, classification, by_name, owned, case)
        conn.commit()
        if inventoried is not None:
            for name in owned:
                allowed = inventoried.get(name, 0)
                if listed[name].count > allowed:
                    raise IntegrityError(
                        f"system {self.name!r}: {name} holds {listed[name].count} rows of "
                        f"tenant {case.tenant!r}, more than the {allowed} inventoried: rows "
                        "were added after the export and were not handed over. Nothing is "
                        "deleted; export again"
                    )
        self._refuse_outside_references(conn, catalogue, listed, case)
        return listed

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue)
            by_name = {t.qualified: t for t in catalogue.tables}
            owned = list(classification.owned)
            listed = self._listed_and_isolated(conn, catalogue, classification, case, inventoried)
            parents = {  # every key between the tenant's tables orders the deletion
                name: {
                    fk.references for fk in by_name[name].foreign_keys if fk.references in listed
                }
                for name in owned
            }
            removed = 0
            size = 0
            for name in deletion_order(parents):
                # Keys that would cascade into (or null) a row outside the lists if one
                # appeared after the check: checked again per batch, under the batch's locks.
                hazards = [
                    (child, fk)
                    for child in catalogue.tables
                    for fk in child.foreign_keys
                    if fk.references == name and fk.on_delete in "cnd" and child.qualified != name
                ]
                removed += self._delete(conn, classification, by_name[name], listed, case, hazards)
                size += (
                    listed[name].count * catalogue.rows_estimate.get(by_name[name].name, (0, 0))[1]
                )
        total = sum(item.count for item in listed.values())
        return Removal(
            items_before=total,
            bytes_before=size,
            items_removed=removed,
            technique=self.describe().technique,
            isolation="the tenant's rows were listed by key; no row outside the lists references "
            "them through any foreign key; each deleted row's owner was returned and checked; "
            "rows deleted per table equal rows listed",
        )

    def _list(
        self,
        conn: _Connection,
        classification: Classification,
        by_name: dict[str, CatalogTable],
        owned: list[str],
        case: CaseRef,
    ) -> dict[str, _Listed]:
        """Each owned table's doomed keys (primary key and every column a foreign key
        references) in a session temporary table, numbered for batches."""
        referenced: dict[str, set[str]] = {name: set() for name in owned}
        for table in by_name.values():
            for fk in table.foreign_keys:
                if fk.references in referenced:
                    referenced[fk.references].update(fk.referenced_columns)
        listed: dict[str, _Listed] = {}
        with conn.cursor() as cur:
            for n, name in enumerate(owned):
                table = by_name[name]
                keys = list(dict.fromkeys([*table.primary_key, *sorted(referenced[name])]))
                doomed = f"offboarding_doomed_{n}"
                cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {doomed}")
                cur.execute(
                    f"CREATE TEMPORARY TABLE {doomed} (ord BIGINT AUTO_INCREMENT PRIMARY KEY) "
                    f"SELECT {', '.join(f't.{quote(k)}' for k in keys)} "
                    f"FROM {quote(table.name)} t "
                    f"WHERE {self._where(classification, name, 't')} "
                    f"ORDER BY {', '.join(f't.{quote(k)}' for k in table.primary_key)}",
                    {"tenant": case.tenant},
                )
                cur.execute(f"SELECT COUNT(*) FROM {doomed}")
                count = cur.fetchone()
                listed[name] = _Listed(doomed, tuple(keys), int(count[0]) if count else 0)
        return listed

    def _refuse_outside_references(
        self,
        conn: _Connection,
        catalogue: Catalogue,
        listed: dict[str, _Listed],
        case: CaseRef,
    ) -> None:
        """No row outside the lists may reference a listed row, through any key of the
        database, whatever its ON DELETE rule: else nothing is deleted."""
        problems: list[str] = []
        tables: set[str] = set()
        other_tenants: set[str] = set()
        with conn.cursor() as cur:
            for table in catalogue.tables:
                for fk in table.foreign_keys:
                    parent = listed.get(fk.references)
                    if parent is None or not parent.count:
                        continue
                    own = listed.get(table.qualified)
                    outside = (  # the child's own listed rows go with it (copied: MariaDB
                        # cannot open a temporary table twice in one statement)
                        f"AND ({', '.join(f'c.{quote(k)}' for k in table.primary_key)}) NOT IN "
                        f"(SELECT {', '.join(quote(k) for k in table.primary_key)} "
                        f"FROM {own.copy(cur)})"
                        if own is not None
                        else ""
                    )
                    tenant_column = self.system.tenant_column
                    owner = (  # as bytes: DISTINCT under a case-insensitive collation
                        # would fold another tenant's `ACME` into this one's `acme`
                        f"BINARY c.{quote(tenant_column)}"
                        if tenant_column in table.columns
                        else "NULL"
                    )
                    cur.execute(
                        f"SELECT COUNT(*), GROUP_CONCAT(DISTINCT {owner}) FROM "
                        f"{quote(table.name)} c WHERE "
                        f"({', '.join(f'c.{quote(col)}' for col in fk.columns)}) IN "
                        f"(SELECT {', '.join(quote(r) for r in fk.referenced_columns)} "
                        f"FROM {parent.table}) {outside}"
                    )
                    row = cur.fetchone()
                    if row and row[0]:
                        listed_owners = row[1].decode() if isinstance(row[1], bytes) else row[1]
                        owners = {o for o in str(listed_owners or "").split(",") if o}
                        owners -= {case.tenant}
                        other_tenants |= owners
                        tables.add(table.qualified)
                        problems.append(
                            f"{row[0]} row(s) of {table.qualified} through {fk.name} "
                            f"(ON DELETE {_RULE_NAMES.get(fk.on_delete, fk.on_delete)})"
                            + (f", of tenant(s) {sorted(owners)}" if owners else "")
                        )
        if problems and other_tenants:
            raise IsolationBreachError(
                f"system {self.name!r}: rows of other tenants reference tenant {case.tenant!r}'s "
                f"rows: {'; '.join(problems)}. Nothing was deleted (clause 2.2.4)",
                facts={
                    "nature": "another tenant's rows reference the offboarded tenant's rows in a "
                    "MariaDB database; deleting would break or cascade into them",
                    "affected_tenants": sorted(other_tenants),
                    "categories": [f"rows of {t}" for t in sorted(tables)],
                    "approximate_records": None,
                    "approximate_people": None,
                },
            )
        if problems:
            raise DestructionIncompleteError(
                f"system {self.name!r}: rows outside tenant {case.tenant!r}'s scope reference its "
                f"rows: {'; '.join(problems)}. Nothing was deleted: settle those rows, then retry"
            )

    def _delete(
        self,
        conn: _Connection,
        classification: Classification,
        table: CatalogTable,
        listed: dict[str, _Listed],
        case: CaseRef,
        hazards: list[tuple[CatalogTable, ForeignKey]],
    ) -> int:
        """Delete one table's listed rows in batches. Each batch locks its rows (a row written
        meanwhile that references them waits, and then fails its key check), checks again
        that no outside row references them through a key that would cascade or set null,
        and returns the owner columns, which are checked before the batch is committed."""
        own = listed[table.qualified]
        links = classification.derived.get(table.qualified, ())
        tenant_scoped = table.qualified in classification.tenant_scoped
        owner_columns = (
            [self.system.tenant_column] if tenant_scoped
            else list(dict.fromkeys(c for fk in links for c in fk.columns))
        )  # fmt: skip
        parent_keys = {
            fk.name: listed[fk.references].keys_of(conn, fk.referenced_columns) for fk in links
        }
        self_refs = [fk for fk in table.foreign_keys if fk.references == table.qualified]
        key = ", ".join(quote(k) for k in table.primary_key)
        removed = 0
        batch = max(1, self.settings.destruction.delete_batch_rows)
        with conn.cursor() as cur:
            for fk in self_refs:  # a thread within the table: unlink it first
                assignments = ", ".join(f"{quote(c)} = NULL" for c in fk.columns)
                cur.execute(
                    f"UPDATE {quote(table.name)} SET {assignments} WHERE ({key}) IN "
                    f"(SELECT {key} FROM {own.table})"
                )
            conn.commit()
            for start in range(1, own.count + 1, batch):
                window = (start, start + batch - 1)
                batch_keys = f"SELECT {{}} FROM {own.table} WHERE ord BETWEEN %s AND %s"
                cur.execute(
                    f"SELECT 1 FROM {quote(table.name)} WHERE ({key}) IN "
                    f"({batch_keys.format(key)}) FOR UPDATE",
                    window,
                )
                cur.fetchall()
                for child, fk in hazards:
                    referenced = ", ".join(quote(r) for r in fk.referenced_columns)
                    referencing = ", ".join(f"t.{quote(c)}" for c in fk.columns)
                    late = _count(
                        cur, child.name,
                        f"({referencing}) IN ({batch_keys.format(referenced)})"
                        % window,
                        case.tenant,
                    )  # fmt: skip
                    if late:
                        conn.rollback()
                        raise DestructionIncompleteError(
                            f"system {self.name!r}: {late} row(s) of {child.qualified} written "
                            f"since the check reference the tenant's rows of {table.qualified} "
                            f"through {fk.name} (ON DELETE {_RULE_NAMES.get(fk.on_delete)}): "
                            "that batch was not deleted. Settle those rows, then retry"
                        )
                try:
                    cur.execute(
                        f"DELETE FROM {quote(table.name)} WHERE ({key}) IN "
                        f"({batch_keys.format(key)}) RETURNING "
                        f"{', '.join(quote(c) for c in owner_columns)}",
                        window,
                    )
                except MySQLdb.IntegrityError as error:
                    conn.rollback()
                    raise DestructionIncompleteError(
                        f"system {self.name!r}: deleting the tenant's rows of {table.qualified} "
                        f"broke a foreign key (a row written since the check references them: "
                        f"{error.args[-1]}). That batch was not deleted; settle the row, retry"
                    ) from None
                returned = cur.fetchall()
                expected = min(batch, own.count - start + 1)
                stray = [
                    row for row in returned
                    if not self._owned(row, owner_columns, tenant_scoped, links, parent_keys, case)
                ]  # fmt: skip
                if stray or len(returned) != expected:
                    conn.rollback()
                    raise IsolationBreachError(
                        f"system {self.name!r}: a batch of {table.qualified} deleted "
                        f"{len(returned)} row(s) for {expected} listed, {len(stray)} not the "
                        f"tenant's: rolled back, nothing of that batch deleted",
                        facts={
                            "nature": "a delete statement reached rows that were not the "
                            "offboarded tenant's (rolled back)",
                            "affected_tenants": [],
                            "categories": [f"rows of {table.qualified}"],
                            "approximate_records": len(stray),
                            "approximate_people": None,
                        },
                    )
                conn.commit()
                removed += len(returned)
        return removed

    def _owned(
        self,
        row: tuple[Any, ...],
        columns: list[str],
        tenant_scoped: bool,
        links: tuple[ForeignKey, ...],
        parent_keys: dict[str, set[tuple[Any, ...]]],
        case: CaseRef,
    ) -> bool:
        if tenant_scoped:
            return bool(row[0] == case.tenant)
        values = dict(zip(columns, row, strict=True))
        reached = False
        for fk in links:
            key = tuple(values[c] for c in fk.columns)
            if any(v is None for v in key):
                continue
            if key not in parent_keys[fk.name]:
                return False
            reached = True
        return reached

    def verify(self, case: CaseRef) -> Remaining:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue, strict=False)
            left: dict[str, int] = {}
            with conn.cursor() as cur:
                for name in classification.owned:
                    where = self._where(classification, name, "t")
                    found = _count(cur, split_qualified(name)[1], where, case.tenant)
                    if found:
                        left[name] = found
        return Remaining(
            items=sum(left.values()),
            verification=f"count of the tenant's rows in {len(classification.owned)} table(s): "
            + (", ".join(f"{t} {n}" for t, n in sorted(left.items())) or "none"),
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """Every row not the tenant's (nor an excluded tenant's), table by table in key
        order: equal before and after destruction."""
        digest = hashlib.sha256()
        with self._connect(cursorclass=MySQLdb.cursors.SSCursor) as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue, strict=False)
            for table in catalogue.tables:
                if not table.primary_key or table.name in catalogue.hazards:
                    continue
                skip = [case.tenant, *sorted(excluded)]
                where = "TRUE"
                if table.qualified in classification.owned:
                    where = " AND ".join(
                        f"NOT ({self._where(classification, table.qualified, 't')})".replace(
                            "%(tenant)s", f"%(t{n})s"
                        )
                        for n in range(len(skip))
                    )
                order = ", ".join(f"t.{quote(k)}" for k in table.primary_key)
                with conn.cursor() as cur:
                    cur.execute(
                        f"SELECT * FROM {quote(table.name)} t WHERE {where} ORDER BY {order}",
                        {f"t{n}": tenant for n, tenant in enumerate(skip)},
                    )
                    digest.update(table.qualified.encode())
                    for row in cur:
                        digest.update(repr(row).encode())
        return digest.hexdigest()


class _Snapshot:
    """Connections that all read one consistent snapshot. MariaDB cannot hand a snapshot to
    another connection (PostgreSQL's pg_export_snapshot), so the way mydumper does it: block
    commits for a moment (MariaDB's BACKUP STAGE BLOCK_COMMIT; FLUSH TABLES WITH READ LOCK on
    MySQL), start a consistent-snapshot transaction on every reader, release. No commit can
    fall between two readers' snapshots, so they see the same database. Without the RELOAD
    privilege that blocking needs, one connection reads everything (same guarantee, no
    parallelism)."""

    def __init__(self, location: MariaDBLocation, readers: int) -> None:
        self.location = location
        self.wanted = readers
        self.readers: list[_Connection] = []
        self.taken_at: dt.datetime | None = None
        self._stack = ExitStack()
        self._mariadb = True

    def __enter__(self) -> _Snapshot:
        connect = self.location._connect
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

    def _block(self, leader: _Connection) -> bool:
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

    def _release(self, leader: _Connection) -> None:
        with leader.cursor() as cur:
            cur.execute("BACKUP STAGE END" if self._mariadb else "UNLOCK TABLES")

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            with contextlib.suppress(MySQLdb.Error):
                reader.rollback()
        self._stack.close()


_RULE_NAMES = {"c": "CASCADE", "n": "SET NULL", "r": "RESTRICT", "a": "NO ACTION",
               "d": "SET DEFAULT"}  # fmt: skip


@dataclass
class _Listed:
    table: str  # the session temporary table of the doomed keys
    columns: tuple[str, ...]
    count: int
    _copies: int = 0

    def copy(self, cur: Any) -> str:
        """A second temporary table with the same keys: MariaDB cannot open one temporary
        table twice in a statement."""
        self._copies += 1
        name = f"{self.table}_c{self._copies}"
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        cur.execute(f"CREATE TEMPORARY TABLE {name} SELECT * FROM {self.table}")
        return name

    def keys_of(self, conn: _Connection, columns: tuple[str, ...]) -> set[tuple[Any, ...]]:
        """The listed values of `columns` (the tenant's rows' keys, for the owner check)."""
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(quote(c) for c in columns)} FROM {self.table}")
            return {tuple(row) for row in cur.fetchall()}


def _schema(column: Column) -> ColumnSchema:
    target, as_text = arrow_type(column)
    return ColumnSchema(
        name=column.name,
        pg_type=column.column_type,
        arrow_type=str(target),
        nullable=column.nullable,
        as_text=as_text,
    )


PLUGIN = Plugin(
    kind="mariadb",
    config=MariaDBSystem,
    location=MariaDBLocation,
    capabilities=frozenset(
        {
            Capability.EXPORT,
            Capability.DESTROY,
            Capability.VERIFY,
            Capability.ISOLATION,
            Capability.PERSON_ACCESS,
            Capability.PERSON_ERASURE,
        }
    ),
    stage=Stage.ROWS,
    export_rank=3,
    person_by="tables",
    summary="a MariaDB or MySQL database: classified from its catalogue, exported from one "
    "consistent snapshot, rows listed by key, isolation proved, deleted in batches",
)
