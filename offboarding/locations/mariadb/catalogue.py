"""A MariaDB database's catalogue, read from the server's own information_schema, and the
Arrow type of each declared column type."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa

from offboarding.core.errors import UnclassifiedDataError
from offboarding.core.names import qualified
from offboarding.core.records import ColumnSchema, TableItem
from offboarding.datamap import MariaDBSystem
from offboarding.datamap.systems import handlers, reasons
from offboarding.locations.base import foreign_key_schemas
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.relational.declared import check_declared
from offboarding.locations.relational.scope import RelationalScope
from offboarding.planning import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    declare,
    memberships,
)

__all__ = [
    "Catalogue",
    "Column",
    "Connection",
    "arrow_type",
    "classify",
    "column_schema",
    "convert",
    "count",
    "declared_report",
    "read_catalogue",
    "table_item",
    "with_references",
]

_DELETE_RULES = {"CASCADE": "c", "SET NULL": "n", "RESTRICT": "r", "NO ACTION": "a",
                 "SET DEFAULT": "d"}  # fmt: skip
_ENGINES = frozenset({"InnoDB"})  # transactions and consistent snapshots


class Connection(Protocol):
    """What the location uses of a mysqlclient connection (its stubs leave these untyped)."""

    converter: dict[Any, Any]  # a result's decoders, by the server's field type

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
    # Kept as the server's text: a date or time column holding values no calendar has (zero
    # dates, '0000-00-00', which MariaDB stores where sql_mode allows them).
    text: bool = False


def arrow_type(column: Column) -> tuple[pa.DataType, bool]:
    """The Arrow type of a declared MariaDB type, and whether values are kept as text (no
    exact Arrow equivalent: ENUM, SET, JSON documents, UUID, INET addresses, GEOMETRY as WKB
    is binary)."""
    kind, declared = column.data_type.lower(), column.column_type.lower()
    if column.text:
        return pa.string(), True
    unsigned = "unsigned" in declared
    integers = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "bigint": 64}
    if kind in integers:
        signed = {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}
        unsigned_types = {8: pa.uint8(), 16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}
        return (unsigned_types if unsigned else signed)[integers[kind]], False
    if kind == "decimal":  # up to 65 digits: past 38, Arrow's 256-bit decimal
        precision, scale = column.precision or 10, column.scale or 0
        return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale), False
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


def convert(value: Any, target: pa.DataType, as_text: bool) -> Any:
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
    engines: dict[str, str] = field(default_factory=dict)  # table -> its storage engine
    sequences: tuple[str, ...] = ()  # the database's SEQUENCE objects, by name


def count(cur: Any, table: str, where: str, tenant: str) -> int:
    """Rows of `table` (as `t`) matching `where`, with %(tenant)s bound."""
    cur.execute(f"SELECT COUNT(*) FROM {quote(table)} t WHERE {where}", {"tenant": tenant})
    row = cur.fetchone()
    return int(row[0]) if row else 0


def column_schema(column: Column) -> ColumnSchema:
    target, as_text = arrow_type(column)
    return ColumnSchema(
        name=column.name,
        pg_type=column.column_type,
        arrow_type=str(target),
        nullable=column.nullable,
        as_text=as_text,
    )


def _read(
    conn: Connection, database: str
) -> tuple[dict[str, Any], dict[str, list[Column]], dict[Any, Any]]:
    """The server's information_schema on `database`: each table's kind,
    engine and estimates, its columns, and its key constraints' columns."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, AVG_ROW_LENGTH "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (database,),
        )
        kinds = {str(r[0]): (str(r[1]), r[2], int(r[3] or 0), int(r[4] or 0)) for r in cur}
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, "
            "NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
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
            "WHERE k.TABLE_SCHEMA = %s "
            "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
            (database,),
        )
        keys: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for row in cur:
            keys.setdefault((str(row[0]), str(row[1])), []).append(row)
    return kinds, columns, keys


def read_catalogue(
    conn: Connection, system: str, database: str, *, schema: str | None = None
) -> Catalogue:
    """Every table, column, primary and foreign key (with its ON DELETE rule) of `database`,
    and why the pipeline cannot read a table by key, where it cannot. Its tables are named
    `<schema>.<table>`, the schema being the system's name unless given."""
    kinds, columns, keys = _read(conn, database)
    hazards: dict[str, str] = {}
    primary: dict[str, tuple[str, ...]] = {}
    foreign: dict[str, list[ForeignKey]] = {}
    for (table, constraint), rows in keys.items():
        if constraint == "PRIMARY":
            primary[table] = tuple(str(r[2]) for r in rows)
        elif rows[0][4] is not None:
            if rows[0][3] != database:
                hazards[table] = f"foreign key {constraint} into database {rows[0][3]}"
                continue
            foreign.setdefault(table, []).append(
                ForeignKey(
                    columns=tuple(str(r[2]) for r in rows),
                    references=qualified(system, str(rows[0][4])),
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
                schema=schema or system,
                name=table,
                columns=tuple(c.name for c in columns.get(table, [])),
                primary_key=primary.get(table, ()),
                foreign_keys=tuple(foreign.get(table, ())),
            )
        )
    estimates = {t: (rows, length) for t, (_, _, rows, length) in kinds.items()}
    engines = {t: str(engine or kind) for t, (kind, engine, _, _) in kinds.items()}
    sequences = tuple(sorted(t for t, (kind, _, _, _) in kinds.items() if kind == "SEQUENCE"))
    return Catalogue(tables, columns, hazards, estimates, engines, sequences)


def with_references(catalogue: Catalogue, name: str, system: MariaDBSystem) -> Catalogue:
    """The catalogue with the data map's declared references as foreign keys (planning)."""
    if not system.references and not system.shared_entities:
        return catalogue
    entities = [e.membership(t, name) for t, e in system.shared_entities.items()]
    declared = declare(
        catalogue.tables,
        [
            *(r.declaration(name) for r in system.references),
            *memberships(catalogue.tables, entities),
        ],
    )
    return replace(catalogue, tables=declared)


def classify(
    catalogue: Catalogue, name: str, system: MariaDBSystem, *, strict: bool = True
) -> tuple[Classification, list[str]]:
    """Planning's classification of the catalogue under the data map's declarations, and the
    tables left unclassified (a table the pipeline cannot read by key among them). Strict: any
    such table stops the case until declared."""
    declared = {
        qualified(name, t): why
        for t, why in {**system.global_tables, **reasons(system.excluded_tables)}.items()
    }
    undeclared = [
        f"{qualified(name, t)} ({why})"
        for t, why in sorted(catalogue.hazards.items())
        if qualified(name, t) not in declared
    ]
    unreadable = {
        t for t in catalogue.hazards if qualified(name, t) not in declared
    }  # classified as nothing: a dry run lists them, no statement names them
    classification = classify_tables(
        [t for t in catalogue.tables if t.name not in unreadable],
        tenant_column=system.tenant_column,
        registry="",
        global_tables={qualified(name, t): w for t, w in system.global_tables.items()},
        excluded={qualified(name, t): w for t, w in reasons(system.excluded_tables).items()},
        tenant_schema_pattern=None,
        owner_columns={qualified(name, t): c for t, c in system.owner_columns.items()},
        entities=[e.membership(t, name) for t, e in system.shared_entities.items()],
    )
    classification = replace(
        classification,
        handled_by={qualified(name, t): s for t, s in handlers(system.excluded_tables).items()},
    )
    unclassified = [*classification.unclassified, *undeclared]
    if strict and undeclared:
        raise UnclassifiedDataError(
            f"system {name!r}: {', '.join(undeclared)}: the pipeline cannot export or "
            "destroy these tables by key. Declare each in the data map (global_tables, or "
            "excluded_tables with how the tenant's rows there go), or fix the table"
        )
    if strict and classification.unclassified:
        raise UnclassifiedDataError(
            f"system {name!r}: tables nobody classified: "
            f"{', '.join(classification.unclassified)}. Give each the tenant column "
            f"({system.tenant_column}) or a foreign key to a tenant table, or declare it "
            "in the data map's global_tables or excluded_tables with the reason"
        )
    return classification, unclassified


def table_item(
    system: str,
    classification: Classification,
    table: CatalogTable,
    catalogue: Catalogue,
    measured: tuple[int, int],
) -> TableItem:
    """The inventory's entry of one table: its `measured` (rows, bytes) of the tenant."""
    name = table.qualified
    return TableItem(
        schema_name=system,
        table=table.name,
        scope="tenant"
        if name in classification.tenant_scoped
        else "entity"
        if name in classification.entities
        else "derived",
        tenant_column=classification.owner_column(name)
        if name in classification.tenant_scoped
        else None,
        rows=measured[0],
        bytes_estimate=measured[1],
        columns=[column_schema(c) for c in catalogue.columns.get(table.name, [])],
        primary_key=list(table.primary_key),
        parents=sorted({fk.references for fk in classification.derived.get(name, ())}),
        foreign_keys=foreign_key_schemas(table),
    )


def declared_report(
    conn: Connection, scope: RelationalScope[str], catalogue: Catalogue
) -> list[str]:
    """`offboard datamap check`'s lines: the tables of tenants' rows, and each declared
    reference with its orphans and rows reaching two tenants (relational/declared.py)."""

    def fetch(query: str) -> tuple[object, ...]:
        with conn.cursor() as cur:
            cur.execute(query)
            found = cur.fetchone()
        assert found is not None
        return tuple(found)

    checks = check_declared(scope, catalogue.tables, fetch)
    return [
        f"{len(scope.classification.owned)} tables of tenants' rows",
        *(f"reference {c.describe()}" for c in checks),
    ]
