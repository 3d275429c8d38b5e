"""The relational core's shared-rows policy in MariaDB, as in PostgreSQL (tests/test_isolation):
a wiki backlink from one of acme's pages to one of globex's is neither tenant's alone. The case
stops until the data map's [systems.wiki] shared_rows says what to do with such rows; then it
is left (detached by its key's SET NULL), deleted with the tenant, or exported and kept."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import MySQLdb
import pytest

from offboarding.core.errors import IsolationBreachError, SharedRowsError
from offboarding.dev.services import MariaDBServer
from offboarding.export import export as stages
from offboarding.locations import get_location
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

# Every backlink: (id, from_page's tenant, to_page's tenant). 801 is acme's alone, 802 links
# acme's page to globex's (shared), 803 is globex's alone.
_BACKLINKS = {801: ("acme", "acme"), 802: ("acme", "globex"), 803: ("globex", "globex")}


def _backlinks(mariadb: MariaDBServer, database: str, on_delete: str) -> None:
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    wiki_db.run(
        conn,
        "CREATE TABLE backlinks (id BIGINT PRIMARY KEY, from_page BIGINT NULL, to_page BIGINT "
        f"NULL, FOREIGN KEY (from_page) REFERENCES pages (id) ON DELETE {on_delete}, "
        f"FOREIGN KEY (to_page) REFERENCES pages (id) ON DELETE {on_delete})",
    )
    for key, (source, target) in _BACKLINKS.items():
        wiki_db.run(
            conn,
            f"INSERT INTO backlinks SELECT {key}, (SELECT MIN(id) FROM pages WHERE BINARY "
            f"tenant_id = '{source}'), (SELECT MAX(id) FROM pages WHERE BINARY tenant_id = "
            f"'{target}')",
        )
    conn.close()


def _rows(mariadb: MariaDBServer, database: str) -> dict[int, tuple[object, object]]:
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT id, from_page, to_page FROM backlinks ORDER BY id")
        found = {int(r[0]): (r[1], r[2]) for r in cur.fetchall()}
    conn.close()
    return found


@pytest.fixture
def wiki(mariadb: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    database = wiki_db.create(mariadb)
    yield platform, database
    wiki_db.drop(mariadb, database)


def _declare(platform: Platform, mariadb: MariaDBServer, database: str, policy: str = "") -> None:
    path = platform.settings.datamap
    assert path is not None
    text = wiki_db.declare(path.read_text(), mariadb, database)
    if policy:
        text += f'shared_rows = {{ backlinks = "{policy}" }}\n'
    path.write_text(text)


def test_a_row_shared_with_another_tenant_stops_the_case_until_the_data_map_settles_it(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    _backlinks(mariadb, database, "SET NULL")
    _declare(platform, mariadb, database)
    dry = stages.dry_run_inventory(platform.settings, "acme")
    found = next(loc for loc in dry.locations if loc.location == "wiki")
    assert found.shared_rows == {"wiki.backlinks": 1}
    assert any("wiki.backlinks: 1 row(s)" in w for w in found.warnings)
    with pytest.raises(SharedRowsError, match=r"\[systems.wiki\] shared_rows"):
        get_location("wiki", platform.settings).inventory(platform.case("acme"))


def test_shared_rows_left_in_place_are_detached_by_their_keys_set_null(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    _backlinks(mariadb, database, "SET NULL")
    _declare(platform, mariadb, database, "leave")
    before = _rows(mariadb, database)
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    after = _rows(mariadb, database)
    assert 801 not in after  # acme's alone: deleted
    assert after[803] == before[803]  # globex's alone: untouched
    assert after[802] == (None, before[802][1])  # shared: kept, its key to acme's page nulled


def test_shared_rows_left_in_place_under_a_key_that_forbids_it_stop_before_deleting(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    _backlinks(mariadb, database, "RESTRICT")
    _declare(platform, mariadb, database, "leave")
    case = platform.case("acme")
    export_and_deliver(platform, case)
    before = wiki_db.fingerprint(mariadb, database, "acme")
    with pytest.raises(IsolationBreachError, match=r"wiki.backlinks through .*RESTRICT"):
        get_location("wiki", platform.settings).destroy(case)
    assert wiki_db.fingerprint(mariadb, database, "acme") == before
    assert set(_rows(mariadb, database)) == set(_BACKLINKS)


def test_shared_rows_deleted_with_the_tenant_are_not_exported_and_go_with_it(
    wiki: tuple[Platform, str], mariadb: MariaDBServer, tmp_path: Path
) -> None:
    platform, database = wiki
    _backlinks(mariadb, database, "RESTRICT")
    _declare(platform, mariadb, database, "delete")
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    assert _exported(bundle, tmp_path) == [801]
    destroy_everything(platform, case)
    assert set(_rows(mariadb, database)) == {803}


def test_shared_rows_exported_are_in_the_bundle_and_kept(
    wiki: tuple[Platform, str], mariadb: MariaDBServer, tmp_path: Path
) -> None:
    platform, database = wiki
    _backlinks(mariadb, database, "SET NULL")
    _declare(platform, mariadb, database, "export")
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    assert _exported(bundle, tmp_path) == [801, 802]
    destroy_everything(platform, case)
    after = _rows(mariadb, database)
    assert set(after) == {802, 803} and after[802][0] is None


def _exported(bundle: Path, tmp_path: Path) -> list[int]:
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "bundle")
    parts = tmp_path / "bundle" / "tables" / "wiki.backlinks" / "*.parquet"
    rows = duckdb.connect().execute(f"SELECT id FROM '{parts}' ORDER BY id").fetchall()
    return [int(r[0]) for r in rows]
