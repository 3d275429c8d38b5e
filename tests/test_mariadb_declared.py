"""Declared references and owner columns in MariaDB, through the same relational core as in
PostgreSQL (tests/test_chat_platform.py): tables the wiki's application links without foreign
keys, 0 written for "none", a polymorphic reaction, a thread within a table, and a tenant
column named otherwise. Exported as the application's own joins select them (read back by
DuckDB), destroyed without touching a neighbour's row."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import MySQLdb
import pytest

from offboarding.core.errors import UnclassifiedDataError
from offboarding.dev.services import MariaDBServer
from offboarding.export import export as stages
from offboarding.locations.reach import check_datamap
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

_TABLES = """
CREATE TABLE watchers (id BIGINT PRIMARY KEY, team VARCHAR(128) NOT NULL, who VARCHAR(40),
  KEY (team));
CREATE TABLE notes (id BIGINT PRIMARY KEY, page BIGINT NOT NULL DEFAULT 0,
  reply_to BIGINT NOT NULL DEFAULT 0, body TEXT, KEY (page), KEY (reply_to));
CREATE TABLE reactions (id BIGINT PRIMARY KEY, target_type VARCHAR(10) NOT NULL,
  target_id BIGINT NOT NULL, emoji VARCHAR(10), KEY (target_id, target_type));
INSERT INTO watchers SELECT 900 + id, tenant_id, 'w' FROM spaces;
INSERT INTO notes SELECT 1000 + id, id, 0, 'first' FROM pages;
INSERT INTO notes SELECT 2000 + id, id, 1000 + id, 'reply' FROM pages;
INSERT INTO notes VALUES (3000, 0, 0, 'on no page');
INSERT INTO reactions SELECT 4000 + id, 'page', id, '+1' FROM pages;
INSERT INTO reactions SELECT 5000 + id, 'comment', id, 'eyes' FROM comments;
CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL);
CREATE TABLE space_members (space_id BIGINT NOT NULL, person_id BIGINT NOT NULL,
  PRIMARY KEY (space_id, person_id), KEY (person_id));
INSERT INTO people VALUES (1, 'in acme and globex'), (2, 'in acme only'), (3, 'in globex only');
INSERT INTO space_members SELECT id, 1 FROM spaces WHERE BINARY tenant_id IN ('acme', 'globex');
INSERT INTO space_members SELECT id, 2 FROM spaces WHERE BINARY tenant_id = 'acme';
INSERT INTO space_members SELECT id, 3 FROM spaces WHERE BINARY tenant_id = 'globex'
"""
_DECLARED = """owner_columns = { watchers = "team" }
[systems.wiki.shared_entities.people]
through = "space_members(person_id)"
policy = "erase-unshared"
why = "a person can work in several tenants' spaces"
[[systems.wiki.references]]
from = "space_members(space_id)"
to = "spaces(id)"
[[systems.wiki.references]]
from = "notes(page)"
to = "pages(id)"
none = [0]
[[systems.wiki.references]]
from = "notes(reply_to)"
to = "notes(id)"
none = [0]
[[systems.wiki.references]]
from = "reactions(target_id)"
to = "pages(id)"
when = { target_type = "page" }
[[systems.wiki.references]]
from = "reactions(target_id)"
to = "comments(id)"
when = { target_type = "comment" }
"""
# A tenant's rows of the new tables, by the application's own joins.
_MINE = {
    "watchers": "SELECT * FROM watchers WHERE BINARY team = %(t)s",
    "people": "SELECT DISTINCT p.* FROM people p JOIN space_members m ON m.person_id = p.id "
    "JOIN spaces s ON s.id = m.space_id WHERE BINARY s.tenant_id = %(t)s",
    "notes": "SELECT n.* FROM notes n JOIN pages p ON p.id = n.page "
    "WHERE BINARY p.tenant_id = %(t)s",
    "reactions": "SELECT r.* FROM reactions r LEFT JOIN pages p ON r.target_type = 'page' AND "
    "p.id = r.target_id LEFT JOIN comments c ON r.target_type = 'comment' AND c.id = r.target_id "
    "LEFT JOIN pages cp ON cp.id = c.page_id "
    "WHERE BINARY coalesce(p.tenant_id, cp.tenant_id) = %(t)s",
}


def _connect(mariadb: MariaDBServer, database: str) -> MySQLdb.connections.Connection:
    return MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)


def _mine(
    mariadb: MariaDBServer, database: str, tenant: str
) -> dict[str, list[tuple[object, ...]]]:
    conn = _connect(mariadb, database)
    found = {}
    with conn.cursor() as cur:
        for table, query in _MINE.items():
            cur.execute(query, {"t": tenant})
            found[table] = sorted(tuple(r) for r in cur.fetchall())
    conn.close()
    return found


@pytest.fixture
def wiki(mariadb: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    database = wiki_db.create(mariadb)
    conn = _connect(mariadb, database)
    wiki_db.run(conn, _TABLES)
    conn.close()
    path = platform.settings.datamap
    assert path is not None
    path.write_text(wiki_db.declare(path.read_text(), mariadb, database) + _DECLARED)
    yield platform, database
    wiki_db.drop(mariadb, database)


def test_declared_references_export_and_destroy_exactly_the_tenants_rows(
    wiki: tuple[Platform, str], mariadb: MariaDBServer, tmp_path: Path
) -> None:
    platform, database = wiki
    # globex's reaction to its comment 777777, an id one of acme's pages has too: globex's.
    conn = _connect(mariadb, database)
    wiki_db.run(
        conn,
        "INSERT INTO pages (id, tenant_id, space_id, title, created) SELECT 777777, 'acme', "
        "MIN(id), 't', NOW() FROM spaces WHERE BINARY tenant_id = 'acme';"
        "INSERT INTO comments (id, page_id, body) SELECT 777777, MIN(id), 'c' FROM pages "
        "WHERE BINARY tenant_id = 'globex';"
        "INSERT INTO reactions VALUES (6000, 'comment', 777777, 'odd')",
    )
    conn.close()
    expected = _mine(mariadb, database, "acme")
    assert all(expected.values())
    neighbours = {t: _mine(mariadb, database, t) for t in ("acme-corp", "globex")}
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "bundle")
    for table, rows in expected.items():
        parts = tmp_path / "bundle" / "tables" / f"wiki.{table}"
        read = duckdb.connect().execute(f"SELECT * FROM '{parts}/*.parquet'").fetchall()
        assert sorted(tuple(r) for r in read) == rows, table
    destroy_everything(platform, case)
    assert _mine(mariadb, database, "acme") == {t: [] for t in _MINE}
    assert {t: _mine(mariadb, database, t) for t in neighbours} == neighbours
    conn = _connect(mariadb, database)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM notes WHERE id = 3000")  # on no page: nobody's, kept
        assert cur.fetchall() == ((3000,),)
        cur.execute("SELECT id FROM reactions WHERE id = 6000")
        assert cur.fetchall() == ((6000,),)
        cur.execute("SELECT id FROM people ORDER BY id")  # 2 was acme's alone
        assert cur.fetchall() == ((1,), (3,))
    conn.close()


def test_the_data_map_check_counts_orphans_of_a_declared_reference(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = _connect(mariadb, database)
    wiki_db.run(conn, "INSERT INTO notes VALUES (3001, 999999, 0, 'page gone')")
    conn.close()
    (found,) = [c for c in check_datamap(platform.settings)[1] if c.name == "wiki"]
    assert found.ok, found.detail
    (notes,) = [line for line in found.detail.split("; ") if "wiki.notes(page)" in line]
    assert "1 orphan(s)" in notes and "0 reaching two tenants" in notes


def test_shared_people_no_other_tenant_has_are_kept_pseudonymised(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    path = platform.settings.datamap
    assert path is not None
    path.write_text(
        path.read_text().replace(
            'policy = "erase-unshared"', 'policy = "pseudonymise-unshared"\npersonal = ["name"]'
        )
    )
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    conn = _connect(mariadb, database)
    with conn.cursor() as cur:
        cur.execute("SELECT id, name FROM people ORDER BY id")
        people = dict(cur.fetchall())
    conn.close()
    assert people[1] == "in acme and globex" and people[3] == "in globex only"
    assert str(people[2]).startswith("erased-")  # acme's alone: kept, its name replaced


def test_a_sequence_named_after_the_tenant_stops_the_case_until_declared_then_goes(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = _connect(mariadb, database)
    wiki_db.run(conn, "CREATE SEQUENCE invoice_no_acme; CREATE SEQUENCE invoice_no_globex")
    conn.close()
    dry = stages.dry_run_inventory(platform.settings, "acme")
    warned = [w for loc in dry.locations for w in loc.warnings if "invoice_no" in w]
    assert len(warned) == 1 and warned[0].startswith("sequence invoice_no_acme:")
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(UnclassifiedDataError, match=r"systems\.wiki\.tenant_objects"):
        stages.take_inventory(platform.settings, case)
    path = platform.settings.datamap
    assert path is not None
    path.write_text(
        path.read_text().replace(
            "[systems.wiki.shared_entities.people]",
            'tenant_objects = [{ kind = "sequence", name = "invoice_no_{tenant}" }]\n'
            "[systems.wiki.shared_entities.people]",
        )
    )
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    conn = _connect(mariadb, database)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'SEQUENCE'",
            (database,),
        )
        assert cur.fetchall() == (("invoice_no_globex",),)
    conn.close()
