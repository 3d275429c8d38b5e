"""Physical truth in Redis: UNLINK frees the tenant's keys in memory, and the server's
append-only file and snapshot still hold them; the compaction rewrites both (BGREWRITEAOF,
BGSAVE) from the live keyspace, after which none of the tenant's canaries is in any file,
and the neighbours' keys are byte-identical throughout. Against Debian's redis-server keeping
both files, as production caches that persist do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from offboarding.destruction.compaction import addendum_key, compact_destroyed
from offboarding.dev.demo import platform as demo_platform
from offboarding.dev.services import RedisServer
from offboarding.export.canaries import read_canaries
from offboarding.locations import get_location
from offboarding.locations.base import Residual
from offboarding.locations.cache_residue import AOF, RDB
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


@pytest.fixture(scope="module")
def persistent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), databases=4, persistent=True)
    yield server.start()
    server.stop()


@pytest.fixture
def cached(platform: Platform, persistent: RedisServer) -> Iterator[tuple[Platform, str]]:
    """The platform's cache on the persistent server, its keys in the snapshot and the log."""
    url = persistent.url(1)
    client = redis.Redis.from_url(url)
    client.flushall()
    demo_platform.seed_cache(url)
    client.save()  # a dump holding every tenant, as a server's last save point would
    client.close()
    path = platform.settings.datamap
    assert path is not None
    path.write_text(path.read_text().replace(platform.redis_url, url))
    yield platform, url


@pytest.mark.slow
def test_the_keys_stay_in_the_files_until_the_server_rewrites_them(
    cached: tuple[Platform, str], persistent: RedisServer
) -> None:
    platform, url = cached
    settings = platform.settings
    location = get_location("cache", settings)
    assert isinstance(location, Residual)
    neighbours = {t: demo_platform.cache_fingerprint(url, t) for t in ("globex", "initech")}
    case = platform.case("acme")
    export_and_deliver(platform, case)
    canaries = read_canaries(settings, case)["cache"]
    assert len(canaries) >= 8 and all(len(c.value) >= 16 for c in canaries)
    destroy_everything(platform, case)
    assert location.verify(case).items == 0

    before = location.scan_residue([], canaries)
    # Unlinked, yet in the log and the dump: the scan can fail.
    assert before[AOF.place].holding >= 8 and before[RDB.place].holding >= 8, before
    assert before[AOF.place].files >= 2 and before[RDB.place].files == 1

    run = compact_destroyed(settings)
    assert run.closed == {case.case_id: addendum_key(case)}, run.residue
    assert run.tables["cache"] == [AOF.place, RDB.place]
    after = location.scan_residue([], canaries)
    assert after[AOF.place].holding == 0 and after[RDB.place].holding == 0, after
    assert after[AOF.place].bytes > 0 and after[RDB.place].bytes > 0
    with open_store(settings.store_url("archive")).open_read(addendum_key(case)) as handle:
        addendum = json.loads(handle.read())
    places = {(p["system"], p["place"]): p for p in addendum["places"]}
    assert places[("cache", AOF.place)]["status"] == "purged"
    assert places[("cache", RDB.place)]["found"] == 0
    assert {t: demo_platform.cache_fingerprint(url, t) for t in neighbours} == neighbours
    # The old log files are gone from the directory, not just emptied.
    assert not any(b"acme" in p.read_bytes() for p in Path(persistent.home).rglob("*.aof"))
