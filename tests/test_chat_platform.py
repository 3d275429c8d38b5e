"""A platform without a single foreign key (offboarding/dev/demo/chat.py), offboarded through
the references its data map declares: the export holds exactly what the product's own joins
select (read back with DuckDB), the destruction leaves nothing of the team by those joins,
and the other teams' rows are unchanged. Each declaration kind has its refusal too: a
reference the data contradicts, a none value, a polymorphic type."""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
    SharedRowsError,
    UnclassifiedDataError,
)
from offboarding.core.records import CaseRef
from offboarding.datamap import FilesSystem
from offboarding.datamap.references import SharedEntity
from offboarding.destruction import destruction
from offboarding.dev.demo import chat
from offboarding.dev.services import PostgresCluster
from offboarding.export import export as stages
from offboarding.locations.objects import FilesLocation
from offboarding.locations.reach import check_datamap
from offboarding.registry import TenantRegistry
from offboarding.stores import LocalStore, open_store
from tests.conftest import Platform, _dsn
from tests.helpers import acknowledge, destroy_everything, export_and_deliver


class Chat(Platform):
    def write_datamap(self, extra: str = "") -> None:
        assert self.settings.datamap is not None
        chat.write_datamap(self.settings.datamap, extra)


@pytest.fixture
def chat_platform(pg_cluster: PostgresCluster, tmp_path: Path) -> Iterator[Chat]:
    dbname = f"chat_{tmp_path.name[-12:].replace('-', '_')}".lower()
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = _dsn(pg_cluster, dbname)
    home = tmp_path / "home"
    files = LocalStore(home / "stores" / "files")
    chat.set_up(dsn, files)
    datamap = chat.write_datamap(home / "datamap.toml")
    settings = Settings(home=home, database_url=dsn, datamap=datamap)
    yield Chat(dsn=dsn, settings=settings, files=files, redis_url="")
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _bundle_rows(bundle: Path, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the bundle, read back by DuckDB, columns in the table's order."""
    root = tmp_path / "bundle"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root)
    found = {}
    for folder in sorted((root / "tables").iterdir()):
        rows = duckdb.connect().execute(f"SELECT * FROM '{folder}/*.parquet'").fetchall()
        found[folder.name] = sorted(rows, key=repr)
    return found


def _file_keys(platform: Chat, team: str) -> set[str]:
    """The team's objects, by the product's own join: files and thumbnails."""
    rows = platform.query(
        "SELECT f.path, f.thumbnailpath FROM chat.fileinfo f JOIN chat.channels c "
        "ON c.id = f.channelid WHERE c.teamid = %s",
        team,
    )
    return {str(key) for row in rows for key in row if key}


def test_a_platform_without_foreign_keys_is_classified_through_its_declarations(
    chat_platform: Chat,
) -> None:
    dry = stages.dry_run_inventory(chat_platform.settings, "acme")
    postgres = next(loc for loc in dry.locations if loc.location == "postgres")
    assert postgres.unclassified == []
    expected = chat.tenant_rows(chat_platform.dsn, "acme")
    counted = {t.qualified: t.rows for t in dry.tables}
    assert counted == {t: len(rows) for t, rows in expected.items() if rows}
    assert set(postgres.global_tables) >= {"chat.roles", "chat.systems"}
    # A dry run writes nothing to the platform: not even the pipeline's ledger.
    assert chat_platform.query("SELECT to_regnamespace('offboarding')") == [(None,)]


def test_export_and_destruction_follow_the_declared_references(
    chat_platform: Chat, tmp_path: Path
) -> None:
    platform, case = chat_platform, CaseRef(tenant="acme", case_id="acme-0123456789ab")
    neighbours = {t: chat.team_fingerprint(platform.dsn, t) for t in ("acme-corp", "globex")}
    keys = {t: _file_keys(platform, t) for t in chat.CHAT_TEAMS}
    assert any(k.endswith("/thumb.jpg") for k in keys["acme"])
    _, _, bundle = export_and_deliver(platform, case)
    expected = chat.tenant_rows(platform.dsn, "acme")  # (frozen: read-only since the export)
    exported = _bundle_rows(bundle, tmp_path)
    # The bundle holds exactly the team's rows, as the product's own joins select them, and
    # every file and thumbnail its file records name, in the product's own layout.
    assert exported == {table: rows for table, rows in expected.items() if rows}
    with zipfile.ZipFile(bundle) as archive:
        files = {n.removeprefix("files/_referenced/") for n in archive.namelist()
                 if n.startswith("files/")}  # fmt: skip
    assert files == keys["acme"]
    certificate = destroy_everything(platform, case)
    left = {t: rows for t, rows in chat.tenant_rows(platform.dsn, "acme").items() if rows}
    # Only the team's entry in the tenants table stays, the platform's record that it was.
    assert list(left) == ["chat.teams"]
    assert neighbours == {t: chat.team_fingerprint(platform.dsn, t) for t in neighbours}
    # The rows no team owns (configuration) are untouched; so are the other teams' files.
    assert platform.query("SELECT count(*) FROM chat.roles") == [(2,)]
    assert not any(platform.files.exists(k) for k in keys["acme"])
    assert all(platform.files.exists(k) for t in ("acme-corp", "globex") for k in keys[t])
    # The team's users went with it, but the one the other teams have too: kept, and named.
    assert platform.query("SELECT username FROM chat.users WHERE username LIKE 'acme-user-%'") == [
        ("acme-user-0",)
    ]
    with open_store(platform.settings.store_url("archive")).open_read(certificate.key) as body:
        document = json.loads(body.read())
    kept = {e["name"]: e for e in document["left_out"]}["chat.users"]
    assert kept["kind"] == "shared entity" and kept["tenant_rows"] == 1
    assert "linked by others too" in kept["why"]
    # The platform's tables were never analysed: the rows' bytes come from a sample, not 0.
    postgres = next(loc for loc in document["locations"] if loc["location"] == "postgres")
    assert postgres["items_before"] > 0 and postgres["bytes_before"] > 0
    # The statistics sampled then were sampled again from the rows left: no value of the team's
    # stays in the database's common values or histograms.
    stats = platform.query(
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'chat' AND tablename = 'channels' "
        "AND attname = 'teamid' AND concat(most_common_vals::text, histogram_bounds::text) "
        "~ %s",
        '[{,]"?acme"?[,}]',
    )
    assert stats == [(0,)]


def test_a_link_from_another_team_is_a_shared_row_under_the_existing_policies(
    chat_platform: Chat,
) -> None:
    platform = chat_platform
    platform.query(
        "INSERT INTO chat.post_links SELECT 'crossing', g.channelid, g.id, a.channelid, a.id "
        "FROM chat.posts g, chat.posts a, chat.channels gc, chat.channels ac "
        "WHERE gc.id = g.channelid AND gc.teamid = 'globex' AND ac.id = a.channelid "
        "AND ac.teamid = 'acme' LIMIT 1"
    )
    dry = stages.dry_run_inventory(platform.settings, "acme")
    postgres = next(loc for loc in dry.locations if loc.location == "postgres")
    assert postgres.shared_rows == {"chat.post_links": 1}
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(SharedRowsError, match=r"chat\.post_links"):
        stages.take_inventory(platform.settings, case)


def test_a_none_value_is_no_reference(chat_platform: Chat) -> None:
    """acme has a post whose id is '' (the product allowed it once): without none = [''],
    every other team's first posts (rootid '') would be replies to it."""
    platform = chat_platform
    platform.query(
        "INSERT INTO chat.posts SELECT '', c.id, '', 'u', 'odd', 0 FROM chat.channels c "
        "WHERE c.teamid = 'acme' LIMIT 1"
    )
    case = platform.case("acme")
    export_and_deliver(platform, case)
    globex = chat.team_fingerprint(platform.dsn, "globex")
    destroy_everything(platform, case)
    assert chat.team_fingerprint(platform.dsn, "globex") == globex
    assert platform.query("SELECT count(*) FROM chat.posts WHERE id = ''") == [(0,)]

    # The same data map without the none value: the destruction of globex would change the
    # other teams' first posts, so it stops before deleting anything.
    platform.query(
        "INSERT INTO chat.posts SELECT '', c.id, '', 'u', 'odd', 0 FROM chat.channels c "
        "WHERE c.teamid = 'globex' LIMIT 1"
    )
    text = (platform.settings.datamap or Path()).read_text()
    (platform.settings.datamap or Path()).write_text(
        text.replace('from = "chat.posts(rootid)"\nto = "chat.posts(id)"\nnone = [""]',
                     'from = "chat.posts(rootid)"\nto = "chat.posts(id)"')
    )  # fmt: skip
    case = platform.case("globex")
    stages.freeze(platform.settings, case)
    again = chat.tenant_rows(platform.dsn, "globex")
    with pytest.raises(IsolationBreachError, match=r"chat\.posts through declared"):
        export_and_deliver(platform, case)
        destroy_everything(platform, case)
    assert chat.tenant_rows(platform.dsn, "globex") == again


def test_a_polymorphic_reference_reaches_only_rows_of_its_type(chat_platform: Chat) -> None:
    """globex's file has the id of one of acme's posts: a reaction to that file is globex's."""
    platform = chat_platform
    (post,) = platform.query(
        "SELECT p.id FROM chat.posts p JOIN chat.channels c ON c.id = p.channelid "
        "WHERE c.teamid = 'acme' ORDER BY p.id LIMIT 1"
    )[0]
    platform.query(
        "INSERT INTO chat.fileinfo SELECT %s, c.id, '', 'x/y', '', 1 FROM chat.channels c "
        "WHERE c.teamid = 'globex' LIMIT 1",
        post,
    )
    platform.query("INSERT INTO chat.reactions VALUES ('r-file', 'file', %s, 'u', 'eyes')", post)
    dry = stages.dry_run_inventory(platform.settings, "acme")
    acme = {t.qualified: t.rows for t in dry.tables}
    assert acme["chat.reactions"] == len(chat.tenant_rows(platform.dsn, "acme")["chat.reactions"])
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    assert platform.query("SELECT target_type FROM chat.reactions WHERE id = 'r-file'") == [
        ("file",)
    ]


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ('from = "chat.posts(channel)"\nto = "chat.channels(id)"', "has no column 'channel'"),
        ('from = "chat.post(channelid)"\nto = "chat.channels(id)"', "'chat.post' does not exist"),
        ('from = "chat.post_links(from_post)"\nto = "chat.posts(channelid, id)"', "1 column"),
    ],
)
def test_a_declaration_the_catalogue_contradicts_is_refused_with_the_fix(
    chat_platform: Chat, declaration: str, message: str
) -> None:
    chat_platform.write_datamap(f"\n[[systems.postgres.references]]\n{declaration}\n")
    with pytest.raises(ConfigurationError, match=message):
        stages.dry_run_inventory(chat_platform.settings, "acme")


def test_the_data_map_check_counts_orphans_and_rows_reaching_two_teams(
    chat_platform: Chat,
) -> None:
    platform = chat_platform
    # A reply whose thread is gone (orphan), and an acme reply to a globex thread (two teams).
    platform.query(
        "INSERT INTO chat.posts SELECT 'orphan', c.id, 'gone', 'u', 'x', 0 FROM chat.channels c "
        "WHERE c.teamid = 'acme' LIMIT 1"
    )
    platform.query(
        "INSERT INTO chat.posts SELECT 'across', c.id, g.id, 'u', 'x', 0 "
        "FROM chat.channels c, chat.posts g JOIN chat.channels gc ON gc.id = g.channelid "
        "WHERE c.teamid = 'acme' AND gc.teamid = 'globex' AND g.rootid = '' LIMIT 1"
    )
    (postgres,) = [c for c in check_datamap(platform.settings)[1] if c.name == "postgres"]
    assert postgres.ok, postgres.detail
    (threads,) = [
        line for line in postgres.detail.split("; ") if "chat.posts(rootid) -> chat.posts" in line
    ]
    assert "1 orphan(s)" in threads and "1 reaching two tenants" in threads
    (members,) = [line for line in postgres.detail.split("; ") if "chat.post_links(to_ch" in line]
    assert "0 orphan(s)" in members and "0 reaching two tenants" in members


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # a text column cannot hold an integer key's none value
        (
            '\n[[systems.postgres.references]]\nfrom = "chat.fileinfo(size)"\n'
            'to = "chat.posts(id)"\n',
            "cannot compare",
        ),
        # '' is no integer: the none value of an integer key is written 0
        (
            '\n[[systems.postgres.references]]\nfrom = "chat.fileinfo(size)"\n'
            'to = "chat.teams(createat)"\nnone = [""]\n',
            "none values",
        ),
    ],
)
def test_the_data_map_check_refuses_what_the_inventory_could_not_use(
    chat_platform: Chat, extra: str, message: str
) -> None:
    chat_platform.write_datamap(extra)
    (postgres,) = [c for c in check_datamap(chat_platform.settings)[1] if c.name == "postgres"]
    assert not postgres.ok
    assert message in postgres.detail and "chat.fileinfo(size)" in postgres.detail


def test_the_data_map_check_names_a_tenants_column_the_table_lacks(
    chat_platform: Chat,
) -> None:
    path = chat_platform.settings.datamap
    assert path is not None
    path.write_text(path.read_text().replace("region = false", 'region = "region"'))
    (postgres,) = [c for c in check_datamap(chat_platform.settings)[1] if c.name == "postgres"]
    assert not postgres.ok
    assert "region = 'region'" in postgres.detail and "write `false`" in postgres.detail


_SEARCH = (
    '\n[systems.search]\ndescription = "Full-text search of messages"\n'
    'attested = { role = "search administrator", '
    'procedure = "delete the index of team {tenant}" }\n'
)


def _exclude_reactions(platform: Chat, handled: bool) -> None:
    """Reactions left out of the database's export, covered (or not) by the search system."""
    path = platform.settings.datamap
    assert path is not None
    text = path.read_text()
    value = (
        '{ why = "indexed with the messages", handled_by = "search" }'
        if handled
        else '"indexed with the messages"'
    )
    text = text.replace(
        "global_tables = {",
        f'excluded_tables = {{ "chat.reactions" = {value} }}\nglobal_tables = {{',
    )
    path.write_text(text + _SEARCH)


def test_an_excluded_table_holding_the_tenants_rows_stops_the_case_until_its_copy_is_covered(
    chat_platform: Chat,
) -> None:
    platform = chat_platform
    _exclude_reactions(platform, handled=False)
    expected = len(chat.tenant_rows(platform.dsn, "acme")["chat.reactions"])
    dry = stages.dry_run_inventory(platform.settings, "acme")
    (reactions,) = [e for e in dry.left_out if e.name == "chat.reactions"]
    assert (reactions.kind, reactions.tenant_rows, reactions.handled_by) == (
        "excluded table", expected, None,
    )  # fmt: skip
    assert any("chat.reactions: excluded, but holds" in w for w in dry.locations[0].warnings)
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(UnclassifiedDataError, match=r"handled_by = \"<system>\""):
        stages.take_inventory(platform.settings, case)


def test_what_a_bundle_does_not_hold_is_said_in_its_readme_manifest_and_certificate(
    chat_platform: Chat, tmp_path: Path
) -> None:
    platform = chat_platform
    _exclude_reactions(platform, handled=True)
    expected = len(chat.tenant_rows(platform.dsn, "acme")["chat.reactions"])
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        readme = archive.read("README.txt").decode()
        manifest = json.loads(archive.read("manifest.json"))
    assert "that the inventory covered" in readme
    assert (
        f"excluded table chat.reactions (postgres, {expected} row(s) of the tenant): indexed "
        "with the messages; its copy is handled by system search"
    ) in " ".join(readme.split())
    assert "global table chat.roles" in readme and "attested system search" in readme
    left = {e["name"]: e for e in manifest["left_out"]}
    assert left["chat.reactions"]["tenant_rows"] == expected
    assert left["search"]["kind"] == "attested system"
    reactions = platform.query("SELECT count(*) FROM chat.reactions")
    certificate = destroy_everything(platform, case)
    with open_store(platform.settings.store_url("archive")).open_read(certificate.key) as body:
        document = json.loads(body.read())
    assert {e["name"] for e in document["left_out"]} == set(left)
    (database,) = [loc for loc in document["locations"] if loc["location"] == "postgres"]
    # Found batch by batch through the declared references, added up: every one of the
    # tenant's reactions, said to be the search system's.
    found = re.findall(r"(\d+) row\(s\) of chat.reactions through declared", database["isolation"])
    assert sum(map(int, found)) == expected and "(system search)" in database["isolation"]
    # The excluded copy is the search system's to destroy: the database keeps the rows.
    assert platform.query("SELECT count(*) FROM chat.reactions") == reactions


def test_a_bundle_that_left_nothing_out_says_so(chat_platform: Chat, tmp_path: Path) -> None:
    platform = chat_platform
    _, _, bundle = export_and_deliver(platform, platform.case("globex"))
    with zipfile.ZipFile(bundle) as archive:
        readme = archive.read("README.txt").decode()
    assert "This archive holds all the data your organisation stored on the platform, in" in readme
    assert "global table chat.systems (postgres): the product's configuration" in readme


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("media/org-acme-files/a.txt", "acme"),
        ("media/org-acme-corp-files/a.txt", "acme-corp"),
        ("media/org-acme-files-files/x", "acme-files"),
        ("media/org-acme/a.txt", None),  # not the template's folder
        ("other/org-acme-files/a.txt", None),
        ("media/org--files/a.txt", None),  # no id
    ],
)
def test_a_folder_template_names_the_tenant_anywhere_in_it(
    tmp_path: Path, key: str, owner: str | None
) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://unused/x")
    system = FilesSystem(plugin="files", prefix="media/org-{tenant}-files/")
    location = FilesLocation(settings, "files", system)
    assert location._owner(key) == owner
    if owner:
        assert location._prefix(owner) is not None and key.startswith(str(location._prefix(owner)))


@pytest.mark.parametrize("prefix", ["tenants/{tenant}", "*/teams/{tenant}/", "tenants/"])
def test_a_folder_template_that_cannot_be_listed_as_it_is_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"must hold \{tenant\} once and end with '/'"):
        FilesSystem(plugin="files", prefix=prefix)


def test_shared_profiles_no_other_team_has_can_be_kept_pseudonymised(
    chat_platform: Chat,
) -> None:
    platform = chat_platform
    path = platform.settings.datamap
    assert path is not None
    path.write_text(
        path.read_text().replace(
            'policy = "erase-unshared"',
            'policy = "pseudonymise-unshared"\npersonal = ["username", "email"]',
        )
    )
    before = dict(platform.query("SELECT id, username FROM chat.users"))
    case = platform.case("acme")
    export_and_deliver(platform, case)
    certificate = destroy_everything(platform, case)
    after = dict(platform.query("SELECT id, username FROM chat.users"))
    assert set(after) == set(before)  # every profile kept
    changed = {before[k] for k in after if after[k] != before[k]}
    assert changed == {"acme-user-1", "acme-user-2", "acme-user-3"}  # acme's alone
    assert all(after[k].startswith("erased-") for k in after if after[k] != before[k])
    assert not platform.query("SELECT 1 FROM chat.users WHERE email LIKE '%@acme.example' "
                              "AND username <> 'acme-user-0'")  # fmt: skip
    with open_store(platform.settings.store_url("archive")).open_read(certificate.key) as body:
        document = json.loads(body.read())
    (postgres,) = [loc for loc in document["locations"] if loc["location"] == "postgres"]
    assert "chat.users 3" in postgres["isolation"]
    kept = {e["name"]: e for e in document["left_out"]}["chat.users"]
    assert "personal columns (username, email) replaced" in kept["why"]


def test_a_pseudonymising_policy_names_its_personal_columns() -> None:
    with pytest.raises(ValueError, match="personal lists the columns"):
        SharedEntity(through="chat.team_members(user_id)", policy="pseudonymise-unshared", why="x")


def test_objects_named_after_the_team_stop_the_case_until_declared_then_are_dropped(
    chat_platform: Chat,
) -> None:
    """A trigger's per-team invoice sequence, a read-only role and a publication: named after
    the team, so the case stops until the data map says what becomes of them; then they go
    with the team. acme-corp's and globex's stay (acme is not acme-corp)."""
    platform = chat_platform
    role = f"chat_acme_ro_{platform.dsn[-8:]}".replace("=", "_")  # cluster-wide: made unique
    platform.query(
        'CREATE SEQUENCE chat.invoice_no_acme; CREATE SEQUENCE "chat"."invoice_no_acme-corp"; '
        "CREATE SEQUENCE chat.invoice_no_globex; CREATE PUBLICATION pub_acme_changes"
    )
    platform.query(f"CREATE ROLE {role} NOLOGIN")
    try:
        dry = stages.dry_run_inventory(platform.settings, "acme")
        warned = " ".join(w for loc in dry.locations for w in loc.warnings)
        assert "sequence chat.invoice_no_acme:" in warned and f"role {role}:" in warned
        assert "publication pub_acme_changes:" in warned and "acme-corp" not in warned
        case = platform.case("acme")
        stages.freeze(platform.settings, case)
        with pytest.raises(UnclassifiedDataError, match=r"tenant_objects\]\] kind = "):
            stages.take_inventory(platform.settings, case)
        chat_platform.write_datamap(
            '\n[[systems.postgres.tenant_objects]]\nkind = "sequence"\n'
            'name = "chat.invoice_no_{tenant}"\n'
            '[[systems.postgres.tenant_objects]]\nkind = "role"\n'
            f'name = "{role.replace("acme", "{tenant}")}"\n'
            '[[systems.postgres.tenant_objects]]\nkind = "publication"\n'
            'name = "pub_{tenant}_changes"\naction = "keep"\n'
            'why = "the replication to the data warehouse, whose own data map entry covers it"\n'
        )
        export_and_deliver(platform, case)
        certificate = destroy_everything(platform, case)
        sequences = platform.query(
            "SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE 'invoice_no_%' "
            "ORDER BY 1"
        )
        assert sequences == [("invoice_no_acme-corp",), ("invoice_no_globex",)]
        assert platform.query("SELECT 1 FROM pg_roles WHERE rolname = %s", role) == []
        with open_store(platform.settings.store_url("archive")).open_read(certificate.key) as body:
            document = json.loads(body.read())
        kept = {e["name"]: e for e in document["left_out"]}["pub_acme_changes"]
        assert kept["kind"] == "tenant object" and "data warehouse" in kept["why"]
    finally:
        platform.query(f"DROP ROLE IF EXISTS {role}")
        platform.query("DROP PUBLICATION IF EXISTS pub_acme_changes")


def test_the_ledger_can_live_in_a_database_of_its_own(
    chat_platform: Chat, pg_cluster: PostgresCluster
) -> None:
    """A whole case writes nothing of the pipeline's into the platform's database."""
    platform = chat_platform
    name = f"ledger_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    ledger = _dsn(pg_cluster, name)
    try:
        settings = platform.settings.replace(ledger_url=ledger)
        case = platform.case("acme")
        export_and_deliver(platform, case, settings)
        destroy_everything(platform, case, settings)
        assert platform.query("SELECT to_regnamespace('offboarding')") == [(None,)]
        with psycopg.connect(ledger) as conn:
            row = conn.execute(
                "SELECT status FROM offboarding.ledger WHERE tenant = 'acme'"
            ).fetchone()
        assert row == ("destroyed",)
        assert TenantRegistry(settings).get("acme").status == "destroyed"
        assert TenantRegistry(settings).tenants(status="active") == ["acme-corp", "globex"]
    finally:
        with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_declared_reference_without_an_index_is_warned_of_like_a_foreign_key(
    chat_platform: Chat,
) -> None:
    platform = chat_platform
    platform.query("DROP INDEX chat.posts_rootid_idx")
    dry = stages.dry_run_inventory(platform.settings, "acme")
    warned = [w for loc in dry.locations for w in loc.warnings if "no index leads" in w]
    assert len(warned) == 1
    assert warned[0].startswith("chat.posts: no index leads with (rootid), the declared reference")
    assert "CREATE INDEX CONCURRENTLY ON chat.posts (rootid)" in warned[0]


def test_a_reference_to_the_tenants_table_names_each_rows_tenant(chat_platform: Chat) -> None:
    """channels' team, declared as a reference to the teams table instead of an owner column:
    the same classification, the same rows."""
    platform = chat_platform
    path = platform.settings.datamap
    assert path is not None
    expected = {
        t.qualified: t.rows for t in stages.dry_run_inventory(platform.settings, "acme").tables
    }
    path.write_text(
        path.read_text().replace('owner_columns = { "chat.channels" = "teamid" }\n', "")
        + '\n[[systems.postgres.references]]\nfrom = "chat.channels(teamid)"\n'
        'to = "chat.teams(id)"\n'
    )
    dry = stages.dry_run_inventory(platform.settings, "acme")
    assert {t.qualified: t.rows for t in dry.tables} == expected
    (channels,) = [t for t in dry.tables if t.qualified == "chat.channels"]
    assert (channels.scope, channels.tenant_column) == ("tenant", "teamid")


def test_a_declared_reference_the_database_also_has_is_the_databases(chat_platform: Chat) -> None:
    platform = chat_platform
    expected = {
        t.qualified: t.rows for t in stages.dry_run_inventory(platform.settings, "acme").tables
    }
    platform.query(
        "ALTER TABLE chat.posts ADD CONSTRAINT posts_channel FOREIGN KEY (channelid) "
        "REFERENCES chat.channels (id) ON DELETE CASCADE"
    )
    dry = stages.dry_run_inventory(platform.settings, "acme")
    assert {t.qualified: t.rows for t in dry.tables} == expected
    (posts,) = [t for t in dry.tables if t.qualified == "chat.posts"]
    keys = [(fk.columns, fk.declared) for fk in posts.foreign_keys if fk.columns == ["channelid"]]
    assert keys == [(["channelid"], False)]  # one key: the database's


def test_a_declared_reference_written_after_the_check_stops_its_batch(
    chat_platform: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """globex links one of acme's posts between the check and the delete, through a reference
    the database knows nothing of (it would keep a dangling link): the batch's check runs
    again for declared references and rolls the batch back."""
    from offboarding.locations.postgres import deletion

    platform = chat_platform
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    proved = deletion._prove

    def then_globex_links(*args: object, **kwargs: object) -> object:
        result = proved(*args, **kwargs)  # type: ignore[arg-type]
        platform.query(
            "INSERT INTO chat.post_links SELECT 'late', g.channelid, g.id, a.channelid, a.id "
            "FROM chat.posts g JOIN chat.channels gc ON gc.id = g.channelid, chat.posts a "
            "JOIN chat.channels ac ON ac.id = a.channelid "
            "WHERE gc.teamid = 'globex' AND ac.teamid = 'acme' ORDER BY a.id LIMIT 1"
        )
        return result

    monkeypatch.setattr(deletion, "_prove", then_globex_links)
    with pytest.raises(DestructionIncompleteError, match=r"chat\.post_links through declared"):
        destruction.destroy_location(platform.settings, case, "postgres")
    assert platform.query("SELECT count(*) FROM chat.post_links WHERE id = 'late'") == [(1,)]


def test_a_file_columns_none_values_name_no_object(chat_platform: Chat) -> None:
    """A product writing 'none' where it has no thumbnail: without the declaration the
    inventory looks for an object called 'none' and stops; declared, it names nothing."""
    platform = chat_platform
    platform.query(
        "UPDATE chat.fileinfo f SET thumbnailpath = 'none' FROM chat.channels c "
        "WHERE c.id = f.channelid AND c.teamid = 'acme' AND f.thumbnailpath = ''"
    )
    with pytest.raises(Exception, match="missing") as stopped:
        stages.dry_run_inventory(platform.settings, "acme")
    assert "missing-objects.txt" in str(stopped.value)  # keys are listed apart, not said
    path = platform.settings.datamap or Path()
    columns = 'file_columns = ["chat.fileinfo.path", "chat.fileinfo.thumbnailpath"]'
    text = path.read_text()
    assert columns in text
    none = '\nfile_none = { "chat.fileinfo.thumbnailpath" = ["none"] }'
    path.write_text(text.replace(columns, columns + none))
    dry = stages.dry_run_inventory(platform.settings, "acme")
    assert {f.key for f in dry.files} == _file_keys(platform, "acme") - {"none"}
    path.write_text(text.replace(
        columns, columns + '\nfile_none = { "chat.fileinfo.path" = ["none"], '
        '"chat.posts.message" = ["-"] }'))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"file_none names chat\.posts\.message"):
        stages.dry_run_inventory(platform.settings, "acme")
