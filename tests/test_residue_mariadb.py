"""Physical truth in MariaDB: a reader's open snapshot holds purge back, so the rows a
destruction deleted stay in the tables' tablespace files; the redo log and the row-based
binary log hold them too. The compaction rebuilds the tables online (ALTER TABLE ... FORCE)
and rotates the binary log: the tablespaces then hold none of the tenant's canaries, the logs
are residue dated by the server, and the neighbours' rows are byte-identical throughout.
Against Debian's mariadbd with its binary log on, as production servers run."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import MySQLdb
import pytest

from offboarding.core.signing import load_key_list
from offboarding.destruction.compaction import addendum_key, compact_destroyed, pending_cases
from offboarding.dev.services import MariaDBServer
from offboarding.evidence.archive import verify_archive
from offboarding.export.canaries import read_canaries
from offboarding.locations import get_location, lingering, physical_residue
from offboarding.locations.base import Residual
from offboarding.locations.mariadb import residue
from offboarding.stores import open_store
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

_TENANTS = ("acme", "acme-corp", "globex")


@pytest.fixture(scope="module")
def logged() -> Iterator[MariaDBServer]:
    """A MariaDB server keeping a row-based binary log (a week's, by its setting)."""
    server = MariaDBServer(
        options=["--log-bin=binlog", "--binlog-format=ROW", "--server-id=1",
                 "--binlog-expire-logs-seconds=604800"]
    ).start()  # fmt: skip
    yield server
    server.stop()


@pytest.fixture
def wiki(logged: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    """The wiki in the data map, each tenant's pages with words of its own."""
    database = wiki_db.create(logged)
    conn = MySQLdb.connect(host="127.0.0.1", port=logged.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute("UPDATE pages SET body = CONCAT('private notes of ', tenant_id, ' page ', "
                    "id, ': ', SHA2(CONCAT(tenant_id, id), 256))")  # fmt: skip
    conn.commit()
    conn.close()
    path = platform.settings.datamap
    assert path is not None
    path.write_text(wiki_db.declare(path.read_text(), logged, database))
    yield platform, database
    wiki_db.drop(logged, database)


def _neighbours(server: MariaDBServer, database: str) -> dict[str, dict[str, str]]:
    return {t: wiki_db.fingerprint(server, database, t) for t in _TENANTS if t != "acme"}


def _reader(server: MariaDBServer, database: str) -> MySQLdb.connections.Connection:
    """A neighbour's long report: a snapshot open on another table holds purge back, so the
    deleted rows stay on their pages (as on any busy server)."""
    conn = MySQLdb.connect(host="127.0.0.1", port=server.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SELECT COUNT(*) FROM currencies")
    return conn


@pytest.mark.slow
def test_the_rows_stay_in_the_files_until_the_tables_are_rebuilt(
    wiki: tuple[Platform, str], logged: MariaDBServer
) -> None:
    platform, database = wiki
    settings = platform.settings
    location = get_location("wiki", settings)
    assert isinstance(location, Residual)
    case = platform.case("acme")
    neighbours = _neighbours(logged, database)
    export_and_deliver(platform, case)
    canaries = read_canaries(settings, case)["wiki"]
    assert len(canaries) >= 6 and all(len(c.value) >= 16 for c in canaries)
    assert {c.table for c in canaries} >= {"wiki.pages"}

    report = _reader(logged, database)
    destroy_everything(platform, case)
    touched = ["wiki.pages", "wiki.spaces", "wiki.comments", "wiki.revisions", "wiki.links"]
    before = location.scan_residue(touched, canaries)
    # Deleted, yet on the pages, in the redo log and in the binary log: the scan can fail.
    assert before[residue.TABLESPACES.place].holding >= 6, before
    assert before["binary logs"].holding >= 6 and before[residue.LOGS.place].holding >= 1
    assert before[residue.TABLESPACES.place].files >= len(touched)
    report.rollback()
    report.close()
    assert _neighbours(logged, database) == neighbours

    assert sorted(location.compact(["public.posts", *touched])) == sorted(touched)
    after = location.scan_residue(touched, canaries)
    assert after[residue.TABLESPACES.place].holding == 0, after
    # Every tenant's revisions hold the same bytes: found, and set apart as live rows' own.
    assert after[residue.TABLESPACES.place].live, after
    assert after[residue.TABLESPACES.place].bytes > 0
    # The binary log holding the deletion is closed, not gone: dated by its expiry.
    assert after["binary logs"].holding >= 6 and after["binary logs"].files >= 2
    assert _neighbours(logged, database) == neighbours


@pytest.mark.slow
def test_the_compaction_run_closes_the_case_with_the_binary_log_dated(
    wiki: tuple[Platform, str], logged: MariaDBServer
) -> None:
    """The pipeline's path: canaries of both databases kept at inventory, one run rebuilding
    each, an addendum naming every place: pages purged, logs lingering with what ends them;
    planning and the certificate date the binary log by the server's own expiry."""
    platform, database = wiki
    settings = platform.settings
    location = get_location("wiki", settings)
    assert isinstance(location, Residual)
    sites = {s.place: s for s in location.residue_sites()}
    assert sites["binary logs"].lingers is not None and not sites["binary logs"].rewritten
    delay, _ = lingering(settings)
    assert delay >= sites["binary logs"].lingers
    case = platform.case("acme")
    neighbours = _neighbours(logged, database)
    export_and_deliver(platform, case)
    archived = destroy_everything(platform, case)
    with open_store(settings.store_url("archive")).open_read(archived.key) as handle:
        certificate = json.loads(handle.read())
    dated = {(r["system"], r["place"]): r["until"] for r in certificate["physical_residue"]}
    assert dated[("wiki", "binary logs")] and dated[("wiki", "tablespace pages")]
    due = {(r.system, r.place): r.until for r in physical_residue(settings, datetime.now(UTC))}
    assert due[("wiki", "binary logs")] and due[("wiki", residue.LOGS.place)] is None
    assert pending_cases(settings) == [case]

    run = compact_destroyed(settings)
    assert run.closed == {case.case_id: addendum_key(case)}, run.residue
    assert set(run.tables["wiki"]) >= {"wiki.pages", "wiki.comments"}
    with open_store(settings.store_url("archive")).open_read(addendum_key(case)) as handle:
        addendum = json.loads(handle.read())
    places = {(p["system"], p["place"]): p for p in addendum["places"]}
    pages = places[("wiki", "tablespace pages")]
    assert (pages["found"], pages["status"]) == (0, "purged") and pages["files"] >= 5
    binary = places[("wiki", "binary logs")]
    assert binary["status"] == "lingering" and "binlog_expire_logs_seconds" in binary["until"]
    assert places[("postgres", "heap, TOAST and index pages")]["found"] == 0
    assert _neighbours(logged, database) == neighbours
    report = verify_archive(
        open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
    )
    assert report.addenda == 1


@pytest.fixture(scope="module")
def encrypted() -> Iterator[MariaDBServer]:
    """A MariaDB server encrypting its tablespaces, redo log and binary log at rest (the
    file_key_management plugin Debian ships, with a key of the test's own)."""
    folder = Path(tempfile.mkdtemp(prefix="offboard-mariadb-keys-"))  # one mysql can traverse
    folder.chmod(0o755)
    keys = folder / "keys.txt"
    keys.write_text("1;" + "a1" * 32 + "\n")
    keys.chmod(0o644)
    server = MariaDBServer(
        options=["--plugin-load-add=file_key_management", f"--file-key-management-filename={keys}",
                 "--innodb-encrypt-tables=ON", "--innodb-encrypt-log=ON", "--log-bin=binlog",
                 "--binlog-format=ROW", "--server-id=1", "--encrypt-binlog=ON",
                 "--binlog-expire-logs-seconds=604800"]
    ).start()  # fmt: skip
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_files_encrypted_at_rest_are_reported_unverified_never_purged(
    platform: Platform, encrypted: MariaDBServer
) -> None:
    """On a server that encrypts its files, the deleted rows held back by a reader's snapshot
    are on the pages, yet the scan reads ciphertext and finds none: the places say so."""
    database = wiki_db.create(encrypted)
    path = platform.settings.datamap
    assert path is not None
    path.write_text(wiki_db.declare(path.read_text(), encrypted, database))
    settings = platform.settings
    location = get_location("wiki", settings)
    assert isinstance(location, Residual)
    case = platform.case("acme")
    export_and_deliver(platform, case)
    canaries = read_canaries(settings, case)["wiki"]
    report = _reader(encrypted, database)
    destroy_everything(platform, case)
    touched = ["wiki.pages", "wiki.spaces", "wiki.comments", "wiki.revisions", "wiki.links"]
    found = location.scan_residue(touched, canaries)
    report.rollback()
    report.close()
    for place in (residue.TABLESPACES.place, residue.LOGS.place, "binary logs"):
        assert found[place].holding == 0 and found[place].bytes > 0, place
        assert "encrypts these files at rest" in found[place].unreadable, place
    run = compact_destroyed(settings)
    assert run.closed == {case.case_id: addendum_key(case)}, run.residue
    with open_store(settings.store_url("archive")).open_read(addendum_key(case)) as handle:
        places = {(p["system"], p["place"]): p for p in json.loads(handle.read())["places"]}
    pages = places[("wiki", residue.TABLESPACES.place)]
    assert pages["status"] == "unverified" and "ciphertext" in pages["until"]
    wiki_db.drop(encrypted, database)
