"""The data map: every system of the platform named and bound, checked against the real
servers (PostgreSQL, the files store, Redis), and a case that stops at its inventory while a
system is unbound or cannot be reached."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import redis

from offboarding.cli import main as offboard
from offboarding.core.errors import ConfigurationError, ServiceError
from offboarding.datamap import load_datamap, parse_datamap
from offboarding.dev.schemas import SCHEMA_DIR
from offboarding.dev.services import free_port
from offboarding.export.export import dry_run_inventory, take_inventory
from offboarding.locations import destruction_order, get_location
from tests.conftest import Platform

POSTGRES = {"plugin": "postgres"}


def _with(platform: Platform, text: str) -> Platform:
    """The platform with `text` appended to its data map."""
    path = platform.settings.datamap
    assert path is not None
    path.write_text(path.read_text() + "\n" + text)
    return platform


REDIS = {"plugin": "redis", "url": "redis://h"}


@pytest.mark.parametrize(
    ("systems", "message"),
    [
        ({"postgres": None, "files": {"plugin": "files"}}, r"\[systems.postgres\] is missing"),
        ({"db": {"plugin": "postgres"}}, r"declare it as \[systems.postgres\]"),
        ({"backups": {"plugin": "files"}}, r"declare it as \[systems.files\]"),
        ({"s": {"plugin": "solr"}}, "plugin 'solr', which does not exist"),
        ({"s": {"plugin": "redis", "attested": {"role": "r"}}}, "bound twice"),
        ({"c": {**REDIS, "patterns": ["t:{tenant}*"]}}, "could match another tenant's keys"),
        ({"c": {**REDIS, "patterns": ["page:*{tenant}:*"]}}, "could match another tenant's"),
        ({"c": {**REDIS, "patterns": ["t:*"]}}, "must contain {tenant} exactly once"),
        ({"c": {"plugin": "redis", "patterns": ["t:{tenant}"]}}, "url: Field required"),
        ({"s": {"attested": {"role": "dpo"}}}, "procedure: Field required"),
        ({"Search Index": {"description": "x"}}, "system names are 1-40 lowercase"),
    ],
)
def test_a_malformed_data_map_says_what_to_fix(systems: dict[str, object], message: str) -> None:
    declared = {k: v for k, v in {"postgres": POSTGRES, **systems}.items() if v is not None}
    with pytest.raises(ConfigurationError, match=message):
        parse_datamap({"systems": declared}, "test.toml")


def test_a_system_named_like_a_location_of_the_pipeline_is_refused(platform: Platform) -> None:
    _with(
        platform,
        '[systems.scratch]\nplugin = "redis"\nurl = "redis://h"\npatterns = ["s:{tenant}"]',
    )
    with pytest.raises(ConfigurationError, match=r"scratch name.* the pipeline's own locations"):
        destruction_order(platform.settings)


def test_values_come_from_the_environment_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "datamap.toml"
    path.write_text(
        '[systems.postgres]\nplugin = "postgres"\n'
        '[systems.cache]\nplugin = "redis"\nurl = "${CACHE_URL}"\npatterns = ["t:{tenant}:*"]\n'
    )
    with pytest.raises(ConfigurationError, match=r"names \$\{CACHE_URL\}, which is not set"):
        load_datamap(path)
    monkeypatch.setenv("CACHE_URL", "redis://:secret@cache.internal:6380/2")
    cache = load_datamap(path).systems["cache"]
    assert cache.url == "redis://:secret@cache.internal:6380/2"  # type: ignore[union-attr]
    path.write_text("[systems.postgres\n")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_datamap(path)
    with pytest.raises(ConfigurationError, match="which does not exist"):
        load_datamap(tmp_path / "nowhere.toml")


def test_the_demo_data_map_matches_its_json_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "datamap.schema.json").read_text())
    demo = Path(__file__).resolve().parent.parent / "offboarding/dev/demo/datamap.toml"
    document = tomllib.loads(demo.read_text())
    jsonschema.validate(document, schema)
    document["systems"]["cache"]["flavour"] = "vanilla"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_datamap_check_reaches_every_bound_system(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    monkeypatch.setenv("OFFBOARD_DATAMAP", str(platform.settings.datamap))
    assert offboard(["datamap", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    status = {s["name"]: (s["status"], s["binding"]) for s in report["systems"]}
    assert status == {
        "postgres": ("reached", "plug-in postgres"),
        "files": ("reached", "plug-in files"),
        "cache": ("reached", "plug-in redis"),
        "helpdesk": ("attested", "attested by support lead"),
        "search": ("attested", "attested by search administrator"),
    }
    detail = {s["name"]: s["detail"] for s in report["systems"]}
    assert (
        detail["postgres"].startswith("PostgreSQL ")
        and "tenants table public.tenants" in detail["postgres"]
    )
    assert detail["cache"].startswith("Redis 7.")

    _with(platform, '[systems.analytics]\ndescription = "Product analytics (not bound yet)"\n')
    assert offboard(["datamap", "check"]) == 1
    out = capsys.readouterr().out
    assert "!! analytics" in out and "a case would stop at its inventory: analytics" in out


def test_an_unreachable_system_is_reported_and_stops_the_inventory(
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unused_port = free_port()  # nothing listens there
    path = platform.settings.datamap
    assert path is not None
    path.write_text(
        path.read_text().replace(platform.redis_url, f"redis://127.0.0.1:{unused_port}/0")
    )
    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    monkeypatch.setenv("OFFBOARD_DATAMAP", str(path))
    assert offboard(["datamap", "check"]) == 1
    out = capsys.readouterr().out
    assert "!! cache" in out and "unreachable" in out and "did not answer" in out

    with pytest.raises(ServiceError, match=r"system 'cache' .*did not answer.*Check its url"):
        take_inventory(platform.settings, platform.case("acme"))
    assert offboard(["inventory", "acme"]) == 2
    assert "system 'cache'" in capsys.readouterr().err


def test_an_unbound_system_stops_the_case_at_its_inventory(platform: Platform) -> None:
    _with(platform, '[systems.analytics]\ndescription = "Product analytics"\n')
    case = platform.case("acme")
    with pytest.raises(ConfigurationError, match=r"bound to nothing: analytics\. Bind each"):
        take_inventory(platform.settings, case)
    with pytest.raises(ConfigurationError, match="analytics"):
        dry_run_inventory(platform.settings, "acme")


def test_the_inventory_counts_the_cache_and_lists_every_system(platform: Platform) -> None:
    inventory = dry_run_inventory(platform.settings, "acme")
    cache = next(loc for loc in inventory.locations if loc.location == "cache")
    assert cache.items == 40 * 2 + 1 and cache.bytes > 0
    handling = {s.name: (s.handling, s.method) for s in inventory.systems}
    assert handling == {
        "postgres": ("verified", "plug-in postgres"),
        "files": ("verified", "plug-in files"),
        "cache": ("verified", "plug-in redis"),
        "helpdesk": (
            "attested",
            "support lead: erase the organisation {tenant} in the helpdesk's admin console and "
            "keep the vendor's deletion receipt",
        ),
        "search": (
            "attested",
            "search administrator: DELETE the index t-{tenant}; _delete_by_query on activity-* "
            "where tenant_id is {tenant}; _count on both must then return 0",
        ),
    }


def test_the_cache_keeps_every_key_that_is_not_the_tenants(platform: Platform) -> None:
    client = redis.Redis.from_url(platform.redis_url)
    # Keys a careless pattern would catch: a prefix neighbour, the tenant's id elsewhere in
    # a key, and a glob character around it.
    decoys = ["page:acme-corp:1", "page:acmex:1", "page:index:acme", "session:acme", "page:acm*:1"]
    for key in decoys:
        client.set(key, b"not acme's")
    others = {k for k in client.scan_iter() if not k.startswith((b"page:acme:", b"session:acme:"))}
    location = get_location("cache", platform.settings)
    removal = location.destroy(platform.case("acme"))
    assert removal.items_removed == 81
    assert {k for k in client.scan_iter()} == others
    assert location.verify(platform.case("acme")).items == 0
    client.close()
