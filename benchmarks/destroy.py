"""The destroy flow's PostgreSQL part against plain SQL, on a platform of threaded tables where
one tenant is destroyed among others, and on platforms with twice the neighbours' rows.

A private cluster holds `posts` (tenant column) and `comments` (reaching their tenant through
`posts`; half of them replies to another comment), foreign-key columns indexed, tenants' rows
interleaved as a live platform writes them. The offboarded tenant has `--posts` posts and
twice as many comments. Each measurement runs on a fresh copy of the platform:

- plain SQL: `DELETE FROM comments USING posts ...`, `DELETE FROM posts WHERE tenant_id = ...`,
  then `VACUUM` of both: what a DBA would type, with no checks and no bounded transactions;
- plain SQL, checked: the same after the one query that finds another tenant's reply to the
  tenant's comments (with foreign keys, the database would refuse mid-way; the check stops
  before anything changes, as the project's isolation check does);
- the project: what the destroy flow does in PostgreSQL, in its order: the isolation check
  (`check-isolation`, before any location), the location's destroy (lists, proof, bounded
  deletes with each row's owner checked, VACUUM), and the independent verification.

Targets: the project within 1.2x of plain SQL; with twice the neighbours' rows, within 1.1x
of its own time on the first platform (cost grows with the tenant, not the platform). The
doubled platform is measured twice: neighbours who wrote apart from the tenant (its rows on
the same pages as before: only the platform grows), and neighbours interleaved with it (its
rows spread over more pages, which any deletion pays, plain SQL included).

    make bench-destroy    (about 18 minutes, medians of 3; replaces its section of RESULTS.md)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.results import record
from benchmarks.run import machine
from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.dev.services import PostgresCluster
from offboarding.locations.postgres import PostgresLocation

TENANT = "t0"

SCHEMA = """
CREATE TABLE tenants (id text PRIMARY KEY);
CREATE TABLE posts (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    title text NOT NULL,
    body text
);
CREATE TABLE comments (
    id bigint PRIMARY KEY,
    post_id bigint NOT NULL REFERENCES posts (id),
    parent_id bigint REFERENCES comments (id),
    body text NOT NULL
);
"""

# Tenants take turns within a wave (post g of the wave is its tenant g % n's), as a live
# platform interleaves their writes; every post has a comment and a reply to it. Waves follow
# one another: tenants who wrote at another time, or elsewhere.
WAVE = """
INSERT INTO tenants SELECT 't' || ({first} + i) FROM generate_series(0, {tenants} - 1) i;
INSERT INTO posts
SELECT {offset} + g, 't' || ({first} + g % {tenants}), 'post ' || g, repeat(md5(g::text), 3)
FROM generate_series(0, {posts} * {tenants} - 1) g;
INSERT INTO comments
SELECT 2 * {offset} + c, {offset} + c / 2, CASE WHEN c % 2 = 1 THEN 2 * {offset} + c - 1 END,
       repeat(md5(c::text), 2)
FROM generate_series(0, 2 * {posts} * {tenants} - 1) c;
"""
# The same tables as a product without foreign keys writes them: the references are the data
# map's (the same indexes serve them).
DECLARED_SCHEMA = (
    SCHEMA.replace(" REFERENCES tenants (id)", "")
    .replace(" REFERENCES posts (id)", "")
    .replace(" REFERENCES comments (id)", "")
)
DATAMAP = '[systems.postgres]\nplugin = "postgres"\n'
DECLARED = DATAMAP + (
    '[[systems.postgres.references]]\nfrom = "public.comments(post_id)"\nto = "public.posts(id)"\n'
    '[[systems.postgres.references]]\nfrom = "public.comments(parent_id)"\n'
    'to = "public.comments(id)"\n'
)
INDEXES = """
CREATE INDEX ON posts (tenant_id);
CREATE INDEX ON comments (post_id);
CREATE INDEX ON comments (parent_id);
"""

BASELINE = [
    "DELETE FROM comments c USING posts p WHERE c.post_id = p.id AND p.tenant_id = 't0'",
    "DELETE FROM posts WHERE tenant_id = 't0'",
    "VACUUM comments",
    "VACUUM posts",
]
# The query a DBA runs first so that no other tenant's reply is left pointing at a deleted
# comment: where the database holds no foreign key, nothing else checks it; with foreign keys,
# it stops before anything changes where the database would refuse mid-way.
CHECK = (
    "SELECT count(*) FROM posts p JOIN comments a ON a.post_id = p.id "
    "JOIN comments r ON r.parent_id = a.id JOIN posts rp ON rp.id = r.post_id "
    "WHERE p.tenant_id = 't0' AND rp.tenant_id <> 't0'"
)


def _dsn(cluster: PostgresCluster, dbname: str) -> str:
    return cluster.dsn.replace(f"dbname={cluster.dbname}", f"dbname={dbname}")


def build(
    cluster: PostgresCluster, name: str, waves: list[int], posts: int, schema: str = SCHEMA
) -> tuple[int, int]:
    """A template database whose tenants wrote in `waves` (tenants per wave, interleaved
    within it), `posts` posts each; t0, the destroyed tenant, is in the first: (rows, bytes)."""
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    started = time.perf_counter()
    with psycopg.connect(_dsn(cluster, name), autocommit=True) as conn:
        conn.execute(schema)  # type: ignore[call-overload]
        first = 0
        for tenants in waves:
            conn.execute(
                WAVE.format(first=first, tenants=tenants, posts=posts, offset=first * posts)
            )
            first += tenants
        conn.execute(INDEXES)
        conn.execute("VACUUM ANALYZE")
        row = conn.execute(
            "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM comments), "
            "pg_database_size(current_database())"
        ).fetchone()
    assert row is not None
    print(f"built {name}: {int(row[0]):,} rows in {time.perf_counter() - started:.0f}s", flush=True)
    return int(row[0]), int(row[1])


def copy(cluster: PostgresCluster, template: str, name: str) -> str:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        conn.execute("CHECKPOINT")
    dsn = _dsn(cluster, name)
    with psycopg.connect(dsn, autocommit=True) as conn:  # warm: both sides start alike
        conn.execute("SELECT count(*) FROM posts").fetchone()
        conn.execute("SELECT count(*) FROM comments").fetchone()
    return dsn


def plain_sql(dsn: str, checked: bool = False) -> dict[str, float]:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if checked:
            row = conn.execute(CHECK).fetchone()
            assert row == (0,), row
        for statement in BASELINE:
            conn.execute(statement)  # type: ignore[arg-type]
    return {"total": time.perf_counter() - started}


def ours(dsn: str, home: Path, datamap: str = DATAMAP) -> dict[str, float]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "datamap.toml").write_text(datamap)
    settings = Settings(home=home, database_url=dsn, datamap=home / "datamap.toml")
    location = PostgresLocation(settings)
    case = CaseRef(tenant=TENANT, case_id=f"{TENANT}-000000000000")
    # The case's frozen inventory, as the flow passes it (counted before the clock starts).
    inventoried = {t.qualified: t.rows for t in location.inventory(case).tables}
    phases: dict[str, Callable[[], object]] = {
        "check": lambda: location.prove_isolation(case, inventoried),
        "destroy": lambda: location.destroy(case, inventoried),
        "verify": lambda: location.verify(case),
    }
    times: dict[str, float] = {}
    for name, phase in phases.items():
        started = time.perf_counter()
        result = phase()
        times[name] = time.perf_counter() - started
        if name == "verify":
            assert getattr(result, "items", 1) == 0, result
    times["total"] = sum(times.values())
    return times


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the runs (the total's too, not the sum of the medians)."""
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def left(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM comments)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=500_000, help="posts per tenant")
    parser.add_argument("--tenants", type=int, default=4, help="tenants on the first platform")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="offboard-bench-destroy-"))
    cluster = PostgresCluster()
    neighbours = args.tenants - 1
    # Twice the neighbours' rows, written apart from the tenant's (its rows lie on the same
    # pages as on the first platform: only the platform around it grows); and interleaved
    # with them (its rows spread over more pages: a layout cost, plain SQL pays it too).
    platforms = {
        "platform": [args.tenants],
        "twice the neighbours": [args.tenants, neighbours],
        "twice the neighbours, interleaved with the tenant": [2 * neighbours + 1],
        # The first platform again, its references declared in the data map, not the database.
        "platform, references declared (no foreign key)": [args.tenants],
    }
    declared = list(platforms)[-1]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        cluster.start()
        for number, (label, waves) in enumerate(platforms.items()):
            template = f"template_{number}"
            schema = DECLARED_SCHEMA if label == declared else SCHEMA
            sizes[label] = build(cluster, template, waves, args.posts, schema)
            runs[label] = {"plain SQL": [], "plain SQL, checked": [], "project": []}
            for n in range(args.repeat):
                dsn = copy(cluster, template, "run_plain")
                runs[label]["plain SQL"].append(plain_sql(dsn))
                expected = left(dsn)
                dsn = copy(cluster, template, "run_plain")
                runs[label]["plain SQL, checked"].append(plain_sql(dsn, checked=True))
                dsn = copy(cluster, template, "run_ours")
                datamap = DECLARED if label == declared else DATAMAP
                runs[label]["project"].append(ours(dsn, work / f"home-{number}-{n}", datamap))
                assert left(dsn) == expected, "the project left other rows than plain SQL"
                print(label, {k: v[-1] for k, v in runs[label].items()}, flush=True)
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                for name in ("run_plain", "run_ours", template):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    best = {
        label: {side: _median(r) for side, r in by_side.items()} for label, by_side in runs.items()
    }
    tenant_rows = 3 * args.posts
    lines = [
        "\n## Destruction on a live platform (`make bench-destroy`)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. Threaded tables "
        f"(`posts` with a tenant column; `comments` through `posts`, half of them replies), "
        f"foreign keys indexed; {args.tenants} tenants interleaved, the destroyed one holding "
        f"{tenant_rows:,} rows ({args.posts:,} posts, {2 * args.posts:,} comments); twice the "
        f"neighbours: {neighbours} more tenants written apart, or all {2 * neighbours + 1} "
        f"interleaved. Medians of {args.repeat} runs, each on a fresh copy of the platform.\n",
        "| platform | rows | size (GB) | plain SQL (s) | plain SQL, checked (s) | project (s) | "
        "check / destroy / verify (s) | project / plain SQL | project / plain SQL, checked |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label, by_side in best.items():
        plain, project = by_side["plain SQL"]["total"], by_side["project"]
        checked = by_side["plain SQL, checked"]["total"]
        lines.append(
            f"| {label} | {sizes[label][0]:,} | {sizes[label][1] / 1e9:.2f} | {plain:.1f} | "
            f"{checked:.1f} | {project['total']:.1f} | {project['check']:.1f} / "
            f"{project['destroy']:.1f} / {project['verify']:.1f} | {project['total'] / plain:.2f}x "
            f"| {project['total'] / checked:.2f}x |"
        )
    first, second, spread, undeclared = (best[label]["project"]["total"] for label in platforms)
    plain = [best[label]["plain SQL"]["total"] for label in platforms]
    lines.append(
        f"\nTwice the neighbours' rows: the project takes {second / first:.2f}x its time on the "
        "first platform (target: at most 1.10x); against plain SQL, "
        f"{best['platform']['project']['total'] / best['platform']['plain SQL']['total']:.2f}x "
        "(target: at most 1.2x). With the neighbours interleaved among the tenant's rows, the "
        f"tenant's rows spread over more pages: the project {spread / first:.2f}x, plain SQL "
        f"{plain[2] / plain[0]:.2f}x. With its references declared in the data map instead "
        f"of foreign keys, the project takes {undeclared / first:.2f}x its time on the "
        "foreign-key platform (target: at most 1.10x). Without foreign keys, plain SQL checks "
        f"nothing; with the one query that keeps other tenants' replies from pointing at deleted "
        f"comments, it takes {best[declared]['plain SQL, checked']['total']:.1f} s: the project "
        f"{undeclared / best[declared]['plain SQL, checked']['total']:.2f}x that. Plain SQL, "
        "checked: the same query first on every platform, the least a DBA must run before "
        "deleting to stop, as the project's isolation check does, before anything changes "
        "where another tenant's reply points at the tenant's comments.\n"
    )
    report = "\n".join(lines)
    print(report)
    record(report, ("## Destruction on a live platform",))


if __name__ == "__main__":
    main()
