"""One consistent snapshot: tables exported by parallel workers while the tenant keeps writing
are still exactly one moment of the database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import psycopg

from offboarding.export import export as stages
from offboarding.locations.postgres import PostgresLocation
from tests.conftest import Platform


def test_concurrent_writes_do_not_tear_the_snapshot(platform: Platform, tmp_path: Path) -> None:
    # Tables split into many small parts make the export long enough to overlap the writer.
    settings = platform.settings.replace(
        export_split_rows=1_000, parquet_row_group_rows=1_000, export_workers=2
    )
    case = platform.case("acme")
    inventory = stages.take_inventory(settings, case)  # not frozen: the tenant still writes
    postgres = next(loc for loc in inventory.locations if loc.location == "postgres")
    space = platform.query("SELECT id FROM spaces WHERE tenant_id = 'acme' LIMIT 1")[0][0]
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with psycopg.connect(platform.dsn, autocommit=True) as conn:
            next_id = 10_000_000
            while not stop.is_set():
                with conn.transaction():  # a post and its first comment, atomically
                    conn.execute(
                        "INSERT INTO posts (id, tenant_id, space_id, title) "
                        "VALUES (%s, 'acme', %s, 'live')",
                        (next_id, space),
                    )
                    conn.execute(
                        "INSERT INTO comments (id, post_id, body, created_at) "
                        "VALUES (%s, %s, 'live', now())",
                        (next_id, next_id),
                    )
                written.append(next_id)
                next_id += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        result = PostgresLocation(settings).export(case, postgres, tmp_path / "export")
        after_export = len(written)
    finally:
        stop.set()
        thread.join()

    reader = duckdb.connect()
    posts = {
        r[0]
        for r in reader.execute(
            f"SELECT id FROM '{tmp_path}/export/tables/public.posts/*.parquet'"
        ).fetchall()
    }
    comments = reader.execute(
        f"SELECT id, post_id FROM '{tmp_path}/export/tables/public.comments/*.parquet'"
    ).fetchall()
    live_posts = {p for p in posts if p >= 10_000_000}
    live_comments = {c for c, _ in comments if c >= 10_000_000}
    assert live_posts == live_comments  # each pair entirely in or entirely out
    assert {post for _, post in comments} <= posts  # no comment without its post
    assert 20 <= len(live_posts) < len(written)  # writes before and after the snapshot
    assert after_export > len(live_posts)
    exported_rows = {p.table: p.rows for p in result.parts}
    with psycopg.connect(platform.dsn) as conn:
        total = conn.execute("SELECT count(*) FROM posts WHERE tenant_id = 'acme'").fetchone()
    assert total is not None and exported_rows["public.posts"] < total[0]
