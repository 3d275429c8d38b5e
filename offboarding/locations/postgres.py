"""PostgreSQL: the tenant's rows in shared tables, in tables derived from them through foreign
keys, and the tenant's row in the registry. Discovery reads the catalog, never a hand list."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import ColumnPlan, PgColumn, plan_column, write_parquet
from offboarding.config import Settings
from offboarding.errors import ConfigurationError, IntegrityError
from offboarding.locations.base import LocationExport, Remaining, Removal
from offboarding.planning import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    deletion_order,
)
from offboarding.records import CaseRef, ColumnSchema, ExportedPart, LocationInventory, TableItem

__all__ = ["PostgresLocation", "read_catalog"]

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

_CATALOG_CONSTRAINTS = """
SELECT n.nspname || '.' || c.relname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       rn.nspname || '.' || rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype IN ('p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, con.conname
"""


def read_catalog(
    conn: psycopg.Connection[Any],
) -> tuple[list[CatalogTable], dict[str, list[PgColumn]]]:
    columns: dict[str, list[PgColumn]] = {}
    for schema, table, name, pg_type, not_null, type_name, element, typmod in conn.execute(
        _CATALOG_COLUMNS
    ):
        columns.setdefault(f"{schema}.{table}", []).append(
            PgColumn(name, pg_type, type_name, element, typmod, not_null)
        )
    primary: dict[str, tuple[str, ...]] = {}
    foreign: dict[str, list[ForeignKey]] = {}
    for table, kind, cols, referenced, ref_cols in conn.execute(_CATALOG_CONSTRAINTS):
        if kind == "p":
            primary[table] = tuple(cols)
        else:
            foreign.setdefault(table, []).append(
                ForeignKey(tuple(cols), referenced, tuple(ref_cols))
            )
    tables = [
        CatalogTable(
            schema=name.split(".", 1)[0],
            name=name.split(".", 1)[1],
            columns=tuple(c.name for c in cols),
            primary_key=primary.get(name, ()),
            foreign_keys=tuple(foreign.get(name, ())),
        )
        for name, cols in columns.items()
    ]
    return tables, columns


def _ident(qualified: str) -> sql.Identifier:
    schema, _, table = qualified.partition(".")
    return sql.Identifier(schema, table)


def _columns(cols: tuple[str, ...]) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))


class _Scope:
    """Builds, for any owned table, the WHERE clause that selects exactly the tenant's rows."""

    def __init__(self, classification: Classification, tenant_column: str) -> None:
        self.classification = classification
        self.tenant_column = tenant_column

    def where(self, table: str) -> sql.Composable:
        c = self.classification
        if table == c.registry:
            return sql.SQL("{} = %(tenant)s").format(sql.Identifier("id"))
        if table in c.tenant_scoped:
            return sql.SQL("{} = %(tenant)s").format(sql.Identifier(self.tenant_column))
        links = c.derived[table]
        return sql.SQL("({})").format(
            sql.SQL(" OR ").join(
                sql.SQL("{cols} IN (SELECT {ref} FROM {parent} WHERE {cond})").format(
                    cols=_columns(fk.columns),
                    ref=sql.SQL(", ").join(sql.Identifier(x) for x in fk.referenced_columns),
                    parent=_ident(fk.references),
                    cond=self.where(fk.references),
                )
                for fk in links
            )
        )


class PostgresLocation:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.require_database(), **kwargs)

    def _plan(
        self, conn: psycopg.Connection[Any]
    ) -> tuple[Classification, list[CatalogTable], dict[str, list[PgColumn]]]:
        tables, columns = read_catalog(conn)
        classification = classify_tables(
            tables,
            tenant_column=self.settings.tenant_column,
            registry=self.settings.registry_table,
            global_tables=self.settings.global_tables,
            excluded=self.settings.excluded_tables,
        )
        return classification, tables, columns

    def _count(self, conn: psycopg.Connection[Any], scope: _Scope, table: str, tenant: str) -> int:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {}").format(_ident(table), scope.where(table)),
            {"tenant": tenant},
        ).fetchone()
        return int(row[0]) if row else 0

    def _measure(
        self, conn: psycopg.Connection[Any], scope: _Scope, table: str, tenant: str
    ) -> tuple[int, int]:
        """Rows of the tenant in `table`, and the bytes those rows take."""
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(pg_column_size(x.*)), 0) FROM {} x WHERE {}"
            ).format(_ident(table), scope.where(table)),
            {"tenant": tenant},
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def inventory(self, case: CaseRef) -> LocationInventory:
        with self._connect() as conn:
            classification, tables, columns = self._plan(conn)
            scope = _Scope(classification, self.settings.tenant_column)
            by_name = {t.qualified: t for t in tables}
            items: list[TableItem] = []
            for name in (classification.registry, *classification.owned):
                table = by_name[name]
                rows, size = self._measure(conn, scope, name, case.tenant)
                plans = [plan_column(c) for c in columns[name]]
                scope_kind = (
                    "registry" if name == classification.registry
                    else "tenant" if name in classification.tenant_scoped
                    else "derived"
                )  # fmt: skip
                items.append(
                    TableItem(
                        schema_name=table.schema,
                        table=table.name,
                        scope=scope_kind,
                        rows=rows,
                        bytes_estimate=size,
                        columns=[_column_schema(p) for p in plans],
                        primary_key=list(table.primary_key),
                        parents=sorted(
                            {fk.references for fk in classification.derived.get(name, ())}
                        ),
                    )
                )
        return LocationInventory(
            location=self.name,
            items=sum(t.rows for t in items),
            bytes=sum(t.bytes_estimate for t in items),
            tables=items,
            global_tables=classification.global_tables,
            excluded_tables=classification.excluded,
        )

    def export(self, case: CaseRef, inventory: LocationInventory, scratch: Path) -> LocationExport:
        """Every table from one REPEATABLE READ, READ ONLY snapshot, one Parquet file each."""
        parts: list[ExportedPart] = []
        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                snapshot = conn.execute("SELECT clock_timestamp()").fetchone()
                assert snapshot is not None
                classification, _, columns = self._plan(conn)
                scope = _Scope(classification, self.settings.tenant_column)
                for item in inventory.tables:
                    name = item.qualified
                    if name not in columns:
                        raise IntegrityError(
                            f"table {name} of the inventory disappeared before the export of "
                            f"tenant {case.tenant!r}: take the inventory again"
                        )
                    relative = f"tables/{name}/part-00000.parquet"
                    rows = write_parquet(
                        conn,
                        _ident(name),
                        [plan_column(c) for c in columns[name]],
                        scope.where(name),
                        {"tenant": case.tenant},
                        item.primary_key,
                        scratch / relative,
                        self.settings.export_batch_rows,
                    )
                    if rows != item.rows:
                        raise IntegrityError(
                            f"{name}: the snapshot holds {rows} rows of tenant {case.tenant!r} but "
                            f"the inventory counted {item.rows}: the tenant changed after the "
                            "freeze; check that the platform honours the freeze, then rerun"
                        )
                    parts.append(
                        ExportedPart(
                            path=relative, source=f"scratch:{relative}", kind="table",
                            table=name, rows=rows,
                        )
                    )  # fmt: skip
        return LocationExport(parts=parts, snapshot_time=snapshot[0])

    def _owned_without_registry(self, classification: Classification) -> list[str]:
        return [t for t in classification.owned if t != classification.registry]

    def destroy(self, case: CaseRef) -> Removal:
        """Delete children first, in batches of their own transactions, then VACUUM."""
        with self._connect() as conn:
            classification, tables, _ = self._plan(conn)
            scope = _Scope(classification, self.settings.tenant_column)
            owned = self._owned_without_registry(classification)
            parents = {
                t.qualified: {fk.references for fk in t.foreign_keys}
                for t in tables
                if t.qualified in owned
            }
            before = [self._measure(conn, scope, t, case.tenant) for t in owned]
            # The platform's write guard lets this session, and only it, change a frozen tenant.
            conn.execute(
                "SELECT set_config('offboarding.destroying_tenant', %s, false)", (case.tenant,)
            )
            conn.commit()
            removed = 0
            for table in deletion_order(parents):
                statement = sql.SQL(
                    "DELETE FROM {t} WHERE ctid = ANY(ARRAY("
                    "SELECT ctid FROM {t} WHERE {w} LIMIT {n}))"
                ).format(
                    t=_ident(table),
                    w=scope.where(table),
                    n=sql.Literal(self.settings.delete_batch_rows),
                )
                while True:
                    with conn.transaction():
                        deleted = conn.execute(statement, {"tenant": case.tenant}).rowcount
                    removed += deleted
                    if deleted == 0:
                        break
        with self._connect(autocommit=True) as conn:
            for table in owned:
                # Dead tuples still hold the deleted values until vacuumed.
                conn.execute(sql.SQL("VACUUM {}").format(_ident(table)))
        return Removal(
            items_before=sum(rows for rows, _ in before),
            bytes_before=sum(size for _, size in before),
            items_removed=removed,
            technique="DELETE in batches, children first, then VACUUM",
        )

    def verify(self, case: CaseRef) -> Remaining:
        with self._connect() as conn:
            classification, _, _ = self._plan(conn)
            scope = _Scope(classification, self.settings.tenant_column)
            owned = self._owned_without_registry(classification)
            left = {t: self._count(conn, scope, t, case.tenant) for t in owned}
        nonzero = {t: n for t, n in left.items() if n}
        return Remaining(
            items=sum(left.values()),
            verification=(
                f"count(*) of the tenant's rows in {len(owned)} tables: "
                + (json.dumps(nonzero) if nonzero else "all zero")
            ),
        )

    def neighbours_digest(self, case: CaseRef) -> str:
        digests: dict[str, str] = {}
        with self._connect() as conn:
            classification, _, _ = self._plan(conn)
            scope = _Scope(classification, self.settings.tenant_column)
            for table in (classification.registry, *classification.owned):
                # The tenant's own registry row changes status; every other row must not.
                not_tenant = sql.SQL("NOT coalesce({}, false)").format(scope.where(table))
                row = conn.execute(
                    sql.SQL(
                        "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                        "FROM {} x WHERE {}"
                    ).format(_ident(table), not_tenant),
                    {"tenant": case.tenant},
                ).fetchone()
                digests[table] = row[0] if row else ""
            for table in classification.global_tables:
                row = conn.execute(
                    sql.SQL(
                        "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                        "FROM {} x"
                    ).format(_ident(table))
                ).fetchone()
                digests[table] = row[0] if row else ""
        return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()

    def referenced_objects(self, case: CaseRef) -> set[str]:
        """Object keys that the tenant's rows reference (e.g. documents.object_key)."""
        keys: set[str] = set()
        with self._connect() as conn:
            classification, _, columns = self._plan(conn)
            scope = _Scope(classification, self.settings.tenant_column)
            for reference in self.settings.file_reference_columns:
                table, _, column = reference.rpartition(".")
                if table not in classification.owned or column not in {
                    c.name for c in columns.get(table, [])
                }:
                    raise ConfigurationError(
                        f"OFFBOARD_FILE_REFERENCE_COLUMNS names {reference!r}, which is not a "
                        "column of a tenant-owned table: fix it to schema.table.column"
                    )
                query = sql.SQL(
                    "SELECT DISTINCT {c} FROM {t} WHERE {w} AND {c} IS NOT NULL"
                ).format(c=sql.Identifier(column), t=_ident(table), w=scope.where(table))
                keys.update(str(r[0]) for r in conn.execute(query, {"tenant": case.tenant}))
        return keys


def _column_schema(plan: ColumnPlan) -> ColumnSchema:
    return ColumnSchema(
        name=plan.column.name,
        pg_type=plan.column.pg_type,
        arrow_type=str(plan.arrow_type),
        nullable=not plan.column.not_null,
        as_text=plan.as_text,
    )
