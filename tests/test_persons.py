"""A person's footprint: the data map's [person] scope, checked against the catalogue, and
what a request about one person would touch, counted independently from the demo schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.datamap import load_datamap, parse_datamap
from offboarding.delivery.mail import read_outbox
from offboarding.people import statement
from offboarding.persons import (
    extend_request,
    forward_direct_request,
    list_requests,
    open_request,
    person_footprint,
    requests_due,
)
from tests.conftest import Platform

_BASE = {"systems": {"postgres": {"plugin": "postgres"}}}


def _person(**fields: object) -> dict[str, object]:
    return {**_BASE, "person": {"table": "public.users", **fields}}


def _first_person(platform: Platform, tenant: str) -> str:
    """The tenant's first user: posts, comments in other people's threads, uploaded files."""
    return str(platform.query("SELECT min(id) FROM users WHERE tenant_id = %s", tenant)[0][0])


def _rewrite(platform: Platform, old: str, new: str) -> None:
    path = Path(str(platform.settings.datamap))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_person_scope_refuses_what_it_cannot_keep() -> None:
    with pytest.raises(ConfigurationError, match="files columns are deleted with their rows"):
        parse_datamap(
            _person(tables={"public.documents": {
                "by": "uploaded_by", "erase": "pseudonymise", "files": ["object_key"]}})
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"must start with 'tenants/\{tenant\}/'"):
        parse_datamap(_person(files=["avatars/{person}.bin"]))
    # The files store's own folder, where the data map gives one; or none at all.
    media = {"plugin": "files", "prefix": "media/org-{tenant}/"}
    with pytest.raises(ConfigurationError, match=r"must start with 'media/org-\{tenant\}/'"):
        parse_datamap({**_person(files=["tenants/{tenant}/avatars/{person}.bin"]),
                       "systems": {**_BASE["systems"], "files": media}})  # fmt: skip
    unfoldered = {"systems": {**_BASE["systems"], "files": {"plugin": "files", "prefix": False}}}
    parse_datamap({**_person(files=["avatars/{tenant}-{person}.png"]), **unfoldered})
    with pytest.raises(ConfigurationError, match=r"must name \{tenant\} and \{person\} once"):
        parse_datamap({**_person(files=["avatars/{person}.png"]), **unfoldered})
    with pytest.raises(ConfigurationError, match="is a key, not a pattern"):
        parse_datamap(_person(files=["tenants/{tenant}/avatars/{person}*"]))
    with pytest.raises(ConfigurationError, match=r"exactly one of tables .*, patterns .*, lingers"):
        parse_datamap(
            {"systems": {"postgres": {"plugin": "postgres"}, "cache": {"attested": {
                "role": "r", "procedure": "p"}}},
             "person": {"table": "public.users", "systems": {"cache": {"why": "pages"}}}}
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="drop personal, or keep the row"):
        parse_datamap(_person(erase="delete", personal=["email"]))
    cache = {"attested": {"role": "r", "procedure": "p"}}
    undeclared = parse_datamap({"systems": {"postgres": {"plugin": "postgres"}, "cache": cache},
                                "person": {"table": "public.users"}})  # fmt: skip
    with pytest.raises(ConfigurationError, match="does not say how system"):
        undeclared.require_person_scope()
    with pytest.raises(ConfigurationError, match=r"has no \[person\] table"):
        parse_datamap(_BASE).require_person_scope()


def test_a_person_footprint_is_exactly_their_rows_and_files(platform: Platform) -> None:
    person = _first_person(platform, "acme")
    footprint = person_footprint(platform.settings, "acme", person)
    tables = {t.table: t for t in footprint.tables}
    # Counted independently, straight from the demo schema.
    expected = {
        "public.users": "SELECT count(*) FROM users WHERE tenant_id = 'acme' AND id = %s",
        "public.posts": "SELECT count(*) FROM posts WHERE tenant_id = 'acme' AND author_id = %s",
        "public.comments": "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE p.tenant_id = 'acme' AND c.author_id = %s",
        "public.spaces": "SELECT count(*) FROM spaces WHERE tenant_id = 'acme' AND created_by = %s",
        "public.chat_messages": "SELECT count(*) FROM chat_messages WHERE author_id = %s",
        "public.survey_answers": "SELECT count(*) FROM survey_answers WHERE user_id = %s",
        "public.documents": "SELECT count(*) FROM documents WHERE uploaded_by = %s",
    }
    assert set(tables) == set(expected)
    for table, query in expected.items():
        assert tables[table].rows == platform.query(query, int(person))[0][0], table
    assert tables["public.users"].rows == 1 and tables["public.users"].erase == "delete"
    assert tables["public.comments"].erase == "pseudonymise"
    assert tables["public.documents"].erase == "delete"
    # The demo person answered someone else's thread.
    others_threads = platform.query(
        "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE c.author_id = %s AND p.author_id <> %s", int(person), int(person)
    )[0][0]  # fmt: skip
    assert others_threads >= 1
    documents = platform.query("SELECT count(*) FROM documents WHERE uploaded_by = %s", int(person))
    avatar = platform.files.exists(f"tenants/acme/avatars/{person}.bin")
    assert footprint.files == documents[0][0] + int(avatar) and footprint.files > 0
    assert set(footprint.systems) == {"cache", "helpdesk", "search"}
    assert footprint.systems["helpdesk"].startswith("attested by the support lead")


def test_a_person_of_another_tenant_is_nobody_here(platform: Platform) -> None:
    globex_person = _first_person(platform, "globex")
    with pytest.raises(TenantError, match="has no person"):
        person_footprint(platform.settings, "acme", globex_person)
    with pytest.raises(TenantError, match="not a key"):
        person_footprint(platform.settings, "acme", "jane doe@acme.example")
    with pytest.raises(TenantError, match=r"not a value of public\.users\.id"):
        person_footprint(platform.settings, "acme", "jane.doe@acme.example")


def test_a_foreign_key_to_people_the_data_map_forgot_stops_the_request(
    platform: Platform,
) -> None:
    platform.query(
        "CREATE TABLE public.likes (id bigint PRIMARY KEY, tenant_id text NOT NULL "
        "REFERENCES tenants (id), user_id bigint REFERENCES users (id))"
    )
    with pytest.raises(ConfigurationError, match=r"public\.likes\.user_id points at public\.users"):
        person_footprint(platform.settings, "acme", _first_person(platform, "acme"))
    _rewrite(platform, '[person.systems.cache]', '[person.tables."public.likes"]\nby = "user_id"\n'
             'erase = "delete"\n\n[person.systems.cache]')  # fmt: skip
    assert load_datamap(platform.settings.datamap).person is not None
    footprint = person_footprint(platform.settings, "acme", _first_person(platform, "acme"))
    assert {t.table: t.rows for t in footprint.tables}["public.likes"] == 0


def test_a_kept_row_whose_personal_column_cannot_be_replaced_is_refused(
    platform: Platform,
) -> None:
    _rewrite(platform, 'personal = ["title", "body", "metadata"]',
             'personal = ["title", "body", "metadata", "published_at"]')  # fmt: skip
    platform.query("ALTER TABLE posts ALTER COLUMN published_at SET NOT NULL")
    footprint = person_footprint(platform.settings, "acme", _first_person(platform, "acme"))
    assert [r for r in footprint.refusals if "posts.published_at is NOT NULL and not text" in r]


def test_offboard_inventory_person_prints_counts_and_no_values(platform: Platform) -> None:
    person = _first_person(platform, "acme")
    command = [sys.executable, "-m", "offboarding.cli", "inventory", "acme", "--person", person]
    env = {
        **os.environ,
        "OFFBOARD_HOME": str(platform.settings.home),
        "OFFBOARD_DATABASE_URL": platform.dsn,
        "OFFBOARD_DATAMAP": str(platform.settings.datamap),
    }
    shown = subprocess.run(
        command,
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"person {person} of tenant acme" in shown and "public.comments" in shown
    assert "an erasure would meet no refusal" in shown
    email = platform.query("SELECT email, display_name FROM users WHERE id = %s", int(person))[0]
    assert str(email[0]) not in shown and str(email[1]) not in shown
    as_json = subprocess.run(
        [*command, "--json"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(as_json)["person"] == person


def test_a_client_request_is_due_a_month_after_receipt_and_extends_once(
    platform: Platform,
) -> None:
    person = _first_person(platform, "acme")
    received = datetime(2027, 1, 31, 23, 30, tzinfo=UTC)
    request = open_request(platform.settings, "acme", person, "erasure", received_at=received)
    assert (request.origin, request.status, request.person) == ("client", "open", person)
    assert request.due_on == date(2027, 2, 28)  # a month, by the calendar
    assert request.overdue(date(2027, 3, 1)) and not request.overdue(date(2027, 2, 28))
    extended = extend_request(platform.settings, request.ref, name="DPO", reason="complex")
    assert extended.due_on == date(2027, 4, 28) and extended.extended_by is not None
    with pytest.raises(TenantError, match="already extended"):
        extend_request(platform.settings, request.ref, name="DPO", reason="again")
    with pytest.raises(TenantError, match="has no person"):
        open_request(platform.settings, "acme", _first_person(platform, "globex"), "access")
    with pytest.raises(TenantError, match="not one of"):
        open_request(platform.settings, "acme", person, "deletion")
    assert [r.ref for r in list_requests(platform.settings, "acme")] == [request.ref]
    assert list_requests(platform.settings, "globex") == []


def test_a_request_received_directly_is_forwarded_not_executed(platform: Platform) -> None:
    person = _first_person(platform, "acme")
    before = platform.fingerprint("acme")
    request = forward_direct_request(
        platform.settings, "acme", "erasure", name="Zoë Requester",
        contact="zoe.requester@example.org", text="Effacez mes données, s'il vous plaît",
    )  # fmt: skip
    assert (request.origin, request.status, request.person) == ("direct", "forwarded", None)
    assert request.forwarded_at is not None and request.statement is not None
    message = read_outbox(platform.settings.root / "outbox" / f"request-{request.ref}.eml")
    assert message["To"] == "dpo@acme.example"
    body = message.get_content()
    assert "Zoë Requester" in body and "zoe.requester@example.org" in body
    assert "we have not acted on it" in body.replace("\n", " ") and request.ref in body
    # Nothing of the tenant changed, and the request holds no word of the person's.
    assert platform.fingerprint("acme") == before
    assert person_footprint(platform.settings, "acme", person).rows > 0
    row = platform.query("SELECT * FROM offboarding.person_requests WHERE ref = %s", request.ref)
    assert "Zoë" not in repr(row) and "zoe.requester" not in repr(row)
    words = statement(platform.settings, str(request.statement), "acme", "request")
    assert words.field("contact") == "zoe.requester@example.org"


def test_offboard_request_commands(platform: Platform) -> None:
    env = {
        **os.environ,
        "OFFBOARD_HOME": str(platform.settings.home),
        "OFFBOARD_DATABASE_URL": platform.dsn,
        "OFFBOARD_DATAMAP": str(platform.settings.datamap),
    }
    offboard = [sys.executable, "-m", "offboarding.cli", "request"]
    person = _first_person(platform, "acme")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*offboard, *args], env=env, capture_output=True, text=True)

    opened = run("open", "acme", person, "--kind", "access")
    assert opened.returncode == 0, opened.stderr
    ref = opened.stdout.split()[0]
    assert ref.startswith("pr-") and "one month from receipt" in opened.stdout
    assert run("extend", ref, "--reason", "many requests").returncode == 0
    again = run("extend", ref, "--reason", "more")
    assert again.returncode != 0 and "already extended" in again.stderr
    direct = run("direct", "acme", "--kind", "access", "--name", "Ann", "--contact", "a@x.org")
    assert direct.returncode == 0 and "not executed" in direct.stdout
    erasure = run("open", "acme", person, "--kind", "erasure")
    assert erasure.returncode == 0 and "the erasure would meet no refusal" in erasure.stdout
    listed = run("list", "acme")
    assert listed.returncode == 0 and "3 request(s), 0 overdue" in listed.stdout
    assert "Ann" not in listed.stdout and "a@x.org" not in listed.stdout


def test_the_deadline_watch_sees_requests_due_and_overdue(platform: Platform) -> None:
    person = _first_person(platform, "acme")
    received = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    request = open_request(platform.settings, "acme", person, "access", received_at=received)
    assert requests_due(platform.settings, date(2027, 3, 20)) == ([], [])
    soon, late = requests_due(platform.settings, date(2027, 4, 5))
    assert [r.ref for r in soon] == [request.ref] and late == []
    soon, late = requests_due(platform.settings, date(2027, 4, 11))
    assert soon == [] and [r.ref for r in late] == [request.ref]
