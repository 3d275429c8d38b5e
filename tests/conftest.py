"""Fixtures: a real PostgreSQL cluster and a real Redis with the demo platform, one fresh copy
per test.

The platform is seeded once into a template database; each test gets its own database
cloned from it (CREATE DATABASE ... TEMPLATE), its own copy of the files store, its own Redis
logical database with the demo cache, and a data map naming the three.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.dev.demo import platform as demo_platform
from offboarding.dev.services import (
    MariaDBServer,
    PostgresCluster,
    PrefectServer,
    RedisServer,
    new_auth_string,
)
from offboarding.dev.tsa import TimestampAuthority
from offboarding.stores import LocalStore

TEMPLATE_DB = "platform_template"


@dataclass(frozen=True)
class Platform:
    dsn: str
    settings: Settings
    files: LocalStore
    redis_url: str

    def case(self, tenant: str) -> CaseRef:
        return CaseRef(tenant=tenant, case_id=f"{tenant}-{uuid.uuid4().hex[:12]}")

    def fingerprint(self, tenant: str) -> dict[str, object]:
        return {
            **demo_platform.tenant_fingerprint(self.dsn, self.files, tenant),
            "cache": demo_platform.cache_fingerprint(self.redis_url, tenant),
        }

    def query(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn) as conn:
            cursor = conn.execute(statement, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """Debian's MariaDB server, for the tests of the MariaDB location (tests/wiki.py)."""
    server = MariaDBServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One Prefect server (SQLite, loopback, basic authentication on) for every module that
    drives flows: started once, on first use. A module's runner serves only its deployments,
    and the modules run one after the other, so none picks up another's runs."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect"), auth=new_auth_string()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def timestamp_authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampAuthority]:
    """OpenSSL's RFC 3161 responder behind a loopback HTTP server, with its own root CA."""
    authority = TimestampAuthority(tmp_path_factory.mktemp("tsa")).start()
    yield authority
    authority.stop()


_REDIS_DATABASES = itertools.count(1)


def _dsn(cluster: PostgresCluster, dbname: str) -> str:
    return cluster.dsn.replace(f"dbname={cluster.dbname}", f"dbname={dbname}")


@pytest.fixture(scope="session")
def template_files(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "files"
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    dsn = _dsn(pg_cluster, TEMPLATE_DB)
    demo_platform.set_up(dsn, LocalStore(root))
    return root


@pytest.fixture
def make_platform(
    pg_cluster: PostgresCluster, redis_server: RedisServer, template_files: Path, tmp_path: Path
) -> Iterator[Callable[[], Platform]]:
    """Fresh copies of the demo platform (database and files), as many as a test needs."""
    made: list[str] = []

    def make() -> Platform:
        dbname = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(dbname), sql.Identifier(TEMPLATE_DB)
                )
            )
        made.append(dbname)
        home = tmp_path / ("home" if len(made) == 1 else f"home-{len(made)}")
        files_root = home / "stores" / "files"
        shutil.copytree(template_files, files_root)
        dsn = _dsn(pg_cluster, dbname)
        redis_url = redis_server.url(next(_REDIS_DATABASES) % redis_server.databases)
        redis_client = redis.Redis.from_url(redis_url)
        redis_client.flushdb()
        redis_client.close()
        demo_platform.seed_cache(redis_url)
        datamap = demo_platform.write_datamap(home / "datamap.toml", redis_url)
        settings = Settings(home=home, database_url=dsn, datamap=datamap)
        return Platform(
            dsn=dsn, settings=settings, files=LocalStore(files_root), redis_url=redis_url
        )

    yield make
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        for dbname in made:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))


@pytest.fixture
def platform(make_platform: Callable[[], Platform]) -> Platform:
    return make_platform()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Selenium (make browser-deps installs it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed: make browser-deps")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
