"""A MariaDB database of the platform (a wiki), against Debian's real mariadbd: classified from
its own catalogue, exported from one snapshot with its declared types (read back with DuckDB),
destroyed with the proof by construction while the neighbours keep every row."""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import duckdb
import pymysql
import pytest

from offboarding.core.errors import IsolationBreachError, UnclassifiedDataError
from offboarding.dev.services import MariaDBServer
from offboarding.export import export as stages
from offboarding.locations import get_location
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

TENANTS = ("acme", "acme-corp", "globex")
SCHEMA = """
CREATE TABLE currencies (code CHAR(3) PRIMARY KEY, name VARCHAR(40) NOT NULL);
CREATE TABLE spaces (id BIGINT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL,
  name VARCHAR(200) NOT NULL, KEY (tenant_id));
CREATE TABLE pages (id BIGINT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL,
  space_id BIGINT NOT NULL, title VARCHAR(300) NOT NULL, body MEDIUMTEXT,
  created DATETIME(6) NOT NULL, updated TIMESTAMP(3) NULL, KEY (tenant_id),
  FOREIGN KEY (space_id) REFERENCES spaces (id));
CREATE TABLE revisions (id BIGINT PRIMARY KEY, page_id BIGINT NOT NULL, n INT UNSIGNED NOT NULL,
  diff LONGBLOB, author JSON, FOREIGN KEY (page_id) REFERENCES pages (id) ON DELETE CASCADE);
CREATE TABLE comments (id BIGINT PRIMARY KEY, page_id BIGINT NOT NULL, parent_id BIGINT NULL,
  body TEXT, FOREIGN KEY (page_id) REFERENCES pages (id),
  FOREIGN KEY (parent_id) REFERENCES comments (id));
CREATE TABLE links (id BIGINT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL,
  page_id BIGINT NOT NULL, KEY (tenant_id), CONSTRAINT links_page FOREIGN KEY (page_id)
  REFERENCES pages (id));
CREATE TABLE samples (id INT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL, tiny TINYINT,
  utiny TINYINT UNSIGNED, small SMALLINT, med MEDIUMINT, big BIGINT UNSIGNED,
  amount DECIMAL(20, 6), f FLOAT, d DOUBLE, flags BIT(8), code CHAR(3), raw VARBINARY(16),
  day DATE, clock TIME(6), yr YEAR, kind ENUM('a', 'b'), tags SET('x', 'y'), doc JSON,
  uid UUID, ip INET6, currency CHAR(3), FOREIGN KEY (currency) REFERENCES currencies (code))
"""


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    server = MariaDBServer().start()
    yield server
    server.stop()


def _run(url_conn: pymysql.connections.Connection, statements: str) -> None:  # type: ignore[type-arg]
    with url_conn.cursor() as cur:
        for statement in statements.split(";"):
            if statement.strip():
                cur.execute(statement)
    url_conn.commit()


@pytest.fixture
def wiki(mariadb: MariaDBServer, platform: Platform) -> Iterator[tuple[Platform, str]]:
    """The platform with a MariaDB wiki of three tenants in its data map."""
    database = f"wiki_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    _run(conn, f"CREATE DATABASE {database}; USE {database}; {SCHEMA}")
    seed(conn)
    conn.close()
    path = platform.settings.datamap
    assert path is not None
    path.write_text(
        path.read_text()
        + f'\n[systems.wiki]\ndescription = "The wiki (MariaDB)"\nplugin = "mariadb"\n'
        f'url = "{mariadb.url(database)}"\nglobal_tables = {{ currencies = "ISO 4217 codes" }}\n'
    )
    yield platform, database
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    _run(conn, f"DROP DATABASE {database}")
    conn.close()


def seed(conn: pymysql.connections.Connection) -> None:  # type: ignore[type-arg]
    rows: list[tuple[str, tuple[object, ...]]] = [
        ("INSERT INTO currencies VALUES (%s, %s)", ("EUR", "Euro")),
    ]
    ident = iter(range(1, 10**6))
    for tenant in TENANTS:
        for s in range(2):
            space = next(ident)
            rows.append(("INSERT INTO spaces VALUES (%s, %s, %s)", (space, tenant, f"Espace {s}")))
            for p in range(3):
                page = next(ident)
                rows.append((
                    "INSERT INTO pages VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (page, tenant, space, f"Page {p} – Zoë", "Ελληνικά " * 20,
                     "2024-05-01 12:00:00.123456", "2024-05-02 08:30:00.250"),
                ))  # fmt: skip
                for n in range(2):
                    rows.append((
                        "INSERT INTO revisions VALUES (%s, %s, %s, %s, %s)",
                        (next(ident), page, n, bytes(range(256)), json.dumps({"by": n})),
                    ))  # fmt: skip
                parent = None
                for _ in range(3):  # a thread: each comment answers the one before
                    comment = next(ident)
                    rows.append((
                        "INSERT INTO comments VALUES (%s, %s, %s, %s)",
                        (comment, page, parent, "réponse"),
                    ))  # fmt: skip
                    parent = comment
                rows.append(("INSERT INTO links VALUES (%s, %s, %s)", (next(ident), tenant, page)))
        for n in range(2):
            rows.append((
                "INSERT INTO samples VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (next(ident), tenant, -128, 255, -32768, 8388607, 18446744073709551615,
                 Decimal("-12345678901234.123456"), 1.5, 2.25, b"\x81", "abc", b"\x00\xff",
                 "2024-02-29", timedelta(hours=-838, minutes=-59, seconds=-59), 2155, "b",
                 "x,y", json.dumps({"k": [1, 2]}), str(uuid.UUID(int=n)), "2001:db8::1", "EUR"),
            ))  # fmt: skip
    with conn.cursor() as cur:
        for statement, values in rows:
            cur.execute(statement, values)
    conn.commit()


def _fingerprint(mariadb: MariaDBServer, database: str, tenant: str) -> dict[str, str]:
    """Each table's rows of `tenant`, digested by the server itself (plain SQL)."""
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    mine = {
        "spaces": "tenant_id = %(t)s", "pages": "tenant_id = %(t)s", "links": "tenant_id = %(t)s",
        "samples": "tenant_id = %(t)s",
        "revisions": "page_id IN (SELECT id FROM pages WHERE tenant_id = %(t)s)",
        "comments": "page_id IN (SELECT id FROM pages WHERE tenant_id = %(t)s)",
    }  # fmt: skip
    found = {}
    with conn.cursor() as cur:
        for table, where in mine.items():
            cur.execute(f"SELECT * FROM {table} t WHERE {where} ORDER BY id", {"t": tenant})
            rows = cur.fetchall()
            found[table] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()}"
    conn.close()
    return found


def test_the_wiki_is_classified_exported_with_its_types_and_destroyed(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    neighbours = {t: _fingerprint(mariadb, database, t) for t in ("acme-corp", "globex")}
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
    assert all(v.startswith("0:") for v in _fingerprint(mariadb, database, "acme").values())
    assert {t: _fingerprint(mariadb, database, t) for t in ("acme-corp", "globex")} == neighbours
    assert get_location("wiki", platform.settings).verify(case).items == 0
    store = open_store(platform.settings.store_url("archive"))
    with store.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(loc for loc in certificate["locations"] if loc["location"] == "wiki")
    assert evidence["items_before"] == evidence["items_removed"] == 46
    assert "each deleted row's owner was returned and checked" in evidence["isolation"]
    assert {s["name"]: s["status"] for s in certificate["systems"]}["wiki"] == "verified"


def test_another_tenants_row_referencing_the_tenant_stops_before_anything_is_deleted(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    _run(
        conn,
        "INSERT INTO links SELECT 999999, 'globex', MIN(id) FROM pages WHERE tenant_id = 'acme'",
    )
    conn.close()
    before = _fingerprint(mariadb, database, "acme")
    location = get_location("wiki", platform.settings)
    with pytest.raises(IsolationBreachError, match=r"wiki.links through links_page .*'globex'"):
        location.destroy(platform.case("acme"))
    assert _fingerprint(mariadb, database, "acme") == before


def test_tables_the_pipeline_cannot_read_by_key_stop_the_case_until_declared(
    wiki: tuple[Platform, str], mariadb: MariaDBServer
) -> None:
    platform, database = wiki
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    _run(
        conn,
        "CREATE TABLE search_cache (id INT PRIMARY KEY, tenant_id VARCHAR(128)) ENGINE=MyISAM;"
        "CREATE TABLE history (id INT PRIMARY KEY, tenant_id VARCHAR(128)) WITH SYSTEM VERSIONING;"
        "CREATE TABLE stray (id INT PRIMARY KEY, note TEXT)",
    )
    conn.close()
    dry = stages.dry_run_inventory(platform.settings, "acme")
    listed = next(loc for loc in dry.locations if loc.location == "wiki").unclassified
    assert "wiki.stray" in listed
    assert "wiki.search_cache (engine MyISAM: no transactions, no consistent snapshot)" in listed
    assert "wiki.history (system-versioned: deleted rows stay in its history)" in listed
    with pytest.raises(UnclassifiedDataError, match="search_cache"):
        stages.take_inventory(platform.settings, platform.case("acme"))


def test_datamap_check_reaches_the_wiki(wiki: tuple[Platform, str]) -> None:
    platform, _ = wiki
    assert get_location("wiki", platform.settings).reach().startswith("MariaDB 10.11")  # type: ignore[attr-defined]
