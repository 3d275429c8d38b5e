"""Whole cases through a real Prefect server: the event-free path support staff and the demo
use (run the deployment, suspend, resume through the API, scheduled destruction)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import NotPausedError
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelled
from starlette.testclient import TestClient

from exporters.bundle import verify_bundle
from flows.adapter import PrefectRuns
from offboarding.core.config import Settings
from offboarding.core.errors import OffboardingError
from offboarding.core.records import CaseRef, DestructionSchedule
from offboarding.core.signing import Signer, load_public_key, verify_signature
from offboarding.delivery.delivery import watch_cases
from offboarding.destruction.destruction import certificate_key
from offboarding.dev.demo import platform as demo_platform
from offboarding.dev.demo.run import (
    DemoEnvironment,
    finish_destruction,
    notice_links,
    wait_for_state,
)
from offboarding.dev.services import PrefectServer
from offboarding.evidence.archive import verify_archive
from offboarding.evidence.timestamps import load_roots
from offboarding.people import keep_statement, matches, statement
from offboarding.scheduling.approvals import pending_approvals
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events, verify_chain
from offboarding.web import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer
) -> Iterator[DemoEnvironment]:
    saved = dict(os.environ)
    environment = DemoEnvironment(
        home=tmp_path_factory.mktemp("e2e"), grace_seconds=3, server=prefect_server
    )
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
    notice = next((env.home / "outbox").glob(f"{tenant}-*-delivery-*.eml"))
    downloads, _ = notice_links(notice)  # the contact's notice: the only place links go
    assert downloads and all(d.startswith("http://127.0.0.1") for d in downloads)
    return run, CaseRef(tenant=tenant, case_id=notice.name.split("-delivery-")[0])


def offboard_runs(tenant: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        return [
            r
            for r in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["offboard"]))
            )
            if r.parameters.get("tenant") == tenant
        ]


def start_case_by_event(env: DemoEnvironment, tenant: str) -> tuple[FlowRun, CaseRef, Any]:
    """The platform's way: the contract-terminated event, sent twice (at-least-once delivery
    and impatient people both happen): one case opens, the duplicate is cancelled."""
    for _ in range(2):
        cli = offboard_cli(env, "terminate", tenant, "--reason", TERMINATION_REASON)
        assert cli.returncode == 0, cli.stderr
    deadline = time.monotonic() + 60
    while len(offboard_runs(tenant)) < 2:
        assert time.monotonic() < deadline, "the trigger did not create the runs"
        time.sleep(0.5)
    states: dict[str, Any] = {}
    for run in offboard_runs(tenant):
        final = wait_for_state(run.id, {"PAUSED", "CANCELLED"}, timeout=150, runner=env.runner)
        states[final.state.type.value] = final
    assert set(states) == {"PAUSED", "CANCELLED"}, states
    assert "duplicate" in (states["CANCELLED"].state.message or "")
    run = states["PAUSED"]
    notice = next((env.home / "outbox").glob(f"{tenant}-*-delivery-*.eml"))
    return (
        run,
        CaseRef(tenant=tenant, case_id=notice.name.split("-delivery-")[0]),
        states["CANCELLED"],
    )


def run_action(env: DemoEnvironment, name: str, wanted: str = "COMPLETED", **params: Any) -> Any:
    """Run a support action's deployment, as support staff do from the UI's form."""
    run = run_deployment(f"{name}/{name}", parameters=params, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)
    return wait_for_state(run.id, {wanted}, timeout=120, runner=env.runner)


def offboard_cli(env: DemoEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    assert env.server is not None
    return subprocess.run(
        [sys.executable, "-m", "offboarding.cli", *args],
        env={**env.server.env(), **env.offboard_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def destroy_runs(case: CaseRef) -> list[Any]:
    with get_client(sync_client=True) as client:
        return [
            r
            for r in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["destroy"]))
            )
            if r.parameters.get("case_id") == case.case_id
        ]


def trail_of(env: DemoEnvironment, case: CaseRef) -> AuditTrail:
    settings = settings_of(env)
    return AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))


# Person-related words of the acme case: none may reach Prefect's database or its results.
TERMINATION_REASON = "contract ended after the merger agreed with Quentin Zebedee"
ACKNOWLEDGER = "Ottilie Acme-DPO Vandersloot"
ACK_NOTE = "All three parts checked by Ottilie on her laptop"


@dataclass(frozen=True)
class CertifiedCase:
    """One whole case (acme, started by the platform's event), run once for the tests below,
    each of which checks one behaviour of it."""

    run: FlowRun
    case: CaseRef
    duplicate_state: Any
    waiting_artifacts: set[str]
    delivered_rows: int
    destroyed_artifacts: set[str]
    second_resume: BaseException | None
    destroy_run: str
    scheduled_again: str
    emails: list[str]
    neighbours_before: dict[str, object]


@pytest.fixture(scope="module")
def acme(env: DemoEnvironment) -> CertifiedCase:
    settings = settings_of(env)
    files = open_store(settings.store_url("files"))
    emails = [str(r[0]) for r in _query(env, "SELECT email FROM users WHERE tenant_id = 'acme'")]
    neighbours_before = demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme-corp")
    run, case, duplicate = start_case_by_event(env, "acme")
    waiting = artifact_keys(case)
    # The client downloads every part through the notice's links (the link endpoint records
    # each download) and verifies the bundle.
    notice = next((env.home / "outbox").glob(f"{case.case_id}-delivery-*.eml"))
    links, ack_link = notice_links(notice)
    page = TestClient(create_app(settings, PrefectRuns()))
    received = env.home / "client-downloads" / case.case_id
    received.mkdir(parents=True)
    fetched = []
    for number, link in enumerate(links):
        answer = page.get(link.removeprefix(settings.delivery.link_base_url))
        assert answer.status_code == 200
        fetched.append(received / f"part-{number}.zip")
        fetched[-1].write_bytes(answer.content)
    public_pem = Signer.load_or_create(settings.keys_dir).public_pem
    delivered_rows = verify_bundle(fetched, public_pem).rows

    # The client's contact acknowledges on the notice's page: POST /ack resumes the case
    # through the orchestrator's Runs, on the real server.
    answer = page.post(
        ack_link.removeprefix(settings.delivery.link_base_url),
        # Every part downloaded in full: fewer days than the grace, confirmed explicitly.
        data={"name": ACKNOWLEDGER, "days": "0", "note": ACK_NOTE, "confirm_early": "yes"},
    )
    assert answer.status_code == 200 and "recorded" in answer.text, answer.text
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    scheduled = trail_of(env, case).of(events.DestructionScheduled)[-1]
    try:  # resumed twice: the server refuses, the case is not waiting any more
        resume_flow_run(run.id, run_input={"statement": "st-" + "0" * 32})
        second: BaseException | None = None
    except NotPausedError as refused:
        second = refused
    again = PrefectRuns().schedule_destruction(  # the step retried: the same run comes back
        case, scheduled_for=scheduled.scheduled_for, idempotency_key=f"destroy-{case.case_id}"
    )
    finish_destruction(scheduled.flow_run_id, timeout=150, runner=env.runner)
    destroyed = artifact_keys(case)
    run_action(env, "verify-destruction", case_id=case.case_id)
    return CertifiedCase(
        run, case, duplicate, waiting, delivered_rows, destroyed, second,
        scheduled.flow_run_id, again, emails, neighbours_before,
    )  # fmt: skip


def artifact_keys(case: CaseRef) -> set[str]:
    with get_client(sync_client=True) as client:
        return {a.key for a in client.read_artifacts() if a.key and case.case_id in a.key}


def test_a_terminated_contract_opens_one_case_and_a_repeated_event_is_cancelled(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    reason_ref = acme.run.parameters["reason_ref"]  # the reason itself stays in the ledger
    said = statement(settings_of(env), reason_ref, "acme", "termination")
    assert said.field("reason") == TERMINATION_REASON
    assert "duplicate" in (acme.duplicate_state.state.message or "")


def test_a_waiting_case_shows_its_artifacts_and_its_delivered_bundle_verifies(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    case = acme.case
    assert {f"case-{case.case_id}", f"inventory-{case.case_id}", f"systems-{case.case_id}",
            f"progress-offboard-{case.case_id}",
            f"progress-export-{case.case_id}"} <= acme.waiting_artifacts  # fmt: skip
    packaged = trail_of(env, case).state().packaged
    assert packaged is not None and acme.delivered_rows == packaged.rows > 0


def test_the_acknowledgement_page_resumes_the_case_and_it_schedules_its_destruction(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    state = trail_of(env, acme.case).state()
    ack = state.acknowledgement
    assert isinstance(ack, events.Acknowledged)
    assert ack.days_until_destruction == 0 and ack.note_given
    # Who acknowledged: a pseudonym under the case's key, which a guess cannot test without it.
    assert ack.by_pseudonym and ack.by_sha256 is None
    assert matches(settings_of(env), acme.case, ACKNOWLEDGER.upper(), ack.by_pseudonym)
    assert not matches(settings_of(env), acme.case, "Somebody Else", ack.by_pseudonym)
    assert state.schedule is not None and state.schedule.flow_run_id == acme.destroy_run


def _person_words(env: DemoEnvironment) -> dict[str, bytes]:
    (contact,) = _query(env, "SELECT contact_email FROM tenants WHERE id = 'acme'")
    return {
        "the contact's address": str(contact[0]).encode(),
        "the acknowledger's name": ACKNOWLEDGER.encode(),
        "the acknowledgement's note": ACK_NOTE.encode(),
        "the termination's reason": TERMINATION_REASON.encode(),
    }


def test_prefect_keeps_no_person_related_words_of_a_whole_case(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    """Every table of Prefect's database and every file of its result storage, after the
    acme case has run from the event to its certificate: references, never the words."""
    assert env.server is not None
    words = _person_words(env)
    found: list[str] = []
    with sqlite3.connect(f"file:{env.server.home / 'prefect.db'}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"flow_run", "flow_run_input", "log", "artifact", "events"} <= set(tables)
        scanned = 0
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # names from the DB
                scanned += 1
                cells = b"\x00".join(
                    v if isinstance(v, bytes) else str(v).encode() for v in row if v is not None
                )
                found += [f"{what} in table {table}" for what, w in words.items() if w in cells]
    results = [p for p in (env.server.home / "storage").rglob("*") if p.is_file()]
    assert scanned > 1000 and results  # the scan saw a whole case
    for path in results:
        content = path.read_bytes()
        found += [f"{what} in result {path.name}" for what, w in words.items() if w in content]
    assert found == []
    # The words are where they belong: the ledger, which forgets them with the contact.
    kept = b" ".join(
        str(r[0]).encode() for r in _query(env, "SELECT fields FROM offboarding.statements")
    )
    assert words["the acknowledger's name"] in kept and words["the termination's reason"] in kept


def test_acknowledging_twice_or_retrying_the_step_makes_one_destruction_run(
    acme: CertifiedCase,
) -> None:
    assert isinstance(acme.second_resume, NotPausedError)
    assert acme.scheduled_again == acme.destroy_run
    assert [str(r.id) for r in destroy_runs(acme.case)] == [acme.destroy_run]
    case = acme.case
    assert {f"destruction-{case.case_id}", f"certificate-{case.case_id}",
            f"progress-destroy-{case.case_id}"} <= acme.destroyed_artifacts  # fmt: skip


def test_the_certificate_is_signed_and_chained_and_only_the_tenant_is_gone(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    settings = settings_of(env)
    case = acme.case
    archive = open_store(settings.store_url("archive"))
    with archive.open_read(certificate_key(case)) as body:
        certificate = body.read()
    with archive.open_read(certificate_key(case) + ".sig") as sig:
        signature = sig.read()
    public_key = load_public_key(Signer.load_or_create(settings.keys_dir).public_pem)
    assert verify_signature(public_key, certificate, signature)
    trail = trail_of(env, case)
    verify_chain(trail.events(), public_key)
    assert trail.state().phase == "certified"
    document = json.loads(certificate)
    assert document["neighbours_unchanged"] is None  # the digests are the opt-in audit mode
    # The client's downloads, from the endpoint's signed receipts (the bundle itself is gone).
    assert document["bundle_downloads"] >= 1 and document["bundle_fully_downloaded"] is True
    assert document["bundle_first_downloaded_at"] is not None
    postgres = next(loc for loc in document["locations"] if loc["location"] == "postgres")
    assert "no row outside the tenant's scope references them" in postgres["isolation"]
    # Every system of the data map: the helpdesk attested through the run's form (never
    # verified, never among the locations the pipeline re-scanned), the rest verified.
    systems = {s["name"]: s for s in document["systems"]}
    assert {n: s["status"] for n, s in systems.items()} == {
        "postgres": "verified", "files": "verified", "cache": "verified", "helpdesk": "attested",
        "search": "attested", "platform-backups": "lingering",
    }  # fmt: skip
    backups = systems["platform-backups"]  # the demo cluster's pgBackRest sets, dated
    assert datetime.fromisoformat(backups["until"]) <= datetime.fromisoformat(document["deadline"])
    helpdesk = systems["helpdesk"]
    assert helpdesk["role"] == "support lead" and helpdesk["evidence"].endswith("HELPDESK-DEL-0001")
    assert helpdesk["attested_by"].startswith("hmac-sha256:")
    assert "Demo support lead" not in certificate.decode()
    assert "helpdesk" not in {loc["location"] for loc in document["locations"]}
    assert trail.state().attestations["helpdesk"].at <= datetime.fromisoformat(
        document["all_copies_gone_by"]
    )
    files = open_store(settings.store_url("files"))
    left = demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme")
    assert sum(t["rows"] for t in left["tables"].values()) == 0
    assert left["files"]["count"] == 0
    neighbours = demo_platform.tenant_fingerprint(env.pg.dsn, files, "acme-corp")
    assert neighbours == acme.neighbours_before
    # Anchored outside the operator: the destroy flow had the certified chain's head and the
    # certificate timestamped by the (local) authority, and an auditor's check accepts them.
    assert env.tsa is not None
    report = verify_archive(
        archive, public_key, tsa_roots=load_roots(env.tsa.ca_file), require_timestamps=False
    )
    # The chain's head at delivery, acknowledgement and certification, and the certificate.
    covered = {a.covers for a in report.anchors if case.case_id in a.key}
    assert "certificate" in covered and len(covered) == 4


def test_reverification_from_the_ui_finds_nothing_and_is_recorded(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    reverified = trail_of(env, acme.case).of(events.Reverified)
    assert reverified and set(reverified[-1].remaining.values()) == {0}


def test_prefect_holds_no_copy_of_the_tenants_data(
    env: DemoEnvironment, acme: CertifiedCase
) -> None:
    """Prefect's own database and result storage are not one more copy of the tenant's data:
    no e-mail address, no file name (file names can name people), no row text."""
    assert acme.emails
    prefect_home = env.home / "prefect"
    for path in [p for p in prefect_home.rglob("*") if p.is_file()]:
        content = path.read_bytes()
        for needle in [*acme.emails, "dpo@acme.example", "Compte rendu", "documents/"]:
            assert needle.encode() not in content, (path, needle)


def test_the_prefect_api_and_the_staff_page_refuse_calls_without_the_credentials(
    env: DemoEnvironment,
) -> None:
    """Prefect's open-source server has no accounts: its own basic authentication is on, and
    every client of the pipeline (runner, CLI, link endpoint) sends it."""
    assert env.server is not None
    call = urllib.request.Request(  # noqa: S310 - our own server on loopback
        f"{env.server.api_url}/flow_runs/filter", data=b"{}",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call)  # noqa: S310
    assert refused.value.code == 401
    token = base64.b64encode(env.auth.encode()).decode()
    call.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(call) as answer:  # noqa: S310
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as staff:
        urllib.request.urlopen(f"http://127.0.0.1:{env.links_port}/staff/")
    assert staff.value.code == 401


def test_a_destroy_run_made_through_the_api_for_an_active_tenant_touches_nothing(
    env: DemoEnvironment,
) -> None:
    """The review's attack, through Prefect's API as anyone reaching the server could: it
    used to delete every row of the active tenant globex. Now the run fails on its warrant."""
    files = open_store(settings_of(env).store_url("files"))
    before = demo_platform.tenant_fingerprint(env.pg.dsn, files, "globex")
    for parameters in (
        {"case_id": "globex-000000000000"},
        {  # the parameters runs of earlier releases carried, made up
            "case_id": "globex-000000000000", "tenant": "globex",
            "acknowledged_at": "2026-01-01T00:00:00+00:00",
            "deadline": "2026-04-01T00:00:00+00:00",
        },
    ):  # fmt: skip
        failed = run_action(env, "destroy", wanted="FAILED", **parameters)
        assert "no audit trail for this case" in (failed.state.message or ""), failed.state
    assert demo_platform.tenant_fingerprint(env.pg.dsn, files, "globex") == before


def test_acknowledgement_input_is_validated_then_the_cli_resumes_and_a_hold_cancels(
    env: DemoEnvironment,
) -> None:
    run, case = start_case(env, "globex")
    said = keep_statement(settings_of(env), "globex", "acknowledgement", name="Globex DPO")
    for refused in (
        {"statement": said, "days_until_destruction": 91},  # clause 2.3.2: 90 at most
        {"days_until_destruction": 5},  # no statement
        {"statement": "Globex DPO", "days_until_destruction": 5},  # words, not a reference
    ):
        with pytest.raises(RuntimeError, match="Cannot resume"):
            resume_flow_run(run.id, run_input=refused)
    assert wait_for_state(run.id, {"PAUSED"}, timeout=5).state.name == "Suspended"

    cli = offboard_cli(env, "ack", case.case_id, "--by", "Globex DPO", "--days", "91")
    assert cli.returncode == 2 and "refused" in cli.stderr
    cli = offboard_cli(env, "ack", case.case_id, "--by", "Globex DPO", "--days", "1")
    assert cli.returncode == 0, cli.stderr
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    trail = trail_of(env, case)
    scheduled = trail.of(events.DestructionScheduled)[-1]
    acknowledged = scheduled.acknowledged_at
    assert scheduled.scheduled_for - acknowledged == timedelta(days=1)
    assert scheduled.deadline - acknowledged == timedelta(days=90)

    cli = offboard_cli(env, "hold", "globex", "--reason", "court order 12/345", "--by", "legal")
    assert cli.returncode == 0, cli.stderr
    assert wait_for_state(scheduled.flow_run_id, {"CANCELLED"}, timeout=10)
    assert trail.of(events.LegalHoldPlaced)[-1].destruction_runs_cancelled == [
        scheduled.flow_run_id
    ]

    # Lifting the hold waits for a second person: the hold stays until they approve.
    cli = offboard_cli(env, "release", "globex", "--by", "legal")
    assert cli.returncode == 0 and "waits for a second person" in cli.stdout, cli.stderr
    request = cli.stdout.split("request ", 1)[1].split(".", 1)[0]
    assert not trail.of(events.DestructionRescheduled)
    cli = offboard_cli(env, "approve", request, "--by", "Legal")  # the same person
    assert cli.returncode == 2 and "cannot approve it" in cli.stderr
    cli = offboard_cli(env, "approve", request, "--by", "General Counsel")
    assert cli.returncode == 0, cli.stderr
    again = trail.of(events.DestructionRescheduled)[-1]
    assert again.flow_run_id != scheduled.flow_run_id
    assert again.scheduled_for == scheduled.scheduled_for  # the original date and deadline
    assert again.deadline == scheduled.deadline
    with get_client(sync_client=True) as client:
        rescheduled = client.read_flow_run(UUID(again.flow_run_id))
        assert rescheduled.state is not None and rescheduled.state.type.value == "SCHEDULED"
        assert rescheduled.expected_start_time == scheduled.scheduled_for

    # Support staff postpone it from the UI's form: within the limit, then past it.
    later = scheduled.scheduled_for + timedelta(days=2)
    asked = keep_statement(settings_of(env), "globex", "postponement", name="Globex DPO")
    run_action(
        env, "postpone-destruction", case_id=case.case_id, destroy_on=later.isoformat(),
        statement=asked,
    )  # fmt: skip
    moved = trail.of(events.DestructionRescheduled)[-1]
    assert moved.postponed and moved.scheduled_for == later
    assert moved.deadline == scheduled.deadline
    assert trail.state().schedule == moved_schedule(moved)
    assert wait_for_state(again.flow_run_id, {"CANCELLED"}, timeout=10)
    too_late = scheduled.deadline - timedelta(days=1)
    with pytest.raises(OffboardingError, match="must start by"):
        run_action(
            env, "postpone-destruction", case_id=case.case_id, destroy_on=too_late.isoformat(),
            statement=asked,
        )  # fmt: skip
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            UUID(moved.flow_run_id), Cancelled(message="test cleanup"), force=True
        )


def test_a_hold_placed_while_waiting_keeps_destruction_unscheduled_until_released(
    env: DemoEnvironment,
) -> None:
    settings = settings_of(env)
    files = open_store(settings.store_url("files"))
    run, case = start_case(env, "initech")
    hold = keep_statement(settings, "initech", "hold", name="legal", reason="regulator's request")
    run_action(env, "legal-hold", tenant="initech", action="place", statement=hold)
    before = demo_platform.tenant_fingerprint(env.pg.dsn, files, "initech")

    said = keep_statement(settings, "initech", "acknowledgement", name="Initech")
    resume_flow_run(run.id, run_input={"statement": said, "days_until_destruction": 0})
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)
    trail = trail_of(env, case)
    assert trail.of(events.DestructionHeld) and not trail.of(events.DestructionScheduled)
    assert trail.state().phase == "held"
    assert destroy_runs(case) == []
    assert demo_platform.tenant_fingerprint(env.pg.dsn, files, "initech") == before

    lift = keep_statement(settings, "initech", "hold", name="legal")
    run_action(env, "legal-hold", tenant="initech", action="lift", statement=lift)
    assert trail.state().phase == "held"  # until a second person approves, from the form
    (asked,) = [a for a in pending_approvals(settings, "initech") if a.action == "lift-hold"]
    second = keep_statement(settings, "initech", "approval", name="General Counsel")
    run_action(env, "approve", request=asked.ref, statement=second)
    destroy_run = trail.of(events.DestructionRescheduled)[-1].flow_run_id
    finish_destruction(destroy_run, timeout=150, runner=env.runner)
    left = demo_platform.tenant_fingerprint(env.pg.dsn, files, "initech")
    assert sum(t["rows"] for t in left["tables"].values()) == 0


def test_a_case_nobody_acknowledges_continues_as_deemed_delivered(env: DemoEnvironment) -> None:
    run, case = start_case(env, "acme-corp")
    run_action(env, "reissue-link", case_id=case.case_id)
    assert list((env.home / "outbox").glob(f"{case.case_id}-reissue-*.eml"))
    settings = Settings(
        home=env.home, database_url=env.pg.dsn, acknowledgement_timeout=timedelta(seconds=1)
    )
    time.sleep(1.5)
    counts = watch_cases(settings, PrefectRuns())
    assert counts["deemed-delivered"] == 1 and counts["failed"] == 0
    wait_for_state(run.id, {"COMPLETED"}, timeout=90, runner=env.runner)

    trail = trail_of(env, case)
    deemed = trail.of(events.DeemedDelivered)
    assert len(deemed) == 1 and not trail.of(events.Acknowledged)
    assert deemed[0].notices_sent == 2  # the delivery and the re-issue
    assert deemed[0].downloads == 0  # nobody downloaded it: support staff were told
    scheduled = trail.of(events.DestructionScheduled)[-1]
    assert scheduled.acknowledged_at == deemed[0].at  # the 90-day clock starts
    finish_destruction(scheduled.flow_run_id, timeout=150, runner=env.runner)
    assert watch_cases(settings, PrefectRuns())["waiting"] == 0


def moved_schedule(moved: events.DestructionRescheduled) -> DestructionSchedule:
    return DestructionSchedule(
        acknowledged_at=moved.acknowledged_at,
        scheduled_for=moved.scheduled_for,
        deadline=moved.deadline,
        flow_run_id=moved.flow_run_id,
    )


def _query(env: DemoEnvironment, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(env.pg.dsn) as conn:
        return conn.execute(statement).fetchall()  # type: ignore[arg-type]


def test_a_prefect_server_restart_while_a_case_waits_loses_nothing(env: DemoEnvironment) -> None:
    """Days of waiting include server upgrades: the suspended case, its input schema and the
    served deployments survive a restart of the server (same database)."""
    run, case = start_case(env, "demo-tenant")
    assert env.server is not None
    env.server.stop()
    env.server.start()
    assert wait_for_state(run.id, {"PAUSED"}, timeout=30).state.name == "Suspended"
    said = keep_statement(settings_of(env), "demo-tenant", "acknowledgement", name="Demo DPO")
    resume_flow_run(run.id, run_input={"statement": said, "days_until_destruction": 0})
    wait_for_state(run.id, {"COMPLETED"}, timeout=120, runner=env.runner)
    scheduled = trail_of(env, case).of(events.DestructionScheduled)[-1]
    finish_destruction(scheduled.flow_run_id, timeout=150, runner=env.runner)
    assert trail_of(env, case).state().phase == "certified"
