"""The catalog: every table, column and key of the database, read from PostgreSQL itself (never
a hand list), and the classification of each table (offboarding.planning) under the settings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import ColumnPlan, PgColumn
from offboarding.core.config import Settings
from offboarding.core.errors import UnclassifiedDataError
from offboarding.core.names import qualified, split_qualified
from offboarding.core.records import ColumnSchema
from offboarding.datamap import datamap_of, platform_shape
from offboarding.planning import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    declare,
    memberships,
)
from offboarding.registry import LEDGER_SCHEMA, registry_table

__all__ = [
    "classify",
    "column_list",
    "column_schema",
    "ident",
    "read_catalog",
    "read_indexes",
    "read_other_relations",
    "read_table_hazards",
    "table_size",
]

_CATALOG_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       t.typname, et.typname, a.atttypmod
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname, a.attnum
"""

# Schema and table names come as separate columns: a name holds any character, dots included,
# so the pair is joined once, by offboarding.core.names.qualified, never split at a dot.
_CATALOG_CONSTRAINTS = """
SELECT n.nspname, c.relname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i),
       con.conname, con.confdeltype
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype IN ('p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2, con.conname
"""


_CATALOG_INDEXES = """
SELECT n.nspname, c.relname,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indisvalid AND i.indpred IS NULL
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


# Relations that hold rows but are not tables the pipeline can select and delete from by key:
# a materialized view keeps a copy of the rows it was built from until refreshed; a foreign
# table's rows live in another system.
# Any relation kind this version does not know stops the case too (views, sequences, indexes,
# composite and TOAST relations hold no rows of their own; tables are read by the catalog).
_OTHER_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind NOT IN ('r', 'p', 'v', 'S', 'i', 'I', 'c', 't')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

# Tables the catalog reads but whose rows the pipeline would get wrong by key: with classic
# inheritance (not partitioning) a parent's SELECT and DELETE reach its children's rows too,
# so both would be exported and deleted twice over; an `oid` or `lo` column points at a large
# object, whose content lives in pg_largeobject, outside every table. (Partitions are read
# and deleted through their partitioned table, which the catalog lists instead.)
_TABLE_HAZARDS = """
SELECT n.nspname, c.relname, 'inheritance child of ' || format('%I.%I', pn.nspname, p.relname)
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE NOT c.relispartition
UNION ALL
SELECT pn.nspname, p.relname, 'inheritance parent of ' || format('%I.%I', n.nspname, c.relname)
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE NOT c.relispartition
UNION ALL
SELECT n.nspname, c.relname, 'large objects in column ' || format('%I', a.attname)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
  AND (t.oid = 'oid'::regtype OR t.typbasetype = 'oid'::regtype)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
UNION ALL
SELECT n.nspname, c.relname, 'a % in its schema''s, its own or a column''s name (psycopg reads '
       || 'every % beside a parameter as a placeholder: no statement naming it can be run)'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND (strpos(n.nspname, '%') > 0 OR strpos(c.relname, '%') > 0 OR EXISTS (
       SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
       AND NOT a.attisdropped AND strpos(a.attname, '%') > 0))
ORDER BY 1, 2, 3
"""
RELATION_KINDS = {"m": "materialized view", "f": "foreign table"}


def read_other_relations(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Materialized views, foreign tables and any relation kind this version does not know,
    with their kind: relations that hold (copies of) rows but that the export and the
    destruction cannot handle as tables."""
    return {
        qualified(schema, name): RELATION_KINDS.get(str(kind), f"relation of unknown kind {kind!r}")
        for schema, name, kind in conn.execute(_OTHER_RELATIONS)
    }


def read_table_hazards(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Tables whose rows the pipeline cannot export or destroy by key (inheritance, large
    objects), with why."""
    found: dict[str, str] = {}
    for schema, table, why in conn.execute(_TABLE_HAZARDS):
        name = qualified(schema, table)
        found[name] = f"{found[name]}; {why}" if name in found else str(why)
    return found


def read_indexes(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[str, ...]]]:
    """The leading columns of every valid, non-partial index, by table."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for schema, table, columns in conn.execute(_CATALOG_INDEXES):
        found.setdefault(qualified(schema, table), []).append(tuple(columns))
    return found


def table_size(conn: psycopg.Connection[Any], table: str) -> tuple[int, int]:
    """(estimated rows, bytes) of a whole table, from the planner's statistics."""
    row = conn.execute(
        "SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid) FROM pg_class "
        "WHERE oid = to_regclass(%s)",
        (str(ident(table).as_string()),),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def read_catalog(
    conn: psycopg.Connection[Any],
) -> tuple[list[CatalogTable], dict[str, list[PgColumn]]]:
    columns: dict[str, list[PgColumn]] = {}
    pairs: dict[str, tuple[str, str]] = {}
    for schema, table, name, pg_type, not_null, type_name, element, typmod in conn.execute(
        _CATALOG_COLUMNS
    ):
        key = qualified(schema, table)
        pairs[key] = (schema, table)
        columns.setdefault(key, []).append(
            PgColumn(name, pg_type, type_name, element, typmod, not_null)
        )
    primary: dict[str, tuple[str, ...]] = {}
    foreign: dict[str, list[ForeignKey]] = {}
    for schema, table, kind, cols, ref_schema, ref_table, ref_cols, name, on_delete in conn.execute(
        _CATALOG_CONSTRAINTS
    ):
        key = qualified(schema, table)
        if kind == "p":
            primary[key] = tuple(cols)
        else:
            referenced = qualified(ref_schema, ref_table)
            foreign.setdefault(key, []).append(
                ForeignKey(tuple(cols), referenced, tuple(ref_cols), name, str(on_delete))
            )
    tables = [
        CatalogTable(
            schema=pairs[key][0],
            name=pairs[key][1],
            columns=tuple(c.name for c in cols),
            primary_key=primary.get(key, ()),
            foreign_keys=tuple(foreign.get(key, ())),
        )
        for key, cols in columns.items()
    ]
    return tables, columns


def ident(name: str) -> sql.Identifier:
    """The quoted identifier of a table's qualified name (offboarding.core.names)."""
    return sql.Identifier(*split_qualified(name))


def column_list(cols: tuple[str, ...], alias: str | None = None) -> sql.Composable:
    """`(a, b)`, or `(x.a, x.b)` with an alias."""
    prefix = (alias,) if alias else ()
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(*prefix, c) for c in cols))


def classify(
    conn: psycopg.Connection[Any], settings: Settings, *, strict: bool = True
) -> tuple[Classification, list[CatalogTable], dict[str, list[PgColumn]]]:
    tables, columns = read_catalog(conn)
    platform = platform_shape(settings)
    tables = declare(tables, [*platform.references, *memberships(tables, platform.entities)])
    others = read_other_relations(conn)
    # Declared ones (global, or excluded with the reason) are settled; any other stops the
    # case, as an unclassified table does: its copy of tenant rows would survive destruction.
    declared = {**platform.global_tables, **platform.excluded_tables}
    hazards = read_table_hazards(conn)
    undeclared = tuple(
        f"{name} ({kind})" for name, kind in {**others, **hazards}.items() if name not in declared
    )
    # The pipeline's own ledger (registry.py) is its record of cases, not the tenant's data.
    ledger = {
        t.qualified: "the offboarding pipeline's own ledger of cases (kept as evidence)"
        for t in tables
        if t.schema == LEDGER_SCHEMA
    }
    global_tables = {**ledger, **platform.global_tables}
    # A table nobody may read as it is (undeclared hazard) is classified as nothing: a dry run
    # lists it, and no statement ever names it.
    unreadable = {name for name in hazards if name not in declared}
    classification = classify_tables(
        [t for t in tables if t.qualified not in unreadable],
        tenant_column=platform.tenant_column,
        registry=registry_table(settings),
        global_tables={k: v for k, v in global_tables.items() if k not in others},
        excluded={k: v for k, v in platform.excluded_tables.items() if k not in others},
        tenant_schema_pattern=platform.tenant_schema_pattern,
        owner_columns=platform.owner_columns,
        registry_id=datamap_of(settings).tenants.id,
        entities=platform.entities,
    )
    classification = replace(
        classification,
        global_tables={**classification.global_tables,
                       **{k: v for k, v in platform.global_tables.items() if k in others}},
        excluded={**classification.excluded,
                  **{k: v for k, v in platform.excluded_tables.items() if k in others}},
        unclassified=classification.unclassified + undeclared,
        handled_by=platform.handled_by,
    )  # fmt: skip
    if strict and undeclared:
        raise UnclassifiedDataError(
            f"{', '.join(undeclared)} hold(s) rows the pipeline cannot export or destroy by key "
            "(a materialized view keeps a copy of its source rows until refreshed; a foreign "
            "table's rows live in another system; an inheritance parent's rows include its "
            "children's; a large object's content lives in pg_largeobject, outside the table: "
            "store it as bytea or in the files store). Nothing is exported until each is declared: "
            "in the data map's [systems.postgres] excluded_tables (formerly "
            "OFFBOARD_EXCLUDED_TABLES) with how its copy of the tenant's rows goes (e.g. "
            "'refreshed by the platform after destruction'), or in its global_tables (formerly "
            "OFFBOARD_GLOBAL_TABLES) if it holds no tenant data"
        )
    if strict:
        classification.require_complete()
    return classification, tables, columns


def column_schema(plan: ColumnPlan) -> ColumnSchema:
    return ColumnSchema(
        name=plan.column.name,
        pg_type=plan.column.pg_type,
        arrow_type=str(plan.arrow_type),
        nullable=not plan.column.not_null,
        as_text=plan.as_text,
    )
