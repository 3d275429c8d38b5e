"""A wiki in MariaDB for the tests: three tenants' spaces, pages, revisions, comment threads,
links and a row of every column type, created in a fresh database of the session's server."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from decimal import Decimal

import MySQLdb

from offboarding.dev.services import MariaDBServer

TENANTS = ("acme", "acme-corp", "globex")
SCHEMA = """
CREATE TABLE currencies (code CHAR(3) PRIMARY KEY, name VARCHAR(40) NOT NULL);
CREATE TABLE spaces (id BIGINT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL,
  name VARCHAR(200) NOT NULL, KEY (tenant_id));
CREATE TABLE pages (id BIGINT PRIMARY KEY, tenant_id VARCHAR(128) NOT NULL,
  space_id BIGINT NOT NULL, title VARCHAR(300) NOT NULL, body MEDIUMTEXT,
  created DATETIME(6) NOT NULL, updated TIMESTAMP(3) NULL, author_id BIGINT NULL,
  KEY (tenant_id), KEY (author_id), FOREIGN KEY (space_id) REFERENCES spaces (id));
CREATE TABLE revisions (id BIGINT PRIMARY KEY, page_id BIGINT NOT NULL, n INT UNSIGNED NOT NULL,
  diff LONGBLOB, author JSON, FOREIGN KEY (page_id) REFERENCES pages (id) ON DELETE CASCADE);
CREATE TABLE comments (id BIGINT PRIMARY KEY, page_id BIGINT NOT NULL, parent_id BIGINT NULL,
  body TEXT, author_id BIGINT NULL, KEY (author_id), FOREIGN KEY (page_id) REFERENCES pages (id),
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


def run(url_conn: MySQLdb.connections.Connection, statements: str) -> None:
    with url_conn.cursor() as cur:
        for statement in statements.split(";"):
            if statement.strip():
                cur.execute(statement)
    url_conn.commit()


def seed(conn: MySQLdb.connections.Connection) -> None:
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
                    "INSERT INTO pages VALUES (%s, %s, %s, %s, %s, %s, %s, NULL)",
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
                        "INSERT INTO comments VALUES (%s, %s, %s, %s, NULL)",
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


def fingerprint(mariadb: MariaDBServer, database: str, tenant: str) -> dict[str, str]:
    """Each table's rows of `tenant`, digested by the server itself (plain SQL, exact: the
    server's collation is case-insensitive, MariaDB's default)."""
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    mine = {
        "spaces": "BINARY tenant_id = %(t)s", "pages": "BINARY tenant_id = %(t)s",
        "links": "BINARY tenant_id = %(t)s", "samples": "BINARY tenant_id = %(t)s",
        "revisions": "page_id IN (SELECT id FROM pages WHERE BINARY tenant_id = %(t)s)",
        "comments": "page_id IN (SELECT id FROM pages WHERE BINARY tenant_id = %(t)s)",
    }  # fmt: skip
    found = {}
    with conn.cursor() as cur:
        for table, where in mine.items():
            cur.execute(f"SELECT * FROM {table} t WHERE {where} ORDER BY id", {"t": tenant})
            rows = cur.fetchall()
            found[table] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()}"
    conn.close()
    return found


def create(mariadb: MariaDBServer) -> str:
    """A fresh database holding the wiki; its name."""
    database = f"wiki_{uuid.uuid4().hex[:10]}"
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    run(conn, f"CREATE DATABASE {database}; USE {database}; {SCHEMA}")
    seed(conn)
    conn.close()
    return database


def drop(mariadb: MariaDBServer, database: str) -> None:
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard")
    run(conn, f"DROP DATABASE {database}")
    conn.close()


def declare(datamap_text: str, mariadb: MariaDBServer, database: str) -> str:
    """The data map with the wiki as system `wiki`."""
    return (
        datamap_text + f'\n[systems.wiki]\ndescription = "The wiki (MariaDB)"\nplugin = "mariadb"\n'
        f'url = "{mariadb.url(database)}"\nglobal_tables = {{ currencies = "ISO 4217 codes" }}\n'
    )


def declare_person(datamap_text: str) -> str:
    """The data map with the wiki's person tables: a person's pages kept with their words
    replaced (others comment on them), their comments deleted."""
    return datamap_text + (
        '\n[person.systems.wiki]\nwhy = "pages and comments the person wrote"\n'
        '[person.systems.wiki.tables."wiki.pages"]\nby = "author_id"\nerase = "pseudonymise"\n'
        'personal = ["title", "body"]\n'
        '[person.systems.wiki.tables."wiki.comments"]\nby = "author_id"\nerase = "delete"\n'
    )


def set_authors(
    mariadb: MariaDBServer, database: str, tenant: str, person: int, other: int
) -> None:
    """`person` writes every other page of `tenant` and the last two comments of each thread;
    `other`, the rest (so no one else's comment answers one of the person's)."""
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE pages SET author_id = IF(MOD(id, 2) = 0, %s, %s) WHERE BINARY tenant_id = %s",
            (person, other, tenant),
        )
        cur.execute(
            "UPDATE comments c JOIN pages p ON p.id = c.page_id SET c.author_id = "
            "IF(c.parent_id IS NULL, %s, %s) WHERE BINARY p.tenant_id = %s",
            (other, person, tenant),
        )
    conn.commit()
    conn.close()
