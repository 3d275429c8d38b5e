"""Requests about one person on a platform that grows around them: an access answer and an
erasure of one person of the demo platform, against plain SQL, with the demo's tenants alone
and with neighbours (other tenants' people, posts, comments and chat) added, then doubled.

- plain SQL (erasure): what a DBA would type for the same policy: UPDATE the person's posts
  and comments (words replaced, reference cleared), UPDATE their spaces, DELETE their chat
  messages, answers, documents and user row; no checks, one transaction.
- plain SQL (access): `COPY (SELECT ...) TO STDOUT` of the person's rows of each table.
- the project: `answer_access` (snapshot, Parquet, bundle, verification, links, signed record)
  and `erase_person` (catalogue check, references, marks, policy with exact counts,
  verification, files, certificate).

Target: cost grows with the person and their tenant, not with the platform: the project's time
with twice the neighbours within 1.2x of its time with the neighbours.

    make bench-persons    (a few minutes; replaces its section of RESULTS.md)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.results import record
from benchmarks.run import machine
from offboarding.core.config import Settings
from offboarding.dev.demo import platform
from offboarding.dev.services import PostgresCluster
from offboarding.persons import open_request
from offboarding.persons.access import answer_access
from offboarding.persons.erasure import erase_person
from offboarding.stores import LocalStore

TENANT = "acme"

# Neighbours: tenants n<first>.. with `users` people each; every user posts, comments on the
# previous user's post and chats. Ids start far above the demo's.
NEIGHBOURS = """
INSERT INTO tenants (id, name, region, contact_email, plan_id, created_at)
SELECT 'n' || t, 'Neighbour ' || t, 'europe-west1', 'dpo@n' || t || '.example', 'pro', now()
FROM generate_series({first}, {last}) t;
INSERT INTO users (id, tenant_id, display_name, email, created_at)
SELECT 10000000 + t * {users} + u, 'n' || t, 'Person ' || u, 'p' || u || '@n' || t || '.example',
       now()
FROM generate_series({first}, {last}) t, generate_series(0, {users} - 1) u;
INSERT INTO spaces (id, tenant_id, name, created_by, created_at)
SELECT 10000000 + t, 'n' || t, 'space', 10000000 + t * {users}, now()
FROM generate_series({first}, {last}) t;
INSERT INTO posts (id, tenant_id, space_id, author_id, title, body, published_at)
SELECT 10000000 + t * {users} * 4 + u * 4 + k, 'n' || t, 10000000 + t, 10000000 + t * {users} + u,
       'title ' || u, repeat(md5(u::text), 4), now()
FROM generate_series({first}, {last}) t, generate_series(0, {users} - 1) u,
     generate_series(0, 3) k;
INSERT INTO comments (id, post_id, author_id, body, created_at)
SELECT 10000000 + t * {users} * 4 + u * 4 + k,
       10000000 + t * {users} * 4 + ((u + 1) % {users}) * 4 + k, 10000000 + t * {users} + u,
       repeat(md5(k::text), 2), now()
FROM generate_series({first}, {last}) t, generate_series(0, {users} - 1) u,
     generate_series(0, 3) k;
INSERT INTO chat_messages (id, tenant_id, space_id, author_id, sent_at, body)
SELECT 10000000 + t * {users} * 4 + u * 4 + k, 'n' || t, 10000000 + t,
       10000000 + t * {users} + u, now(), repeat(md5(k::text), 2)
FROM generate_series({first}, {last}) t, generate_series(0, {users} - 1) u,
     generate_series(0, 3) k;
"""
# The indexes a platform serving per-person requests has (the inventory warns without them).
INDEXES = """
CREATE INDEX IF NOT EXISTS posts_author ON posts (author_id);
CREATE INDEX IF NOT EXISTS posts_tenant ON posts (tenant_id);
CREATE INDEX IF NOT EXISTS comments_author ON comments (author_id);
CREATE INDEX IF NOT EXISTS comments_post ON comments (post_id);
CREATE INDEX IF NOT EXISTS comments_parent ON comments (parent_id);
CREATE INDEX IF NOT EXISTS chat_author ON chat_messages (author_id);
CREATE INDEX IF NOT EXISTS chat_tenant ON chat_messages (tenant_id);
CREATE INDEX IF NOT EXISTS spaces_creator ON spaces (created_by);
CREATE INDEX IF NOT EXISTS answers_user ON survey_answers (user_id);
CREATE INDEX IF NOT EXISTS documents_uploader ON documents (uploaded_by);
CREATE INDEX IF NOT EXISTS users_tenant ON users (tenant_id);
"""

PLAIN_ERASURE = """
UPDATE posts SET title = 'erased', body = 'erased', metadata = NULL, author_id = NULL
 WHERE tenant_id = {t} AND author_id = {p};
UPDATE comments c SET body = 'erased', author_id = NULL FROM posts p
 WHERE p.id = c.post_id AND p.tenant_id = {t} AND c.author_id = {p};
UPDATE spaces SET created_by = NULL WHERE tenant_id = {t} AND created_by = {p};
DELETE FROM chat_messages WHERE tenant_id = {t} AND author_id = {p};
DELETE FROM survey_answers WHERE tenant_id = {t} AND user_id = {p};
DELETE FROM documents WHERE tenant_id = {t} AND uploaded_by = {p};
DELETE FROM users WHERE tenant_id = {t} AND id = {p};
"""
PLAIN_ACCESS = [
    "SELECT * FROM users WHERE tenant_id = {t} AND id = {p}",
    "SELECT * FROM posts WHERE tenant_id = {t} AND author_id = {p}",
    "SELECT c.* FROM comments c JOIN posts p ON p.id = c.post_id "
    "WHERE p.tenant_id = {t} AND c.author_id = {p}",
    "SELECT * FROM spaces WHERE tenant_id = {t} AND created_by = {p}",
    "SELECT * FROM chat_messages WHERE tenant_id = {t} AND author_id = {p}",
    "SELECT * FROM survey_answers WHERE tenant_id = {t} AND user_id = {p}",
    "SELECT * FROM documents WHERE tenant_id = {t} AND uploaded_by = {p}",
]


def _dsn(cluster: PostgresCluster, name: str) -> str:
    return cluster.dsn.replace(f"dbname={cluster.dbname}", f"dbname={name}")


def _rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM comments) + "
            "(SELECT count(*) FROM chat_messages) + (SELECT count(*) FROM users)"
        ).fetchone()
    return int(row[0]) if row else 0


def build(cluster: PostgresCluster, work: Path, name: str, tenants: int, users: int) -> Path:
    """The demo platform, plus `tenants` neighbours of `users` people; returns its files."""
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    files = work / name / "files"
    platform.set_up(_dsn(cluster, name), LocalStore(files))
    with psycopg.connect(_dsn(cluster, name), autocommit=True) as conn:
        conn.execute(INDEXES)
        for first in range(0, tenants, 50):  # in batches: bounded statements
            last = min(first + 49, tenants - 1)
            conn.execute(NEIGHBOURS.format(first=first, last=last, users=users).encode())
        conn.execute("VACUUM ANALYZE")
    print(f"built {name}: {_rows(_dsn(cluster, name)):,} rows", flush=True)
    return files


def fresh(cluster: PostgresCluster, template: str, files: Path, work: Path) -> Settings:
    name = f"run_{time.monotonic_ns()}"
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    home = work / name
    shutil.copytree(files, home / "stores" / "files")
    datamap = platform.write_datamap(home / "datamap.toml", "redis://127.0.0.1:9/0")
    return Settings(home=home, database_url=_dsn(cluster, name), datamap=datamap)


def person_of(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT u.id FROM users u WHERE u.tenant_id = %s AND EXISTS (SELECT 1 FROM comments "
            "c WHERE c.author_id = u.id) ORDER BY u.id LIMIT 1",
            (TENANT,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def measure(cluster: PostgresCluster, template: str, files: Path, work: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    settings = fresh(cluster, template, files, work)
    dsn = settings.require_database()
    person = {"t": TENANT, "p": int(person_of(dsn))}
    values = {"t": sql.Literal(TENANT), "p": sql.Literal(person["p"])}
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        for query in PLAIN_ACCESS:
            statement = sql.SQL("COPY ({}) TO STDOUT").format(sql.SQL(query).format(**values))
            with cursor.copy(statement) as copy:
                for _ in copy:
                    pass
    times["access, plain SQL"] = time.perf_counter() - started
    access = open_request(settings, TENANT, str(person["p"]), "access")
    started = time.perf_counter()
    answer_access(settings, access.ref)
    times["access, project"] = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL(PLAIN_ERASURE).format(**values))
    times["erasure, plain SQL"] = time.perf_counter() - started
    settings = fresh(cluster, template, files, work)
    erasure = open_request(settings, TENANT, str(person["p"]), "erasure")
    started = time.perf_counter()
    erase_person(settings, erasure.ref)
    times["erasure, project"] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=200, help="neighbour tenants")
    parser.add_argument("--users", type=int, default=500, help="people per neighbour")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="offboard-bench-persons-"))
    cluster = PostgresCluster()
    platforms = {"the demo alone": 0, "with neighbours": args.tenants,
                 "twice the neighbours": 2 * args.tenants}  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    rows: dict[str, int] = {}
    try:
        cluster.start()
        for number, (label, tenants) in enumerate(platforms.items()):
            template = f"template_{number}"
            files = build(cluster, work, template, tenants, args.users)
            rows[label] = _rows(_dsn(cluster, template))
            runs = [measure(cluster, template, files, work) for _ in range(args.repeat)]
            results[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(label, {k: round(v, 3) for k, v in results[label].items()}, flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, rows, args)


def report(
    results: dict[str, dict[str, float]], rows: dict[str, int], args: argparse.Namespace
) -> None:
    labels = list(results)
    lines = [
        "## Requests about one person (`make bench-persons`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. One person of acme "
        "(posts, comments in others' threads, chat, documents) on the demo platform, then with "
        f"{args.tenants} and {2 * args.tenants} neighbour tenants of {args.users} people "
        f"(each with posts, comments and chat); medians of {args.repeat}, each on a fresh copy. "
        "The project's times include everything it does (catalogue check, snapshot, Parquet, "
        "bundle and verification, links and signed record; for erasure the reference check, "
        "marks, exact counts, verification, files, backups and certificate).",
        "",
        "| platform | rows | access: plain SQL (s) | access: project (s) | erasure: plain SQL (s) "
        "| erasure: project (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        r = results[label]
        lines.append(
            f"| {label} | {rows[label]:,} | {r['access, plain SQL']:.3f} | "
            f"{r['access, project']:.3f} | {r['erasure, plain SQL']:.3f} | "
            f"{r['erasure, project']:.3f} |"
        )
    one, two = results[labels[1]], results[labels[2]]
    lines += [
        "",
        f"Twice the neighbours against the neighbours, the project: access "
        f"x{two['access, project'] / one['access, project']:.2f}, erasure "
        f"x{two['erasure, project'] / one['erasure, project']:.2f} (target: within 1.2x). "
        f"Project against plain SQL with the neighbours: access "
        f"x{one['access, project'] / one['access, plain SQL']:.1f}, erasure "
        f"x{one['erasure, project'] / one['erasure, plain SQL']:.1f} (fixed costs of a "
        "request: the catalogue read, the bundle, the signed records).",
    ]
    report_text = "\n".join(lines)
    print(report_text)
    record(report_text, ("## Requests about one person",))


if __name__ == "__main__":
    main()
