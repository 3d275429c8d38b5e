"""Export against the real PostgreSQL: the bundle holds exactly the tenant's rows and files,
read back by independent readers (Info-ZIP's unzip, DuckDB)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import psycopg
import pytest
from psycopg import sql

from offboarding.core.errors import MissingDataError, UnclassifiedDataError
from offboarding.export import export as stages
from offboarding.registry import TenantRegistry
from tests.conftest import Platform
from tests.helpers import bundle_files, declare_shape, export_and_deliver, with_small_parts

# Written independently of the pipeline's discovery: what the demo schema says is acme's.
SOURCE_FILTERS = {
    "public.tenants": "id = %(t)s",
    "public.users": "tenant_id = %(t)s",
    "public.spaces": "tenant_id = %(t)s",
    "public.posts": "tenant_id = %(t)s",
    "public.comments": "post_id IN (SELECT id FROM posts WHERE tenant_id = %(t)s)",
    "public.wiki_pages": "tenant_id = %(t)s",
    "public.documents": "tenant_id = %(t)s",
    "public.chat_messages": "tenant_id = %(t)s",
    "public.survey_answers": "tenant_id = %(t)s",
    "tenant_acme.custom_fields": "TRUE",
}
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@pytest.fixture
def unzipped(platform: Platform, tmp_path: Path) -> Path:
    # Tiny parts and row groups: every large-table code path runs on the demo's small tables.
    settings = platform.settings.replace(export_split_rows=1_000, parquet_row_group_rows=1_000)
    platform.query(
        "INSERT INTO chat_messages (id, tenant_id, space_id, author_id, sent_at, body) "
        "SELECT 50000000 + g, 'acme', s.id, NULL, now(), 'bulk ' || g "
        "FROM generate_series(1, 3500) g, LATERAL (SELECT id FROM spaces "
        "WHERE tenant_id = 'acme' ORDER BY id LIMIT 1) s"
    )
    _, _, bundle = export_and_deliver(platform, platform.case("acme"), settings)
    target = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(target)], check=True)
    return target


def _source_rows(platform: Platform, table: str, tenant: str) -> list[dict[str, Any]]:
    schema, _, name = table.partition(".")
    with psycopg.connect(platform.dsn) as conn:
        cursor = conn.execute(
            sql.SQL("SELECT * FROM {} x WHERE " + SOURCE_FILTERS[table] + " ORDER BY x.id").format(
                sql.Identifier(schema, name)
            ),
            {"t": tenant},
        )
        names = [d.name for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor]


def _text_rows(platform: Platform, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    schema, _, name = table.partition(".")
    with psycopg.connect(platform.dsn) as conn:
        return conn.execute(
            sql.SQL("SELECT {} FROM {} x WHERE " + SOURCE_FILTERS[table] + " ORDER BY x.id").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(schema, name),
            ),
            {"t": "acme"},
        ).fetchall()


def test_every_table_equals_the_source_rows_exactly(platform: Platform, unzipped: Path) -> None:
    manifest = json.loads((unzipped / "manifest.json").read_text())
    assert {t["name"] for t in manifest["tables"]} == set(SOURCE_FILTERS)
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    for table in manifest["tables"]:
        name = table["name"]
        cursor = reader.execute(f"SELECT * FROM '{unzipped}/tables/{name}/*.parquet' ORDER BY 1")
        exported = [
            dict(zip([d[0] for d in cursor.description], row, strict=True))
            for row in cursor.fetchall()
        ]
        source = _source_rows(platform, name, "acme")
        assert len(exported) == len(source) == table["rows"], name
        as_text = [c["name"] for c in table["columns"] if c["as_text"]]
        text_values = _text_rows(platform, name, as_text) if as_text else []
        for index, (got, want) in enumerate(zip(exported, source, strict=True)):
            for column in table["columns"]:
                col = column["name"]
                if column["as_text"]:
                    expected = text_values[index][as_text.index(col)]
                    assert got[col] == expected, (name, col)
                elif column["pg_type"] in ("json", "jsonb"):
                    assert (json.loads(got[col]) if got[col] is not None else None) == want[col]
                else:
                    assert got[col] == want[col], (name, col, got[col], want[col])


def test_a_large_table_is_exported_in_parts_without_loss(
    platform: Platform, unzipped: Path
) -> None:
    parts = sorted((unzipped / "tables" / "public.chat_messages").glob("part-*.parquet"))
    assert len(parts) >= 3
    reader = duckdb.connect()
    total, distinct = reader.execute(
        "SELECT count(*), count(DISTINCT id) "
        f"FROM '{unzipped}/tables/public.chat_messages/*.parquet'"
    ).fetchone() or (0, 0)
    source = platform.query("SELECT count(*) FROM chat_messages WHERE tenant_id = 'acme'")[0][0]
    assert total == distinct == source > 3500


def test_foreign_keys_go_into_the_manifest(unzipped: Path) -> None:
    manifest = json.loads((unzipped / "manifest.json").read_text())
    comments = next(t for t in manifest["tables"] if t["name"] == "public.comments")
    assert {
        "columns": ["post_id"], "references": "public.posts", "referenced_columns": ["id"],
        "declared": False, "none": [], "when": {},
    } in comments["foreign_keys"]  # fmt: skip


def test_composite_foreign_keys_reach_derived_rows(platform: Platform) -> None:
    platform.query(
        "CREATE TABLE public.translations (post_id bigint REFERENCES posts (id), lang text, "
        "  title text, PRIMARY KEY (post_id, lang)); "
        "CREATE TABLE public.translation_votes (id serial PRIMARY KEY, post_id bigint, lang text, "
        "  up boolean, FOREIGN KEY (post_id, lang) REFERENCES translations (post_id, lang)); "
        "INSERT INTO translations SELECT id, 'en', title FROM posts; "
        "INSERT INTO translation_votes (post_id, lang, up) SELECT post_id, lang, true "
        "  FROM translations"
    )
    inventory = stages.take_inventory(platform.settings, platform.case("acme"))
    votes = next(t for t in inventory.tables if t.table == "translation_votes")
    expected = platform.query("SELECT count(*) FROM posts WHERE tenant_id = 'acme'")[0][0]
    assert votes.scope == "derived" and votes.rows == expected
    assert votes.parents == ["public.translations"]


def test_types_reach_the_reader_as_their_own_types(unzipped: Path) -> None:
    reader = duckdb.connect()

    def types(table: str) -> dict[str, str]:
        rows = reader.execute(f"DESCRIBE SELECT * FROM '{unzipped}/tables/{table}/*.parquet'")
        return {r[0]: r[1] for r in rows.fetchall()}

    assert types("public.posts")["score"] == "DECIMAL(12,4)"
    assert types("public.posts")["published_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types("public.posts")["metadata"] == "JSON"
    assert types("public.users")["last_login_at"] == "TIMESTAMP"
    assert types("public.users")["avatar"] == "BLOB"
    assert types("public.wiki_pages")["id"] == "UUID"
    assert types("public.spaces")["tags"] == "VARCHAR[]"
    assert types("public.survey_answers")["choices"] == "INTEGER[]"
    assert types("public.survey_answers")["submitted_on"] == "DATE"
    assert types("public.survey_answers")["rating"] == "SMALLINT"


def test_no_row_of_any_other_tenant(platform: Platform, unzipped: Path) -> None:
    reader = duckdb.connect()
    for table in ("users", "spaces", "posts", "wiki_pages", "documents", "chat_messages"):
        tenants = reader.execute(
            f"SELECT DISTINCT tenant_id FROM '{unzipped}/tables/public.{table}/*.parquet'"
        ).fetchall()
        assert tenants == [("acme",)], table
    comment_posts = {
        r[0]
        for r in reader.execute(
            f"SELECT post_id FROM '{unzipped}/tables/public.comments/*.parquet'"
        ).fetchall()
    }
    acme_posts = {r[0] for r in platform.query("SELECT id FROM posts WHERE tenant_id = 'acme'")}
    assert comment_posts and comment_posts <= acme_posts


def test_files_are_the_original_bytes_of_the_tenant_only(
    platform: Platform, unzipped: Path
) -> None:
    manifest = json.loads((unzipped / "manifest.json").read_text())
    file_entries = [e for e in manifest["entries"] if e["kind"] == "file"]
    originals = {o.key: o for o in platform.files.list_objects("tenants/acme/")}
    assert sorted(e["source_key"] for e in file_entries) == sorted(originals)
    for entry in file_entries:
        data = (unzipped / entry["path"]).read_bytes()
        with platform.files.open_read(entry["source_key"]) as original:
            assert data == original.read()
    assert not any("acme-corp" in e["source_key"] for e in file_entries)


def test_checksums_and_signature_check_with_standard_tools(unzipped: Path) -> None:
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=unzipped, check=True)
    subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pem", "-rawin",
         "-in", "manifest.json", "-sigfile", "manifest.json.sig"],
        cwd=unzipped, check=True, capture_output=True,
    )  # fmt: skip


def test_manifest_validates_against_its_schema(unzipped: Path) -> None:
    schema = json.loads((SCHEMA_DIR / "manifest.schema.json").read_text())
    jsonschema.validate(json.loads((unzipped / "manifest.json").read_text()), schema)


def test_freeze_makes_the_tenant_read_only(platform: Platform) -> None:
    stages.freeze(platform.settings, platform.case("acme"))
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only"):
        platform.query("UPDATE posts SET title = 'changed' WHERE tenant_id = 'acme'")
    platform.query("UPDATE posts SET title = title WHERE tenant_id = 'acme-corp' RETURNING id")


def test_an_unclassified_table_stops_the_case_with_the_fix(platform: Platform) -> None:
    platform.query("CREATE TABLE public.audit_blobs (id int PRIMARY KEY, payload text) ")
    with pytest.raises(UnclassifiedDataError) as raised:
        stages.take_inventory(platform.settings, platform.case("acme"))
    assert "public.audit_blobs" in str(raised.value)
    assert "OFFBOARD_GLOBAL_TABLES" in str(raised.value)


def test_tables_derived_through_foreign_key_chains_are_exported(platform: Platform) -> None:
    platform.query(
        "CREATE TABLE public.comment_reactions (id int PRIMARY KEY, "
        "comment_id bigint NOT NULL REFERENCES comments (id), emoji text); "
        "INSERT INTO comment_reactions SELECT c.id, c.id, '👍' FROM comments c "
        "JOIN posts p ON p.id = c.post_id WHERE p.tenant_id IN ('acme', 'acme-corp')"
    )
    inventory = stages.take_inventory(platform.settings, platform.case("acme"))
    reactions = next(t for t in inventory.tables if t.table == "comment_reactions")
    expected = platform.query(
        "SELECT count(*) FROM comment_reactions r JOIN comments c ON c.id = r.comment_id "
        "JOIN posts p ON p.id = c.post_id WHERE p.tenant_id = 'acme'"
    )[0][0]
    assert reactions.scope == "derived" and reactions.rows == expected
    assert reactions.parents == ["public.comments"]


def test_a_missing_referenced_file_stops_the_case(platform: Platform) -> None:
    key = platform.query("SELECT object_key FROM documents WHERE tenant_id = 'acme' LIMIT 1")[0][0]
    assert platform.files.delete(str(key))
    with pytest.raises(MissingDataError, match="missing") as raised:
        stages.take_inventory(platform.settings, platform.case("acme"))
    # The message reaches Prefect: it names the report, not the key (a file name).
    assert str(key) not in str(raised.value)
    report = Path(str(raised.value).split("listed in ")[1].split(" on the worker")[0])
    assert report.read_text().split() == str(key).split()


def test_exporting_the_same_snapshot_twice_gives_identical_bytes(
    platform: Platform, tmp_path: Path
) -> None:
    import zipfile

    # Small parts: the large-table path (block ranges in physical order) runs too.
    settings = with_small_parts(platform.settings, 20)
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    assert any(t.rows > 20 and t.scope == "tenant" for t in inventory.tables)
    bundles = []
    for attempt in range(2):
        exported = stages.export_snapshot(settings, case, inventory)
        bundle = stages.package(settings, case, inventory, exported)
        copy = tmp_path / f"bundle-{attempt}.zip"
        bundle_files(bundle)[0].rename(copy)
        bundles.append(copy)
    first, second = (zipfile.ZipFile(b) for b in bundles)
    assert first.namelist() == second.namelist()
    for name in first.namelist():
        if name in ("manifest.json", "manifest.json.sig"):
            continue
        assert first.read(name) == second.read(name), name
    manifests = [json.loads(z.read("manifest.json")) for z in (first, second)]
    # Only the declared timestamp may differ.
    assert {k for k in manifests[0] if manifests[0][k] != manifests[1][k]} <= {"snapshot_time"}


def test_the_dry_run_lists_the_plan_and_what_blocks_it(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from offboarding.cli import main

    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    assert main(["inventory", "acme"]) == 0
    out = capsys.readouterr().out
    assert "public.comments" in out and "derived" in out and "tenant_acme.custom_fields" in out
    assert TenantRegistry(platform.settings).get("acme").status == "active"

    platform.query("CREATE TABLE public.audit_blobs (id int PRIMARY KEY, payload text)")
    assert main(["inventory", "acme", "--json"]) == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["locations"][0]["unclassified"] == ["public.audit_blobs"]
    jsonschema.validate(plan, json.loads((SCHEMA_DIR / "inventory.schema.json").read_text()))

    assert main(["inventory", "nobody"]) == 2
    assert "not in the platform's tenants table" in capsys.readouterr().err


def test_hostile_object_keys_become_safe_unique_entries(platform: Platform, tmp_path: Path) -> None:
    hostile = {
        "tenants/acme/odd/bell\x07name.txt": b"control character",
        "tenants/acme/odd/caf\u00e9.txt": b"composed",
        "tenants/acme/odd/cafe\u0301.txt": b"decomposed, same name once normalised",
        "tenants/acme/odd/CAFÉ.TXT": b"differs only by case",
        "tenants/acme/odd/back\\slash:colon.txt": b"windows-hostile",
        "tenants/acme/odd/" + "long" * 60 + ".txt": b"long name",
    }
    for key, data in hostile.items():
        platform.files.put_bytes(key, data)
    _, _, bundle = export_and_deliver(platform, platform.case("acme"))
    target = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(target)], check=True)
    manifest = json.loads((target / "manifest.json").read_text())
    by_source = {e["source_key"]: e["path"] for e in manifest["entries"] if e["kind"] == "file"}
    paths = [by_source[key] for key in hostile]
    assert len({p.casefold() for p in paths}) == len(paths)
    for key, path in zip(hostile, paths, strict=True):
        assert path.startswith("files/odd/") and ".." not in path.split("/")
        assert not any(ord(ch) < 32 for ch in path) and "\\" not in path and ":" not in path
        assert (target / path).read_bytes() == hostile[key]


def test_one_worker_reads_every_part_in_the_order_its_plan_promises(
    platform: Platform, tmp_path: Path
) -> None:
    # One worker, one connection: block-range parts (physical order, index scans ruled out)
    # and key-ordered tables alternate on it, and each must still come out in its own order.
    settings = with_small_parts(platform.settings, 20, workers=1)
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    exported = stages.export_snapshot(settings, case, inventory)
    scratch = stages.scratch_dir(settings, case) / "export"
    reader = duckdb.connect()

    def exported_ids(table: str) -> list[int]:
        paths = sorted(p.path for p in exported.parts if p.table == table)
        return [
            row[0]
            for path in paths
            for row in reader.execute(f"SELECT id FROM '{scratch / path}'").fetchall()
        ]

    physical = exported_ids("public.chat_messages")
    assert len({p.path for p in exported.parts if p.table == "public.chat_messages"}) > 1
    in_blocks = [r[0] for r in platform.query(
        "SELECT id FROM chat_messages WHERE tenant_id = 'acme' ORDER BY ctid"
    )]  # fmt: skip
    assert physical == in_blocks
    keyed = exported_ids("public.comments")
    assert keyed == sorted(keyed) and len(keyed) > 20


def test_a_copy_on_request_is_a_verified_bundle_of_the_active_tenant_and_opens_no_case(
    platform: Platform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`offboard export`: the case's export, packaging and verification, while the tenant keeps
    writing; nothing frozen, delivered or recorded, scratch wiped, the bundle readable by an
    independent reader and equal to the database as the snapshot saw it."""
    import hashlib
    import threading
    import zipfile

    from offboarding.cli import main

    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    stop = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:  # the tenant is active: its users post during the copy
        with psycopg.connect(platform.dsn, autocommit=True) as conn:
            for n in range(5_000):
                if stop.is_set():
                    break
                conn.execute(
                    "INSERT INTO chat_messages (id, tenant_id, space_id, author_id, sent_at, body) "
                    "SELECT 70000000 + %s, 'acme', id, NULL, now(), 'live' FROM spaces "
                    "WHERE tenant_id = 'acme' ORDER BY id LIMIT 1",
                    (n,),
                )
                written.append(n)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        out = tmp_path / "copy"
        assert main(["export", "acme", "--out", str(out), "--json"]) == 0
    finally:
        stop.set()
        writer.join()
    result = json.loads(capsys.readouterr().out)
    assert written, "the writer never wrote: the test proves nothing"
    for part in result["parts"]:
        assert Path(part["path"]).parent == out.resolve()
        assert hashlib.sha256(Path(part["path"]).read_bytes()).hexdigest() == part["sha256"]

    unzipped = tmp_path / "unzipped"
    for part in result["parts"]:
        with zipfile.ZipFile(part["path"]) as bundle:
            bundle.extractall(unzipped)
    manifest = json.loads((unzipped / "manifest.json").read_text())
    reader = duckdb.connect()
    for table in manifest["tables"]:
        files = f"{unzipped}/tables/{table['name']}/*.parquet"
        (count,) = reader.execute(f"SELECT count(*) FROM '{files}'").fetchone()  # type: ignore[misc]
        assert count == table["rows"], table["name"]
    messages = next(t for t in manifest["tables"] if t["name"] == "public.chat_messages")
    before = len(_source_rows(platform, "public.chat_messages", "acme")) - len(written)
    assert before <= messages["rows"] <= before + len(written)  # one snapshot, mid-stream
    assert sum(t["rows"] for t in manifest["tables"]) == result["rows"]
    public_key = platform.settings.keys_dir / "signing-ed25519.pub.pem"
    parts = [p["path"] for p in result["parts"]]
    assert main(["verify", *parts, "--public-key", str(public_key)]) == 0
    assert capsys.readouterr().out.startswith("OK:")

    # No case: the tenant is active, nothing is archived or delivered, scratch is empty.
    assert TenantRegistry(platform.settings).get("acme").status == "active"
    stores = platform.settings.home / "stores"
    assert not (stores / "archive" / "cases").exists()
    assert not [p for p in (stores / "delivery").rglob("*") if p.is_file()]
    assert not [p for p in platform.settings.scratch_root.rglob("*") if p.is_file()]

    # A second copy into the same folder: a bundle of its own, the first untouched.
    assert main(["export", "acme", "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {p["path"] for p in again["parts"]}.isdisjoint(parts)
    for part in result["parts"]:
        assert hashlib.sha256(Path(part["path"]).read_bytes()).hexdigest() == part["sha256"]
    assert main(["export", "nobody", "--out", str(out)]) == 2
    assert "not in the platform's tenants table" in capsys.readouterr().err


def test_the_export_reports_its_parts_as_workers_finish_them(platform: Platform) -> None:
    """What the terminal's bar and the UI's progress artifact are fed: every part, once, with
    the rows so far, ending at all parts and every row."""
    settings = with_small_parts(platform.settings, 20)
    case = platform.case("acme")
    inventory = stages.inventory_of(settings, case)
    seen: list[tuple[int, int, int]] = []
    exported = stages.export_snapshot(
        settings, case, inventory, record=False, progress=lambda *p: seen.append(p)
    )
    tables = [p for p in exported.parts if p.kind == "table"]
    total = len(tables)
    assert total > len(inventory.tables)  # split: the large-table path reports too
    assert seen[0] == (0, total, 0)
    assert [done for done, _, _ in seen] == list(range(total + 1))
    assert {t for _, t, _ in seen} == {total}
    rows = [r for _, _, r in seen]
    assert rows == sorted(rows) and rows[-1] == sum(p.rows or 0 for p in tables)


def test_the_inventory_warns_of_tenant_and_foreign_key_columns_without_an_index(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing index makes every count and delete of the tenant read the whole table: the
    dry run names the table, the columns, the cost and the statement that fixes it."""
    from offboarding.cli import main

    platform.query("CREATE INDEX ON posts (tenant_id)")
    inventory = stages.dry_run_inventory(platform.settings, "acme")
    warnings = [w for loc in inventory.locations for w in loc.warnings]
    assert not [w for w in warnings if w.startswith("public.posts:")]  # indexed: no warning
    comments = [w for w in warnings if w.startswith("public.comments: no index leads with")]
    # comments reach the tenant through posts and through users (authors), and thread replies
    assert {w.split("(")[1].split(")")[0] for w in comments} == {
        "post_id", "author_id", "parent_id"
    }  # fmt: skip
    assert all("reads the whole table" in w and "CREATE INDEX" in w for w in comments)

    platform.query(
        "CREATE INDEX ON comments (post_id); CREATE INDEX ON comments (parent_id); "
        "CREATE INDEX ON comments (author_id)"
    )
    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    assert main(["inventory", "acme"]) == 0  # a warning never stops a case
    out = capsys.readouterr().out
    assert "WARNING: public.users: no index leads with (tenant_id)" in out
    assert "public.comments: no index" not in out and "public.posts: no index" not in out


def test_a_materialized_view_or_foreign_table_stops_the_case_until_declared(
    platform: Platform,
) -> None:
    """A materialized view keeps a copy of the tenant's rows that deleting them leaves in
    place; a foreign table's rows live elsewhere. Neither is a table the pipeline can export
    or destroy by key: the case stops until each is declared, with the reason."""
    platform.query(
        "CREATE MATERIALIZED VIEW post_titles AS SELECT tenant_id, title FROM posts;"
        "CREATE EXTENSION postgres_fdw;"
        "CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'x');"
        "CREATE FOREIGN TABLE remote_notes (id bigint, body text) SERVER elsewhere"
    )
    dry = stages.dry_run_inventory(platform.settings, "acme")
    listed = [name for loc in dry.locations for name in loc.unclassified]
    assert "public.post_titles (materialized view)" in listed
    assert "public.remote_notes (foreign table)" in listed
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(UnclassifiedDataError, match="materialized view") as stopped:
        stages.take_inventory(platform.settings, case)
    assert "public.post_titles (materialized view)" in str(stopped.value)
    declare_shape(
        platform,
        excluded_tables='{ "public.post_titles" = "refreshed by the platform every night" }',
        global_tables='{ "public.plans" = "plan catalogue", "public.remote_notes" = "release '
        "notes from the vendor's system; no tenant data\" }",
    )
    inventory = stages.take_inventory(platform.settings, case)
    postgres = next(loc for loc in inventory.locations if loc.location == "postgres")
    assert postgres.excluded_tables["public.post_titles"].startswith("refreshed")
    assert "public.remote_notes" in postgres.global_tables


def test_inheritance_and_large_objects_stop_the_case_until_declared(platform: Platform) -> None:
    """A parent's SELECT and DELETE reach its inheritance children's rows (exported and
    deleted twice over); a large object's content lives outside its table. The case stops,
    naming each, until they are declared; partitions are read through their parent."""
    platform.query(
        "CREATE TABLE audit_log (id bigint PRIMARY KEY, tenant_id text NOT NULL, at timestamptz);"
        "CREATE TABLE audit_log_2024 () INHERITS (audit_log);"
        "CREATE TABLE scans (id bigint PRIMARY KEY, tenant_id text NOT NULL, image oid);"
        "INSERT INTO scans VALUES (1, 'acme', lo_from_bytea(0, 'scan of a contract'));"
        "CREATE TABLE events (id bigint, tenant_id text NOT NULL, day date NOT NULL,"
        " PRIMARY KEY (id, day)) PARTITION BY RANGE (day);"
        "CREATE TABLE events_2024 PARTITION OF events"
        " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        "INSERT INTO events VALUES (1, 'acme', '2024-05-01'), (2, 'globex', '2024-05-02')"
    )
    dry = stages.dry_run_inventory(platform.settings, "acme")
    listed = [name for loc in dry.locations for name in loc.unclassified]
    assert "public.audit_log (inheritance parent of public.audit_log_2024)" in listed
    assert "public.audit_log_2024 (inheritance child of public.audit_log)" in listed
    assert "public.scans (large objects in column image)" in listed
    assert not any("events" in name for name in listed)  # partitions: through the parent
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(UnclassifiedDataError, match="large object's content lives in"):
        stages.take_inventory(platform.settings, case)
    rotated = '"inheritance: rotated by the platform, purged after 30 days"'
    scans = '"large objects: the platform erases the tenant\'s scans itself"'
    declare_shape(
        platform,
        excluded_tables=f'{{ "public.audit_log" = {rotated}, "public.audit_log_2024" = {rotated}, '
        f'"public.scans" = {scans} }}',
    )
    # scans holds acme's rows: left out, it needs the system that covers its copy.
    with pytest.raises(UnclassifiedDataError, match=r"public\.scans \(1 rows\) hold rows"):
        stages.take_inventory(platform.settings, case)
    declare_shape(
        platform,
        excluded_tables=f'{{ "public.audit_log" = {rotated}, "public.audit_log_2024" = {rotated}, '
        f'"public.scans" = {{ why = {scans}, handled_by = "helpdesk" }} }}',
    )
    inventory = stages.take_inventory(platform.settings, case)
    rows = {t.qualified: t.rows for t in inventory.tables}
    assert rows["public.events"] == 1 and "public.events_2024" not in rows
    assert "public.scans" not in rows
    (scans_left,) = [e for e in inventory.left_out if e.name == "public.scans"]
    assert (scans_left.tenant_rows, scans_left.handled_by) == (1, "helpdesk")


def test_a_table_of_wide_rows_is_split_by_its_weight_not_only_its_rows(
    platform: Platform,
) -> None:
    """Few rows can weigh gigabytes (documents, blobs): the part plan counts bytes too."""
    settings = with_small_parts(platform.settings, split_rows=1_000_000, split_bytes=4_096)
    case = platform.case("acme")
    inventory = stages.take_inventory(settings, case)
    posts = next(t for t in inventory.tables if t.qualified == "public.posts")
    assert posts.rows < 1_000_000 and posts.bytes_estimate > 4_096
    exported = stages.export_snapshot(settings, case, inventory)
    parts = [p for p in exported.parts if p.table == "public.posts"]
    assert len(parts) > 1 and sum(p.rows or 0 for p in parts) == posts.rows
    whole = stages.export_snapshot(platform.settings, case, inventory)
    assert len([p for p in whole.parts if p.table == "public.posts"]) == 1


def test_a_large_derived_table_without_an_integer_key_is_split_at_its_key_quantiles(
    platform: Platform,
) -> None:
    """Rows reached through a foreign key, keyed by (post, voter name): no integer span to
    slice, so the plan cuts the ordered keys every n rows. Every row is in exactly one part,
    and another tenant's votes in none."""
    platform.query(
        "CREATE TABLE post_votes (post_id bigint NOT NULL REFERENCES posts (id), "
        'voter text COLLATE "C" NOT NULL, up boolean NOT NULL, PRIMARY KEY (post_id, voter))'
    )
    platform.query(
        "INSERT INTO post_votes SELECT p.id, 'voter ' || g || ' ✓', g % 3 = 0 "
        "FROM posts p, generate_series(1, 40) g"
    )
    settings = with_small_parts(platform.settings, split_rows=100)
    case = platform.case("acme")
    inventory = stages.take_inventory(settings, case)
    votes = next(t for t in inventory.tables if t.qualified == "public.post_votes")
    assert votes.scope == "derived" and votes.rows > 300
    exported = stages.export_snapshot(settings, case, inventory)
    parts = sorted(
        (p for p in exported.parts if p.table == "public.post_votes"), key=lambda p: p.path
    )
    assert len(parts) >= 4
    assert max(p.rows or 0 for p in parts) == -(-votes.rows // len(parts))  # even parts
    scratch = stages.scratch_dir(settings, case) / "export"
    keys = [
        row
        for part in parts
        for row in duckdb.sql(f"SELECT post_id, voter FROM '{scratch / part.path}'").fetchall()
    ]
    with psycopg.connect(platform.dsn) as conn:
        source = conn.execute(
            "SELECT v.post_id, v.voter FROM post_votes v JOIN posts p ON p.id = v.post_id "
            "WHERE p.tenant_id = 'acme' ORDER BY 1, 2"
        ).fetchall()
    assert keys == [tuple(row) for row in source]  # each part in key order, parts in order
