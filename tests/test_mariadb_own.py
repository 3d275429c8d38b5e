"""A tenant's own database on the MariaDB server (`tenant_database_pattern`, as PostgreSQL's
schema per tenant): every table in it is exported whole from the export's snapshot and the
database is dropped whole, while a neighbour's own database and the shared one keep theirs."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import MySQLdb
import pytest

from offboarding.core.errors import IntegrityError, UnclassifiedDataError
from offboarding.dev.services import MariaDBServer
from offboarding.export import export as stages
from offboarding.stores import open_store
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


def _run(mariadb: MariaDBServer, script: str) -> None:
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    wiki_db.run(conn, script)
    conn.close()


def _databases(mariadb: MariaDBServer, prefix: str) -> set[str]:
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        names = {str(r[0]) for r in cur.fetchall() if str(r[0]).startswith(prefix)}
    conn.close()
    return names


@pytest.fixture
def wiki(mariadb: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    """The wiki, and acme's and globex's own databases `<wiki>_own_<tenant>`: acme's holds
    drafts (3 rows, a key) and notes (2 rows, no key)."""
    database = wiki_db.create(mariadb)
    own = f"{database}_own_"
    _run(
        mariadb,
        f"CREATE DATABASE `{own}acme`; CREATE DATABASE `{own}globex`;"
        f"CREATE TABLE `{own}acme`.drafts (id INT PRIMARY KEY, body TEXT);"
        f"INSERT INTO `{own}acme`.drafts VALUES (1, 'a'), (2, 'b'), (3, 'c');"
        f"CREATE TABLE `{own}acme`.notes (txt TEXT);"
        f"INSERT INTO `{own}acme`.notes VALUES ('x'), ('y');"
        f"CREATE TABLE `{own}globex`.drafts (id INT PRIMARY KEY, body TEXT);"
        f"INSERT INTO `{own}globex`.drafts VALUES (1, 'theirs')",
    )
    path = platform.settings.datamap
    assert path is not None
    text = wiki_db.declare(path.read_text(), mariadb, database)
    path.write_text(text + f'tenant_database_pattern = "{own}{{tenant}}"\n')
    yield platform, database
    for name in _databases(mariadb, own):
        _run(mariadb, f"DROP DATABASE `{name}`")
    wiki_db.drop(mariadb, database)


def test_the_tenants_own_database_is_exported_whole_and_dropped_whole(
    wiki: tuple[Platform, str], mariadb: MariaDBServer, tmp_path: Path
) -> None:
    platform, database = wiki
    own = f"{database}_own_"
    neighbours = wiki_db.fingerprint(mariadb, database, "globex")
    case = platform.case("acme")
    inventory, _, bundle = export_and_deliver(platform, case)
    rows = {
        t.qualified: (t.scope, t.rows) for t in inventory.tables if t.schema_name == f"{own}acme"
    }
    assert rows == {f"{own}acme.drafts": ("schema", 3), f"{own}acme.notes": ("schema", 2)}
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "bundle")
    reader = duckdb.connect()
    drafts = tmp_path / "bundle" / "tables" / f"{own}acme.drafts" / "*.parquet"
    assert reader.execute(f"SELECT id, body FROM '{drafts}' ORDER BY id").fetchall() == [
        (1, "a"), (2, "b"), (3, "c"),
    ]  # fmt: skip
    archived = destroy_everything(platform, case)
    assert _databases(mariadb, own) == {f"{own}globex"}
    assert wiki_db.fingerprint(mariadb, database, "globex") == neighbours
    with open_store(platform.settings.store_url("archive")).open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(loc for loc in certificate["locations"] if loc["location"] == "wiki")
    assert evidence["details"][f"dropped {own}acme.drafts"] == "3"
    assert f"database {own}acme's absence" in evidence["verification"]


def test_rows_added_to_the_own_database_after_the_export_stop_the_case_untouched(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    own = f"{database}_own_"
    case = platform.case("acme")
    export_and_deliver(platform, case)
    _run(mariadb, f"INSERT INTO `{own}acme`.drafts VALUES (4, 'late')")
    before = platform.fingerprint("acme")
    with pytest.raises(IntegrityError, match=rf"{own}acme.drafts holds 4 rows"):
        destroy_everything(platform, case)
    assert platform.fingerprint("acme") == before
    assert _databases(mariadb, own) == {f"{own}acme", f"{own}globex"}


def test_a_table_the_snapshot_cannot_read_in_the_own_database_stops_the_case(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    own = f"{database}_own_"
    _run(mariadb, f"CREATE TABLE `{own}acme`.cache (id INT PRIMARY KEY) ENGINE=MyISAM")
    dry = stages.dry_run_inventory(platform.settings, "acme")
    listed = next(loc for loc in dry.locations if loc.location == "wiki").unclassified
    assert f"{own}acme.cache (engine MyISAM: no transactions, no consistent snapshot)" in listed
    with pytest.raises(UnclassifiedDataError, match="own database"):
        stages.take_inventory(platform.settings, platform.case("acme"))
