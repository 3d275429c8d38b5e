"""`offboard demo`: one whole case on the embedded default, every part real.

A private PostgreSQL cluster with the demo platform, a Prefect server with SQLite and a runner
serving the deployments, all on loopback; the case for `acme` runs through Prefect, is
acknowledged through Prefect's resume API, and destroyed after a short grace. Everything it
started is stopped before it returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offboarding.core.errors import OffboardingError, ServiceError
from offboarding.dev.services import (
    ManagedProcess,
    PgBackRestRepo,
    PostgresCluster,
    PrefectServer,
    RedisServer,
    free_port,
    new_auth_string,
)
from offboarding.dev.tsa import TimestampAuthority

__all__ = ["DemoEnvironment", "DemoResult", "run_demo"]

DEMO_TENANT = "acme"


@dataclass
class DemoEnvironment:
    """The embedded default, started: database, platform data, Prefect server and runner."""

    home: Path
    grace_seconds: int = 5
    pg: PostgresCluster = field(default_factory=PostgresCluster)
    redis: RedisServer | None = None
    server: PrefectServer | None = None  # given: used as it is (its auth too), not stopped
    runner: ManagedProcess | None = None
    links: ManagedProcess | None = None
    links_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_tenants: tuple[Any, ...] = ()  # more DemoTenant rows (benchmarks)
    tsa: TimestampAuthority | None = None  # the local RFC 3161 authority, once started
    # Prefect's API and the staff page refuse calls without it (basic authentication).
    auth: str = field(default_factory=new_auth_string)
    # "demo": the collaboration suite, with its cache, backups and helpdesk; "chat": the
    # product without foreign keys (offboarding/dev/demo/chat.py), its database and files.
    platform: str = "demo"

    def offboard_env(self) -> dict[str, str]:
        return {
            "OFFBOARD_HOME": str(self.home),
            "OFFBOARD_DATABASE_URL": self.pg.dsn,
            "OFFBOARD_DESTRUCTION_GRACE": f"PT{self.grace_seconds}S",
            "OFFBOARD_LINK_BASE_URL": f"http://127.0.0.1:{self.links_port}",
            "OFFBOARD_DATAMAP": str(self.home / "datamap.toml"),
            "OFFBOARD_STAFF_AUTH": self.auth,
            **(
                {
                    "OFFBOARD_TIMESTAMP_URL": self.tsa.url,
                    "OFFBOARD_TIMESTAMP_CA": str(self.tsa.ca_file),
                }
                if self.tsa
                else {}
            ),
            **self.extra_env,
        }

    def start(self, stack: ExitStack, say: Callable[[str], None]) -> None:
        if self.platform == "chat":
            self._start_chat(stack, say)
        else:
            self._start_demo(stack, say)
        self._start_services(stack, say)

    def _start_chat(self, stack: ExitStack, say: Callable[[str], None]) -> None:
        from offboarding.dev.demo import chat
        from offboarding.stores import LocalStore

        say("starting a private PostgreSQL cluster with the chat platform (no foreign keys)")
        self.pg.start()
        stack.callback(self.pg.stop)
        chat.set_up(self.pg.dsn, LocalStore(self.home / "stores" / "files"))
        chat.write_datamap(self.home / "datamap.toml")

    def _start_demo(self, stack: ExitStack, say: Callable[[str], None]) -> None:
        from offboarding.dev.demo import platform
        from offboarding.stores import LocalStore

        say("starting a private PostgreSQL cluster, its WAL archived with pgBackRest")
        repo = PgBackRestRepo(Path(tempfile.mkdtemp(prefix="offboard-pgbackrest-")))
        repo.home.chmod(0o755)  # the cluster's owner (postgres) reaches it
        stack.callback(shutil.rmtree, repo.home, True)
        repo.prepare()
        self.pg.conf, self.pg.socket_dir = repo.archive_conf(), repo.socket_dir
        self.pg.start()
        stack.callback(self.pg.stop)
        files_root = self.home / "stores" / "files"
        platform.set_up(self.pg.dsn, LocalStore(files_root), self.extra_tenants)
        say("taking the platform's own full backup (pgBackRest)")
        repo.create(self.pg)
        say("starting a private Redis (the platform's cache) and writing the data map")
        self.redis = RedisServer(self.home / "redis").start()
        stack.callback(self.redis.stop)
        platform.seed_cache(self.redis.url(), platform.DEMO_TENANTS + self.extra_tenants)
        platform.write_datamap(
            self.home / "datamap.toml",
            self.redis.url(),
            {"stanza": repo.stanza, "config": str(repo.config), "command": repo.command()},
        )

    def _start_services(self, stack: ExitStack, say: Callable[[str], None]) -> None:
        say("starting a local RFC 3161 timestamp authority (OpenSSL's responder, loopback)")
        self.tsa = TimestampAuthority(self.home / "tsa").start()
        stack.callback(self.tsa.stop)
        if self.server is None:
            say("starting a Prefect server (SQLite, loopback)")
            self.server = PrefectServer(self.home / "prefect", auth=self.auth).start()
            stack.callback(self.server.stop)
        else:  # one already started (the tests share one across their modules)
            say(f"using the Prefect server at {self.server.api_url}")
            self.auth = self.server.auth or self.auth
        env = {**self.server.env(), **self.offboard_env()}
        os.environ.update(env)  # this process talks to the same server, with the same settings
        self.runner = ManagedProcess(
            "runner", [sys.executable, "-m", "flows.serve"], env, self.home / "runner.log"
        )
        self.runner.start()
        stack.callback(self.runner.stop)
        say("starting the download and acknowledgement endpoint (loopback)")
        self.links = ManagedProcess(
            "links",
            [
                sys.executable,
                "-m",
                "offboarding.cli",
                "serve-links",
                "--port",
                str(self.links_port),
            ],
            env,
            self.home / "links.log",
        )
        self.links.start()
        stack.callback(self.links.stop)
        stack.enter_context(self.client_settings())
        self._wait_for_deployments()
        wait_for_http(f"http://127.0.0.1:{self.links_port}/d/x", self.links)

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point this process's Prefect client at our server, whatever was imported before."""
        from flows import adapter

        assert self.server is not None
        with adapter.using_server(self.server.api_url, self.server.auth):
            yield

    def _wait_for_deployments(self, timeout: float = 90.0) -> None:
        from flows import adapter

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.runner is not None
            if not self.runner.running():
                raise ServiceError(f"the runner exited:\n{self.runner.log_tail()}")
            if adapter.deployments_registered(
                ("destroy/destroy", "offboard/offboard", "backup/backup")
            ):
                return
            time.sleep(0.5)
        raise ServiceError("the runner did not register the deployments in time")


def wait_for_http(url: str, process: ManagedProcess, timeout: float = 30.0) -> None:
    """Wait until a local HTTP service answers (any status)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise ServiceError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise ServiceError(f"{process.name} did not answer on {url} in {timeout:.0f}s")


def notice_links(message_path: Path) -> tuple[list[str], str]:
    """(download links, acknowledgement link) of a notice in the outbox, as the client sees."""
    from offboarding.delivery.mail import read_outbox

    body = read_outbox(message_path).get_content()
    urls = [line.strip() for line in body.splitlines() if line.strip().startswith("http")]
    downloads = [u for u in urls if "/ack/" not in u and "/c/" not in u]
    return downloads, next(u for u in urls if "/ack/" in u)


def wait_for_state(
    flow_run_id: Any, wanted: set[str], timeout: float, runner: ManagedProcess | None = None
) -> Any:
    """Poll a flow run until its state type is one of `wanted`; fail on any other final state
    (with the runner's log when it times out)."""
    from flows import adapter

    return adapter.wait_for_run(
        flow_run_id, wanted, timeout, lambda: runner.log_tail() if runner else ""
    )


# What the demo's "support lead" confirms for the helpdesk, the attested system of its map.
DEMO_ATTESTER = "Demo support lead"
DEMO_ATTESTATION = {
    "action": "erased the organisation in the helpdesk's admin console (demo)",
    "evidence": "demo receipt HELPDESK-DEL-0001",
}


def finish_destruction(
    flow_run_id: Any,
    timeout: float,
    runner: ManagedProcess | None = None,
    say: Callable[[str], None] | None = None,
) -> Any:
    """Wait for a destroy run to complete, confirming each attested system it waits for the
    way support staff do in its Resume form (through the same API)."""
    deadline = time.monotonic() + timeout
    while True:
        run = wait_for_state(
            flow_run_id, {"PAUSED", "COMPLETED"}, max(1.0, deadline - time.monotonic()), runner
        )
        if run.state.type.value == "COMPLETED":
            return run
        if not attest_waiting(flow_run_id, say):
            raise ServiceError(f"destroy run {flow_run_id} is paused, but not for an attestation")
        time.sleep(0.5)


def attest_waiting(flow_run_id: Any, say: Callable[[str], None] | None = None) -> bool:
    """Confirm the attested system a paused destroy run waits for, as its role would in the
    run's Resume form; False where the run waits for no attestation."""
    from flows import adapter
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.runs import AttestationInput

    waiting = adapter.waiting_attestation(str(flow_run_id))
    if waiting is None:
        return False
    system, case_id = waiting
    if say:
        say(f"attesting the destruction in {system!r} as its role would (the run's form)")
    # The role's name stays in the ledger; the form gets the statement's reference.
    said = keep_statement(Settings(), case_id.rpartition("-")[0], "attestation", name=DEMO_ATTESTER)
    adapter.resume_attestation(
        str(flow_run_id), system, AttestationInput(statement=said, **DEMO_ATTESTATION)
    )
    return True


@dataclass
class DemoResult:
    tenant: str
    bundle: str | None = None
    delivery: str = "in clear"
    timestamping: str = "none"
    timestamp_tokens_verified: int = 0
    timestamp_authority_ca: str | None = None
    client_identity: str | None = None
    link: str | None = None
    certificate: str | None = None
    public_key: str | None = None
    report: str | None = None
    certificate_verified: bool | None = None
    backup_locations: list[str] = field(default_factory=list)
    backups_before: int = 0
    neighbours_backups_restore: bool | None = None
    remaining: dict[str, int] = field(default_factory=dict)
    addendum: str | None = None  # the certificate's residue addendum, after compaction
    physically_compacted_at: str | None = None
    residue: dict[str, str] = field(default_factory=dict)  # place -> canaries found
    systems: dict[str, str] = field(default_factory=dict)  # the data map's, as certified
    person_requests: dict[str, str] = field(default_factory=dict)  # kind -> archive record
    neighbours_unchanged: bool | None = None
    case_id: str | None = None
    offboard_run: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "case_id": self.case_id,
            "bundle": self.bundle,
            "delivery": self.delivery,
            "client_identity": self.client_identity,
            "link": self.link,
            "certificate": self.certificate,
            "public_key": self.public_key,
            "report": self.report,
            "certificate_verified": self.certificate_verified,
            "timestamping": self.timestamping,
            "person_requests": self.person_requests,
            "timestamp_tokens_verified": self.timestamp_tokens_verified,
            "timestamp_authority_ca": self.timestamp_authority_ca,
            "backup_locations": self.backup_locations,
            "backups_before": self.backups_before,
            "neighbours_backups_restore": self.neighbours_backups_restore,
            "remaining": self.remaining,
            "addendum": self.addendum,
            "physically_compacted_at": self.physically_compacted_at,
            "residue": self.residue,
            "systems": self.systems,
            "neighbours_unchanged": self.neighbours_unchanged,
            "ok": self.ok,
            "errors": self.errors,
        }


PLATFORMS = ("demo", "chat")


def run_demo(
    home: Path,
    *,
    destroy: bool = True,
    say: Callable[[str], None] = print,
    platform: str = "demo",
    run_case: Callable[..., None] | None = None,
) -> DemoResult:
    """One whole case on `platform`, run by `run_case(env, result, destroy=, say=)` (the
    chat platform's comes from chat_run.py, which builds on this module)."""
    if platform not in PLATFORMS:
        raise OffboardingError(f"no demo platform {platform!r}: choose {' or '.join(PLATFORMS)}")
    shutil.rmtree(home, ignore_errors=True)  # the demo starts from nothing every time
    home.mkdir(parents=True)
    result = DemoResult(tenant=DEMO_TENANT)
    with ExitStack() as stack:
        env = DemoEnvironment(home=home.resolve(), platform=platform)
        try:
            env.start(stack, say)
            (run_case or _run_case)(env, result, destroy=destroy, say=say)
        except OffboardingError as error:
            result.errors.append(str(error))
        except Exception as error:  # the demo reports every failure in its result, then cleans up
            result.errors.append(f"{type(error).__name__}: {error}")
        say("stopping everything the demo started")
    return result


def _run_case(
    env: DemoEnvironment, result: DemoResult, *, destroy: bool, say: Callable[[str], None]
) -> None:
    from exporters.bundle import verify_bundle
    from flows import adapter
    from offboarding.backup.backup import restore_check
    from offboarding.core.config import Settings
    from offboarding.core.records import CaseRef
    from offboarding.core.signing import load_public_key
    from offboarding.dev.demo import platform
    from offboarding.evidence.archive import verify_archive
    from offboarding.evidence.timestamps import load_roots
    from offboarding.locations import destruction_order, get_location
    from offboarding.stores import open_store
    from offboarding.trail import AuditTrail, verify_chain

    settings = Settings()
    files = open_store(settings.store_url("files"))
    neighbours = [t for t in platform.tenant_ids(env.pg.dsn) if t != DEMO_TENANT]
    assert env.redis is not None
    redis_url = env.redis.url()

    def fingerprint(tenant: str) -> dict[str, Any]:
        return {
            **platform.tenant_fingerprint(env.pg.dsn, files, tenant),
            "cache": platform.cache_fingerprint(redis_url, tenant),
        }

    before = {t: fingerprint(t) for t in neighbours}

    say("backing up every tenant (the platform's daily backup flow, through Prefect)")
    backup_run = adapter.start_deployment("backup/backup")
    wait_for_state(backup_run.id, {"COMPLETED"}, timeout=150, runner=env.runner)
    result.backup_locations = settings.backup_store_urls()
    result.backups_before = (
        get_location("backups", settings)
        .inventory(CaseRef(tenant=DEMO_TENANT, case_id=f"{DEMO_TENANT}-000000000000"))
        .items
    )
    say(f"{result.backups_before} encrypted backup objects of {DEMO_TENANT} in "
        f"{len(result.backup_locations)} locations")  # fmt: skip

    _person_requests(env, result, say)

    say(f"the client's age key: {DEMO_TENANT}'s identity stays with it, its recipient goes "
        "in the tenants table, so only the client can open the bundle")  # fmt: skip
    identity = _client_identity(env.home / "client", DEMO_TENANT, env.pg.dsn)
    result.delivery = "encrypted to the client's age recipient (X25519)"
    if env.tsa is not None:
        result.timestamping = (
            f"RFC 3161: the chain's head at delivery, acknowledgement and certification, and "
            f"the certificate, timestamped by the local OpenSSL timestamp authority at "
            f"{env.tsa.url}"
        )
        result.timestamp_authority_ca = str(env.tsa.ca_file)
    result.client_identity = str(identity)
    say(f"starting the offboarding case of {DEMO_TENANT!r}")
    delivered = start_case(env, result, settings)
    case, downloads, signer = delivered.case, delivered.downloads, delivered.signer
    say(f"downloading the bundle as the client would ({len(downloads)} link(s) in the notice)")
    sealed = [_download(url, env.home / "downloads") for url in downloads]
    say(f"decrypting {len(sealed)} part(s) with the age tool and the client's identity")
    bundle_paths = [_decrypt(path, identity) for path in sealed]
    result.bundle = str(bundle_paths[0])
    report = verify_bundle(bundle_paths, signer.public_pem)
    say(f"download verified: {report.entries_checked} entries, {report.rows} rows")
    if not destroy:
        say("the case is waiting for acknowledgement (--no-destroy)")
        return

    acknowledge_and_destroy(env, delivered, "Acme DPO (demo)", say)
    archive = open_store(settings.store_url("archive"))
    public_key = load_public_key(signer.public_pem)
    read_certificate(settings, case, signer, result)
    compact_now(env, settings, case, result, say)
    verify_chain(AuditTrail(settings, case, signer).events(), public_key)
    try:  # what an auditor runs: every signature, chain, certificate and timestamp token
        roots = (
            load_roots(settings.evidence.timestamp_ca) if settings.evidence.timestamp_ca else None
        )
        audited = verify_archive(
            archive, public_key, tsa_roots=roots, require_timestamps=roots is not None
        )
        result.certificate_verified = True
        result.timestamp_tokens_verified = len(audited.anchors)
        say(f"audit verified, with {len(audited.anchors)} RFC 3161 token(s) from the timestamp "
            "authority anchoring the chain's heads and the certificate")  # fmt: skip
    except OffboardingError as error:
        result.certificate_verified = False
        result.errors.append(f"audit verification failed: {error}")
    try:
        result.neighbours_backups_restore = all(restore_check(settings, t) for t in neighbours)
    except OffboardingError as error:
        result.neighbours_backups_restore = False
        result.errors.append(f"a neighbour's backup no longer restores: {error}")

    located = {
        str(name): get_location(name, settings).verify(case).items
        for name in destruction_order(settings)
    }
    independent = platform.tenant_fingerprint(env.pg.dsn, files, DEMO_TENANT)
    located["postgres"] = max(
        located["postgres"], sum(t["rows"] for t in independent["tables"].values())
    )
    located["files"] = max(located["files"], independent["files"]["count"])
    assert env.redis is not None
    cache = platform.cache_fingerprint(env.redis.url(), DEMO_TENANT)
    located["cache"] = max(located["cache"], cache["count"])
    result.remaining = located
    if any(located.values()):
        result.errors.append(f"data of {DEMO_TENANT} remains: {located}")
    after = {t: fingerprint(t) for t in neighbours}
    result.neighbours_unchanged = before == after
    if not result.neighbours_unchanged:
        result.errors.append("other tenants' data changed")


@dataclass(frozen=True)
class Delivered:
    """A case started through Prefect and waiting for its acknowledgement."""

    case: Any  # CaseRef
    run: Any  # the offboard flow run
    downloads: list[str]
    ack_link: str
    signer: Any  # Signer


def start_case(env: DemoEnvironment, result: DemoResult, settings: Any) -> Delivered:
    """Start the demo tenant's case through the offboard deployment, as the platform's event
    would, and wait until it is delivered: its notice's links, as the client receives them."""
    from flows import adapter
    from offboarding.core.records import CaseRef
    from offboarding.core.signing import Signer

    run = adapter.start_deployment("offboard/offboard", {"tenant": DEMO_TENANT})
    result.offboard_run = str(run.id)
    wait_for_state(run.id, {"PAUSED"}, timeout=150, runner=env.runner)
    signer = Signer.load_or_create(settings.keys_dir)
    result.public_key = str(settings.keys_dir / "signing-ed25519.pub.pem")
    outbox = sorted((settings.root / "outbox").glob(f"{DEMO_TENANT}-*-delivery-*.eml"))
    if not outbox:
        raise OffboardingError("the case is waiting but no delivery notice was sent")
    result.case_id = outbox[-1].name.split("-delivery-")[0]
    downloads, ack_link = notice_links(outbox[-1])
    result.link = downloads[0]
    case = CaseRef(tenant=DEMO_TENANT, case_id=result.case_id)
    return Delivered(case, run, downloads, ack_link, signer)


def acknowledge_and_destroy(
    env: DemoEnvironment, delivered: Delivered, name: str, say: Callable[[str], None]
) -> None:
    """Acknowledge as the client would (the notice's page), then wait for the destruction the
    acknowledgement schedules, confirming attested systems as their roles would."""
    from offboarding.core.config import Settings
    from offboarding.trail import AuditTrail

    say("acknowledging receipt as the client would (the notice's acknowledgement page)")
    _acknowledge(delivered.ack_link, name=name)
    wait_for_state(delivered.run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    scheduled = AuditTrail(Settings(), delivered.case, delivered.signer).state().schedule
    assert scheduled is not None and scheduled.flow_run_id is not None
    say(f"destruction scheduled for {scheduled.scheduled_for.isoformat()}; waiting for it to run")
    finish_destruction(scheduled.flow_run_id, timeout=150, runner=env.runner, say=say)


def compact_now(
    env: DemoEnvironment, settings: Any, case: Any, result: DemoResult, say: Callable[[str], None]
) -> None:
    """The weekly compaction, run now through its deployment: the tables the tenant had rows
    in rewritten, its canaries looked for in their files and in the WAL, the signed addendum
    read back into `result` (the certificate's second date)."""
    from flows import adapter
    from offboarding.destruction.compaction import addendum_key
    from offboarding.stores import open_store

    say("compacting now (the weekly compact flow): the tables rewritten, the canaries scanned")
    run = adapter.start_deployment("compact/compact")
    wait_for_state(run.id, {"COMPLETED"}, timeout=120, runner=env.runner)
    archive = open_store(settings.store_url("archive"))
    key = addendum_key(case)
    if not archive.exists(key):
        result.errors.append(f"no residue addendum for {case.case_id} after the compaction")
        return
    with archive.open_read(key) as handle:
        addendum = json.loads(handle.read())
    result.addendum = str(Path(archive.url.removeprefix("file://")) / key)
    result.physically_compacted_at = addendum["compacted_at"]
    for place in addendum["places"]:
        result.residue[place["place"]] = (
            f"{place['found']} of {place['canaries']} canaries in {place['files']} files "
            f"({place['bytes']} bytes): {place['status']}"
            + (f" {place['until']}" if place["until"] else "")
        )
        if place["status"] != "purged" and place["place"].startswith("heap"):
            result.errors.append(f"residue left in the tables' files: {result.residue}")
    for place, said in result.residue.items():
        say(f"  {place}: {said}")


def read_certificate(settings: Any, case: Any, signer: Any, result: DemoResult) -> dict[str, Any]:
    """The case's certificate from the archive, its signature checked; its paths and systems
    into `result`."""
    from offboarding.core.signing import load_public_key, verify_signature
    from offboarding.destruction.destruction import certificate_key, report_key
    from offboarding.stores import open_store

    archive = open_store(settings.store_url("archive"))
    key = certificate_key(case)
    with archive.open_read(key) as body, archive.open_read(key + ".sig") as sig:
        certificate, signature = body.read(), sig.read()
    document: dict[str, Any] = json.loads(certificate)
    result.systems = {s["name"]: s["status"] for s in document.get("systems", [])}
    if not verify_signature(load_public_key(signer.public_pem), certificate, signature):
        result.errors.append("the certificate's signature does not verify")
    result.certificate = str(Path(archive.url.removeprefix("file://")) / key)
    result.report = str(Path(archive.url.removeprefix("file://")) / report_key(case))
    return document


def _person_requests(env: DemoEnvironment, result: DemoResult, say: Callable[[str], None]) -> None:
    """During the contract: the client asks for a copy of one person's data, then for its
    erasure (the person-request deployment, as its administration console would)."""
    import psycopg

    from flows import adapter
    from offboarding.core.config import Settings
    from offboarding.persons import list_requests
    from offboarding.persons.access import answer_key
    from offboarding.persons.erasure import certificate_key
    from offboarding.persons.requests import RequestKind

    with psycopg.connect(env.pg.dsn) as conn:
        row = conn.execute(
            "SELECT u.id FROM users u WHERE u.tenant_id = %s AND EXISTS (SELECT 1 FROM comments "
            "c WHERE c.author_id = u.id) ORDER BY u.id LIMIT 1",
            (DEMO_TENANT,),
        ).fetchone()
    if row is None:
        raise OffboardingError(f"the demo platform has no person with comments in {DEMO_TENANT}")
    person = str(row[0])
    for kind in (RequestKind.ACCESS, RequestKind.ERASURE):
        say(f"a request about one person during the contract: {kind} of person {person} of "
            f"{DEMO_TENANT} (the person-request deployment)")  # fmt: skip
        run = adapter.start_deployment(
            "person-request/person-request",
            {"tenant": DEMO_TENANT, "kind": str(kind), "person": person},
        )
        wait_for_state(run.id, {"COMPLETED"}, timeout=150, runner=env.runner)
    settings = Settings()
    for request in list_requests(settings, DEMO_TENANT):
        erased = request.kind == RequestKind.ERASURE
        key = certificate_key(request) if erased else answer_key(request)
        result.person_requests[str(request.kind)] = f"{request.ref} ({request.status}): {key}"
    say(f"both answered, with signed records in the archive: {result.person_requests}")


def _client_identity(directory: Path, tenant: str, dsn: str) -> Path:
    """The client's side of encrypted delivery: an identity made with the real age-keygen,
    and its recipient written where the platform keeps it (the demo's `age_recipient`)."""
    import subprocess

    import psycopg

    directory.mkdir(parents=True, exist_ok=True)
    identity = directory / f"{tenant}.agekey"
    identity.unlink(missing_ok=True)
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE tenants SET age_recipient = %s WHERE id = %s", (recipient, tenant))
    return identity


def _decrypt(sealed: Path, identity: Path) -> Path:
    import subprocess

    clear = sealed.with_name(sealed.name.removesuffix(".age"))
    subprocess.run(
        ["age", "-d", "-i", str(identity), "-o", str(clear), str(sealed)],
        check=True, capture_output=True,
    )  # fmt: skip
    return clear


def _download(url: str, into: Path) -> Path:
    import re
    import urllib.request

    into.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback only
        disposition = response.headers.get("content-disposition", "")
        match = re.search(r'filename="([^"/\\]+)"', disposition)
        target = into / (match.group(1) if match else "bundle.zip")
        with target.open("wb") as out:
            shutil.copyfileobj(response, out, 1024 * 1024)
    return target


def _acknowledge(ack_link: str, *, name: str, days: int | None = None) -> None:
    import urllib.parse
    import urllib.request

    fields = {"name": name, **({"days": str(days)} if days is not None else {})}
    request = urllib.request.Request(  # noqa: S310 - the link came from our own notice
        ack_link, data=urllib.parse.urlencode(fields).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
        if response.status != 200:
            raise OffboardingError(f"the acknowledgement page answered {response.status}")
