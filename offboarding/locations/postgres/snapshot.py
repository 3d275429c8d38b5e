"""The export: every table of the tenant from one snapshot, in parallel, as Parquet parts.

The leader (`plan_export`) exports its snapshot (pg_export_snapshot), plans the parts and holds
the snapshot open until every part is written. Parts run either on this process's threads
(`export_tenant`: each thread imports the snapshot once on an ADBC connection of its own and
reads all its parts there, `SnapshotReaders`) or one by one on a distributed engine's workers
(`export_part`: a connection per part), the way `pg_dump --jobs` shares one snapshot. Rows
travel as Arrow record batches (binary COPY decoded in C++) straight into Parquet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import ColumnPlan, PgColumn, plan_column, select_query, write_parquet
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.names import table_folder
from offboarding.core.records import CaseRef, ExportedPart, LocationInventory, TableItem
from offboarding.datamap import platform_shape
from offboarding.locations.base import (
    ExportPlan,
    ExportProgress,
    LocationExport,
    PartSink,
    PartTask,
    ScratchSink,
)
from offboarding.locations.postgres.catalog import classify, column_schema, ident
from offboarding.locations.postgres.scope import Scope

__all__ = [
    "ExportJob",
    "SnapshotReaders",
    "export_part",
    "export_tenant",
    "leader_snapshot",
    "plan_export",
    "plan_jobs",
    "run_job",
    "source_dsn",
    "wait_for_replay",
]

PHYSICAL_ORDER_SETTINGS = (
    ("enable_indexscan", "off"),
    ("enable_indexonlyscan", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("synchronize_seqscans", "off"),
)


class SnapshotReaders:
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
class ExportJob:
    """What one part reads: rendered SQL and the columns' Parquet plans (picklable)."""

    table: str
    relative: str
    plans: list[ColumnPlan]
    query: str
    physical: bool = False  # rows in physical order: only scans that keep it are allowed


def array_dimensions(
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


def mostly_distinct(conn: psycopg.Connection[Any], item: TableItem) -> set[str]:
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


class _Tally:
    """Counts parts and rows as workers finish them, for whoever watches the export."""

    def __init__(self, total: int, progress: ExportProgress | None) -> None:
        self.total, self.progress = total, progress
        self.done = self.rows = 0
        self._lock = threading.Lock()
        if progress is not None:
            progress(0, total, 0)

    def part(self, part: ExportedPart) -> ExportedPart:
        with self._lock:
            self.done += 1
            self.rows += part.rows or 0
            if self.progress is not None:
                self.progress(self.done, self.total, self.rows)
        return part


def export_tenant(
    settings: Settings,
    case: CaseRef,
    inventory: LocationInventory,
    scratch: Path,
    progress: ExportProgress | None = None,
) -> LocationExport:
    """Every table from one snapshot, in this process: `export_workers` threads each import
    the snapshot once, on a connection of their own, and write Parquet parts (a table, or a
    range of a large one) into scratch until none are left."""
    sink = ScratchSink(scratch)
    with plan_export(settings, case, inventory) as plan:
        readers = SnapshotReaders(source_dsn(settings), plan.snapshot)
        tally = _Tally(len(plan.tasks), progress)
        try:
            with ThreadPoolExecutor(settings.export.workers) as pool:
                parts = list(
                    pool.map(lambda task: tally.part(run_job(settings, readers, task, sink)),
                             plan.tasks)
                )  # fmt: skip
        finally:
            readers.close()
    return LocationExport(parts=parts, snapshot_time=plan.snapshot_time)


def export_part(settings: Settings, task: PartTask, sink: PartSink) -> ExportedPart:
    """One part on a worker anywhere (the distributed engine): its own connection imports the
    coordinator's snapshot for this part only, and closes, so no worker keeps a snapshot
    alive once the coordinator has finished."""
    readers = SnapshotReaders(source_dsn(settings), task.snapshot)
    try:
        return run_job(settings, readers, task, sink)
    finally:
        readers.close()


def source_dsn(settings: Settings) -> str:
    """Where the export reads: the replica when one is configured, else the primary."""
    return settings.export.replica_url or settings.require_database()


@contextmanager
def leader_snapshot(
    settings: Settings,
) -> Iterator[tuple[psycopg.Connection[Any], str, datetime]]:
    """A read-only REPEATABLE READ transaction on the export's source (the replica once it
    has replayed past the primary, if one is configured), its snapshot exported for other
    connections to import, and the snapshot's time. Open until the context exits."""
    source = source_dsn(settings)
    if settings.export.replica_url:
        wait_for_replay(settings.require_database(), source, settings.export.replica_wait)
    with psycopg.connect(source) as leader:
        leader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        leader.read_only = True
        with leader.transaction():
            row = leader.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
            assert row is not None
            yield leader, str(row[0]), row[1]


@contextmanager
def plan_export(
    settings: Settings, case: CaseRef, inventory: LocationInventory
) -> Iterator[ExportPlan]:
    """Take the snapshot (on the replica once it has replayed past the primary, if one is
    configured), export it (pg_export_snapshot) and plan the parts in it. The transaction
    stays open, so the snapshot stays importable, until the context exits."""
    with leader_snapshot(settings) as (leader, snapshot_id, snapshot_time):
        classification, _, columns = classify(leader, settings)
        scope = Scope(classification, case.tenant, platform_shape(settings).shared_rows)
        tasks: list[PartTask] = []
        for item in inventory.tables:
            if item.qualified not in columns:
                raise IntegrityError(
                    f"table {item.qualified} of the inventory disappeared before the "
                    f"export of tenant {case.tenant!r}: take the inventory again"
                )
            tasks.extend(
                PartTask(location="postgres", snapshot=snapshot_id, relative=job.relative,
                         job=job)
                for job in plan_jobs(settings, leader, item, columns[item.qualified], scope)
            )  # fmt: skip
        yield ExportPlan(snapshot=snapshot_id, snapshot_time=snapshot_time, tasks=tasks)


def wait_for_replay(
    primary_dsn: str, replica_dsn: str, patience: timedelta, *, poll: float = 0.2
) -> str:
    """Wait until the replica has replayed the primary's WAL up to where it is now, so that a
    snapshot taken on the replica sees every transaction the primary committed before: the
    freeze, and every write before it. Return the position waited for.

    The replica must be a hot standby of the same cluster (same system identifier): a
    replica of another database, or a promoted one, would export something else."""
    with psycopg.connect(primary_dsn, autocommit=True) as primary:
        row = primary.execute(
            "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system()), "
            "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END"
        ).fetchone()
    assert row is not None
    in_recovery, system, target = row
    if in_recovery:
        raise ConfigurationError(
            "OFFBOARD_DATABASE_URL points at a standby: it must be the primary, where the "
            "freeze is written (OFFBOARD_EXPORT_REPLICA_URL names the replica)"
        )
    deadline = time.monotonic() + patience.total_seconds()
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        while True:
            row = replica.execute(
                "SELECT pg_is_in_recovery(), "
                "(SELECT system_identifier FROM pg_control_system()), "
                "pg_last_wal_replay_lsn() >= %s::pg_lsn, "
                "pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint",
                (target, target),
            ).fetchone()
            assert row is not None
            standby, replica_system, caught_up, behind = row
            if not standby or replica_system != system:
                raise ConfigurationError(
                    "OFFBOARD_EXPORT_REPLICA_URL is not a hot standby of the platform database "
                    f"({'another cluster' if standby else 'not in recovery'}): give a "
                    "streaming replica of OFFBOARD_DATABASE_URL, or unset it to read the primary"
                )
            if caught_up:
                return str(target)
            if time.monotonic() > deadline:
                raise IntegrityError(
                    f"the replica has not replayed up to {target} after {patience} (still "
                    f"{behind or 0:,} bytes behind, or replay is paused): nothing was "
                    "exported. Check the replica's replication, then retry; or unset "
                    "OFFBOARD_EXPORT_REPLICA_URL to read the primary"
                )
            time.sleep(poll)


def plan_jobs(
    settings: Settings,
    leader: psycopg.Connection[Any],
    item: TableItem,
    pg_columns: list[PgColumn],
    scope: Scope,
) -> list[ExportJob]:
    """One job per table, or several for a table above `export_split_rows` rows or
    `export_split_bytes` bytes of the tenant's (wide rows count by their weight, not their
    number). Runs in the leader's snapshot, so ranges and types match it.

    Rows go out in a deterministic order. Small and derived tables: ORDER BY the primary
    key; a large derived table is split into key ranges (a single integer key's span in equal
    slices, any other key at its quantiles). Large tenant-scoped or schema tables: block
    (ctid) ranges read in physical order, which costs the server a third less than key ranges
    with ORDER BY (measured); `run_job` rules out the plans whose order is not physical.
    """
    table, where = ident(item.qualified), scope.where(item.qualified)
    dimensions = array_dimensions(leader, table, pg_columns, where)
    distinct = mostly_distinct(leader, item)
    plans = [
        replace(
            plan_column(c, dimensions=dimensions.get(c.name, 1)),
            repetitive=c.name not in distinct,
        )
        for c in pg_columns
    ]
    workers = settings.export.workers
    needed = max(
        -(-item.rows // settings.export.split_rows),
        -(-item.bytes_estimate // settings.export.split_bytes),
        1,
    )
    # Whole rounds of workers, so no worker idles while another finishes alone.
    count = min(-(-max(needed, workers) // workers) * workers, 1000)
    ranges: list[sql.Composable] = [sql.SQL("TRUE")]
    physical = needed > 1 and item.scope in ("tenant", "schema")
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
        ranges.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({(count - 1) * step},0)")))
    elif key and key_type in ("int2", "int4", "int8") and needed > 1:
        ranges = _integer_ranges(leader, table, where, key, count) or ranges
    elif item.primary_key and needed > 1:
        ranges = _key_ranges(leader, table, where, item, pg_columns, count) or ranges
    order = [] if physical else item.primary_key
    return [
        ExportJob(
            table=item.qualified,
            relative=f"{table_folder(item.qualified)}part-{n:05d}.parquet",
            plans=plans,
            query=select_query(
                table,
                plans,
                sql.SQL("({}) AND {}").format(where, part_range),
                order,
                physical=physical,
            ).as_string(),
            physical=physical,
        )
        for n, part_range in enumerate(ranges)
    ]


def _integer_ranges(
    leader: psycopg.Connection[Any],
    table: sql.Composable,
    where: sql.Composable,
    key: str,
    count: int,
) -> list[sql.Composable]:
    """`count` equal slices of a single integer key's span: two index lookups."""
    bounds = leader.execute(
        sql.SQL("SELECT min({k}), max({k}) FROM {t} WHERE {w}").format(
            k=sql.Identifier(key), t=table, w=where
        )
    ).fetchone()
    if not bounds or bounds[0] is None:
        return []
    low, high = int(bounds[0]), int(bounds[1])
    step = -(-(high - low + 1) // count)
    return [
        sql.SQL("{k} >= {lo} AND {k} < {hi}").format(
            k=sql.Identifier(key), lo=sql.Literal(start), hi=sql.Literal(start + step)
        )
        for start in range(low, high + 1, step)
    ]


def _key_ranges(
    leader: psycopg.Connection[Any],
    table: sql.Composable,
    where: sql.Composable,
    item: TableItem,
    pg_columns: list[PgColumn],
    count: int,
) -> list[sql.Composable]:
    """Ranges of any primary key (composite, text, uuid, dates...) holding about the same
    number of the tenant's rows: one ordered pass over the keys picks every n-th as a
    boundary. Boundaries travel as text and are cast back to the column's declared type, and
    rows compare as rows, so ranges follow the key's own order (its collation included) and
    every row falls in exactly one."""
    types = {c.name: c.pg_type for c in pg_columns}
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in item.primary_key)
    step = max(-(-item.rows // count), 1)
    boundaries = leader.execute(
        sql.SQL(
            "SELECT {texts} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS n "
            "FROM {t} WHERE {w}) s WHERE n > 1 AND n % {step} = 1 ORDER BY n"
        ).format(
            texts=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k))
                                     for k in item.primary_key),
            keys=keys, t=table, w=where, step=sql.Literal(step),
        )
    ).fetchall()  # fmt: skip
    if not boundaries:
        return []
    row = sql.SQL("ROW({})").format(keys)
    values = [
        sql.SQL("ROW({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(types[name]))
                for name, value in zip(item.primary_key, boundary, strict=True)
            )
        )
        for boundary in boundaries
    ]
    ranges: list[sql.Composable] = [sql.SQL("{} < {}").format(row, values[0])]
    ranges += [
        sql.SQL("{r} >= {lo} AND {r} < {hi}").format(r=row, lo=low, hi=high)
        for low, high in pairwise(values)
    ]
    ranges.append(sql.SQL("{} >= {}").format(row, values[-1]))
    return ranges


def run_job(
    settings: Settings, readers: SnapshotReaders, task: PartTask, sink: PartSink
) -> ExportedPart:
    """One Parquet part, read on this worker's connection in the leader's snapshot."""
    job: ExportJob = task.job
    cursor = readers.cursor()
    # Sequential, TID-range and bitmap scans return rows in physical order; an index scan
    # (ordered by its key), a parallel plan or a synchronised seqscan (starting mid-table)
    # would not, and the output must not depend on the plan. Parts ordered by their key
    # get the server's defaults back, so they may use the key's index.
    for setting, physical_value in PHYSICAL_ORDER_SETTINGS:
        cursor.execute(f"SET LOCAL {setting} TO {physical_value if job.physical else 'DEFAULT'}")
    cursor.execute(job.query)
    rows = write_parquet(
        cursor.fetch_record_batch(),
        job.plans,
        sink.target(job.relative),
        settings.export.parquet_row_group_rows,
    )
    crash_point("export:part-written")
    source, size, digest = sink.commit(job.relative)
    return ExportedPart(
        path=job.relative, source=source, kind="table", table=job.table, rows=rows,
        columns=[column_schema(p) for p in job.plans], size=size, sha256=digest,
    )  # fmt: skip
