"""Whole cases through a real Prefect server: the event-free path support staff and the demo
use (run the deployment, suspend, resume through the API, scheduled destruction)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run

from exporters.bundle import verify_bundle
from offboarding.audit import AuditTrail, verify_chain
from offboarding.config import Settings
from offboarding.demo import platform as demo_platform
from offboarding.demo.run import DemoEnvironment, wait_for_state
from offboarding.destruction import certificate_key
from offboarding.records import CaseRef
from offboarding.registry import TenantRegistry
from offboarding.signing import Signer, load_public_key, verify_signature
from offboarding.store import open_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnvironment]:
    saved = dict(os.environ)
    environment = DemoEnvironment(home=tmp_path_factory.mktemp("e2e"), grace_seconds=3)
    with ExitStack() as stack:
        environment.start(stack, say=lambda _: None)
        yield environment
    os.environ.clear()
    os.environ.update(saved)


def settings_of(env: DemoEnvironment) -> Settings:
    return Settings(home=env.home, database_url=env.pg.dsn)


def start_case(env: DemoEnvironment, tenant: str) -> tuple[FlowRun, CaseRef]:
    run = run_deployment(
        "offboard/offboard", parameters={"tenant": tenant}, timeout=0, as_subflow=False
    )
    assert isinstance(run, FlowRun)
    wait_for_state(run.id, {"PAUSED"}, timeout=150, runner=env.runner)
    notice = json.loads(
        next((env.home / "outbox").glob(f"{tenant}-*.json")).read_text()
    )  # the contact's notice: the only place the link goes
    case_id = next((env.home / "outbox").glob(f"{tenant}-*.json")).stem
    assert notice["links"][0]["link"].startswith("http://127.0.0.1")
    return run, CaseRef(tenant=tenant, case_id=case_id)


def test_a_case_runs_from_start_to_archived_certificate(env: DemoEnvironment) -> None:
    settings = settings_of(env)
    files = open_store(settings.store_url("files"))
    emails = [r[0] for r in _query(env, "SELECT email FROM users WHERE tenant_id = 'acme'")]
    neighbours_before = demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme-corp")

    run, case = start_case(env, "acme")
    signer = Signer.load_or_create(settings.keys_dir)
    trail = AuditTrail(settings, case, signer)
    delivered = trail.find("delivered")[-1]["data"]["parts"]
    root = Path(settings.store_url("delivery").removeprefix("file://"))
    assert verify_bundle([root / p["key"] for p in delivered], signer.public_pem).rows > 0

    resume_flow_run(run.id, run_input={"acknowledged_by": "Acme DPO", "days_until_destruction": 0})
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    destroy_run = trail.find("destruction-scheduled")[-1]["data"]["flow_run_id"]
    wait_for_state(destroy_run, {"COMPLETED"}, timeout=120, runner=env.runner)

    archive = open_store(settings.store_url("archive"))
    with archive.open_read(certificate_key(case)) as body:
        certificate = body.read()
    with archive.open_read(certificate_key(case) + ".sig") as sig:
        signature = sig.read()
    public_key = load_public_key(signer.public_pem)
    assert verify_signature(public_key, certificate, signature)
    verify_chain(trail.events(), public_key)
    assert json.loads(certificate)["neighbours_unchanged"] is True

    left = demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme")
    assert sum(t["rows"] for t in left["tables"].values()) == 0
    assert left["files"]["count"] == 0
    assert demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme-corp") == neighbours_before

    # Prefect's own database and result storage are not one more copy of the tenant's data:
    # no e-mail address, no file name (file names can name people), no row text.
    prefect_home = env.home / "prefect"
    for path in [p for p in prefect_home.rglob("*") if p.is_file()]:
        content = path.read_bytes()
        for needle in [*emails, "dpo@acme.example", "Compte rendu", "documents/"]:
            assert needle.encode() not in content, (path, needle)


def test_an_acknowledgement_asking_more_than_90_days_is_rejected(env: DemoEnvironment) -> None:
    run, _ = start_case(env, "globex")
    with pytest.raises(RuntimeError, match="Cannot resume"):
        resume_flow_run(
            run.id, run_input={"acknowledged_by": "Globex", "days_until_destruction": 91}
        )
    still = wait_for_state(run.id, {"PAUSED"}, timeout=5, runner=env.runner)
    assert still.state.name == "Suspended"


def test_a_tenant_placed_on_legal_hold_while_waiting_is_not_destroyed(env: DemoEnvironment) -> None:
    settings = settings_of(env)
    files = open_store(settings.store_url("files"))
    run, case = start_case(env, "initech")
    TenantRegistry(settings).set_hold("initech", True, "regulator's request")
    before = demo_platform.tenant_fingerprint(env.pg.dsn, files, "initech")

    resume_flow_run(run.id, run_input={"acknowledged_by": "Initech", "days_until_destruction": 0})
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    trail = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))
    destroy_run = trail.find("destruction-scheduled")[-1]["data"]["flow_run_id"]
    wait_for_state(destroy_run, {"FAILED"}, timeout=120, runner=env.runner)

    assert trail.find("destruction-refused")
    assert demo_platform.tenant_fingerprint(env.pg.dsn, files, "initech") == before


def _query(env: DemoEnvironment, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(env.pg.dsn) as conn:
        return conn.execute(statement).fetchall()  # type: ignore[arg-type]
