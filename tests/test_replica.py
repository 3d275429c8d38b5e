"""The export read from a real hot-standby replica (`pg_basebackup -R`, streaming on loopback):
the freeze and the inventory stay on the primary, and the export waits until the replica has
replayed past the primary's position before it takes its snapshot."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import duckdb
import psycopg
import pytest

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.records import ExportResult
from offboarding.destruction.compaction import addendum_key, compact_destroyed
from offboarding.dev.services import PostgresCluster
from offboarding.export import export as stages
from offboarding.export.canaries import read_canaries
from offboarding.locations import get_location
from offboarding.locations.base import Residual
from offboarding.locations.postgres.residue import REPLICA
from offboarding.stores import open_store
from offboarding.trail.audit import AuditTrail
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

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


@pytest.mark.slow
def test_the_compaction_clears_the_replicas_pages_too(
    platform: Platform, replica: PostgresCluster
) -> None:
    """A hot standby holds the deleted rows on its own pages (it replayed the deletion); the
    compaction's rewrite replays there too, and the scan reads the standby's own files."""
    settings = platform.settings.replace(export_replica_url=_on(replica, platform.dsn))
    case = platform.case("acme")
    export_and_deliver(platform, case, settings)
    destroy_everything(platform, case, settings)
    inventory = AuditTrail.open(settings, case).state().inventory
    assert inventory is not None
    touched = [t for t, rows in inventory.tables.items() if rows]
    location = get_location("postgres", settings)
    assert isinstance(location, Residual)
    assert REPLICA in location.residue_sites()
    canaries = read_canaries(settings, case)["postgres"]
    before = location.scan_residue(touched, canaries)
    assert before[REPLICA.place].holding >= 8, before[REPLICA.place].summary()

    run = compact_destroyed(settings)
    assert run.closed == {case.case_id: addendum_key(case)}, run.residue
    with open_store(settings.store_url("archive")).open_read(addendum_key(case)) as handle:
        places = {p["place"]: p for p in json.loads(handle.read())["places"]}
    on_replica = places[REPLICA.place]
    assert (on_replica["found"], on_replica["status"]) == (0, "purged")
    assert on_replica["files"] >= len(touched) and on_replica["bytes"] > 0
