"""The export read from a real hot-standby replica (`pg_basebackup -R`, streaming on loopback):
the freeze and the inventory stay on the primary, and the export waits until the replica has
replayed past the primary's position before it takes its snapshot."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import duckdb
import psycopg
import pytest

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.records import ExportResult
from offboarding.dev.services import PostgresCluster
from offboarding.export import export as stages
from tests.conftest import Platform

NOTE = "written on the primary just before the freeze"


@pytest.fixture
def replica(pg_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    standby = pg_cluster.replica().start()
    try:
        yield standby
    finally:
        standby.stop()


def _on(cluster: PostgresCluster, dsn: str) -> str:
    return re.sub(r"port=\d+", f"port={cluster.port}", dsn)


def _returned(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT tup_returned + tup_fetched FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_the_export_waits_for_the_replica_to_replay_the_freeze_then_reads_it(
    platform: Platform, replica: PostgresCluster
) -> None:
    replica_dsn = _on(replica, platform.dsn)
    settings = platform.settings.replace(export_replica_url=replica_dsn)
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    platform.query(
        "INSERT INTO posts (id, tenant_id, space_id, author_id, title, body, published_at) "
        "SELECT 90000001, 'acme', id, NULL, 'late', %s, now() FROM spaces "
        "WHERE tenant_id = 'acme' ORDER BY id LIMIT 1",
        NOTE,
    )
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    read_before = _returned(replica_dsn)
    outcome: dict[str, ExportResult | BaseException] = {}

    def export() -> None:
        try:
            outcome["result"] = stages.export_snapshot(settings, case, inventory)
        except BaseException as error:  # reported below
            outcome["result"] = error

    worker = threading.Thread(target=export)
    worker.start()
    worker.join(3.0)
    assert worker.is_alive() and not outcome  # waiting: the replica has not seen the freeze
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")
    worker.join(120)
    exported = outcome["result"]
    assert isinstance(exported, ExportResult), exported
    scratch = stages.scratch_dir(settings, case) / "export"
    posts = [p for p in exported.parts if p.table == "public.posts"]
    bodies = [
        row[0]
        for part in posts
        for row in duckdb.sql(f"SELECT body FROM '{scratch / part.path}'").fetchall()
    ]
    assert NOTE in bodies
    assert sum(p.rows or 0 for p in exported.parts if p.kind == "table") == inventory.total_rows
    assert _returned(replica_dsn) - read_before > inventory.total_rows  # the replica was read


def test_a_replica_that_does_not_catch_up_stops_the_export_saying_so(
    platform: Platform, replica: PostgresCluster
) -> None:
    replica_dsn = _on(replica, platform.dsn)
    settings = platform.settings.replace(
        export_replica_url=replica_dsn, export_replica_wait=timedelta(seconds=1)
    )
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    with pytest.raises(IntegrityError, match=r"has not replayed up to .* nothing was exported"):
        stages.export_snapshot(settings, case, inventory)
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")


def test_a_replica_url_that_is_no_standby_is_refused(platform: Platform) -> None:
    settings = platform.settings.replace(export_replica_url=platform.dsn)
    case = platform.case("acme")
    inventory = stages.take_inventory(settings, case)
    with pytest.raises(ConfigurationError, match=r"not a hot standby .*not in recovery"):
        stages.export_snapshot(settings, case, inventory)
