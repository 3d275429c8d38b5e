"""Requests about one person carried out on the demo platform: an access request hands back
exactly the person's data (read back with DuckDB and zipfile, counted with plain SQL), an
erasure leaves no value of the person while everyone else's content survives, and both leave a
signed record that the archive's verification checks."""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import MySQLdb
import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from exporters.bundle import verify_bundle
from flows.adapter import PrefectRuns
from offboarding.backup.backup import take_backup
from offboarding.core.errors import ConfigurationError, IsolationBreachError, TenantError
from offboarding.core.signing import Signer, load_key_list
from offboarding.delivery.links import LinkSigner
from offboarding.delivery.mail import read_outbox
from offboarding.dev.services import MariaDBServer
from offboarding.evidence.archive import verify_archive
from offboarding.locations.backups import backup_prefix
from offboarding.persons import get_request, open_request
from offboarding.persons.access import answer_access
from offboarding.persons.erasure import attest_person_system, erase_person
from offboarding.persons.records import read_signed
from offboarding.registry import TenantRegistry
from offboarding.stores import open_store
from offboarding.web import create_app
from tests.conftest import Platform

_ACME_REGION = "europe-west1"
_PERSON_ROWS = {  # the person's rows of each table, by the demo schema (not the data map)
    "public.users": "SELECT id FROM users WHERE tenant_id = 'acme' AND id = %s",
    "public.posts": "SELECT id FROM posts WHERE tenant_id = 'acme' AND author_id = %s",
    "public.comments": "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id "
    "WHERE p.tenant_id = 'acme' AND c.author_id = %s",
    "public.spaces": "SELECT id FROM spaces WHERE tenant_id = 'acme' AND created_by = %s",
    "public.chat_messages": "SELECT id FROM chat_messages WHERE author_id = %s",
    "public.survey_answers": "SELECT id FROM survey_answers WHERE user_id = %s",
    "public.documents": "SELECT id FROM documents WHERE uploaded_by = %s",
}


def _person(platform: Platform) -> int:
    """Acme's first author: posts, comments in other people's threads, uploaded documents."""
    row = platform.query(
        "SELECT u.id FROM users u WHERE u.tenant_id = 'acme' AND EXISTS (SELECT 1 FROM posts p "
        "WHERE p.author_id = u.id) AND EXISTS (SELECT 1 FROM documents d WHERE d.uploaded_by = "
        "u.id) ORDER BY u.id LIMIT 1"
    )
    return int(str(row[0][0]))


def _ids(platform: Platform, query: str, person: int) -> set[int]:
    return {int(str(r[0])) for r in platform.query(query, person)}


def _person_files(platform: Platform, person: int) -> dict[str, str]:
    keys = [str(r[0]) for r in platform.query(
        "SELECT object_key FROM documents WHERE uploaded_by = %s", person)]  # fmt: skip
    keys.append(f"tenants/acme/avatars/{person}.bin")
    digests = {}
    for key in keys:
        if platform.files.exists(key):
            with platform.files.open_read(key) as handle:
                digests[key] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def _pins(platform: Platform, person: int) -> int:
    """A table of colleagues' pins on chat messages (deleting a message cascades to its pins);
    returns one of the person's messages."""
    platform.query(
        "CREATE TABLE public.pins (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), message_id bigint REFERENCES chat_messages (id) ON DELETE CASCADE)"
    )
    message = platform.query("SELECT min(id) FROM chat_messages WHERE author_id = %s", person)
    return int(str(message[0][0]))


def test_an_access_request_hands_back_exactly_the_person_data(
    platform: Platform, tmp_path: Path
) -> None:
    settings = platform.settings
    person = _person(platform)
    request = open_request(settings, "acme", str(person), "access")
    answer = answer_access(settings, request.ref)
    assert get_request(settings, request.ref).status == "answered"
    # The links went to the client's contact, who passes the copy on.
    message = read_outbox(settings.root / "outbox" / f"request-{request.ref}-answer.eml")
    assert message["To"] == "dpo@acme.example" and "/d/" in message.get_content()
    # Read back independently: the ZIP with zipfile, each table's Parquet with DuckDB.
    store = open_store(settings.delivery_store_url(_ACME_REGION))
    assert len(answer.parts) == 1 and answer.parts[0].startswith(f"bundles/acme/{request.ref}/")
    with store.open_read(answer.parts[0]) as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    archive.extractall(tmp_path)
    assert "one person of your organisation" in archive.read("README.txt").decode()
    for table, query in _PERSON_ROWS.items():
        expected = _ids(platform, query, person)
        folder = tmp_path / "tables" / table
        found = {int(r[0]) for r in duckdb.sql(f"SELECT id FROM '{folder}/*.parquet'").fetchall()}
        assert found == expected, table
        assert answer.tables[table] == len(expected)
    email = platform.query("SELECT email FROM users WHERE id = %s", person)[0][0]
    users = duckdb.sql(f"SELECT email FROM '{tmp_path}/tables/public.users/*.parquet'")
    assert users.fetchall() == [(email,)]
    # Exactly the person's files, byte for byte; nobody else's.
    expected_files = _person_files(platform, person)
    entries = {
        n: hashlib.sha256(archive.read(n)).hexdigest()
        for n in archive.namelist()
        if n.startswith("files/")
    }
    assert sorted(entries.values()) == sorted(expected_files.values()) and entries
    assert answer.files == len(expected_files)
    # The signed record names counts and digests, no value of the person; the archive verifies.
    record = read_signed(settings, answer.record_key)
    assert record["request"] == request.ref and record["person"].startswith("hmac-sha256:")
    assert email not in str(record) and "users" not in record["person"]
    report = verify_archive(
        open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
    )
    assert report.person_records == 1
    with pytest.raises(TenantError, match="is answered"):
        answer_access(settings, request.ref)


def test_an_access_answer_finds_the_persons_files_where_the_store_keeps_no_folder(
    platform: Platform, tmp_path: Path
) -> None:
    """With [systems.files] prefix = false, the person's objects are those their rows name
    and their own files, wherever they are; the answer holds them under their full keys."""
    settings = platform.settings
    person = _person(platform)
    _rewrite_map(platform, 'plugin = "files"\n', 'plugin = "files"\nprefix = false\n')
    request = open_request(settings, "acme", str(person), "access")
    answer = answer_access(settings, request.ref)
    store = open_store(settings.delivery_store_url(_ACME_REGION))
    with store.open_read(answer.parts[0]) as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    entries = {n.removeprefix("files/"): hashlib.sha256(archive.read(n)).hexdigest()
               for n in archive.namelist() if n.startswith("files/")}  # fmt: skip
    assert entries == _person_files(platform, person) and entries


def _text_of_every_table(platform: Platform) -> str:
    tables = platform.query(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    return "\n".join(
        str(row[0])
        for (table,) in tables
        for row in platform.query(f"SELECT t::text FROM {table} t")
    )


def test_an_erasure_leaves_no_value_of_the_person_and_others_content_survives(
    platform: Platform,
) -> None:
    settings = platform.settings
    person = _person(platform)
    # The person's name made distinctive (the demo reuses names), then every value of theirs
    # that appears nowhere else in the database before the erasure.
    platform.query("UPDATE users SET display_name = 'Ottilie Erasmus-Quist' WHERE id = %s", person)
    values = platform.query("SELECT email, display_name, phone FROM users WHERE id = %s", person)
    own = [str(v) for v in values[0] if v] + [
        str(r[0]) for r in platform.query(
            "SELECT body FROM comments WHERE author_id = %s UNION SELECT body FROM chat_messages "
            "WHERE author_id = %s UNION SELECT title FROM posts WHERE author_id = %s",
            person, person, person)
    ]  # fmt: skip
    before = _text_of_every_table(platform)
    words = [w for w in own if before.count(w) == 1]
    assert "Ottilie Erasmus-Quist" in words and len(words) > 3
    files = _person_files(platform, person)
    kept_posts = _ids(platform, _PERSON_ROWS["public.posts"], person)
    kept_comments = _ids(platform, _PERSON_ROWS["public.comments"], person)
    others = {
        "comments": platform.query(
            "SELECT * FROM comments WHERE author_id IS DISTINCT FROM %s ORDER BY id", person),
        "posts": platform.query(
            "SELECT * FROM posts WHERE author_id IS DISTINCT FROM %s ORDER BY id", person),
        "users": platform.query("SELECT * FROM users WHERE id <> %s ORDER BY id", person),
    }  # fmt: skip
    answered = platform.query(  # others' comments in the person's threads
        "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE p.author_id = %s AND c.author_id <> %s", person, person)[0][0]  # fmt: skip
    assert answered and kept_comments and files
    globex = platform.fingerprint("globex")
    old_backup = take_backup(settings, "acme").backup_id

    request = open_request(settings, "acme", str(person), "erasure")
    erased = erase_person(settings, request.ref)

    dump = _text_of_every_table(platform)
    assert [w for w in words if w in dump] == []
    for table, query in _PERSON_ROWS.items():
        assert _ids(platform, query, person) == set(), table
    assert not any(platform.files.exists(key) for key in files)
    # Kept rows: the threads stay, the person's words and reference go.
    posts = platform.query("SELECT title, body, metadata, author_id FROM posts WHERE id = ANY(%s)",
                           list(kept_posts))  # fmt: skip
    assert posts and all(t.startswith("erased-") and b in (t, None) and m is None and a is None
                         for t, b, m, a in posts)  # fmt: skip
    comments = platform.query("SELECT body, author_id FROM comments WHERE id = ANY(%s)",
                              list(kept_comments))  # fmt: skip
    assert len(comments) == len(kept_comments)
    assert all(b.startswith("erased-") and a is None for b, a in comments)  # type: ignore[union-attr]
    still_answered = platform.query(
        "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE p.id = ANY(%s) AND c.author_id IS NOT NULL", list(kept_posts))  # fmt: skip
    assert still_answered[0][0] == answered
    assert others == {
        "comments": platform.query(
            "SELECT * FROM comments WHERE NOT (id = ANY(%s)) ORDER BY id", list(kept_comments)),
        "posts": platform.query(
            "SELECT * FROM posts WHERE NOT (id = ANY(%s)) ORDER BY id", list(kept_posts)),
        "users": platform.query("SELECT * FROM users ORDER BY id"),
    }  # fmt: skip
    assert platform.fingerprint("globex") == globex
    # Backups: re-based, so no older copy holds the person.
    assert erased.backups_rebased == 1
    for url in settings.backup_store_urls():
        ids = {o.key.split("/")[2] for o in open_store(url).list_objects(backup_prefix("acme"))}
        assert old_backup not in ids and len(ids) == 1
    # The certificate: signed, counts only, verified with the archive.
    certificate = read_signed(settings, erased.certificate_key)
    assert certificate["database"]["deleted"]["public.users"] == 1
    assert certificate["database"]["pseudonymised"]["public.comments"] == len(kept_comments)
    assert certificate["files"]["objects"] == len(files)
    assert {s["name"]: s["status"] for s in certificate["systems"]} == {
        "cache": "lingering", "helpdesk": "requested", "search": "requested"}  # fmt: skip
    assert not [w for w in words if w in str(certificate)]
    report = verify_archive(
        open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
    )
    assert report.person_records == 1
    notice = read_outbox(settings.root / "outbox" / f"request-{request.ref}-helpdesk.eml")
    assert notice["To"] == "support-lead@operator.example"
    assert get_request(settings, request.ref).status == "answered"
    assert f"offboard request attest {request.ref} helpdesk" in notice.get_content()
    confirmed = attest_person_system(
        settings, request.ref, "helpdesk", name="Sam Lead", action="tickets erased",
        evidence="HD-4411",
    )  # fmt: skip
    assert read_signed(settings, confirmed)["by"].startswith("hmac-sha256:")
    with pytest.raises(TenantError, match="no attested system"):
        attest_person_system(settings, request.ref, "cache", name="x", action="a", evidence="e")


def test_an_erasure_that_would_reach_someone_elses_rows_changes_nothing(
    platform: Platform,
) -> None:
    settings = platform.settings
    person = _person(platform)
    # Someone pinned one of the person's chat messages; deleting it would cascade to the pin.
    message = _pins(platform, person)
    platform.query("INSERT INTO pins VALUES (1, 'acme', %s)", message)
    before = platform.fingerprint("acme")
    request = open_request(settings, "acme", str(person), "erasure")
    with pytest.raises(
        TenantError,
        match=r"1 row\(s\) of public\.pins .* reference the rows of public\.chat_messages",
    ):
        erase_person(settings, request.ref)
    assert platform.fingerprint("acme") == before
    assert get_request(settings, request.ref).status == "open"


def test_an_erasure_is_refused_once_the_tenant_is_frozen(platform: Platform) -> None:
    """A tenant being offboarded is read-only and goes whole: the erasure says so, changes
    nothing, and stays open for its deadline."""
    settings = platform.settings
    person = _person(platform)
    request = open_request(settings, "acme", str(person), "erasure")
    TenantRegistry(settings).freeze("acme", "acme-0123456789ab")
    before = platform.fingerprint("acme")
    with pytest.raises(TenantError, match=r"is frozen .* goes whole at the case's destruction"):
        erase_person(settings, request.ref)
    assert platform.fingerprint("acme") == before
    assert get_request(settings, request.ref).status == "open"


def test_an_access_answer_is_sealed_to_the_clients_age_key(
    platform: Platform, tmp_path: Path
) -> None:
    """A client that gave an age recipient gets its person's bundle encrypted to it, like its
    full export: the age tool with the client's identity opens it, and it verifies."""
    settings = platform.settings
    identity = tmp_path / "client.agekey"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    platform.query("UPDATE tenants SET age_recipient = %s WHERE id = 'acme'", recipient)
    request = open_request(settings, "acme", str(_person(platform)), "portability")
    answer = answer_access(settings, request.ref)
    (part,) = answer.parts
    assert part.endswith(".zip.age")
    sealed = tmp_path / "part.zip.age"
    with open_store(settings.delivery_store_url(_ACME_REGION)).open_read(part) as handle:
        sealed.write_bytes(handle.read())
    clear = tmp_path / "part.zip"
    subprocess.run(["age", "-d", "-i", str(identity), "-o", str(clear), str(sealed)], check=True)
    report = verify_bundle([clear], Signer.load_or_create(settings.keys_dir).public_pem)
    assert report.rows == answer.rows and read_signed(settings, answer.record_key)["encrypted"]


def test_a_comment_written_while_the_erasure_starts_is_erased_too(platform: Platform) -> None:
    """The erasure's snapshot is taken before it can lock the person: a comment the person
    was posting at that moment commits after the snapshot. The erasure sees the committed
    rows differ from its snapshot's, starts again, and the comment goes with the rest."""
    settings = platform.settings
    person = _person(platform)
    request = open_request(settings, "acme", str(person), "erasure")
    post = platform.query("SELECT min(id) FROM posts WHERE tenant_id = 'acme'")[0][0]
    writer = psycopg.connect(platform.dsn)  # the person, posting: holds a key-share lock
    writer.execute(
        "INSERT INTO comments VALUES (99999001, %s, NULL, %s, 'posted just now', now(), 0)",
        (post, person),
    )
    said: list[str] = []
    erasing = threading.Thread(target=lambda: erase_person(settings, request.ref, say=said.append))
    erasing.start()
    time.sleep(1.5)  # the erasure has its snapshot and waits for the person's row
    writer.commit()
    writer.close()
    erasing.join(timeout=60)
    assert not erasing.is_alive()
    assert any("changed during attempt 1" in line for line in said)
    ((body, author),) = platform.query("SELECT body, author_id FROM comments WHERE id = 99999001")
    assert str(body).startswith("erased-") and author is None
    assert get_request(settings, request.ref).status == "answered"


def test_a_reference_written_while_the_erasure_runs_stops_it(platform: Platform) -> None:
    """A colleague pins the person's message while the erasure is under way (after its
    snapshot): the erasure waits for the pin, sees it as committed, and changes nothing,
    naming the pin's table; the pin survives."""
    settings = platform.settings
    person = _person(platform)
    message = _pins(platform, person)
    request = open_request(settings, "acme", str(person), "erasure")
    colleague = psycopg.connect(platform.dsn)
    colleague.execute("INSERT INTO pins VALUES (7, 'acme', %s)", (message,))
    failed: list[BaseException] = []

    def erase() -> None:
        try:
            erase_person(settings, request.ref)
        except TenantError as error:
            failed.append(error)

    erasing = threading.Thread(target=erase)
    erasing.start()
    time.sleep(1.5)  # the erasure waits to lock the person's message
    colleague.commit()
    colleague.close()
    erasing.join(timeout=60)
    assert failed and "1 row(s) of public.pins" in str(failed[0])
    assert platform.query("SELECT count(*) FROM pins") == [(1,)]
    assert platform.query("SELECT count(*) FROM users WHERE id = %s", person) == [(1,)]


def _manager_of_a_colleague(platform: Platform) -> tuple[int, int]:
    """An HR-style self-reference: users.manager_id. Returns (the person, their report)."""
    person = _person(platform)
    others = "SELECT min(id) FROM users WHERE tenant_id = 'acme' AND id <> %s"
    report = int(str(platform.query(others, person)[0][0]))
    platform.query(
        "ALTER TABLE users ADD COLUMN manager_id bigint REFERENCES users (id);"
        "CREATE INDEX ON users (manager_id)"
    )
    platform.query("UPDATE users SET manager_id = %s WHERE id = %s", person, report)
    return person, report


def _rewrite_map(platform: Platform, old: str, new: str) -> None:
    path = Path(str(platform.settings.datamap))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


_MANAGER_LINK = 'key = "id"\nlinks = { manager_id = "clear" }\n'


def test_a_managers_erasure_clears_their_reports_link_as_the_data_map_declares(
    platform: Platform,
) -> None:
    """The HR case: other people's rows point at the person through the person table's own
    column (manager_id). Undeclared, it stops the request at once; declared under [person]
    by (the old advice) it is refused; kept while the person's row goes it is refused by the
    database's key; declared as a link to clear, the report stays, without a manager."""
    settings = platform.settings
    person, report = _manager_of_a_colleague(platform)
    colleague = platform.query("SELECT * FROM users WHERE id = %s", report)
    undeclared = r"users\.manager_id points at public\.users \(foreign key users_manager_id_fkey"
    with pytest.raises(ConfigurationError, match=undeclared + r"\) .* under \[person\] links"):
        open_request(settings, "acme", str(person), "erasure")

    declared = '[person.tables."public.users"]\nby = "manager_id"\nerase = "delete"\n\n'
    _rewrite_map(
        platform, '[person.tables."public.posts"]', declared + '[person.tables."public.posts"]'
    )
    with pytest.raises(ConfigurationError, match=r"names the person table public\.users itself"):
        open_request(settings, "acme", str(person), "erasure")
    _rewrite_map(platform, declared, "")

    kept = 'key = "id"\nlinks = { manager_id = { rule = "keep", why = "the org chart" } }\n'
    _rewrite_map(platform, 'key = "id"\n', kept)
    request = open_request(settings, "acme", str(person), "erasure")
    refused = r"would be refused, .*: public\.users\.manager_id is kept pointing at the person"
    with pytest.raises(TenantError, match=refused + ", whose row is deleted, and the database's"):
        erase_person(settings, request.ref)
    assert platform.query("SELECT * FROM users WHERE id = %s", report) == colleague

    _rewrite_map(platform, kept, _MANAGER_LINK)
    erased = erase_person(settings, request.ref)
    after = platform.query("SELECT * FROM users WHERE id = %s", report)
    assert platform.query("SELECT manager_id FROM users WHERE id = %s", report) == [(None,)]
    assert [None if v == person else v for v in colleague[0]] == list(after[0])
    assert platform.query("SELECT count(*) FROM users WHERE id = %s", person) == [(0,)]
    links = read_signed(settings, erased.certificate_key)["database"]["links"]
    assert {"table": "public.users", "column": "manager_id", "rule": "clear", "rows": 1,
            "why": ""} in links  # fmt: skip


def test_the_person_tables_own_rows_are_proved_to_be_the_person_inside_the_erasure(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever selects them, the erasure commits only if the person table's changed rows are
    exactly the person's own row."""
    from offboarding.locations.postgres import person_erasure, person_scope

    settings = platform.settings
    person, report = _manager_of_a_colleague(platform)
    _rewrite_map(platform, 'key = "id"\n', _MANAGER_LINK)
    before = platform.fingerprint("acme")
    selected = person_scope.person_conditions

    def selecting_the_report(*args: object, **kwargs: object) -> object:
        selection = selected(*args, **kwargs)  # type: ignore[arg-type]
        selection.own["public.users"] = sql.SQL("users.id = {}").format(report)
        return selection

    monkeypatch.setattr(person_erasure, "person_conditions", selecting_the_report)
    request = open_request(settings, "acme", str(person), "erasure")
    with pytest.raises(IsolationBreachError, match="not the person's own"):
        erase_person(settings, request.ref)
    assert platform.fingerprint("acme") == before


def test_an_erasure_withdraws_the_earlier_answers_about_the_person(platform: Platform) -> None:
    """The earlier access answer was still served by its link (HTTP 200, the person's values
    and files inside) after the erasure."""
    settings = platform.settings
    person = _person(platform)
    access = open_request(settings, "acme", str(person), "access")
    answer = answer_access(settings, access.ref)
    store = open_store(settings.delivery_store_url(_ACME_REGION))
    signer = LinkSigner.from_settings(settings)
    link = signer.create(store.url, answer.parts[0], datetime.now(UTC) + timedelta(days=1))
    client = TestClient(create_app(settings, PrefectRuns()))
    path = link.removeprefix(settings.delivery.link_base_url)
    assert client.get(path).status_code == 200
    erasure = open_request(settings, "acme", str(person), "erasure")
    erased = erase_person(settings, erasure.ref)
    assert client.get(path).status_code == 410
    assert not list(store.list_objects(f"bundles/acme/{access.ref}/"))
    certificate = read_signed(settings, erased.certificate_key)
    assert certificate["earlier_answers"]["requests"] == {access.ref: len(answer.parts)}


def test_each_kind_the_pipeline_carries_out_has_one_handler_and_no_other_has() -> None:
    from offboarding.persons.carry import HANDLERS
    from offboarding.persons.requests import CARRIED_OUT_KINDS, REQUEST_KINDS, RequestKind

    assert set(HANDLERS) == set(CARRIED_OUT_KINDS)
    assert set(REQUEST_KINDS) == set(RequestKind) and len(REQUEST_KINDS) == 5
    assert not RequestKind.RECTIFICATION.by_the_pipeline and RequestKind.ERASURE.by_the_pipeline


def test_the_wiki_and_the_cache_answer_and_erase_a_person_through_their_plug_ins(
    platform: Platform, mariadb: MariaDBServer, tmp_path: Path
) -> None:
    """MariaDB and Redis declare the person capabilities: an access answer holds the person's
    wiki rows, and an erasure removes their wiki comments and cache keys and replaces their
    pages' words, while a colleague keeps everything, in both systems."""
    import redis

    from tests import wiki as wiki_db

    settings = platform.settings
    person = _person(platform)
    others = "SELECT min(id) FROM users WHERE tenant_id = 'acme' AND id <> %s"
    colleague = int(str(platform.query(others, person)[0][0]))
    database = wiki_db.create(mariadb)
    path = settings.datamap
    assert path is not None
    lingering = '[person.systems.cache]\nwhy = "pages rendered with the person\'s name and content, and their sessions"\nlingers = "P1D"\n'  # noqa: E501
    text = path.read_text()
    assert lingering in text
    text = text.replace(
        lingering, '[person.systems.cache]\npatterns = ["session:{tenant}:{person}:*"]\n'
    )
    path.write_text(wiki_db.declare_person(wiki_db.declare(text, mariadb, database)))
    wiki_db.set_authors(mariadb, database, "acme", person, colleague)
    cache = redis.Redis.from_url(platform.redis_url)
    for who in (person, colleague):
        cache.set(f"session:acme:{who}:web", f"session of {who}")
    colleague_wiki = wiki_db.fingerprint(mariadb, database, "globex")
    try:
        answer = answer_access(settings, open_request(settings, "acme", str(person), "access").ref)
        assert answer.tables["wiki.pages"] == 4 and answer.tables["wiki.comments"] == 12

        erased = erase_person(settings, open_request(settings, "acme", str(person), "erasure").ref)
        certificate = read_signed(settings, erased.certificate_key)
        systems = {s["name"]: s for s in certificate["systems"]}
        assert systems["wiki"]["status"] == systems["cache"]["status"] == "erased"
        assert systems["wiki"]["deleted"] == {"wiki.comments": 12}
        assert systems["wiki"]["pseudonymised"] == {"wiki.pages": 4}
        assert systems["cache"]["deleted"] == {"session:{tenant}:{person}:*": 1}
        assert cache.get(f"session:acme:{person}:web") is None
        assert cache.get(f"session:acme:{colleague}:web") == f"session of {colleague}".encode()
        conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard",
                               database=database)  # fmt: skip
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pages WHERE author_id = %s", (person,))
            assert cur.fetchone() == (0,)  # the person's row went: the references with it
            cur.execute("SELECT count(*) FROM pages WHERE title LIKE 'erased-%%'")
            assert cur.fetchone() == (4,)
            cur.execute(
                "SELECT count(*) FROM pages WHERE author_id = %s AND title NOT LIKE 'erased-%%'",
                (colleague,),
            )
            assert cur.fetchone() == (2,)
            cur.execute("SELECT count(*) FROM comments WHERE author_id = %s", (colleague,))
            assert cur.fetchone() == (6,)
        conn.close()
        assert wiki_db.fingerprint(mariadb, database, "globex") == colleague_wiki
        report = verify_archive(
            open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
        )
        assert report.records == {"person-erasure-certificate": 1, "person-request-answered": 1}
    finally:
        cache.close()
        wiki_db.drop(mariadb, database)
