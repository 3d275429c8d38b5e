"""Four eyes (issue 26, item 2): destruction earlier than the standard grace, lifting a legal
hold (`release --now` too) and postponing to the limit each wait for a second person, who
cannot be the one who asked; the trail records both and the certificate shows both as
pseudonyms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from offboarding import people
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.locations import lingering
from offboarding.people import keep_statement
from offboarding.planning import latest_destruction_start
from offboarding.registry import TenantRegistry
from offboarding.runs import AcknowledgementInput
from offboarding.scheduling.approvals import Approval, pending_approvals
from offboarding.scheduling.scheduling import (
    approve,
    place_hold,
    postpone_destruction,
    release_hold,
    schedule_destruction,
)
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events
from tests.conftest import Platform
from tests.helpers import ScheduledRuns, destroy_everything, export_and_deliver

ASKER, SECOND = "Camille Client-DPO", "Sam Support-Lead"


def _acknowledged(platform: Platform, runs: ScheduledRuns, days: int | None) -> CaseRef:
    settings = platform.settings
    case = platform.case("acme")
    export_and_deliver(platform, case)
    said = keep_statement(settings, "acme", "acknowledgement", name=ASKER)
    schedule_destruction(
        settings, runs, case, AcknowledgementInput(statement=said, days_until_destruction=days)
    )
    return case


def _approval(settings: object, tenant: str, name: str) -> str:
    return keep_statement(settings, tenant, "approval", name=name)  # type: ignore[arg-type]


def test_fewer_days_than_the_grace_wait_for_a_second_person_who_did_not_ask(
    platform: Platform,
) -> None:
    """An acknowledgement with 2 days used to schedule destruction 2 days later, on one
    person's word (the client's contact, or whoever holds the forwarded notice)."""
    settings, runs = platform.settings, ScheduledRuns()
    case = _acknowledged(platform, runs, days=2)
    state = AuditTrail.open(settings, case).state()
    assert state.schedule is not None and state.acknowledged_at is not None
    assert state.schedule.scheduled_for == state.acknowledged_at + settings.destruction.grace
    (asked,) = pending_approvals(settings, "acme")
    assert (asked.action, asked.params["days_until_destruction"]) == ("early-destruction", 2)

    # The same person, however written, cannot approve their own request.
    with pytest.raises(TenantError, match="who asked for it cannot approve it"):
        approve(settings, runs, asked.ref, _approval(settings, "acme", "  camille CLIENT-dpo "))
    assert AuditTrail.open(settings, case).state().schedule == state.schedule
    with pytest.raises(TenantError, match="not a approval statement of tenant 'acme'"):
        approve(settings, runs, asked.ref, _approval(settings, "globex", SECOND))

    outcome = approve(settings, runs, asked.ref, _approval(settings, "acme", SECOND))
    (moved,) = outcome.rescheduled
    assert moved.scheduled_for == max(
        state.acknowledged_at + timedelta(days=2), moved.scheduled_for
    )
    assert moved.scheduled_for < state.schedule.scheduled_for
    assert runs.state(str(state.schedule.flow_run_id)) == "CANCELLED"
    assert pending_approvals(settings, "acme") == []
    with pytest.raises(TenantError, match="is approved: nothing to do"):
        approve(settings, runs, asked.ref, _approval(settings, "acme", "A Third"))
    given = AuditTrail.open(settings, case).of(events.ApprovalGiven)
    assert [g.request for g in given] == [asked.ref]


def test_the_certificate_shows_who_asked_and_who_approved_as_pseudonyms(
    platform: Platform,
) -> None:
    settings, runs = platform.settings, ScheduledRuns()
    case = _acknowledged(platform, runs, days=0)
    (asked,) = pending_approvals(settings, "acme")
    approve(settings, runs, asked.ref, _approval(settings, "acme", SECOND))
    archived = destroy_everything(platform, case)
    with open_store(settings.store_url("archive")).open_read(archived.key) as body:
        raw = body.read()
    (shown,) = json.loads(raw)["approvals"]
    assert shown["action"] == "early-destruction" and shown["request"] == asked.ref
    assert people.matches(settings, case, ASKER, shown["requested_by"]) is True
    assert people.matches(settings, case, SECOND, shown["approved_by"]) is True
    assert ASKER.encode() not in raw and SECOND.encode() not in raw


def test_lifting_a_hold_and_release_now_wait_for_a_second_person(platform: Platform) -> None:
    """`release` lifted the hold and rescheduled destruction on one person's word."""
    settings, runs = platform.settings, ScheduledRuns()
    registry = TenantRegistry(settings)
    hold = keep_statement(settings, "acme", "hold", name=ASKER, reason="court order 12/345")
    place_hold(settings, runs, "acme", hold)
    case = _acknowledged(platform, runs, days=None)
    assert AuditTrail.open(settings, case).state().destruction_held
    for now in (False, True):
        lift = keep_statement(settings, "acme", "hold", name=ASKER)
        asked = release_hold(settings, runs, "acme", lift, now=now)
        assert isinstance(asked, Approval)
        assert asked.action == ("lift-hold-now" if now else "lift-hold")
        assert registry.get("acme").legal_hold  # still on hold
        assert AuditTrail.open(settings, case).state().schedule is None
        with pytest.raises(TenantError, match="cannot approve it"):
            approve(settings, runs, asked.ref, _approval(settings, "acme", ASKER))
    first, later = pending_approvals(settings, "acme")
    outcome = approve(settings, runs, first.ref, _approval(settings, "acme", SECOND))
    assert not registry.get("acme").legal_hold and len(outcome.rescheduled) == 1
    with pytest.raises(TenantError, match="not on legal hold"):  # the other one is moot now
        approve(settings, runs, later.ref, _approval(settings, "acme", SECOND))
    assert [p.ref for p in pending_approvals(settings, "acme")] == [later.ref]


def test_a_postponement_into_the_last_week_waits_for_a_second_person(platform: Platform) -> None:
    settings, runs = platform.settings, ScheduledRuns()
    case = _acknowledged(platform, runs, days=None)
    schedule = AuditTrail.open(settings, case).state().schedule
    assert schedule is not None
    latest = latest_destruction_start(schedule.deadline, lingering(settings)[0])
    said = keep_statement(settings, "acme", "postponement", name=ASKER)
    sooner = postpone_destruction(settings, runs, case, latest - timedelta(days=20), said)
    assert not isinstance(sooner, Approval)  # well before the limit: one person is enough
    at_the_limit = postpone_destruction(settings, runs, case, latest - timedelta(hours=1), said)
    assert isinstance(at_the_limit, Approval) and at_the_limit.action == "postpone-to-limit"
    assert AuditTrail.open(settings, case).state().schedule == sooner
    outcome = approve(settings, runs, at_the_limit.ref, _approval(settings, "acme", SECOND))
    assert outcome.rescheduled[0].scheduled_for == latest - timedelta(hours=1)
    assert outcome.rescheduled[0].scheduled_for > datetime.now(UTC)
