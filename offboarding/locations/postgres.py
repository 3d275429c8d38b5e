"""PostgreSQL: the tenant's rows in shared tables, in tables derived from them through foreign
keys, and the tenant's row in the registry. Discovery reads the catalog, never a hand list."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from exporters.parquet import ColumnPlan, PgColumn, plan_column, select_query, write_parquet
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, DestructionIncompleteError, IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.records import (
    CaseRef,
    ColumnSchema,
    ExportedPart,
    ForeignKeySchema,
    LocationInventory,
    TableItem,
)
from offboarding.locations.base import LocationExport, Remaining, Removal
from offboarding.planning import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    deletion_order,
)

__all__ = ["PostgresLocation", "column_schema", "read_catalog"]

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


_PHYSICAL_ORDER_SETTINGS = (
    ("enable_indexscan", "off"),
    ("enable_indexonlyscan", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("synchronize_seqscans", "off"),
)


class _SnapshotReaders:
    """One ADBC connection per export worker, in a read-only transaction that imports the
    leader's snapshot, reused for every part that worker exports. A new connection per part
    costs a connection start and the driver's read of the type catalog each time (measured on
    the wide benchmark table: 50 parts took 2 s longer than 6)."""

    def __init__(self, dsn: str, snapshot_id: str) -> None:
        self._dsn = dsn
        self._snapshot_id = snapshot_id
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[Any, Any]] = []

    def cursor(self) -> Any:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            import adbc_driver_postgresql.dbapi as adbc

            connection = adbc.connect(self._dsn)
            cursor = connection.cursor()
            with self._lock:
                self._connections.append((connection, cursor))
            # The driver has opened a transaction: make it the leader's snapshot, read-only.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(
                sql.SQL("SET TRANSACTION SNAPSHOT {}")
                .format(sql.Literal(self._snapshot_id))
                .as_string()
            )
            # 4 MB batches: memory per worker bounded (the option holds for every query).
            cursor.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(4 * 1024 * 1024)}
            )
            self._local.cursor = cursor
        return cursor

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection, cursor in connections:
            cursor.close()
            connection.close()


@dataclass(frozen=True)
class _ExportJob:
    table: str
    relative: str
    plans: list[ColumnPlan]
    query: sql.Composed
    physical: bool = False  # rows in physical order: only scans that keep it are allowed


def _array_dimensions(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[PgColumn],
    where: sql.Composable,
) -> dict[str, int]:
    """Largest array_ndims of each array column over the selected rows."""
    arrays = [c for c in columns if c.element_type]
    if not arrays:
        return {}
    row = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(
                sql.SQL("coalesce(max(array_ndims({})), 1)").format(sql.Identifier(c.name))
                for c in arrays
            ),
            table,
            where,
        )
    ).fetchone()
    return {c.name: int(n) for c, n in zip(arrays, row or (), strict=True)}


def _mostly_distinct(conn: psycopg.Connection[Any], item: TableItem) -> set[str]:
    """Columns whose values the planner's statistics say are mostly distinct (no statistics:
    none). n_distinct < 0 is a fraction of the rows; > 0 an absolute count."""
    rows = conn.execute(
        "SELECT attname, n_distinct FROM pg_stats WHERE schemaname = %s AND tablename = %s",
        (item.schema_name, item.table),
    ).fetchall()
    table_rows = max(item.rows, 1)
    return {
        name
        for name, n_distinct in rows
        if (n_distinct < 0 and -n_distinct > 0.5) or (n_distinct > 0.5 * table_rows)
    }


class _Scope:
    """Builds, for any table holding the tenant's rows, the WHERE clause that selects them.
    The tenant id is a literal quoted by the driver, so the clause works on any connection."""

    def __init__(self, classification: Classification, tenant: str) -> None:
        self.classification = classification
        self.tenant = sql.Literal(tenant)

    def where(self, table: str) -> sql.Composable:
        c = self.classification
        if table == c.registry:
            return sql.SQL("{} = {}").format(sql.Identifier("id"), self.tenant)
        if table in c.schema_tables:
            return sql.SQL("TRUE")  # the whole table is in the tenant's own schema
        if table in c.tenant_scoped:
            return sql.SQL("{} = {}").format(sql.Identifier(c.tenant_column), self.tenant)
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


def _scope_kind(
    classification: Classification, table: str
) -> Literal["tenant", "derived", "registry", "schema"]:
    if table == classification.registry:
        return "registry"
    if table in classification.schema_tables:
        return "schema"
    return "tenant" if table in classification.tenant_scoped else "derived"


def _digest_query(table: str, where: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM {} x WHERE {}"
    ).format(_ident(table), where)


class PostgresLocation:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.require_database(), **kwargs)

    def _plan(
        self, conn: psycopg.Connection[Any], *, strict: bool = True
    ) -> tuple[Classification, list[CatalogTable], dict[str, list[PgColumn]]]:
        tables, columns = read_catalog(conn)
        classification = classify_tables(
            tables,
            tenant_column=self.settings.tenant_column,
            registry=self.settings.registry_table,
            global_tables=self.settings.global_tables,
            excluded=self.settings.excluded_tables,
            tenant_schema_pattern=self.settings.tenant_schema_pattern,
        )
        if strict:
            classification.require_complete()
        return classification, tables, columns

    def tenant_schema(self, tenant: str) -> str:
        return self.settings.tenant_schema_pattern.format(tenant=tenant)

    def _tenant_tables(self, classification: Classification, tenant: str) -> list[str]:
        """Registry first, then shared tables, then the tenant's own schema."""
        return [
            classification.registry,
            *classification.owned,
            *classification.schema_tables_of(tenant),
        ]

    def _measure(
        self, conn: psycopg.Connection[Any], scope: _Scope, table: str, tenant: str
    ) -> tuple[int, int]:
        """Rows of the tenant in `table`, and the bytes those rows take."""
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(pg_column_size(x.*)), 0) FROM {} x WHERE {}"
            ).format(_ident(table), scope.where(table))
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def inventory(self, case: CaseRef, *, strict: bool = True) -> LocationInventory:
        """With strict=False (the dry run), unclassified tables are listed instead of raising."""
        with self._connect() as conn:
            classification, tables, columns = self._plan(conn, strict=strict)
            scope = _Scope(classification, case.tenant)
            by_name = {t.qualified: t for t in tables}
            items: list[TableItem] = []
            for name in self._tenant_tables(classification, case.tenant):
                table = by_name[name]
                rows, size = self._measure(conn, scope, name, case.tenant)
                items.append(
                    TableItem(
                        schema_name=table.schema,
                        table=table.name,
                        scope=_scope_kind(classification, name),
                        rows=rows,
                        bytes_estimate=size,
                        columns=[column_schema(plan_column(c)) for c in columns[name]],
                        primary_key=list(table.primary_key),
                        parents=sorted(
                            {fk.references for fk in classification.derived.get(name, ())}
                        ),
                        foreign_keys=[
                            ForeignKeySchema(
                                columns=list(fk.columns),
                                references=fk.references,
                                referenced_columns=list(fk.referenced_columns),
                            )
                            for fk in table.foreign_keys
                        ],
                    )
                )
        return LocationInventory(
            location=self.name,
            items=sum(t.rows for t in items),
            bytes=sum(t.bytes_estimate for t in items),
            tables=items,
            global_tables=classification.global_tables,
            excluded_tables=classification.excluded,
            unclassified=list(classification.unclassified),
        )

    def export(self, case: CaseRef, inventory: LocationInventory, scratch: Path) -> LocationExport:
        """Every table from one snapshot. The leader exports it (pg_export_snapshot) and holds
        it open; `export_workers` workers each import it on a connection of their own and
        write Parquet parts (a table, or a range of a large one) until none are left."""
        with self._connect() as leader:
            leader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            leader.read_only = True
            with leader.transaction():
                row = leader.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
                assert row is not None
                snapshot_id, snapshot_time = row
                classification, _, columns = self._plan(leader)
                scope = _Scope(classification, case.tenant)
                jobs: list[_ExportJob] = []
                for item in inventory.tables:
                    if item.qualified not in columns:
                        raise IntegrityError(
                            f"table {item.qualified} of the inventory disappeared before the "
                            f"export of tenant {case.tenant!r}: take the inventory again"
                        )
                    jobs.extend(self._plan_jobs(leader, item, columns[item.qualified], scope))
                readers = _SnapshotReaders(self.settings.require_database(), snapshot_id)
                try:
                    with ThreadPoolExecutor(self.settings.export_workers) as pool:
                        written = list(
                            pool.map(lambda job: self._run_job(readers, job, scratch), jobs)
                        )
                finally:
                    readers.close()
        parts = [
            ExportedPart(
                path=job.relative, source=f"scratch:{job.relative}", kind="table",
                table=job.table, rows=rows, columns=[column_schema(p) for p in job.plans],
                size=(scratch / job.relative).stat().st_size,
            )
            for job, rows in zip(jobs, written, strict=True)
        ]  # fmt: skip
        return LocationExport(parts=parts, snapshot_time=snapshot_time)

    def _plan_jobs(
        self,
        leader: psycopg.Connection[Any],
        item: TableItem,
        pg_columns: list[PgColumn],
        scope: _Scope,
    ) -> list[_ExportJob]:
        """One job per table, or several for a table above `export_split_rows`. Runs in the
        leader's snapshot, so ranges and types match it.

        Rows go out in a deterministic order. Small and derived tables: ORDER BY the primary
        key. Large tenant-scoped or schema tables: block (ctid) ranges read in physical
        order, which costs the server a third less than key ranges with ORDER BY (measured);
        `_run_job` rules out the plans whose order is not physical.
        """
        table, where = _ident(item.qualified), scope.where(item.qualified)
        dimensions = _array_dimensions(leader, table, pg_columns, where)
        distinct = _mostly_distinct(leader, item)
        plans = [
            replace(
                plan_column(c, dimensions=dimensions.get(c.name, 1)),
                repetitive=c.name not in distinct,
            )
            for c in pg_columns
        ]
        split = self.settings.export_split_rows
        workers = self.settings.export_workers
        # Whole rounds of workers, so no worker idles while another finishes alone.
        count = min(-(-max(-(-item.rows // split), workers) // workers) * workers, 1000)
        ranges: list[sql.Composable] = [sql.SQL("TRUE")]
        physical = item.rows > split and item.scope in ("tenant", "schema")
        key = item.primary_key[0] if len(item.primary_key) == 1 else None
        key_type = next((c.type_name for c in pg_columns if c.name == key), None)
        if physical:
            row = leader.execute(
                "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (item.schema_name, item.table),
            ).fetchone()
            step = -(-(int(row[0]) if row else 0) // count) or 1
            ranges = [
                sql.SQL("ctid >= {lo}::tid AND ctid < {hi}::tid").format(
                    lo=sql.Literal(f"({n * step},0)"), hi=sql.Literal(f"({(n + 1) * step},0)")
                )
                for n in range(count - 1)
            ]
            # The last range is open: the table only grows, never past what the snapshot sees.
            ranges.append(
                sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({(count - 1) * step},0)"))
            )
        elif key and key_type in ("int2", "int4", "int8") and item.rows > split:
            bounds = leader.execute(
                sql.SQL("SELECT min({k}), max({k}) FROM {t} WHERE {w}").format(
                    k=sql.Identifier(key), t=table, w=where
                )
            ).fetchone()
            if bounds and bounds[0] is not None:
                low, high = int(bounds[0]), int(bounds[1])
                step = -(-(high - low + 1) // count)
                ranges = [
                    sql.SQL("{k} >= {lo} AND {k} < {hi}").format(
                        k=sql.Identifier(key), lo=sql.Literal(start), hi=sql.Literal(start + step)
                    )
                    for start in range(low, high + 1, step)
                ]
        order = [] if physical else item.primary_key
        return [
            _ExportJob(
                table=item.qualified,
                relative=f"tables/{item.qualified}/part-{n:05d}.parquet",
                plans=plans,
                query=select_query(
                    table,
                    plans,
                    sql.SQL("({}) AND {}").format(where, part_range),
                    order,
                    physical=physical,
                ),
                physical=physical,
            )
            for n, part_range in enumerate(ranges)
        ]

    def _run_job(self, readers: _SnapshotReaders, job: _ExportJob, scratch: Path) -> int:
        """One Parquet part, read on this worker's connection in the leader's snapshot."""
        cursor = readers.cursor()
        # Sequential, TID-range and bitmap scans return rows in physical order; an index scan
        # (ordered by its key), a parallel plan or a synchronised seqscan (starting mid-table)
        # would not, and the output must not depend on the plan. Parts ordered by their key
        # get the server's defaults back, so they may use the key's index.
        for setting, physical_value in _PHYSICAL_ORDER_SETTINGS:
            cursor.execute(
                f"SET LOCAL {setting} TO {physical_value if job.physical else 'DEFAULT'}"
            )
        cursor.execute(job.query.as_string())
        rows = write_parquet(
            cursor.fetch_record_batch(),
            job.plans,
            scratch / job.relative,
            self.settings.parquet_row_group_rows,
        )
        crash_point("export:part-written")
        return rows

    def destroy(self, case: CaseRef) -> Removal:
        """Shared tables: delete children first, in batches of their own transactions, then
        VACUUM. The tenant's own schema: drop its tables, then the schema."""
        with self._connect() as conn:
            classification, tables, _ = self._plan(conn)
            scope = _Scope(classification, case.tenant)
            owned = list(classification.owned)
            own_schema = list(classification.schema_tables_of(case.tenant))
            by_name = {t.qualified: t for t in tables}
            measured = [self._measure(conn, scope, t, case.tenant) for t in owned + own_schema]
            # The platform's write guard lets this session, and only it, change a frozen tenant.
            conn.execute(
                "SELECT set_config('offboarding.destroying_tenant', %s, false)", (case.tenant,)
            )
            conn.commit()
            parents = {t: {fk.references for fk in by_name[t].foreign_keys} for t in owned}
            removed = sum(
                self._delete_rows(conn, scope, by_name[table], case.tenant)
                for table in deletion_order(parents)
            )
            removed += sum(rows for rows, _ in measured[len(owned) :])
            self._drop_schema(conn, self.tenant_schema(case.tenant), own_schema)
        with self._connect(autocommit=True) as conn:
            for table in owned:
                # Dead tuples still hold the deleted values until vacuumed.
                conn.execute(sql.SQL("VACUUM {}").format(_ident(table)))
        return Removal(
            items_before=sum(rows for rows, _ in measured),
            bytes_before=sum(size for _, size in measured),
            items_removed=removed,
            technique="DELETE in batches, children first, then VACUUM; DROP of the tenant schema",
        )

    def _delete_rows(
        self, conn: psycopg.Connection[Any], scope: _Scope, table: CatalogTable, tenant: str
    ) -> int:
        # Rows that other rows of the same table point at go last (threaded comments).
        self_refs = [fk for fk in table.foreign_keys if fk.references == table.qualified]
        leaves = sql.SQL("").join(
            sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {t} c WHERE {cc} = {xc})").format(
                t=_ident(table.qualified),
                cc=sql.SQL("({})").format(
                    sql.SQL(", ").join(sql.Identifier("c", col) for col in fk.columns)
                ),
                xc=sql.SQL("({})").format(
                    sql.SQL(", ").join(sql.Identifier("x", col) for col in fk.referenced_columns)
                ),
            )
            for fk in self_refs
        )
        batch = sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY("
            "SELECT x.ctid FROM {t} x WHERE {w}{leaves} LIMIT {n}))"
        ).format(
            t=_ident(table.qualified),
            w=scope.where(table.qualified),
            leaves=leaves,
            n=sql.Literal(self.settings.delete_batch_rows),
        )
        removed = 0
        while True:
            with conn.transaction():
                deleted = conn.execute(batch).rowcount
            crash_point("postgres:batch-deleted")
            removed += deleted
            if deleted == 0:
                break
        if self_refs:  # rows in a reference cycle are never leaves: one statement takes them
            with conn.transaction():
                removed += conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {}").format(
                        _ident(table.qualified), scope.where(table.qualified)
                    )
                ).rowcount
        return removed

    def _drop_schema(self, conn: psycopg.Connection[Any], schema: str, tables: list[str]) -> None:
        with conn.transaction():
            if tables:
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(
                        sql.SQL(", ").join(_ident(t) for t in tables)
                    )
                )
            try:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))
            except psycopg.errors.DependentObjectsStillExist as error:
                raise DestructionIncompleteError(
                    f"schema {schema} of tenant still holds objects other than tables ({error}); "
                    "drop them after review, then rerun the destruction"
                ) from error

    def verify(self, case: CaseRef) -> Remaining:
        schema = self.tenant_schema(case.tenant)
        with self._connect() as conn:
            classification, _, _ = self._plan(conn)
            scope = _Scope(classification, case.tenant)
            owned = list(classification.owned)
            left = {t: self._measure(conn, scope, t, case.tenant)[0] for t in owned}
            row = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            schema_left = int(row[0]) if row else 0
        nonzero = {t: n for t, n in left.items() if n}
        return Remaining(
            items=sum(left.values()) + schema_left,
            verification=(
                f"count(*) of the tenant's rows in {len(owned)} shared tables: "
                + (json.dumps(nonzero) if nonzero else "all zero")
                + f"; schema {schema} {'present' if schema_left else 'absent'}"
            ),
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        digests: dict[str, str] = {}
        skipped = {case.tenant, *excluded}
        with self._connect() as conn:
            classification, _, _ = self._plan(conn)
            scopes = [_Scope(classification, tenant) for tenant in sorted(skipped)]
            for table in (classification.registry, *classification.owned):
                # The tenant's own rows (its registry row changes status) and those of tenants
                # with open cases of their own are left out; every other row must not change.
                not_skipped = sql.SQL(" AND ").join(
                    sql.SQL("NOT coalesce({}, false)").format(scope.where(table))
                    for scope in scopes
                )
                row = conn.execute(_digest_query(table, not_skipped))
                digests[table] = str((row.fetchone() or ("",))[0])
            others = [
                t for t, owner in classification.schema_tables.items() if owner not in skipped
            ]
            for table in [*classification.global_tables, *others]:
                row = conn.execute(_digest_query(table, sql.SQL("TRUE")))
                digests[table] = str((row.fetchone() or ("",))[0])
        return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()

    def referenced_objects(self, case: CaseRef) -> set[str]:
        """Object keys that the tenant's rows reference (e.g. documents.object_key)."""
        keys: set[str] = set()
        with self._connect() as conn:
            classification, _, columns = self._plan(conn, strict=False)
            scope = _Scope(classification, case.tenant)
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
                keys.update(str(r[0]) for r in conn.execute(query))
        return keys


def column_schema(plan: ColumnPlan) -> ColumnSchema:
    return ColumnSchema(
        name=plan.column.name,
        pg_type=plan.column.pg_type,
        arrow_type=str(plan.arrow_type),
        nullable=not plan.column.not_null,
        as_text=plan.as_text,
    )
