"""People as the platform has them: a table with several references to the person (the author,
the assignee, the reviewer, a mention), each with its own rule; others' rows in an access
answer by their keys and references only; kept rows reassigned to a tombstone person; every
refusal predicted by the person inventory before anything is asked of anyone; the client told
when the erasure is done. Checked against the rows themselves with plain SQL and DuckDB."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import duckdb
import MySQLdb
import pytest

from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.datamap import PersonSystem, parse_datamap
from offboarding.delivery.mail import read_outbox
from offboarding.destruction.compaction import compact_destroyed
from offboarding.dev.services import MariaDBServer
from offboarding.locations import get_location
from offboarding.locations.base import PersonAccess, PersonErasure
from offboarding.persons import get_request, open_request, person_footprint
from offboarding.persons.access import answer_access
from offboarding.persons.erasure import erase_person
from offboarding.persons.records import read_signed
from offboarding.stores import open_store
from tests import wiki as wiki_db
from tests.conftest import Platform

_TICKETS = """
CREATE TABLE public.tickets (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    author_id bigint NOT NULL REFERENCES users (id),
    assignee_id bigint REFERENCES users (id),
    reviewer_id bigint NOT NULL REFERENCES users (id),
    mentioned_id bigint,
    subject text NOT NULL,
    body text
);
CREATE INDEX ON tickets (author_id); CREATE INDEX ON tickets (assignee_id);
CREATE INDEX ON tickets (reviewer_id); CREATE INDEX ON tickets (mentioned_id);
"""
_DECLARED = """[person.tables."public.tickets"]
by = "author_id"
erase = "delete"
disclose = ["subject"]
links = { assignee_id = "clear", reviewer_id = "tombstone", mentioned_id = { rule = "keep", \
why = "the ticket history the client must keep" } }

[person.tables."public.posts"]"""
_TOMBSTONE = 'key = "id"\ntombstone = { column = "email", value = "ghost@{tenant}.invalid" }\n'


def _rewrite(platform: Platform, old: str, new: str) -> None:
    path = Path(str(platform.settings.datamap))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _helpdesk(platform: Platform) -> dict[str, int]:
    """Tickets pointing at the person in every way, a ghost user, a neighbour's ticket; the
    data map declaring each column. Returns the people and tickets by role."""
    platform.query(_TICKETS)
    acme = [int(str(r[0])) for r in platform.query(
        "SELECT id FROM users WHERE tenant_id = 'acme' ORDER BY id LIMIT 3")]  # fmt: skip
    globex = int(str(platform.query("SELECT min(id) FROM users WHERE tenant_id = 'globex'")[0][0]))
    person, first, second = acme
    ghost = int(str(platform.query("SELECT max(id) + 1 FROM users")[0][0]))
    platform.query(
        "INSERT INTO users (id, tenant_id, display_name, email, created_at) VALUES "
        "(%s, 'acme', 'Former member', 'ghost@acme.invalid', now())", ghost)  # fmt: skip
    rows = [
        (1, "acme", person, first, second, None, "Printer on fire", "Ottilie wrote: smoke"),
        (2, "acme", first, person, second, None, "VPN down", "Colleague's own words"),
        (3, "acme", second, first, person, person, "Invoice query", "Second's own words"),
        (4, "acme", first, second, first, None, "Unrelated", "Nobody's business"),
        (5, "globex", globex, globex, globex, globex, "Neighbour", "Neighbour's words"),
    ]
    for row in rows:
        platform.query("INSERT INTO tickets VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", *row)
    _rewrite(platform, '[person.tables."public.posts"]', _DECLARED)
    _rewrite(platform, 'key = "id"\n', _TOMBSTONE)
    return {"person": person, "first": first, "second": second, "ghost": ghost}


def _tickets(platform: Platform, where: str = "TRUE") -> list[tuple[object, ...]]:
    return platform.query(f"SELECT * FROM tickets WHERE {where} ORDER BY id")


def test_the_person_inventory_counts_each_reference_with_its_rule(platform: Platform) -> None:
    people = _helpdesk(platform)
    footprint = person_footprint(platform.settings, "acme", str(people["person"]))
    tickets = {(t.by, t.erase, t.own): t.rows for t in footprint.tables
               if t.table == "public.tickets"}  # fmt: skip
    assert tickets == {
        ("author_id", "delete", True): 1, ("assignee_id", "clear", False): 1,
        ("reviewer_id", "tombstone", False): 1, ("mentioned_id", "keep", False): 1,
    }  # fmt: skip
    assert footprint.linked == 3 and footprint.refusals == []


def test_an_access_answer_gives_others_rows_by_their_keys_and_links_only(
    platform: Platform, tmp_path: Path
) -> None:
    """Art. 15(4): the colleagues' tickets that name the person are in the answer, with their
    keys, their references and the disclosed subject; their words (body) are withheld."""
    settings = platform.settings
    people = _helpdesk(platform)
    request = open_request(settings, "acme", str(people["person"]), "access")
    answer = answer_access(settings, request.ref)
    store = open_store(settings.delivery_store_url("europe-west1"))
    with store.open_read(answer.parts[0]) as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    archive.extractall(tmp_path)
    found = duckdb.sql(
        f"SELECT id, author_id, assignee_id, reviewer_id, mentioned_id, subject, body "
        f"FROM '{tmp_path}/tables/public.tickets/*.parquet' ORDER BY id"
    ).fetchall()
    rows = _tickets(platform, "id IN (1, 2, 3)")
    expected = [(i, a, s, r, m, subject, body if a == people["person"] else None)
                for i, _, a, s, r, m, subject, body in rows]  # fmt: skip
    assert found == expected and len(found) == 3
    assert answer.tables["public.tickets"] == 3
    manifest = json.loads(archive.read("manifest.json"))
    item = next(t for t in manifest["tables"] if t["name"] == "public.tickets")
    assert item["withheld"] == ["body"]
    assert "withheld on others' rows: body" in archive.read("README.txt").decode()
    part = next(n for n in archive.namelist() if "tickets" in n)
    assert b"Colleague's own words" not in archive.read(part)


def test_an_erasure_follows_each_references_rule_and_tells_the_client(
    platform: Platform,
) -> None:
    settings = platform.settings
    people = _helpdesk(platform)
    person, ghost = people["person"], people["ghost"]
    untouched = _tickets(platform, "id IN (4, 5)")
    second = _tickets(platform, "id = 2")[0]
    request = open_request(settings, "acme", str(person), "erasure")
    erased = erase_person(settings, request.ref)

    assert _tickets(platform, "id = 1") == []  # the person's own ticket: deleted
    assert _tickets(platform, "id = 2") == [(*second[:3], None, *second[4:])]  # assignee cleared
    third = _tickets(platform, "id = 3")[0]
    assert third[4] == ghost and third[5] == person  # reviewer reassigned, the mention kept
    assert _tickets(platform, "id IN (4, 5)") == untouched
    certificate = read_signed(settings, erased.certificate_key)
    links = {(k["column"], k["rule"]): k["rows"] for k in certificate["database"]["links"]
             if k["table"] == "public.tickets"}  # fmt: skip
    assert links == {("assignee_id", "clear"): 1, ("reviewer_id", "tombstone"): 1,
                     ("mentioned_id", "keep"): 1}  # fmt: skip
    kept = {"table": "public.tickets", "column": "mentioned_id", "rows": 1,
            "why": "the ticket history the client must keep"}  # fmt: skip
    assert kept in certificate["database"]["linkable"]

    # The client's contact is told, with the certificate's reference and digest, no values.
    notice = read_outbox(settings.root / "outbox" / f"request-{request.ref}-erased.eml")
    body = notice.get_content()
    assert notice["To"] == "dpo@acme.example"
    archived = open_store(settings.store_url("archive"))
    with archived.open_read(erased.certificate_key) as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert erased.certificate_key in body and digest in body
    assert "links that remain:        1" in body
    assert "Ottilie" not in body and "ghost@" not in body
    assert get_request(settings, request.ref).status == "answered"

    # The erased values' bytes stay on the tables' pages until the next compaction, which
    # the certificate dates and which rewrites the tables the erasure touched.
    places = {r["place"]: r for r in certificate["physical_residue"]}
    assert places["heap, TOAST and index pages"]["until"] and "write-ahead log on disk" in places
    run = compact_destroyed(settings)
    assert run.erasures == [request.ref] and "public.tickets" in run.tables["postgres"]
    compacted = read_signed(settings, f"persons/acme/{request.ref}/compacted.json")
    assert compacted["tables"] >= 3 and compacted["run"] == run.run
    assert compact_destroyed(settings).erasures == []


def test_the_tombstone_must_be_one_of_the_tenants_people_and_is_never_erased(
    platform: Platform,
) -> None:
    settings = platform.settings
    people = _helpdesk(platform)
    with pytest.raises(TenantError, match="is the tombstone"):
        open_request(settings, "acme", str(people["ghost"]), "erasure")
    platform.query("UPDATE users SET email = 'gone@acme.invalid' WHERE id = %s", people["ghost"])
    with pytest.raises(ConfigurationError, match=r"tombstone: 0 row\(s\) of tenant 'acme'"):
        person_footprint(settings, "acme", str(people["person"]))


def test_every_refusal_is_predicted_before_anything_is_asked_of_anyone(
    platform: Platform,
) -> None:
    settings = platform.settings
    people = _helpdesk(platform)
    person = str(people["person"])
    # What the catalogue contradicts stops every request: a reference nothing declares.
    platform.query("ALTER TABLE tickets ADD COLUMN closer_id bigint REFERENCES users (id)")
    with pytest.raises(ConfigurationError, match=r"tickets\.closer_id points at public\.users"):
        person_footprint(settings, "acme", person)
    # What only an erasure refuses, listed by the inventory, all at once: a NOT NULL column
    # to clear, and a colleague's pin on a message the erasure would delete.
    _rewrite(platform, 'reviewer_id = "tombstone"', 'reviewer_id = "clear", closer_id = "clear"')
    platform.query(
        "CREATE TABLE public.pins (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), message_id bigint REFERENCES chat_messages (id) ON DELETE CASCADE)"
    )
    message = platform.query("SELECT min(id) FROM chat_messages WHERE author_id = %s", person)
    platform.query("INSERT INTO pins VALUES (1, 'acme', %s)", message[0][0])
    footprint = person_footprint(settings, "acme", person)
    assert len(footprint.refusals) == 2
    assert (
        "tickets.reviewer_id is NOT NULL, so the erasure cannot clear it" in footprint.refusals[0]
    )
    assert "1 row(s) of public.pins" in footprint.refusals[1]
    # An access answer is not concerned: the request opens, and is answered.
    access = open_request(settings, "acme", person, "access")
    assert answer_access(settings, access.ref).tables["public.tickets"] == 3
    before = platform.fingerprint("acme")
    request = open_request(settings, "acme", person, "erasure")
    with pytest.raises(TenantError, match="would be refused, so nothing was changed and no one"):
        erase_person(settings, request.ref)
    assert platform.fingerprint("acme") == before
    assert not list((settings.root / "outbox").glob(f"request-{request.ref}-*"))


def test_the_data_map_refuses_links_it_cannot_carry_out() -> None:
    base = {"systems": {"postgres": {"plugin": "postgres"}}}

    def person(**fields: object) -> dict[str, object]:
        return {**base, "person": {"table": "public.users", **fields}}

    with pytest.raises(ConfigurationError, match="a kept link needs why"):
        parse_datamap(person(tables={"public.t": {"links": {"owner_id": "keep"}}}))
    with pytest.raises(ConfigurationError, match="reassign to the tombstone person, but"):
        parse_datamap(person(links={"manager_id": "tombstone"}))
    with pytest.raises(ConfigurationError, match="apply to the person's own rows"):
        parse_datamap(person(tables={"public.t": {"erase": "delete", "links": {"a": "clear"}}}))
    with pytest.raises(ConfigurationError, match=r"give by .* or links"):
        parse_datamap(person(tables={"public.t": {"disclose": ["subject"]}}))
    with pytest.raises(ConfigurationError, match="both by and a link"):
        parse_datamap(person(tables={"public.t": {"by": "a", "erase": "delete",
                                                  "links": {"a": "clear"}}}))  # fmt: skip
    parsed = parse_datamap(person(tombstone=0, links={"manager_id": "tombstone"}))
    assert parsed.require_person_scope().tombstone.value == "0"  # type: ignore[union-attr]


def test_a_mariadb_system_follows_the_same_rules_for_links(
    mariadb: MariaDBServer, platform: Platform, tmp_path: Path
) -> None:
    """Parity: in the wiki (MariaDB), pages reviewed by the person lose the reviewer, pages
    that mention them keep the mention with why, and an access answer gives those pages by
    keys and references, their words withheld."""
    database = wiki_db.create(mariadb)
    path = Path(str(platform.settings.datamap))
    path.write_text(wiki_db.declare(path.read_text(), mariadb, database))
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard", database=database)
    conn.autocommit(True)

    def rows(where: str) -> list[tuple[object, ...]]:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, author_id, reviewer_id, mentioned_id, body FROM pages "
                        f"WHERE {where} ORDER BY id")  # fmt: skip
            return list(cur.fetchall())

    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE pages ADD reviewer_id BIGINT NULL, ADD mentioned_id BIGINT, "
                        "ADD editor_id BIGINT NOT NULL DEFAULT 0")  # fmt: skip
            for tenant in ("acme", "acme-corp"):
                cur.execute("UPDATE pages SET author_id = 8, reviewer_id = 7 WHERE tenant_id = "
                            "%s ORDER BY id LIMIT 2", (tenant,))  # fmt: skip
                mention = "UPDATE pages SET author_id = 8, mentioned_id = 7 WHERE tenant_id = %s "
                cur.execute(mention + "AND reviewer_id IS NULL ORDER BY id LIMIT 1", (tenant,))
        location = get_location("wiki", platform.settings)
        assert isinstance(location, PersonErasure) and isinstance(location, PersonAccess)
        declared = PersonSystem.model_validate({"tables": {"wiki.pages": {
            "links": {"reviewer_id": "clear",
                      "mentioned_id": {"rule": "keep", "why": "the page's history"}},
            "disclose": ["title"],
        }}})  # fmt: skip
        reviewed = rows("tenant_id = 'acme' AND reviewer_id = 7")
        mentioned = rows("tenant_id = 'acme' AND mentioned_id = 7")
        neighbour = rows("tenant_id = 'acme-corp'")
        assert len(reviewed) == 2 and len(mentioned) == 1
        found = location.find_person("acme", "7", declared)
        assert found.links == {"wiki.pages.reviewer_id": 2, "wiki.pages.mentioned_id": 1}
        assert found.refusals == []
        # A NOT NULL column to clear: predicted by the count, refused by the erasure alone.
        editor = PersonSystem.model_validate(
            {"tables": {"wiki.pages": {"links": {"editor_id": "clear"}}}}
        )
        predicted = location.find_person("acme", "7", editor).refusals
        assert predicted == ["wiki.pages.editor_id is NOT NULL, so the erasure cannot clear it: "
                             "keep it with why, or allow NULL"]  # fmt: skip
        with pytest.raises(ConfigurationError, match="editor_id is NOT NULL"):
            location.erase_person("acme", "7", editor, "erased-0123abcd", person_kept=False)

        exported = location.export_person("acme", "7", declared, tmp_path)
        part = next(p for p in exported.parts if p.table == "wiki.pages")
        read = duckdb.execute(f"SELECT id, reviewer_id, mentioned_id, body FROM "
                              f"'{tmp_path / part.path}' ORDER BY id").fetchall()  # fmt: skip
        assert read == sorted((i, r, m, None) for i, _, r, m, _ in reviewed + mentioned)
        assert "body" in exported.tables[0].withheld and "title" not in exported.tables[0].withheld

        erased = location.erase_person("acme", "7", declared, "erased-0123abcd", person_kept=False)
        assert rows("tenant_id = 'acme' AND reviewer_id = 7") == []
        assert rows(f"id IN ({', '.join(str(r[0]) for r in reviewed)})") == [
            (i, a, None, m, b) for i, a, _, m, b in reviewed]  # fmt: skip
        assert rows("tenant_id = 'acme' AND mentioned_id = 7") == mentioned
        assert rows("tenant_id = 'acme-corp'") == neighbour
        assert {(k.column, k.rule, k.rows) for k in erased.links} == {
            ("reviewer_id", "clear", 2), ("mentioned_id", "keep", 1)}  # fmt: skip
    finally:
        conn.close()
        wiki_db.drop(mariadb, database)


def test_a_composite_key_to_the_person_is_declared_by_its_person_column(
    platform: Platform,
) -> None:
    """Multi-tenant schemas often key (tenant_id, approver_id) to users (tenant_id, id): the
    person column names the key; the erasure clears it, the tenant column stays."""
    settings = platform.settings
    people = _helpdesk(platform)
    person, first = people["person"], people["first"]
    platform.query(
        "ALTER TABLE users ADD UNIQUE (tenant_id, id);"
        "CREATE TABLE public.approvals (id bigint PRIMARY KEY, tenant_id text NOT NULL, "
        "approver_id bigint, FOREIGN KEY (tenant_id, approver_id) REFERENCES users "
        "(tenant_id, id));"
        "CREATE INDEX ON approvals (approver_id)"
    )
    platform.query("INSERT INTO approvals VALUES (1, 'acme', %s), (2, 'acme', %s)", person, first)
    with pytest.raises(ConfigurationError, match=r"approvals\.tenant_id, approver_id points at"):
        person_footprint(settings, "acme", str(person))
    _rewrite(platform, '[person.tables."public.posts"]',
             '[person.tables."public.approvals"]\nlinks = { approver_id = "clear" }\n\n'
             '[person.tables."public.posts"]')  # fmt: skip
    footprint = person_footprint(settings, "acme", str(person))
    assert footprint.refusals == []
    assert [t.rows for t in footprint.tables if t.table == "public.approvals"] == [1]
    request = open_request(settings, "acme", str(person), "erasure")
    erase_person(settings, request.ref)
    assert platform.query("SELECT * FROM approvals ORDER BY id") == [
        (1, "acme", None), (2, "acme", first)]  # fmt: skip
