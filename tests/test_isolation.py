"""Destruction proves by construction that it touches nothing but the tenant's rows, on a
platform where other tenants keep writing: rows shared with another tenant stop the case
until the settings settle them; a key that would cascade into another tenant's row stops it
before anything is deleted; a neighbour writing all along does not cost the certificate.
(Checked with plain SQL and DuckDB, independently of the project's code.)"""

from __future__ import annotations

import json
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError, IsolationBreachError, SharedRowsError
from offboarding.core.records import (
    ExportedPart,
    ExportResult,
    Inventory,
    LocationInventory,
    TableItem,
)
from offboarding.destruction import destruction
from offboarding.evidence.incidents import check_export_isolation
from offboarding.export import export as stages
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import acknowledge, destroy_everything, export_and_deliver

# A neighbour's post mentioning one of acme's: the row reaches both tenants through posts.
MENTIONS = """
CREATE TABLE mentions (
    id bigint PRIMARY KEY,
    from_post bigint REFERENCES posts (id) {on_delete},
    to_post bigint REFERENCES posts (id) {on_delete},
    note text NOT NULL
);
CREATE INDEX ON mentions (from_post);
CREATE INDEX ON mentions (to_post);
INSERT INTO mentions
SELECT 1, a.id, b.id, 'acme to acme' FROM posts a, posts b
 WHERE a.tenant_id = 'acme' AND b.tenant_id = 'acme' AND a.id < b.id LIMIT 1;
INSERT INTO mentions
SELECT 2, g.id, a.id, 'globex writes about acme' FROM posts g, posts a
 WHERE g.tenant_id = 'globex' AND a.tenant_id = 'acme' LIMIT 1;
"""


def _mentions(platform: Platform, on_delete: str = "") -> None:
    platform.query(MENTIONS.format(on_delete=on_delete))


def _exported(bundle: Path, table: str, tmp_path: Path) -> list[tuple[object, ...]]:
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "bundle")
    parts = tmp_path / "bundle" / "tables" / table
    if not parts.exists():
        return []
    return (
        duckdb.connect().execute(f"SELECT id, note FROM '{parts}/*.parquet' ORDER BY id").fetchall()
    )


def test_a_row_shared_with_another_tenant_stops_the_case_until_the_settings_settle_it(
    platform: Platform,
) -> None:
    _mentions(platform)
    case = platform.case("acme")
    dry = stages.dry_run_inventory(platform.settings, "acme")
    postgres = next(loc for loc in dry.locations if loc.location == "postgres")
    assert postgres.shared_rows == {"public.mentions": 1}
    assert any("public.mentions: 1 row(s)" in w for w in postgres.warnings)
    stages.freeze(platform.settings, case)
    with pytest.raises(SharedRowsError, match="OFFBOARD_SHARED_ROWS"):
        stages.take_inventory(platform.settings, case)
    # Before: a row counted as acme's if ANY key reached it, so the neighbour's row was exported.
    assert platform.query("SELECT count(*) FROM mentions") == [(2,)]


def test_shared_rows_deleted_with_the_tenant_are_not_exported_to_it(
    platform: Platform, tmp_path: Path
) -> None:
    _mentions(platform)
    settings = platform.settings.replace(shared_rows={"public.mentions": "delete"})
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case, settings)
    assert _exported(bundle, "public.mentions", tmp_path) == [(1, "acme to acme")]
    archived = destroy_everything(platform, case, settings)
    assert platform.query("SELECT id FROM mentions") == []
    with open_store(settings.store_url("archive")).open_read(archived.key) as body:
        document = json.loads(body.read())
    assert document["shared_rows"] == {"public.mentions": "1 rows: delete"}
    postgres = next(loc for loc in document["locations"] if loc["location"] == "postgres")
    assert "public.mentions 1 (delete)" in postgres["isolation"]


def test_shared_rows_left_in_place_are_detached_by_their_keys_set_null(
    platform: Platform, tmp_path: Path
) -> None:
    _mentions(platform, "ON DELETE SET NULL")
    settings = platform.settings.replace(shared_rows={"public.mentions": "leave"})
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case, settings)
    assert _exported(bundle, "public.mentions", tmp_path) == [(1, "acme to acme")]
    destroy_everything(platform, case, settings)
    # The neighbour's row stays, its reference to the destroyed post gone; its own intact.
    assert platform.query(
        "SELECT m.id, m.note, m.to_post, p.tenant_id FROM mentions m JOIN posts p "
        "ON p.id = m.from_post"
    ) == [(2, "globex writes about acme", None, "globex")]


def test_shared_rows_left_in_place_under_a_key_that_forbids_it_stop_before_deleting(
    platform: Platform,
) -> None:
    _mentions(platform)  # NO ACTION: the neighbour's row would block the delete of our post
    settings = platform.settings.replace(shared_rows={"public.mentions": "leave"})
    case = platform.case("acme")
    export_and_deliver(platform, case, settings)
    acknowledge(settings, case)
    rows = platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'")
    with pytest.raises(IsolationBreachError, match="mentions_to_post_fkey"):
        destruction.check_isolation(settings, case)
    assert platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'") == rows


def test_a_key_that_would_cascade_into_another_tenants_row_stops_before_anything_is_deleted(
    platform: Platform,
) -> None:
    platform.query(
        "CREATE TABLE bookmarks (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE);"
        "CREATE INDEX ON bookmarks (tenant_id); CREATE INDEX ON bookmarks (post_id);"
        "INSERT INTO bookmarks SELECT 1, 'globex', id FROM posts WHERE tenant_id = 'acme' "
        "LIMIT 1"
    )
    case = platform.case("acme")
    export_and_deliver(platform, case)
    before = platform.fingerprint("acme")
    with pytest.raises(IsolationBreachError, match="globex") as stopped:
        destroy_everything(platform, case)
    assert "bookmarks_post_id_fkey" in str(stopped.value)
    assert "CASCADE" in str(stopped.value)
    assert platform.fingerprint("acme") == before  # rows and files all still there
    assert platform.query("SELECT count(*) FROM bookmarks") == [(1,)]
    incidents = list(open_store(platform.settings.store_url("archive")).list_objects("incidents/"))
    assert incidents, "an incident record is archived"
    # The same check runs again right before the rows are deleted, inside the location.
    with pytest.raises(IsolationBreachError):
        destruction.destroy_location(platform.settings, case, "postgres")
    assert platform.fingerprint("acme") == before


def test_rows_added_to_a_frozen_tenant_after_its_export_stop_the_destruction(
    platform: Platform,
) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    # Comments reach acme through posts: the platform's write guard does not cover them.
    platform.query(
        "INSERT INTO comments (id, post_id, body, created_at) SELECT 999999, id, 'late', now() "
        "FROM posts WHERE tenant_id = 'acme' LIMIT 1"
    )
    with pytest.raises(IntegrityError, match=r"more than the \d+ of the frozen inventory"):
        destruction.check_isolation(platform.settings, case)


def _neighbour_rows(dsn: str) -> dict[tuple[str, int], str]:
    """Every globex post and comment, by id, with a digest of the whole row (plain SQL)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT 'post', id, md5(p::text) FROM posts p WHERE tenant_id = 'globex' "
            "UNION ALL SELECT 'comment', c.id, md5(c::text) FROM comments c "
            "JOIN posts p ON p.id = c.post_id WHERE p.tenant_id = 'globex'"
        ).fetchall()
    return {(kind, int(key)): digest for kind, key, digest in rows}


class NeighbourWriter(threading.Thread):
    """globex at work: inserts posts and replies, edits its posts, deletes its own comments,
    in the tables acme's rows are deleted from, until told to stop."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.touched: set[tuple[str, int]] = set()
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                space, author, post, comment = conn.execute(
                    "SELECT (SELECT min(id) FROM spaces WHERE tenant_id = 'globex'), "
                    "(SELECT min(id) FROM users WHERE tenant_id = 'globex'), "
                    "(SELECT max(id) FROM posts), (SELECT max(id) FROM comments)"
                ).fetchone() or (0, 0, 0, 0)
                edited = [r[0] for r in conn.execute(
                    "SELECT id FROM posts WHERE tenant_id = 'globex' ORDER BY id LIMIT 20"
                )]  # fmt: skip
                deleted = [r[0] for r in conn.execute(
                    "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id WHERE "
                    "p.tenant_id = 'globex' AND NOT EXISTS (SELECT 1 FROM comments r WHERE "
                    "r.parent_id = c.id) ORDER BY c.id LIMIT 20"
                )]  # fmt: skip
                step = 0
                while not self.stop.is_set() or step < 3:
                    step += 1
                    post += 1
                    conn.execute(
                        "INSERT INTO posts (id, tenant_id, space_id, author_id, title) "
                        "VALUES (%s, 'globex', %s, %s, 'new')", (post, space, author),
                    )  # fmt: skip
                    comment += 1
                    conn.execute(
                        "INSERT INTO comments (id, post_id, author_id, body, created_at) "
                        "VALUES (%s, %s, %s, 'reply', now())", (comment, post, author),
                    )  # fmt: skip
                    self.touched |= {("post", post), ("comment", comment)}
                    target = edited[step % len(edited)]
                    conn.execute("UPDATE posts SET score = %s WHERE id = %s", (step, target))
                    self.touched.add(("post", target))
                    if deleted:
                        gone = deleted.pop()
                        conn.execute("DELETE FROM comments WHERE id = %s", (gone,))
                        self.touched.add(("comment", gone))
                    self.writes += 1
        except BaseException as error:  # surfaced by the test
            self.error = error


def test_destruction_certifies_while_a_neighbour_writes_in_the_same_tables(
    platform: Platform,
) -> None:
    # Small batches: the deletion spans many transactions, all of them among the writes.
    settings: Settings = platform.settings.replace(delete_batch_rows=20)
    case = platform.case("acme")
    export_and_deliver(platform, case, settings)
    before = _neighbour_rows(platform.dsn)
    writer = NeighbourWriter(platform.dsn)
    writer.start()
    try:
        archived = destroy_everything(platform, case, settings)
    finally:
        writes_during = writer.writes
        writer.stop.set()
        writer.join(60)
    assert writer.error is None, writer.error
    assert writes_during > 0, "the neighbour wrote while acme was destroyed"
    after = _neighbour_rows(platform.dsn)
    untouched = {key: digest for key, digest in before.items() if key not in writer.touched}
    assert {key: after.get(key) for key in untouched} == untouched
    assert all(key in after for key in writer.touched if key not in before)  # its inserts stay
    assert platform.query(
        "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE p.tenant_id = 'acme'"
    ) == [(0,)]
    with open_store(settings.store_url("archive")).open_read(archived.key) as body:
        document = json.loads(body.read())
    assert all(loc["remaining"] == 0 for loc in document["locations"])


def test_with_every_index_in_place_destruction_plans_from_the_tenants_rows(
    platform: Platform,
) -> None:
    """The indexes the inventory asks for, all created: the proof and the deletes run with
    whole-table plans switched off, and still destroy exactly the tenant's rows."""
    from offboarding.locations.postgres import PostgresLocation
    from offboarding.locations.postgres.catalog import classify, read_indexes
    from offboarding.planning import missing_indexes, reached_through_indexes

    with psycopg.connect(platform.dsn) as conn:
        classification, tables, _ = classify(conn, platform.settings)
        for missing in missing_indexes(classification, tables, read_indexes(conn)):
            conn.execute(f"CREATE INDEX ON {missing.table} ({', '.join(missing.columns)})")
        owned = set(classification.owned)
        for table in tables:  # keys into tenant-owned tables, from anywhere
            for fk in table.foreign_keys:
                if fk.references in owned:
                    conn.execute(f"CREATE INDEX ON {table.qualified} ({', '.join(fk.columns)})")
        assert reached_through_indexes(classification, tables, read_indexes(conn))
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    neighbours = {t: platform.fingerprint(t) for t in ("globex", "acme-corp")}
    settings = platform.settings.replace(delete_batch_rows=7)
    proof = PostgresLocation(settings).prove_isolation(case)
    assert proof.indexed and proof.references_checked > 0
    removal = destruction.destroy_location(settings, case, "postgres")
    assert removal.items_removed == removal.items_before > 0
    assert "each delete statement returned its rows' owner columns" in removal.isolation
    assert destruction.verify_location(settings, case, "postgres").items == 0
    assert {t: platform.fingerprint(t) for t in neighbours} == neighbours


def _bookmarked_after_the_proof(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """globex bookmarks acme's first post right after the destroy's proof: the proofs made."""
    from offboarding.locations.postgres import deletion

    proved, proofs = deletion._prove, []

    def then_a_neighbour_writes(*args: Any, **kwargs: Any) -> Any:
        result = proved(*args, **kwargs)
        proofs.append(result[1])
        platform.query(
            "INSERT INTO bookmarks SELECT 1, 'globex', id FROM posts WHERE tenant_id = 'acme' "
            "ORDER BY id LIMIT 1"
        )
        return result

    monkeypatch.setattr(deletion, "_prove", then_a_neighbour_writes)
    return proofs


def test_a_cascading_reference_written_after_the_check_is_caught_under_the_batchs_locks(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A neighbour's row that starts referencing the tenant's row between the check and the
    delete, through a key that would cascade: the batch's rows are locked, the check is run
    again for them, and the batch is rolled back instead of deleting the neighbour's row."""

    platform.query(
        "CREATE TABLE bookmarks (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE);"
        "CREATE INDEX ON bookmarks (tenant_id); CREATE INDEX ON bookmarks (post_id)"
    )
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    _bookmarked_after_the_proof(platform, monkeypatch)
    posts = platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'")
    with pytest.raises(IsolationBreachError, match="bookmarks_post_id_fkey"):
        destruction.destroy_location(platform.settings, case, "postgres")
    assert platform.query("SELECT tenant_id FROM bookmarks") == [("globex",)]
    assert platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'") == posts


@pytest.mark.parametrize("deferred", [False, True], ids=["immediate", "deferred"])
def test_a_refusing_reference_written_after_the_check_is_refused_by_the_database_and_named(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, deferred: bool
) -> None:
    """A key ON DELETE NO ACTION is left to the database while deleting (the isolation check
    proved it before any location): a neighbour's row that starts referencing the tenant's
    row after that proof makes the database refuse the batch, at the delete or, for a
    deferred key, at its commit. The batch is rolled back, the neighbour's row is named in an
    incident, and the neighbour's row and the tenant's rows of that batch stay."""

    timing = " DEFERRABLE INITIALLY DEFERRED" if deferred else ""
    platform.query(
        "CREATE TABLE bookmarks (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        f"tenants (id), post_id bigint NOT NULL REFERENCES posts (id){timing});"
        "CREATE INDEX ON bookmarks (tenant_id); CREATE INDEX ON bookmarks (post_id)"
    )
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    destruction.check_isolation(platform.settings, case)  # the check before any location
    proofs = _bookmarked_after_the_proof(platform, monkeypatch)
    posts = platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'")
    with pytest.raises(IsolationBreachError, match="globex") as refused:
        destruction.destroy_location(platform.settings, case, "postgres")
    assert "bookmarks_post_id_fkey" in str(refused.value)
    assert "NO ACTION" in str(refused.value)
    assert proofs[0].references_guarded > 0  # the key was left to the database
    assert platform.query("SELECT tenant_id FROM bookmarks") == [("globex",)]
    assert platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'") == posts
    incidents = list(open_store(platform.settings.store_url("archive")).list_objects("incidents/"))
    assert incidents, "an incident record is archived"


def test_the_read_back_reads_each_systems_own_tenant_column(
    platform: Platform, tmp_path: Path
) -> None:
    """A MariaDB system names its owner column itself: the read-back used the platform's
    `tenant_id` for every table, found no such column, and let another tenant's row pass."""
    part = tmp_path / "part.parquet"
    pq.write_table(pa.table({"id": [1, 2], "org": ["acme", "globex"]}), part)
    table = TableItem(
        schema_name="wiki", table="pages", scope="tenant", tenant_column="org", rows=2,
        bytes_estimate=0, columns=[], primary_key=["id"],
    )  # fmt: skip
    inventory = Inventory(
        tenant="acme", case_id="acme-0123456789ab", taken_at=datetime.now(UTC),
        locations=[LocationInventory(location="wiki", items=2, bytes=0, tables=[table])],
    )  # fmt: skip
    exported = ExportResult(
        parts=[ExportedPart(path="tables/wiki.pages/part-00000.parquet", source="scratch:x",
                            kind="table", table="wiki.pages", rows=2, size=0)],
        snapshot_time=datetime.now(UTC),
    )  # fmt: skip
    with pytest.raises(IsolationBreachError, match=r"1 row\(s\) of 1 other tenant"):
        check_export_isolation(
            platform.settings, platform.case("acme"), inventory, exported,
            lambda _: part.open("rb"),
        )  # fmt: skip
