"""One conformance suite every plug-in that finds and erases a person passes, against its real
server: it finds exactly the person's items within the tenant, exports them (where it can), and
erases them; a colleague's items, and the same person key in a neighbouring tenant, stay
untouched; a second erasure finds nothing and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import redis

from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.datamap import PersonDeclaration, PersonSystem, RedisSystem, load_datamap
from offboarding.dev.services import MariaDBServer
from offboarding.locations import PLUGINS, Capability, get_location
from offboarding.locations.base import PersonAccess, PersonErasure
from offboarding.locations.cache import RedisLocation
from tests import wiki as wiki_db
from tests.conftest import Platform

PERSON_PLUGINS = sorted(p.kind for p in PLUGINS if Capability.PERSON_ERASURE in p.capabilities)


@dataclass
class PersonCase:
    location: PersonErasure
    declared: PersonDeclaration
    person: str
    colleague: str
    expected: dict[str, int]  # the person's items in acme, per table or pattern
    state: Callable[[str, str], object]  # what a tenant's person holds there, read directly
    neighbour: bool = True  # the same person key exists in acme-corp (keys per tenant)


# The demo platform's person rows per table, read with plain SQL (not the data map).
_DEMO_ROWS = {
    "public.users": "SELECT * FROM users WHERE tenant_id = %s AND id = %s",
    "public.posts": "SELECT * FROM posts WHERE tenant_id = %s AND author_id = %s",
    "public.comments": "SELECT c.* FROM comments c JOIN posts p ON p.id = c.post_id "
    "WHERE p.tenant_id = %s AND c.author_id = %s",
    "public.spaces": "SELECT * FROM spaces WHERE tenant_id = %s AND created_by = %s",
    "public.chat_messages": "SELECT m.* FROM chat_messages m JOIN users u ON u.id = "
    "m.author_id WHERE u.tenant_id = %s AND m.author_id = %s",
    "public.survey_answers": "SELECT a.* FROM survey_answers a JOIN users u ON u.id = "
    "a.user_id WHERE u.tenant_id = %s AND a.user_id = %s",
    "public.documents": "SELECT * FROM documents WHERE tenant_id = %s AND uploaded_by = %s",
}


def _postgres(platform: Platform) -> Iterator[PersonCase]:
    location = get_location("postgres", platform.settings)
    assert isinstance(location, PersonErasure)
    scope = load_datamap(platform.settings.datamap).require_person_scope()
    authors = platform.query(
        "SELECT u.id FROM users u WHERE u.tenant_id = 'acme' AND EXISTS (SELECT 1 FROM posts p "
        "WHERE p.author_id = u.id) AND EXISTS (SELECT 1 FROM documents d WHERE d.uploaded_by = "
        "u.id) ORDER BY u.id LIMIT 2"
    )
    person, colleague = (str(row[0]) for row in authors)

    def state(tenant: str, who: str) -> object:
        return {t: platform.query(q, tenant, int(who)) for t, q in _DEMO_ROWS.items()}

    rows = state("acme", person)
    assert isinstance(rows, dict)
    expected = {table: len(found) for table, found in rows.items()}
    yield PersonCase(location, scope, person, colleague, expected, state, neighbour=False)


def _mariadb(mariadb: MariaDBServer, platform: Platform) -> Iterator[PersonCase]:
    database = wiki_db.create(mariadb)
    path = platform.settings.datamap
    assert path is not None
    path.write_text(wiki_db.declare(path.read_text(), mariadb, database))
    for tenant in ("acme", "acme-corp"):  # the same person key in the neighbour
        wiki_db.set_authors(mariadb, database, tenant, 7, 8)
    location = get_location("wiki", platform.settings)
    assert isinstance(location, PersonErasure)
    declared = PersonSystem.model_validate({
        "tables": {
            "wiki.pages": {
                "by": "author_id", "erase": "pseudonymise", "personal": ["title", "body"]
            },
            "wiki.comments": {"by": "author_id", "erase": "delete"},
        }
    })  # fmt: skip

    def state(tenant: str, person: str) -> object:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="offboard",
                               database=database)  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(
                "SELECT p.* FROM pages p WHERE BINARY p.tenant_id = %s AND p.author_id = %s "
                "ORDER BY id", (tenant, person),
            )  # fmt: skip
            pages = cur.fetchall()
            cur.execute(
                "SELECT c.* FROM comments c JOIN pages p ON p.id = c.page_id WHERE BINARY "
                "p.tenant_id = %s AND c.author_id = %s ORDER BY c.id", (tenant, person),
            )  # fmt: skip
            comments = cur.fetchall()
        conn.close()
        return pages, comments

    pages, comments = state("acme", "7")  # type: ignore[misc]
    expected = {"wiki.pages": len(pages), "wiki.comments": len(comments)}
    assert expected == {"wiki.pages": 4, "wiki.comments": 12}  # the seed's, read directly
    yield PersonCase(location, declared, "7", "8", expected, state)
    wiki_db.drop(mariadb, database)


def _redis(platform: Platform) -> Iterator[PersonCase]:
    client = redis.Redis.from_url(platform.redis_url)
    for tenant in ("acme", "acme-corp"):
        for person in ("7", "8", "70"):  # 70: a key whose id starts with the person's
            client.set(f"u:{tenant}:{person}:profile", f"profile of {person}")
            client.hset(f"u:{tenant}:{person}:prefs", mapping={"lang": "fr"})
    client.set("u:acme:7", "no separator after the person: not one of the pattern's keys")
    system = RedisSystem(plugin="redis", url=platform.redis_url, patterns=["u:{tenant}:*"])
    location = RedisLocation(platform.settings, "cache", system)
    declared = PersonSystem(patterns=["u:{tenant}:{person}:*"])

    def state(tenant: str, person: str) -> object:
        keys = sorted(client.keys(f"u:{tenant}:{person}:*"))
        return [(k, client.dump(k)) for k in keys]

    yield PersonCase(location, declared, "7", "8", {"u:{tenant}:{person}:*": 2}, state)
    client.close()


@pytest.fixture(params=PERSON_PLUGINS)
def person_case(request: pytest.FixtureRequest, platform: Platform) -> Iterator[PersonCase]:
    if request.param == "postgres":
        yield from _postgres(platform)
    elif request.param == "mariadb":
        yield from _mariadb(request.getfixturevalue("mariadb"), platform)
    elif request.param == "redis":
        yield from _redis(platform)
    else:  # pragma: no cover - a new plug-in must join the suite
        pytest.fail(f"plug-in {request.param} erases a person but has no case in this suite")


def test_a_plugin_finds_erases_and_leaves_a_colleague_intact(
    person_case: PersonCase, tmp_path: Path
) -> None:
    case = person_case
    location, declared = case.location, case.declared
    found = location.find_person("acme", case.person, declared)
    assert found.counts == case.expected and found.total
    colleague = case.state("acme", case.colleague)
    neighbour = case.state("acme-corp", case.person)
    assert colleague and (neighbour or not case.neighbour)

    if isinstance(location, PersonAccess):
        exported = location.export_person("acme", case.person, declared, tmp_path)
        tables = [p for p in exported.parts if p.kind == "table"]
        assert {p.table: p.rows for p in tables} == case.expected
        assert len(exported.files) == found.objects == len(exported.parts) - len(tables)
        assert {t.qualified: t.rows for t in exported.tables} == case.expected
        for part in tables:  # read back by an independent reader
            rows = duckdb.execute(f"SELECT count(*) FROM '{tmp_path / part.path}'").fetchall()
            assert rows == [(part.rows,)]

    erased = location.erase_person("acme", case.person, declared, "erased-0123abcd")
    changed = {k: n for k, n in {**erased.deleted, **erased.pseudonymised}.items() if n}
    assert changed == {k: n for k, n in case.expected.items() if n} and erased.verification
    assert _left(location, case) == 0
    assert case.state("acme", case.colleague) == colleague
    assert case.state("acme-corp", case.person) == neighbour
    try:  # again: nothing found, nothing changed (or, where the person was, no such person)
        again = location.erase_person("acme", case.person, declared, "erased-0123abcd")
    except TenantError as error:
        assert "has no person" in str(error)
    else:
        assert sum(again.deleted.values()) == sum(again.pseudonymised.values()) == 0


def _left(location: PersonErasure, case: PersonCase) -> int:
    try:
        return location.find_person("acme", case.person, case.declared).total
    except TenantError as error:  # the system that held the person's own row
        assert "has no person" in str(error)
        return 0


def test_every_plugin_that_erases_a_person_is_in_this_suite() -> None:
    assert PERSON_PLUGINS == ["mariadb", "postgres", "redis"]


def test_a_person_pattern_outside_the_tenant_patterns_is_refused_touching_nothing(
    platform: Platform,
) -> None:
    """A key only a person pattern matches would outlive the tenant's destruction."""
    client = redis.Redis.from_url(platform.redis_url)
    client.set("s:acme:7:web", "a session")
    system = RedisSystem(plugin="redis", url=platform.redis_url, patterns=["u:{tenant}:*"])
    location = RedisLocation(platform.settings, "cache", system)
    declared = PersonSystem(patterns=["s:{tenant}:{person}:*"])
    with pytest.raises(ConfigurationError, match="matches keys no tenant pattern"):
        location.erase_person("acme", "7", declared, "erased-0123abcd")
    assert client.get("s:acme:7:web") == b"a session"
    client.close()
