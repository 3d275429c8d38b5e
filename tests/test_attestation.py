"""Attested systems of the data map: asked for once with a due date, reminded, confirmed on the
record, and listed in the certificate as attested, never as verified."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest

from offboarding import people
from offboarding.core.errors import ConfigurationError, DestructionIncompleteError, TenantError
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer
from offboarding.destruction import attestation, destruction
from offboarding.locations import destruction_order
from offboarding.scheduling.deadlines import case_deadlines
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events
from tests.conftest import Platform
from tests.helpers import (
    ATTESTED_ACTION,
    ATTESTER,
    acknowledge,
    attestation_for,
    export_and_deliver,
    record_plan,
)

START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def platform(make_platform: Callable[[], Platform]) -> Platform:
    """The demo platform with one attested system, the helpdesk (its map's last system,
    search, is dropped), so each test follows one attestation."""
    made = make_platform()
    path = made.settings.datamap
    assert path is not None
    text = path.read_text()
    path.write_text(text[: text.index("[systems.search]")])
    return made


def _destroyed(platform: Platform, case: CaseRef) -> destruction.DestructionEvidence:
    settings = platform.settings
    acknowledge(settings, case)
    order = destruction_order(settings)
    removals = {n: destruction.destroy_location(settings, case, n) for n in order}
    remaining = {n: destruction.verify_location(settings, case, n) for n in order}
    return destruction.DestructionEvidence(
        started_at=datetime.now(UTC), removals=removals, remaining=remaining
    )


def test_no_certificate_until_the_role_attests_and_then_it_says_attested(
    platform: Platform,
) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    evidence = _destroyed(platform, case)
    settings = platform.settings
    with pytest.raises(DestructionIncompleteError, match=r"helpdesk \(support lead\)"):
        destruction.certify(settings, case, evidence)

    with pytest.raises(TenantError, match="has not asked for the attestation of 'helpdesk'"):
        attestation.attest(
            settings, case, "helpdesk", attestation_for(settings, case.tenant), datetime.now(UTC)
        )
    deadline = destruction.check_warrant(settings, case).deadline
    (due,) = attestation.request_attestations(settings, case, evidence.started_at, deadline)
    assert (due.system, due.role) == ("helpdesk", "support lead")
    assert "erase the organisation acme in the helpdesk" in due.procedure
    with pytest.raises(ConfigurationError, match="'cache' is not an attested system"):
        attestation.attest(
            settings, case, "cache", attestation_for(settings, case.tenant), datetime.now(UTC)
        )
    first = attestation.attest(
        settings, case, "helpdesk", attestation_for(settings, case.tenant), datetime.now(UTC)
    )
    again = attestation.attest(
        settings, case, "helpdesk", attestation_for(settings, case.tenant), datetime.now(UTC)
    )
    assert again == first  # recorded once
    assert attestation.request_attestations(settings, case, START, deadline) == []

    archived = destruction.certify(settings, case, evidence)
    archive = open_store(settings.store_url("archive"))
    with archive.open_read(archived.key) as body:
        raw = body.read()
    document = json.loads(raw)
    systems = {s["name"]: s for s in document["systems"]}
    assert {n: s["status"] for n, s in systems.items()} == {
        "postgres": "verified", "files": "verified", "cache": "verified", "helpdesk": "attested",
    }  # fmt: skip
    helpdesk = systems["helpdesk"]
    assert helpdesk["evidence"] == "HELPDESK-DEL-0001" and helpdesk["role"] == "support lead"
    assert helpdesk["action"] == ATTESTED_ACTION
    assert ATTESTER.encode() not in raw  # a pseudonym, never the name
    assert people.matches(settings, case, ATTESTER, helpdesk["attested_by"]) is True
    assert "helpdesk" not in {loc["location"] for loc in document["locations"]}
    assert "SCAN MATCH" in systems["cache"]["method"] and "fresh SCAN" in systems["cache"]["method"]
    gone_by = datetime.fromisoformat(document["all_copies_gone_by"])
    assert gone_by >= first.at


def test_the_due_date_is_fixed_once_and_never_after_the_deadline(platform: Platform) -> None:
    settings, case = platform.settings, platform.case("acme")
    export_and_deliver(platform, case)
    soon = START + timedelta(days=5)
    (due,) = attestation.request_attestations(settings, case, START, soon)
    assert due.due == soon  # within = 14 days, but the case's deadline comes first
    (rerun,) = attestation.request_attestations(settings, case, START + timedelta(days=3), soon)
    assert rerun.due == soon
    requested = AuditTrail.open(settings, case).of(events.AttestationRequested)
    assert len(requested) == 1

    other = platform.case("globex")
    export_and_deliver(platform, other)
    (late,) = attestation.request_attestations(settings, other, START, START + timedelta(days=90))
    assert late.due == START + timedelta(days=14)


def test_the_case_watch_reminds_the_role_and_says_when_it_is_overdue(platform: Platform) -> None:
    settings, case = platform.settings, platform.case("acme")
    export_and_deliver(platform, case)
    asked_at = datetime.now(UTC)
    (due,) = attestation.request_attestations(
        settings, case, asked_at, asked_at + timedelta(days=89)
    )
    said: list[str] = []

    def remind(after: timedelta) -> int:
        return attestation.remind_attestations(settings, [case], asked_at + after, log=said.append)

    assert remind(timedelta(days=6)) == 0  # reminder_every is 7 days
    assert remind(timedelta(days=7, minutes=1)) == 1
    assert remind(timedelta(days=8)) == 0  # one per period
    outbox = sorted((settings.root / "outbox").glob(f"{case.case_id}-attest-helpdesk-*.eml"))
    assert len(outbox) == 1
    message = message_from_bytes(outbox[0].read_bytes(), policy=default)
    assert message["To"] == "support-lead@operator.example"
    assert "awaits your attestation" in message["Subject"] and not said
    body = message.get_body()
    assert body is not None and f"offboard attest {case.case_id} helpdesk" in body.get_content()

    assert remind(due.due - asked_at + timedelta(days=1)) == 1
    overdue = sorted((settings.root / "outbox").glob(f"{case.case_id}-attest-helpdesk-*.eml"))[-1]
    assert (
        message_from_bytes(overdue.read_bytes(), policy=default)["Subject"]
        .strip()
        .startswith("Overdue: ")
    )
    assert said and "was due" in said[0]
    reminded = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir)).of(
        events.AttestationReminded
    )
    assert [(r.recipient_domain, r.overdue) for r in reminded] == [
        ("operator.example", False), ("operator.example", True),
    ]  # fmt: skip

    attestation.attest(
        settings, case, "helpdesk", attestation_for(settings, case.tenant), datetime.now(UTC)
    )
    assert remind(timedelta(days=60)) == 0  # confirmed: nothing more to remind


def test_the_deadline_watch_flags_an_attestation_past_its_due_date(platform: Platform) -> None:
    settings = platform.settings
    now = datetime.now(UTC)
    deadline = now + timedelta(days=40)
    case = record_plan(platform, "acme", deadline)
    attestation.request_attestations(settings, case, now, deadline)
    (waiting,) = case_deadlines(settings, now)
    assert waiting.status == "scheduled" and not waiting.flagged
    assert (
        f"awaiting attestation of helpdesk by {now + timedelta(days=14):%Y-%m-%d}" in waiting.note
    )
    (late,) = case_deadlines(settings, now + timedelta(days=15))
    assert late.flagged and "(overdue)" in late.note
    attestation.attest(
        settings, case, "helpdesk", attestation_for(settings, case.tenant), now + timedelta(days=15)
    )
    (done,) = case_deadlines(settings, now + timedelta(days=15))
    assert not done.flagged and "attestation" not in done.note
