"""The demo platform: a collaboration app's database and file store, seeded with tenants.

It is what `offboard demo` offboards from, and the fixture the tests use. `acme` and
`acme-corp` sit side by side on purpose: a prefix match on `acme` would catch both.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from offboarding.stores import ObjectStore

__all__ = [
    "CACHE_PATTERNS",
    "DEMO_TENANTS",
    "DemoTenant",
    "cache_fingerprint",
    "install_schema",
    "seed",
    "seed_cache",
    "tenant_fingerprint",
    "write_datamap",
]

# The demo cache's keys of a tenant (as its data map declares them), and keys of nobody.
CACHE_PATTERNS = ("page:{tenant}:*", "session:{tenant}:*")
_CACHE_GLOBAL_KEYS = {"config:features": b'{"wiki": true}', "page:index": b"<html>home</html>"}

# Tables of the demo schema that hold tenant rows, with the SQL that selects one tenant's.
_TENANT_ROWS: dict[str, str] = {
    "users": "tenant_id = %(t)s",
    "spaces": "tenant_id = %(t)s",
    "posts": "tenant_id = %(t)s",
    "comments": "post_id IN (SELECT id FROM posts WHERE tenant_id = %(t)s)",
    "wiki_pages": "tenant_id = %(t)s",
    "documents": "tenant_id = %(t)s",
    "chat_messages": "tenant_id = %(t)s",
    "survey_answers": "tenant_id = %(t)s",
}
# Schema-per-tenant tables of the demo: every row belongs to the schema's tenant.
_TENANT_SCHEMA_TABLES = ("custom_fields",)


@dataclass(frozen=True)
class DemoTenant:
    id: str
    name: str
    region: str
    contact_email: str
    plan: str
    users: int


DEMO_TENANTS = (
    DemoTenant("acme", "Acme SAS", "europe-west1", "dpo@acme.example", "business", 40),
    DemoTenant("acme-corp", "Acme Corporation", "us-east1", "it@acme-corp.example", "pro", 25),
    DemoTenant("globex", "Globex GmbH", "europe-west3", "privacy@globex.example", "pro", 15),
    DemoTenant("initech", "Initech Ltd", "europe-west2", "legal@initech.example", "starter", 10),
    DemoTenant(
        "demo-tenant",
        "Demo Tenant BV",
        "europe-west4",
        "privacy@demo-tenant.example",
        "starter",
        8,
    ),
)

_FIRST = ["Zoë", "Łukasz", "Amélie", "José", "Søren", "Ayşe", "李", "Ngọc", "Ólafur", "Anna"]
_LAST = ["Ångström", "Żółkiewski", "Dubois", "García", "Nørgaard", "Yılmaz", "雷", "Trần", "Ó"]
_WORDS = [
    "budget",
    "réunion",
    "roadmap",
    "onboarding",
    "café",
    "naïve",
    "façade",
    "retro",
    "sprint",
    "déjà-vu",
    "jalapeño",
    "Zürich",
    "Ελληνικά",
    "данные",
    "数据",
    "emoji",
    "🚀",
    "quarterly",
    "review",
    "launch",
    "plan",
    "incident",
    "audit",
]


def install_schema(dsn: str) -> None:
    ddl = resources.files("offboarding.dev.demo").joinpath("schema.sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)  # the demo's own fixed DDL, no input in it


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def seed(
    dsn: str, files: ObjectStore, tenants: tuple[DemoTenant, ...] = DEMO_TENANTS, scale: int = 1
) -> None:
    """Fill the schema with realistic, deterministic data for each tenant, and their files."""
    rng = random.Random(20230101)
    base = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
    ids = iter(range(1, 10**9))
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO plans (id, name, monthly_price, features) VALUES "
            "('starter', 'Starter', 4.00, %s), ('pro', 'Pro', 8.50, %s), "
            "('business', 'Business', 15.99, %s)",
            (Jsonb({"seats": 10}), Jsonb({"seats": 100, "sso": False}), Jsonb({"sso": True})),
        )
        for tenant in tenants:
            conn.execute(
                "INSERT INTO tenants (id, name, region, contact_email, plan_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (tenant.id, tenant.name, tenant.region, tenant.contact_email, tenant.plan, base),
            )  # fmt: skip
        for tenant_id in ("acme", "globex"):
            for field_no in range(1, 4):
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(
                        sql.Identifier(f"tenant_{tenant_id}", "custom_fields")
                    ),
                    (field_no, f"Champ {field_no} ({tenant_id})",
                     Jsonb({"required": field_no == 1}), base + timedelta(days=field_no)),
                )  # fmt: skip
        # Interleave tenants row by row so no tenant's rows sit in one contiguous id range.
        for round_ in range(max(t.users for t in tenants) * scale):
            for tenant in tenants:
                if round_ < tenant.users * scale:
                    _seed_user(conn, files, rng, ids, tenant, base, round_)
        for tenant in tenants:
            _seed_conversations(conn, ids, tenant, base)


def _seed_conversations(
    conn: psycopg.Connection[Any], ids: Any, tenant: DemoTenant, base: datetime
) -> None:
    """People answer each other: each author with posts comments on the next author's first
    post (the last on the first's), so everyone's words sit in threads that are not theirs."""
    authors = [
        (author, post)
        for author, post in conn.execute(
            "SELECT DISTINCT ON (author_id) author_id, id FROM posts "
            "WHERE tenant_id = %s AND author_id IS NOT NULL ORDER BY author_id, id",
            (tenant.id,),
        )
    ]
    for number, (author, _) in enumerate(authors):
        _, post = authors[(number + 1) % len(authors)]
        if post == authors[number][1]:
            continue  # one author alone: nobody else's thread to answer
        conn.execute(
            "INSERT INTO comments VALUES (%s, %s, NULL, %s, %s, %s, 0)",
            (next(ids), post, author, f"Réponse de {tenant.id} n°{number} 💬",
             base + timedelta(days=400 + number)),
        )  # fmt: skip


def _seed_user(
    conn: psycopg.Connection[Any],
    files: ObjectStore,
    rng: random.Random,
    ids: Any,
    tenant: DemoTenant,
    base: datetime,
    n: int,
) -> None:
    user_id = next(ids)
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    conn.execute(
        "INSERT INTO users VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            user_id, tenant.id, name, f"user{user_id}@{tenant.id}.example",
            None if n % 3 == 0 else f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} 00",
            rng.choice(["fr-FR", "en-GB", "de-DE", None]),
            base + timedelta(days=n, seconds=rng.randint(0, 86_399), microseconds=n * 7),
            None if n % 4 == 0 else datetime(2024, 5, 1, 12, 0) + timedelta(minutes=n),
            None if n % 2 else bytes(rng.getrandbits(8) for _ in range(32)),
        ),
    )  # fmt: skip
    if n % 4 == 0:
        avatar = bytes(rng.getrandbits(8) for _ in range(256))
        files.put_bytes(f"tenants/{tenant.id}/avatars/{user_id}.bin", avatar)
    if n % 5 != 0:
        return
    space_id = next(ids)
    conn.execute(
        "INSERT INTO spaces VALUES (%s, %s, %s, %s, %s, %s)",
        (
            space_id, tenant.id, f"Espace {_sentence(rng, 2)}", user_id,
            [rng.choice(_WORDS) for _ in range(rng.randint(0, 3))],
            base + timedelta(days=n),
        ),
    )  # fmt: skip
    for p in range(6):
        post_id = next(ids)
        conn.execute(
            "INSERT INTO posts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                post_id, tenant.id, space_id, user_id if p % 5 else None,
                _sentence(rng, 5), None if p == 3 else _sentence(rng, 40),
                Decimal(rng.randint(-10**6, 10**6)) / 10_000,
                base + timedelta(days=n, hours=p),
                Jsonb({"pinned": p == 0, "labels": [rng.choice(_WORDS)], "v": 1.5}),
            ),
        )  # fmt: skip
        thread: int | None = None
        for c in range(rng.randint(0, 4)):
            comment_id = next(ids)
            conn.execute(
                "INSERT INTO comments VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    comment_id, post_id, thread, user_id, _sentence(rng, 12),
                    base + timedelta(days=n, hours=p, minutes=c), c,
                ),
            )  # fmt: skip
            thread = comment_id  # replies form a thread: each answers the one before
    conn.execute(
        "INSERT INTO wiki_pages VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            uuid.UUID(int=rng.getrandbits(128)), tenant.id, space_id, _sentence(rng, 3),
            _sentence(rng, 80), rng.randint(1, 20), base + timedelta(days=n + 1),
            Jsonb({"toc": True, "owners": [user_id]}) if n % 2 else None,
        ),
    )  # fmt: skip
    for d in range(2):
        doc_id = next(ids)
        filename = f"Compte rendu – réunion {d}.txt" if d == 0 else f"plan-{doc_id}.bin"
        content = (_sentence(rng, 200).encode() if d == 0
                   else bytes(rng.getrandbits(8) for _ in range(4096)))  # fmt: skip
        key = f"tenants/{tenant.id}/documents/{doc_id}/{filename}"
        files.put_bytes(key, content)
        conn.execute(
            "INSERT INTO documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                doc_id, tenant.id, space_id, filename, key,
                "text/plain" if d == 0 else "application/octet-stream",
                len(content), hashlib.sha256(content).hexdigest(), base + timedelta(days=n),
                user_id,
            ),
        )  # fmt: skip
    for m in range(10):
        conn.execute(
            "INSERT INTO chat_messages VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                next(ids), tenant.id, space_id, user_id,
                base + timedelta(days=n, minutes=m, microseconds=m), _sentence(rng, 8),
                m % 7 == 0, Jsonb({"👍": m}) if m % 3 == 0 else None,
            ),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO survey_answers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            next(ids), tenant.id, user_id, "satisfaction-2024",
            rng.randint(1, 5) if n % 2 else None, rng.random(),
            Jsonb({"q1": rng.choice(["oui", "non"]), "q2": _sentence(rng, 3)}),
            date(2024, 3, 1) + timedelta(days=n),
            timedelta(minutes=rng.randint(1, 30), seconds=n) if n % 3 else None,
            [rng.randint(1, 5) for _ in range(3)],
        ),
    )  # fmt: skip


def tenant_fingerprint(dsn: str, files: ObjectStore, tenant: str) -> dict[str, Any]:
    """Row and file counts and digests of one tenant, computed from the demo schema directly.

    Independent of the pipeline's own discovery, so it can check the pipeline's work.
    """
    result: dict[str, Any] = {"tables": {}, "files": {}}
    with psycopg.connect(dsn) as conn:
        for table, where in _TENANT_ROWS.items():
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x.id)), '') "
                "FROM {} x WHERE " + where
            ).format(sql.Identifier(table))
            row = conn.execute(query, {"t": tenant}).fetchone()
            assert row is not None
            result["tables"][table] = {"rows": row[0], "digest": row[1]}
        for table in _TENANT_SCHEMA_TABLES:
            schema = f"tenant_{tenant}"
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{table}',)
            ).fetchone()
            if exists and exists[0]:
                query = sql.SQL(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x.id)), '') "
                    "FROM {} x"
                ).format(sql.Identifier(schema, table))
                row = conn.execute(query).fetchone()
                assert row is not None
                result["tables"][f"{schema}.{table}"] = {"rows": row[0], "digest": row[1]}
            else:
                result["tables"][f"{schema}.{table}"] = {"rows": 0, "digest": "absent"}
    listing = sorted((o.key, o.sha256) for o in files.list_objects(f"tenants/{tenant}/"))
    result["files"] = {
        "count": len(listing),
        "digest": hashlib.sha256(json.dumps(listing).encode()).hexdigest(),
    }
    return result


def tenant_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM tenants ORDER BY id")]


def set_up(dsn: str, files: ObjectStore, extra: tuple[DemoTenant, ...] = ()) -> None:
    install_schema(dsn)
    seed(dsn, files, DEMO_TENANTS + extra)


def seed_cache(redis_url: str, tenants: tuple[DemoTenant, ...] = DEMO_TENANTS) -> None:
    """The demo's cache: rendered pages and sessions per tenant, and a few global keys."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for key, value in _CACHE_GLOBAL_KEYS.items():
            pipe.set(key, value)
        for tenant in tenants:
            for n in range(tenant.users):
                pipe.set(f"page:{tenant.id}:space:{n}", f"<h1>{tenant.name} {n}</h1>".encode())
                pipe.hset(f"session:{tenant.id}:{n:04d}", mapping={"user": n, "lang": "fr"})
            pipe.rpush(f"page:{tenant.id}:recent", *range(5))
        pipe.execute()
    finally:
        client.close()


def cache_fingerprint(redis_url: str, tenant: str) -> dict[str, Any]:
    """The tenant's keys and values in the cache, read with plain KEYS and DUMP."""
    import redis

    client: redis.Redis = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(
            k.encode() if isinstance(k, str) else k
            for p in CACHE_PATTERNS
            for k in client.keys(p.replace("{tenant}", tenant))
        )
        digest = hashlib.sha256()
        for key in keys:
            value = client.dump(key)
            digest.update(key + b"\0" + (bytes(value) if value else b"") + b"\0")
        return {"count": len(keys), "digest": digest.hexdigest()}
    finally:
        client.close()


def write_datamap(path: Path, redis_url: str, pgbackrest: dict[str, Any] | None = None) -> Path:
    """The demo's data map (datamap.toml beside this module), with its cache's address and,
    given the options of its pgBackRest repository (stanza, config, command...), the
    platform's own backups: their paths are the run's, so they are written here."""
    template = resources.files("offboarding.dev.demo").joinpath("datamap.toml").read_text()
    text = template.replace("${DEMO_REDIS_URL}", redis_url)
    if pgbackrest is not None:
        options = {"plugin": "pgbackrest", "full_every": "P7D", **pgbackrest}
        text += (
            "\n[systems.platform-backups]\n"
            'description = "Physical backups and WAL archive of the database (pgBackRest)"\n'
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
            # A person's rows stay in the backup sets until they expire: the plug-in dates it.
            + "\n[person.systems.platform-backups]\n"
            'why = "the person\'s rows in backup sets and WAL taken before the erasure"\n'
            'lingers = "P1D"\n'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
