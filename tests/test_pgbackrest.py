"""The platform database's own backups, made for real with Debian's pgBackRest: WAL archived to
a local repository, full and incremental sets. The tenant's rows linger in the sets taken
before destruction until the retention expires them, and the certificate dates it; with the
operator's early-expiry policy they are gone at once (a restore of what is left holds none);
a retention that cannot meet the deadline is refused when the case is acknowledged."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import psycopg
import pytest

from offboarding.cli import main as offboard
from offboarding.core.config import Settings
from offboarding.core.errors import DeadlineError
from offboarding.core.records import CaseRef
from offboarding.dev.demo import platform as demo_platform
from offboarding.dev.services import MariaDBServer, PgBackRestRepo, PostgresCluster, RedisServer
from offboarding.locations import get_location
from offboarding.locations.pgbackrest import BackupSet, Retention, expiry_of
from offboarding.persons import open_request
from offboarding.persons.erasure import erase_person
from offboarding.persons.records import read_signed
from offboarding.runs import AcknowledgementInput, Runs
from offboarding.scheduling.scheduling import schedule_destruction
from offboarding.stores import LocalStore, open_store
from tests import wiki as wiki_db
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver
from tests.test_locations import conforms

pytestmark = pytest.mark.slow  # a cluster of its own, archiving WAL, and real backups

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _set(label: str, kind: str, started: datetime) -> BackupSet:
    return BackupSet(label, kind, started, started + timedelta(minutes=5), 1)


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        # time, 14 days: the full of day 0 goes once the full of day 7 is 14 days old, at the
        # next backup (one day of slack).
        (Retention("time", 14), T0 + 7 * DAY + 14 * DAY + DAY),
        # count, 2: once two newer full backups exist (day 7 exists, day 14 is scheduled).
        (Retention("count", 2), T0 + 14 * DAY + DAY),
    ],
)
def test_a_set_expires_as_pgbackrest_expires_it(retention: Retention, expected: datetime) -> None:
    sets = [
        _set("F0", "full", T0),
        _set("F0_I1", "incr", T0 + DAY),
        _set("F7", "full", T0 + 7 * DAY),
    ]
    now = T0 + 8 * DAY
    for backup in sets[:2]:  # an incremental set goes with its full backup
        assert expiry_of(backup, sets, retention, 7 * DAY, DAY, now) == expected


@dataclass
class BackedUp:
    cluster: PostgresCluster
    repo: PgBackRestRepo
    home: Path
    redis_url: str

    def platform(self, name: str, **system: object) -> Platform:
        """The platform with a data map naming its database, files, cache and backups."""
        home = self.home / name
        options = {"stanza": self.repo.stanza, "config": str(self.repo.config),
                   "command": self.repo.command(), **system}  # fmt: skip
        datamap = demo_platform.write_datamap(home / "datamap.toml", self.redis_url, options)
        files = LocalStore(self.home / "files")
        settings = Settings(home=home, database_url=self.cluster.dsn, datamap=datamap)
        settings = settings.replace(files_url=files.url)
        return Platform(
            dsn=self.cluster.dsn, settings=settings, files=files, redis_url=self.redis_url
        )


@pytest.fixture(scope="module")
def backed_up(redis_server: RedisServer) -> Iterator[BackedUp]:
    # Under the system's temp dir, which the cluster's owner (postgres) can traverse.
    home = Path(tempfile.mkdtemp(prefix="offboard-pgbackrest-"))
    home.chmod(0o755)
    repo = PgBackRestRepo(home / "repo").prepare()
    cluster = PostgresCluster(conf=repo.archive_conf(), socket_dir=repo.socket_dir).start()
    try:
        demo_platform.set_up(cluster.dsn, LocalStore(home / "files"))
        redis_url = redis_server.url(redis_server.databases - 1)
        demo_platform.seed_cache(redis_url)
        repo.create(cluster)  # the daily full backup, with every tenant in it
        with psycopg.connect(cluster.dsn) as conn:
            conn.execute("UPDATE tenants SET name = name || '' WHERE id = 'initech'")
        repo.run("--type=incr", "backup")
        yield BackedUp(cluster, repo, home, redis_url)
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_the_tenant_lingers_in_the_platform_backups_until_a_dated_expiry(
    backed_up: BackedUp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    platform = backed_up.platform("lingering")
    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    monkeypatch.setenv("OFFBOARD_DATABASE_URL", platform.dsn)
    monkeypatch.setenv("OFFBOARD_DATAMAP", str(platform.settings.datamap))
    monkeypatch.setenv("OFFBOARD_FILES_URL", platform.files.url)
    assert offboard(["datamap", "check", "--json"]) == 0
    checks = {s["name"]: s for s in json.loads(capsys.readouterr().out)["systems"]}
    assert checks["platform-backups"]["status"] == "reached"
    assert "2 backup set(s)" in checks["platform-backups"]["detail"]

    case = platform.case("acme")
    inventory, _, _ = export_and_deliver(platform, case)
    held = next(loc for loc in inventory.locations if loc.location == "platform-backups")
    assert held.items == 2 and held.bytes > 0
    location = get_location("platform-backups", platform.settings)
    full = min(s.started for s in location._sets()[0] if s.kind == "full")  # type: ignore[attr-defined]
    archived = destroy_everything(platform, case)

    archive = open_store(platform.settings.store_url("archive"))
    with archive.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(
        loc for loc in certificate["locations"] if loc["location"] == "platform-backups"
    )
    until = datetime.fromisoformat(evidence["pending_until"])
    # The full backup of now expires once the next one (in 7 days) is 14 days old, at the
    # next daily backup after that.
    assert until == full + timedelta(days=7 + 14 + 1)
    assert evidence["items_before"] == 2 and evidence["items_removed"] == 0
    assert evidence["remaining"] == 0 and evidence["verification_result"] == "pass"
    assert evidence["details"]["retention"] == "14 days"
    system = next(s for s in certificate["systems"] if s["name"] == "platform-backups")
    assert system["status"] == "lingering" and datetime.fromisoformat(system["until"]) == until
    assert datetime.fromisoformat(certificate["all_copies_gone_by"]) == until
    assert certificate["deadline_met"] is True

    # A backup taken after destruction does not hold the rows: it is no part of the date.
    backed_up.repo.run("--type=incr", "backup")
    assert location.verify(case).pending_until == until


def test_early_expiry_removes_every_older_set_and_what_is_left_restores_without_the_tenant(
    backed_up: BackedUp,
) -> None:
    platform = backed_up.platform("early", early_expiry=True)
    case = platform.case("globex")
    export_and_deliver(platform, case)
    location = get_location("platform-backups", platform.settings)
    before = location._sets()[0]  # type: ignore[attr-defined]
    archived = destroy_everything(platform, case)

    after, _archive_range = location._sets()  # type: ignore[attr-defined]
    assert [s.kind for s in after] == ["full"] and after[0].label not in {s.label for s in before}
    archive = open_store(platform.settings.store_url("archive"))
    with archive.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(
        loc for loc in certificate["locations"] if loc["location"] == "platform-backups"
    )
    assert evidence["items_removed"] == evidence["items_before"] == len(before)
    assert "by operator policy" in evidence["details"]["early expiry"]
    assert evidence["pending_until"] is None
    system = next(s for s in certificate["systems"] if s["name"] == "platform-backups")
    assert system["status"] == "verified"

    # What is left restores to a cluster where the tenant has no row.
    restored = backed_up.home / "restored"
    restored.mkdir()
    shutil.chown(restored, "postgres", "postgres")
    backed_up.repo.run(f"--pg1-path={restored / 'data'}", "--type=immediate",
                       "--target-action=promote", "restore")  # fmt: skip
    copy = PostgresCluster(data_dir=restored / "data", conf={"archive_mode": "off"}).start()
    try:
        with psycopg.connect(copy.dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM posts WHERE tenant_id = 'globex'").fetchone()
            others = conn.execute(
                "SELECT count(*) FROM posts WHERE tenant_id = 'initech'"
            ).fetchone()
        assert rows == (0,) and others is not None and others[0] > 0
    finally:
        copy.stop()


def test_a_retention_that_breaks_the_deadline_is_refused_at_acknowledgement(
    backed_up: BackedUp, tmp_path: Path
) -> None:
    config = tmp_path / "pgbackrest.conf"
    config.write_text(
        backed_up.repo.config.read_text().replace(
            "repo1-retention-full=14", "repo1-retention-full=80"
        )
    )
    platform = backed_up.platform("too-long", config=str(config))
    case = CaseRef(tenant="initech", case_id="initech-0123456789ab")
    ack = AcknowledgementInput(statement="st-" + "0" * 32)  # refused before it is read
    with pytest.raises(DeadlineError, match=r"repo1-retention-full=80 in .*pgbackrest.conf"):
        schedule_destruction(platform.settings, cast(Runs, _NoRuns()), case, ack)


class _NoRuns:
    """Refusal comes before any run is scheduled: any call here is a failure."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the orchestrator was called ({name}) for a refused case")


def test_a_tenant_in_every_system_is_exported_and_destroyed(
    backed_up: BackedUp, mariadb: MariaDBServer
) -> None:
    """The acceptance of the data map: a tenant in PostgreSQL, MariaDB, Redis, the files store
    and the database's pgBackRest backups, plus an attested helpdesk. Exported (the MariaDB
    tables in the bundle with their types) and destroyed; a fresh scan of every system finds
    nothing; the neighbours are untouched; the certificate dates the backups and lists the
    helpdesk as attested."""
    platform = backed_up.platform("everything")
    database = wiki_db.create(mariadb)
    datamap = platform.settings.datamap
    assert datamap is not None
    datamap.write_text(wiki_db.declare(datamap.read_text(), mariadb, database))
    tenant, neighbour = "acme-corp", "globex"
    try:
        before = (
            platform.fingerprint(neighbour),
            wiki_db.fingerprint(mariadb, database, neighbour),
        )
        case = platform.case(tenant)
        inventory, _, bundle = export_and_deliver(platform, case)
        assert {loc.location for loc in inventory.locations} == {
            "postgres", "files", "wiki", "cache", "platform-backups",
        }  # fmt: skip
        with zipfile.ZipFile(bundle) as archive:
            manifest = json.loads(archive.read("manifest.json"))
        tables = {t["name"]: t for t in manifest["tables"]}
        assert tables["wiki.pages"]["rows"] == 6 and tables["public.posts"]["rows"] > 0
        assert {c["name"]: c["pg_type"] for c in tables["wiki.samples"]["columns"]}["big"] == (
            "bigint(20) unsigned"
        )

        archived = destroy_everything(platform, case)

        left = platform.fingerprint(tenant)
        assert sum(t["rows"] for t in left["tables"].values()) == 0  # type: ignore[attr-defined]
        assert left["files"]["count"] == 0 and left["cache"]["count"] == 0  # type: ignore[index]
        assert all(
            v.startswith("0:") for v in wiki_db.fingerprint(mariadb, database, tenant).values()
        )
        for name in ("postgres", "files", "wiki", "cache", "platform-backups"):
            assert get_location(name, platform.settings).verify(case).items == 0, name
        after = (platform.fingerprint(neighbour), wiki_db.fingerprint(mariadb, database, neighbour))
        assert after == before

        store = open_store(platform.settings.store_url("archive"))
        with store.open_read(archived.key) as body:
            certificate = json.loads(body.read())
        systems = {s["name"]: s for s in certificate["systems"]}
        assert {n: s["status"] for n, s in systems.items()} == {
            "postgres": "verified", "files": "verified", "cache": "verified",
            "helpdesk": "attested", "search": "attested", "wiki": "verified",
            "platform-backups": "lingering",
        }  # fmt: skip
        assert systems["platform-backups"]["until"] == certificate["all_copies_gone_by"]
        assert systems["helpdesk"]["evidence"] == "HELPDESK-DEL-0001"
    finally:
        wiki_db.drop(mariadb, database)


def test_a_persons_erasure_dates_the_platform_backups_by_their_retention(
    backed_up: BackedUp,
) -> None:
    """The platform's pgBackRest sets keep an erased person's rows until they expire: the
    person's certificate dates it by the repository's retention, as a case's does, not by the
    data map's declared floor."""
    platform = backed_up.platform("person")
    settings = platform.settings
    row = platform.query(
        "SELECT min(u.id) FROM users u WHERE u.tenant_id = 'initech' AND EXISTS (SELECT 1 FROM "
        "comments c WHERE c.author_id = u.id)"
    )
    request = open_request(settings, "initech", str(row[0][0]), "erasure")
    erased = erase_person(settings, request.ref)
    certificate = read_signed(settings, erased.certificate_key)
    system = next(s for s in certificate["systems"] if s["name"] == "platform-backups")
    assert system["status"] == "lingering" and "repo1-retention-full" in system["method"]
    completed = datetime.fromisoformat(certificate["completed_at"])
    assert datetime.fromisoformat(system["until"]) - completed == timedelta(days=7 + 14 + 1)


def test_the_platform_backups_pass_the_location_conformance_suite(backed_up: BackedUp) -> None:
    """Every set holds every tenant: what is left is dated, not removed, and no neighbour
    comparison applies (early expiry, which removes sets, is the test above)."""
    platform = backed_up.platform("conformance")
    case = platform.case("initech")
    export_and_deliver(platform, case)
    location = get_location("platform-backups", platform.settings)
    conforms(location, case, holds_data=True, shared_copies=True, neighbour_tenant="globex")
