"""A MariaDB database of the platform (a wiki), against Debian's real mariadbd: classified from
its own catalogue, exported from one snapshot with its declared types (read back with DuckDB),
destroyed with the proof by construction while the neighbours keep every row."""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import MySQLdb
import pyarrow.parquet as pq
import pytest

from offboarding.core.errors import (
    DestructionIncompleteError,
    IsolationBreachError,
    UnclassifiedDataError,
)
from offboarding.dev.services import MariaDBServer
from offboarding.export import export as stages
from offboarding.locations import get_location
from offboarding.locations.mariadb import _Snapshot
from offboarding.locations.mariadb.catalogue import read_catalogue
from offboarding.locations.mariadb.snapshot import write_table
from offboarding.locations.relational import proof
from offboarding.stores import open_store
from offboarding.trail import AuditTrail
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver
from tests.test_locations import conforms


@pytest.fixture
def wiki(mariadb: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    """The platform with a MariaDB wiki of three tenants in its data map."""
    database = wiki_db.create(mariadb)
    path = platform.settings.datamap
    assert path is not None
    path.write_text(wiki_db.declare(path.read_text(), mariadb, database))
    yield platform, database
    wiki_db.drop(mariadb, database)


def test_the_wiki_is_classified_exported_with_its_types_and_destroyed(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    neighbours = {t: wiki_db.fingerprint(mariadb, database, t) for t in ("acme-corp", "globex")}
    case = platform.case("acme")
    inventory, _, bundle = export_and_deliver(platform, case)
    rows = {t.qualified: (t.scope, t.rows) for t in inventory.tables if t.schema_name == "wiki"}
    assert rows == {
        "wiki.spaces": ("tenant", 2), "wiki.pages": ("tenant", 6), "wiki.links": ("tenant", 6),
        "wiki.samples": ("tenant", 2), "wiki.revisions": ("derived", 12),
        "wiki.comments": ("derived", 18),
    }  # fmt: skip
    wiki = next(loc for loc in inventory.locations if loc.location == "wiki")
    assert wiki.global_tables == {"wiki.currencies": "ISO 4217 codes"}

    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        archive.extractall(bundle.parent / "unzipped")
    samples = next(t for t in manifest["tables"] if t["name"] == "wiki.samples")
    declared = {c["name"]: c["pg_type"] for c in samples["columns"]}
    assert declared["big"] == "bigint(20) unsigned" and declared["amount"] == "decimal(20,6)"
    path = bundle.parent / "unzipped" / samples["parts"][0]
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    cursor = reader.execute(f"SELECT * FROM '{path}' ORDER BY id LIMIT 1")
    names = [d[0] for d in cursor.description]
    values = dict(zip(names, cursor.fetchone() or (), strict=True))
    assert values["big"] == 18446744073709551615 and values["utiny"] == 255
    assert values["amount"] == Decimal("-12345678901234.123456")
    # TIME spans -838:59:59..838:59:59: an Arrow duration, which Parquet keeps as an int64
    # of microseconds (the manifest says duration[us]).
    assert values["clock"] == timedelta(hours=-838, minutes=-59, seconds=-59) // timedelta(
        microseconds=1
    )
    assert {c["name"]: c["arrow_type"] for c in samples["columns"]}["clock"] == "duration[us]"
    assert values["flags"] == b"\x81" and values["raw"] == b"\x00\xff"
    assert values["tags"] == "x,y" and json.loads(values["doc"]) == {"k": [1, 2]}
    assert str(values["day"]) == "2024-02-29" and values["yr"] == 2155
    pages = next(t for t in manifest["tables"] if t["name"] == "wiki.pages")
    page_path = bundle.parent / "unzipped" / pages["parts"][0]
    stamps = reader.execute(f"SELECT created, updated, title FROM '{page_path}' LIMIT 1").fetchone()
    assert stamps is not None and str(stamps[0]) == "2024-05-01 12:00:00.123456"
    assert stamps[1].utcoffset() == timedelta(0) and stamps[2].endswith("Zoë")
    assert reader.execute(f"SELECT count(*) FROM '{page_path}'").fetchone() == (6,)

    archived = destroy_everything(platform, case)
    assert all(v.startswith("0:") for v in wiki_db.fingerprint(mariadb, database, "acme").values())
    assert {
        t: wiki_db.fingerprint(mariadb, database, t) for t in ("acme-corp", "globex")
    } == neighbours
    assert get_location("wiki", platform.settings).verify(case).items == 0
    store = open_store(platform.settings.store_url("archive"))
    with store.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(loc for loc in certificate["locations"] if loc["location"] == "wiki")
    assert evidence["items_before"] == evidence["items_removed"] == 46
    assert "each deleted row's owner was returned and checked" in evidence["isolation"]
    assert {s["name"]: s["status"] for s in certificate["systems"]}["wiki"] == "verified"


def test_a_case_twin_tenant_is_another_tenant_under_the_default_collation(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    """MariaDB's default utf8mb4_general_ci compares `acme` equal to `ACME`: the inventory
    counted ACME's rows as acme's and the export held them."""
    platform, database = wiki
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT @@collation_database")
        assert cur.fetchone() == ("utf8mb4_general_ci",)  # what operators get by default
    wiki_db.run(
        conn,
        "INSERT INTO spaces VALUES (900001, 'ACME', 'Their space');"
        "INSERT INTO pages (id, tenant_id, space_id, title, body, created) "
        "VALUES (900002, 'ACME', 900001, 'Their page', 'theirs', NOW());"
        "INSERT INTO revisions (id, page_id, n) VALUES (900003, 900002, 1)",
    )
    conn.close()
    twin = wiki_db.fingerprint(mariadb, database, "ACME")
    case = platform.case("acme")
    inventory, _, bundle = export_and_deliver(platform, case)
    rows = {t.qualified: t.rows for t in inventory.tables if t.schema_name == "wiki"}
    assert (rows["wiki.spaces"], rows["wiki.pages"], rows["wiki.revisions"]) == (2, 6, 12)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(bundle.parent / "twin")
    reader = duckdb.connect()
    for table in ("spaces", "pages"):
        parts = bundle.parent / "twin" / "tables" / f"wiki.{table}" / "*.parquet"
        owners = reader.execute(f"SELECT DISTINCT tenant_id FROM '{parts}'").fetchall()
        assert owners == [("acme",)]
    destroy_everything(platform, case)
    assert wiki_db.fingerprint(mariadb, database, "ACME") == twin


def test_another_tenants_row_referencing_the_tenant_stops_before_anything_is_deleted(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    wiki_db.run(
        conn,
        "INSERT INTO links SELECT 999999, 'globex', MIN(id) FROM pages WHERE tenant_id = 'acme'",
    )
    conn.close()
    before = wiki_db.fingerprint(mariadb, database, "acme")
    location = get_location("wiki", platform.settings)
    with pytest.raises(IsolationBreachError, match=r"wiki.links through links_page .*'globex'"):
        location.destroy(platform.case("acme"))
    assert wiki_db.fingerprint(mariadb, database, "acme") == before


def test_a_breach_in_mariadb_stops_the_case_before_any_system_is_touched(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    """The isolation check runs in every system that has one before the first destroy: a
    neighbour's row in the wiki referencing the tenant's page stops the case while the
    PostgreSQL rows, the files, the cache and the delivered bundle are all still there."""
    platform, database = wiki
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    wiki_db.run(
        conn,
        "INSERT INTO links SELECT 999999, 'globex', MIN(id) FROM pages WHERE tenant_id = 'acme'",
    )
    conn.close()
    before = platform.fingerprint("acme")
    wiki_before = wiki_db.fingerprint(mariadb, database, "acme")
    with pytest.raises(IsolationBreachError, match=r"wiki.links through links_page .*'globex'"):
        destroy_everything(platform, case)
    assert platform.fingerprint("acme") == before
    assert wiki_db.fingerprint(mariadb, database, "acme") == wiki_before
    assert bundle.exists()
    state = AuditTrail.open(platform.settings, case).state()
    assert not state.destroyed and state.incidents


def test_tables_the_pipeline_cannot_read_by_key_stop_the_case_until_declared(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    wiki_db.run(
        conn,
        "CREATE TABLE search_cache (id INT PRIMARY KEY, tenant_id VARCHAR(128)) ENGINE=MyISAM;"
        "CREATE TABLE history (id INT PRIMARY KEY, tenant_id VARCHAR(128)) WITH SYSTEM VERSIONING;"
        "CREATE TABLE stray (id INT PRIMARY KEY, note TEXT);"
        "CREATE TABLE `rates_%` (id INT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL)",
    )
    conn.close()
    dry = stages.dry_run_inventory(platform.settings, "acme")
    listed = next(loc for loc in dry.locations if loc.location == "wiki").unclassified
    assert "wiki.stray" in listed
    # mysqlclient would read its % as a placeholder: stopped, named, never half-handled.
    assert "wiki.rates_% (a % in its own or a column's name: no statement can name it)" in listed
    assert "wiki.search_cache (engine MyISAM: no transactions, no consistent snapshot)" in listed
    assert "wiki.history (system-versioned: deleted rows stay in its history)" in listed
    with pytest.raises(UnclassifiedDataError, match="search_cache"):
        stages.take_inventory(platform.settings, platform.case("acme"))


def test_datamap_check_reaches_the_wiki(wiki: tuple[Platform, str]) -> None:
    platform, _ = wiki
    assert get_location("wiki", platform.settings).reach().startswith("MariaDB 10.11")  # type: ignore[attr-defined]


def test_the_readers_share_one_snapshot_taken_while_commits_wait(
    wiki: tuple[Platform, str],
    mariadb: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two connections read the export (OFFBOARD_EXPORT_WORKERS=2). Their snapshots start
    while commits are blocked, so no commit falls between them; a commit after that is in
    no part."""
    platform, database = wiki

    def writer() -> MySQLdb.connections.Connection:
        conn = MySQLdb.connect(
            host="127.0.0.1", port=mariadb.port, user="offboard", database=database
        )
        wiki_db.run(conn, "SET SESSION lock_wait_timeout = 1")
        return conn

    blocked: list[str] = []
    release = _Snapshot._release

    def release_after_a_commit_tried(self: _Snapshot, leader: object) -> None:
        conn = writer()
        try:
            wiki_db.run(
                conn, "INSERT INTO spaces VALUES (777001, 'acme', 'written during the block')"
            )
        except MySQLdb.OperationalError as error:
            blocked.append(str(error.args[1]))
        conn.close()
        release(self, leader)  # type: ignore[arg-type]

    monkeypatch.setattr(_Snapshot, "_release", release_after_a_commit_tried)
    location = get_location("wiki", platform.settings)
    case = platform.case("acme")
    inventory = location.inventory(case)

    def commit_once_the_snapshot_is_taken(done: int, total: int, rows: int) -> None:
        if done == 0:
            conn = writer()
            wiki_db.run(conn, "INSERT INTO spaces VALUES (777002, 'acme', 'written after')")
            conn.close()

    exported = location.export(case, inventory, tmp_path, commit_once_the_snapshot_is_taken)
    assert blocked and "Lock wait timeout" in blocked[0]
    assert {p.table: p.rows for p in exported.parts} == {
        t.qualified: t.rows for t in inventory.tables
    }
    reader = duckdb.connect()
    spaces = tmp_path / "tables" / "wiki.spaces" / "part-00000.parquet"
    assert reader.execute(f"SELECT count(*) FROM '{spaces}' WHERE id >= 777000").fetchone() == (0,)
    conn = writer()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM spaces WHERE id = 777002")
        assert cur.fetchone() == (1,)
    conn.close()


def test_a_row_written_after_the_check_that_would_cascade_stops_its_batch(
    wiki: tuple[Platform, str], mariadb: MariaDBServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """revisions.page_id is ON DELETE CASCADE: a revision written after the references were
    checked would go silently with its page. Each batch locks its rows, checks again, and
    stops instead; the page stays."""
    platform, database = wiki
    proved = proof.prove

    def check_then_write(*args: Any, **kwargs: Any) -> proof.IsolationProof:
        result = proved(*args, **kwargs)
        conn = MySQLdb.connect(
            host="127.0.0.1", port=mariadb.port, user="offboard", database=database
        )
        wiki_db.run(
            conn,
            "INSERT INTO revisions SELECT 888001, MIN(id), 9, NULL, NULL FROM pages "
            "WHERE tenant_id = 'acme'",
        )
        conn.close()
        return result

    monkeypatch.setattr(proof, "prove", check_then_write)
    location = get_location("wiki", platform.settings)
    late = r"written since the check .* revisions_ibfk_1 \(ON DELETE CASCADE\)"
    with pytest.raises(DestructionIncompleteError, match=late):
        location.destroy(platform.case("acme"))
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM revisions WHERE id = 888001")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT COUNT(*) FROM pages WHERE tenant_id = 'acme'")
        assert cur.fetchone() == (6,)
    conn.close()


def test_the_wiki_passes_the_location_conformance_suite(wiki: tuple[Platform, str]) -> None:
    platform, _ = wiki
    case = platform.case("acme")
    export_and_deliver(platform, case)
    conforms(get_location("wiki", platform.settings), case, holds_data=True, estimated=True)


def test_parsed_columns_hold_what_the_driver_decodes_and_zero_dates_stay_text(
    mariadb: MariaDBServer, tmp_path: Path
) -> None:
    """Decimals, floats, dates and timestamps are parsed by Arrow from the server's text, a
    batch at a time. Across several batches, with NULLs and 65-digit decimals (past Arrow's
    128-bit ones), the Parquet file read back holds what mysqlclient's own decoders give for
    the same rows. A column holding a zero date (which no calendar has: the driver gives
    None, a value lost) is kept as the server's text instead, marked so."""
    database = f"types_{uuid.uuid4().hex[:10]}"
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", autocommit=True)
    wiki_db.run(conn, f"""
        SET SESSION sql_mode = ''; CREATE DATABASE {database}; USE {database};
        CREATE TABLE kinds (id INT PRIMARY KEY, tenant_id VARCHAR(8) NOT NULL,
          amount DECIMAL(38, 10), small_amount DECIMAL(5, 0), huge DECIMAL(65, 30), f FLOAT,
          d DOUBLE, day DATE, at DATETIME(6), whole DATETIME, stamp TIMESTAMP(3) NULL);
        INSERT INTO kinds SELECT n, IF(n % 3, 'a', 'b'),
          IF(n % 7, (n - 12500) * 1234567.0123456789, NULL), n % 99999 - 49999,
          CAST(-n AS DECIMAL(65, 30)) * 1000000000000000000000000000000 - n / 7,
          IF(n % 11, n / 3e7, NULL), IF(n % 13, -n * 1.0e200 / 7, NULL),
          IF(n = 20003, '0000-00-00', IF(n % 17, DATE '1000-01-01' + INTERVAL n DAY, NULL)),
          TIMESTAMP '1970-01-01 00:00:00' + INTERVAL n * 1000003 MICROSECOND,
          IF(n = 20000, '0000-00-00 00:00:00', TIMESTAMP '9999-12-31 00:00:00' - INTERVAL n HOUR),
          IF(n % 19, TIMESTAMP '2038-01-19 03:14:07' - INTERVAL n MINUTE, NULL)
        FROM (SELECT CAST(seq AS SIGNED) AS n FROM seq_1_to_36000) s
    """)  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {database}.kinds WHERE tenant_id = 'a' ORDER BY id")
        expected = cur.fetchall()
    catalogue = read_catalogue(conn, "types", database)
    table = catalogue.tables[0]
    reader = MySQLdb.connect(
        host="127.0.0.1", port=mariadb.port, user="offboard", database=database,
        charset="utf8mb4", init_command="SET time_zone = '+00:00'",
    )  # fmt: skip
    target = tmp_path / "kinds.parquet"
    rows, schemas = write_table(
        "types", reader, table, catalogue.columns[table.name], "t.tenant_id = %(tenant)s",
        {"tenant": "a"}, target, row_group_rows=10_000,
    )  # fmt: skip
    assert reader.converter[MySQLdb.constants.FIELD_TYPE.NEWDECIMAL] is Decimal  # given back
    reader.close()
    wiki_db.run(conn, f"DROP DATABASE {database}")
    conn.close()
    assert rows == len(expected) == 24_000
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    got = duck.execute(f"SELECT * EXCLUDE (huge) FROM '{target}' ORDER BY id").fetchall()
    # DuckDB's decimals stop at 38 digits: the 65-digit column is read back by Arrow's reader.
    assert pq.read_table(target, columns=["huge"])["huge"].to_pylist() == [r[4] for r in expected]
    assert [s.name for s in schemas if s.as_text] == ["day", "whole"]
    assert {s.arrow_type for s in schemas if s.as_text} == {"string"}
    zero = {row[0]: i for i, row in enumerate(expected) if row[0] in (20000, 20003)}
    assert expected[zero[20003]][7] is None and got[zero[20003]][6] == "0000-00-00"
    assert expected[zero[20000]][9] is None and got[zero[20000]][8] == "0000-00-00 00:00:00"
    for n, (want, have) in enumerate(zip(expected, got, strict=True)):
        stamp = have[9].replace(tzinfo=None) if have[9] is not None else None
        assert (*want[:4], want[6], want[8]) == (*have[:4], have[5], have[7])
        if n not in zero.values():
            assert have[6] == (None if want[7] is None else str(want[7]))
            assert have[8] == (None if want[9] is None else str(want[9]))
        assert want[10] == stamp
        assert want[5] is None or have[4] == pytest.approx(want[5], rel=1e-6)  # FLOAT: 4 bytes
