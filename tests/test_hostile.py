"""A catalogue of hostile and odd inputs: each gets a clear error that says what to fix, or is
handled correctly — never a traceback, never a leak. (More live beside the feature they attack:
test_export's hostile object keys, test_links' forged tokens, test_store's prefix neighbours.)"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pydantic
import pytest
import redis

from exporters.bundle import safe_entry_paths
from offboarding.cli import main
from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import (
    ConfigurationError,
    DuplicateCaseError,
    OffboardingError,
    TenantError,
    UnclassifiedDataError,
)
from offboarding.delivery.mail import compose, send
from offboarding.export import export as stages
from offboarding.stores import LocalStore, open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

HOSTILE_TENANT_IDS = [
    "acme'; DROP TABLE tenants;--",  # SQL injection
    'ac"me',  # identifier quoting
    "acme;",  # statement separator
    "tenants/acme",  # slash: would address another prefix
    "../acme",  # path traversal
    "..",
    "acme/",  # a prefix, not an id
    "\u0430cme",  # a Cyrillic a: a look-alike of acme
    " acme",  # leading whitespace
    "acme ",  # trailing whitespace
    "acme\n",  # newline
    "acme\x00",  # NUL
    "",  # empty
    "a" * 129,  # too long
    "-acme",  # leading dash (looks like an option)
    "acme.",  # trailing dot
    "acme:eu",  # a cache key's separator
]


@pytest.mark.parametrize("tenant", HOSTILE_TENANT_IDS)
def test_a_hostile_tenant_id_is_refused_with_the_rule(tenant: str) -> None:
    with pytest.raises(TenantError, match="ASCII letters, digits and inner dots, underscores"):
        validate_tenant_id(tenant)


@pytest.mark.parametrize("tenant", HOSTILE_TENANT_IDS[:6])
def test_a_hostile_tenant_id_on_the_command_line_gives_an_error_not_a_traceback(
    tenant: str, tmp_path: Path
) -> None:
    env = {"OFFBOARD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for argv in (["inventory", tenant], ["backup", tenant], ["restore-check", tenant]):
        result = subprocess.run(
            [sys.executable, "-m", "offboarding.cli", *argv],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


HOSTILE_KEYS = [
    "tenants/acme/../../etc/passwd",  # traversal (possible on Cloud Storage: names are strings)
    "/tenants/acme/absolute",  # absolute
    "tenants/acme/bell\x07.txt",  # control character
    "tenants/acme/new\nline.txt",
    "tenants/acme/" + "x" * 1000 + ".pdf",  # 1,000-character name
    "tenants/acme/R\u00e9sum\u00e9.pdf",  # composed
    "tenants/acme/Re\u0301sume\u0301.pdf",  # decomposed: collides once normalised
    "tenants/acme/RÉSUMÉ.PDF",  # collides by case
    "tenants/acme/a//b/./c",  # empty and dot segments
    "tenants/acme/back\\slash:colon",  # Windows-hostile
    "tenants/acme/\udcff-invalid-utf8",  # undecodable bytes, as surrogate escapes
    "tenants/acme/ .hidden. ",  # leading/trailing dots and spaces
]


def test_hostile_object_keys_become_safe_unique_short_entry_names() -> None:
    paths = safe_entry_paths("files/", [k.removeprefix("tenants/acme/") for k in HOSTILE_KEYS])
    assert len({p.casefold() for p in paths}) == len(paths)
    for path in paths:
        segments = path.split("/")
        assert path.startswith("files/") and ".." not in segments and "" not in segments
        assert not any(ord(ch) < 32 for ch in path) and "\\" not in path and ":" not in path
        assert all(len(s.encode("utf-8")) <= 255 for s in segments)  # strict: valid UTF-8
        assert not path.endswith((" ", ".")) and all(s.strip(" .") for s in segments[1:])
    again = safe_entry_paths("files/", [k.removeprefix("tenants/acme/") for k in HOSTILE_KEYS])
    assert again == paths  # deterministic: a rerun of the export names every entry the same


@pytest.mark.parametrize("key", ["tenants/acme/../x", "/tenants/acme/x", "tenants//acme", ""])
def test_the_local_store_refuses_unclean_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigurationError, match="not a clean relative key"):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_zero_byte_and_unicode_named_files_round_trip(platform: Platform, tmp_path: Path) -> None:
    platform.files.put_bytes("tenants/acme/empty.bin", b"")
    platform.files.put_bytes("tenants/acme/dossier été/notes (final) #2.txt", "é".encode())
    _, _, bundle = export_and_deliver(platform, platform.case("acme"))
    target = tmp_path / "x"
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(target)], check=True)
    manifest = json.loads((target / "manifest.json").read_text())
    by_key = {e["source_key"]: e for e in manifest["entries"] if e["kind"] == "file"}
    assert by_key["tenants/acme/empty.bin"]["size"] == 0
    assert (target / by_key["tenants/acme/empty.bin"]["path"]).read_bytes() == b""
    unicode_entry = by_key["tenants/acme/dossier été/notes (final) #2.txt"]
    assert (target / unicode_entry["path"]).read_bytes() == "é".encode()


def test_reserved_word_and_mixed_case_identifiers_export_and_destroy(platform: Platform) -> None:
    platform.query(
        'CREATE TABLE "Order" (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES '
        'tenants (id), "select" text, "From" int)'
    )
    platform.query(
        "INSERT INTO \"Order\" VALUES (1, 'acme', 'x', 1), (2, 'globex', 'y', 2), "
        "(3, 'acme', 'z''; DROP TABLE tenants;--', 3)"
    )
    case = platform.case("acme")
    inventory, _, _ = export_and_deliver(platform, case)
    assert {t.qualified: t.rows for t in inventory.tables}["public.Order"] == 2
    destroy_everything(platform, case)
    assert platform.query('SELECT tenant_id FROM "Order"') == [("globex",)]


def test_rows_with_a_null_tenant_belong_to_nobody_and_are_left_alone(platform: Platform) -> None:
    platform.query(
        "CREATE TABLE notes (id bigint PRIMARY KEY, tenant_id text REFERENCES tenants (id), "
        "body text)"
    )
    platform.query("INSERT INTO notes VALUES (1, 'acme', 'a'), (2, NULL, 'orphan')")
    case = platform.case("acme")
    inventory, _, _ = export_and_deliver(platform, case)
    assert {t.qualified: t.rows for t in inventory.tables}["public.notes"] == 1
    destroy_everything(platform, case)
    assert platform.query("SELECT id FROM notes") == [(2,)]


def test_a_huge_jsonb_value_and_non_utf8_bytes_round_trip(
    platform: Platform, tmp_path: Path
) -> None:
    platform.query(
        "CREATE TABLE blobs (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), doc jsonb, raw bytea)"
    )
    platform.query(
        "INSERT INTO blobs SELECT 1, 'acme', jsonb_build_object('items', "
        "(SELECT jsonb_agg(repeat('x', 100) || g) FROM generate_series(1, 50000) g)), "
        "'\\xfffe00c328'::bytea"
    )
    case = platform.case("acme")
    inventory, _, bundle = export_and_deliver(platform, case)
    assert {t.qualified: t.rows for t in inventory.tables}["public.blobs"] == 1
    target = tmp_path / "x"
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(target)], check=True)
    exported = pq.read_table(target / "tables" / "public.blobs").to_pylist()
    ((doc, raw),) = platform.query("SELECT doc, raw FROM blobs")
    assert len(exported) == 1 and json.loads(exported[0]["doc"]) == doc
    assert len(doc["items"]) == 50_000  # type: ignore[index]
    assert exported[0]["raw"] == bytes(raw) == b"\xff\xfe\x00\xc3\x28"  # not UTF-8, intact


def test_a_foreign_key_cycle_stops_destruction_with_the_fix(platform: Platform) -> None:
    platform.query(
        "CREATE TABLE ping (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants "
        "(id), pong_id bigint); CREATE TABLE pong (id bigint PRIMARY KEY, ping_id bigint "
        "REFERENCES ping (id)); ALTER TABLE ping ADD FOREIGN KEY (pong_id) REFERENCES pong (id)"
    )
    platform.query("INSERT INTO ping VALUES (1, 'acme', NULL), (2, 'globex', NULL)")
    platform.query("INSERT INTO pong VALUES (10, 1); UPDATE ping SET pong_id = 10 WHERE id = 1")
    case = platform.case("acme")
    export_and_deliver(platform, case)  # the export reads a cycle fine; deleting it cannot
    rows_before = platform.fingerprint("acme")["tables"]
    with pytest.raises(UnclassifiedDataError, match=r"cycle.*DEFERRABLE"):
        destroy_everything(platform, case)
    # It stops before deleting any row: the tenant's tables are as they were.
    assert platform.fingerprint("acme")["tables"] == rows_before
    assert platform.query("SELECT count(*) FROM ping") == [(2,)]


def test_an_unclassified_table_added_while_a_case_runs_stops_destruction(
    platform: Platform,
) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    platform.query("CREATE TABLE late_arrival (id bigint PRIMARY KEY, payload text)")
    with pytest.raises(UnclassifiedDataError, match="late_arrival"):
        destroy_everything(platform, case)
    assert platform.fingerprint("acme")["files"]["count"] > 0  # type: ignore[index]


def test_an_unknown_an_offboarded_and_a_second_case_are_clear_errors(platform: Platform) -> None:
    with pytest.raises(TenantError, match="not in the platform's tenants table"):
        stages.freeze(platform.settings, platform.case("ghost"))
    case = platform.case("initech")
    export_and_deliver(platform, case)
    with pytest.raises(DuplicateCaseError, match=f"already has offboarding case {case.case_id}"):
        stages.freeze(platform.settings, platform.case("initech"))
    destroy_everything(platform, case)
    with pytest.raises(TenantError, match="already offboarded and destroyed"):
        stages.freeze(platform.settings, platform.case("initech"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"destruction_grace": timedelta(days=91)}, "between 0 and 90 days"),
        ({"link_lifetime": timedelta(0)}, "positive duration"),
        ({"link_lifetime": timedelta(days=7, seconds=1)}, "at most 7 days"),  # threat model
        ({"export_workers": 0}, "greater than or equal to 1"),
    ],
)
def test_settings_beyond_the_contract_or_sense_are_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "call", "message"),
    [
        ({"backup_urls": ["file:///a", "file:///a"]}, "backup", "at least two distinct"),
        ({"delivery_regions": {"us": "file:///x"}}, "region", "no delivery store for region"),
        ({"smtp_url": "http://mail.example"}, "mail", "OFFBOARD_SMTP_URL must look like"),
        ({}, "s3", "not understood"),
    ],
)
def test_misconfiguration_is_named_with_the_fix(
    tmp_path: Path, settings: dict[str, object], call: str, message: str
) -> None:
    configured = Settings(home=tmp_path, **settings)  # type: ignore[arg-type]
    with pytest.raises(OffboardingError, match=message):
        if call == "backup":
            configured.backup_store_urls()
        elif call == "region":
            configured.delivery_store_url("eu")
        elif call == "mail":
            send(
                configured, compose(configured, to="a@b.c", subject="s", body="b"), outbox_name="x"
            )
        else:
            open_store("s3://bucket/prefix")


def test_the_cli_reports_errors_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ack", "not-a-case", "--by", "x"]) == 2
    assert "is not a case id" in capsys.readouterr().err


@pytest.mark.parametrize("tenant", ["ACME_eu", "9F1C6B8E-3D2A-4B5C-8E7F-0123456789AB"])
def test_a_platform_with_its_own_id_format_offboards_without_touching_a_look_alike(
    platform: Platform, tenant: str
) -> None:
    """Upper case, underscores, UUIDs: the platform's ids as they are. `acme` (lower case)
    and the prefix neighbour keep every row, file and cache key."""
    platform.query(
        "INSERT INTO tenants (id, name, region, contact_email, plan_id) "
        "VALUES (%s, 'Platform-format tenant', 'europe-west1', 'dpo@example.org', 'pro')",
        tenant,
    )
    platform.query("INSERT INTO users VALUES (990001, %s, 'Zoë', 'z@example.org', NULL, NULL,"
                   " now(), NULL, NULL)", tenant)  # fmt: skip
    platform.query("INSERT INTO spaces VALUES (990002, %s, 'Espace', 990001, '{}', now())", tenant)
    platform.query(
        "INSERT INTO posts VALUES (990003, %s, 990002, 990001, 'Titre', 'Texte', 1.5, now(), NULL)",
        tenant,
    )
    key = f"tenants/{tenant}/documents/990004/contract.txt"
    platform.files.put_bytes(key, b"contract")
    platform.query(
        "INSERT INTO documents VALUES (990004, %s, 990002, 'contract.txt', %s, 'text/plain', 8,"
        " 'x', now())",
        tenant,
        key,
    )
    client = redis.Redis.from_url(platform.redis_url)
    client.set(f"page:{tenant}:home", b"<h1>home</h1>")
    client.close()
    before = {t: platform.fingerprint(t) for t in ("acme", "acme-corp")}

    case = platform.case(tenant)
    inventory, _, bundle = export_and_deliver(platform, case)
    assert {t.qualified: t.rows for t in inventory.tables}["public.posts"] == 1
    assert [f.key for f in inventory.files] == [key]
    destroy_everything(platform, case)

    left = platform.fingerprint(tenant)
    assert sum(t["rows"] for t in left["tables"].values()) == 0  # type: ignore[attr-defined]
    assert left["files"]["count"] == 0 and left["cache"]["count"] == 0  # type: ignore[index]
    assert {t: platform.fingerprint(t) for t in ("acme", "acme-corp")} == before
    assert case.case_id.startswith(f"{tenant}-") and bundle.name.startswith(
        f"offboarding-{tenant}-"
    )
