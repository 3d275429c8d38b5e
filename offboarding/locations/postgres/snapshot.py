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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import write_parquet
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef, ExportedPart, LocationInventory
from offboarding.datamap import platform_shape
from offboarding.locations.base import (
    ExportPlan,
    ExportProgress,
    LocationExport,
    PartSink,
    PartTask,
    ScratchSink,
)
from offboarding.locations.postgres.catalog import classify, column_schema
from offboarding.locations.postgres.parts import ExportJob, array_dimensions, plan_jobs
from offboarding.locations.postgres.scope import Scope

__all__ = [
    "ExportJob",
    "SnapshotReaders",
    "array_dimensions",
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

    def cursor(self, *, physical: bool = False) -> Any:
        """This worker's cursor, its plans kept to rows in physical order or not. Sequential,
        TID-range and bitmap scans return rows in physical order; an index scan (ordered by
        its key), a parallel plan or a synchronised seqscan (starting mid-table) would not,
        and the output must not depend on the plan. Parts ordered by their key get the
        server's defaults, so they may use the key's index. The settings last for the
        reader's transaction, so they are sent only when a part needs the other kind."""
        cursor = self._open()
        if getattr(self._local, "physical", False) != physical:
            for setting, physical_value in PHYSICAL_ORDER_SETTINGS:
                cursor.execute(
                    f"SET LOCAL {setting} TO {physical_value if physical else 'DEFAULT'}"
                )
            self._local.physical = physical
        return cursor

    def _open(self) -> Any:
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


def run_job(
    settings: Settings, readers: SnapshotReaders, task: PartTask, sink: PartSink
) -> ExportedPart:
    """One Parquet part, read on this worker's connection in the leader's snapshot."""
    job: ExportJob = task.job
    cursor = readers.cursor(physical=job.physical)
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
