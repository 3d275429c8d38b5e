"""Destruction obeys the case's signed trail, not its caller (issue 26, item 1): every stage
that changes anything refuses, with nothing touched, unless the trail shows this case
delivered, acknowledged and planned for destruction by now, with no hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest

from offboarding.core.errors import IntegrityError, UnauthorisedDestructionError
from offboarding.core.records import CaseRef
from offboarding.destruction import destruction
from offboarding.destruction.warrant import require_agreement, require_warrant
from offboarding.locations import destruction_order
from offboarding.stores import open_store
from offboarding.trail import AuditTrail
from tests.conftest import Platform
from tests.helpers import acknowledge, destroy_everything, export_and_deliver


def _every_destructive_stage_refuses(platform: Platform, case: CaseRef, says: str) -> None:
    settings = platform.settings
    now = datetime.now(UTC)
    with pytest.raises(UnauthorisedDestructionError, match=says):
        destruction.check_warrant(settings, case)
    with pytest.raises(UnauthorisedDestructionError, match=says):
        destruction.check_isolation(settings, case)
    for name in destruction_order(settings):
        with pytest.raises(UnauthorisedDestructionError, match=says):
            destruction.destroy_location(settings, case, name)
    with pytest.raises(UnauthorisedDestructionError, match=says):
        destruction.certify(
            settings, case, destruction.DestructionEvidence(now, removals={}, remaining={})
        )


def test_an_active_tenant_with_a_made_up_case_id_is_refused_and_nothing_is_touched(
    platform: Platform,
) -> None:
    """The review's attack: a destroy run for the active tenant globex with a case id nobody
    opened used to delete every one of its rows."""
    before = platform.fingerprint("globex")
    case = CaseRef(tenant="globex", case_id="globex-000000000000")
    _every_destructive_stage_refuses(platform, case, "no audit trail for this case")
    assert platform.fingerprint("globex") == before
    archive = open_store(platform.settings.store_url("archive"))
    assert not list(archive.list_objects("cases/globex/"))  # no trail made up either
    with pytest.raises(UnauthorisedDestructionError) as unknown:
        require_warrant(platform.settings, case)
    assert not unknown.value.may_pass_later  # refused for good, at once
    with pytest.raises(UnauthorisedDestructionError, match="names another tenant"):
        require_warrant(platform.settings, CaseRef(tenant="acme", case_id="globex-000000000000"))


def test_a_delivered_case_is_not_destroyed_before_its_acknowledgement(platform: Platform) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    before = platform.fingerprint("acme")
    _every_destructive_stage_refuses(
        platform, case, "does not show the case acknowledged or deemed delivered"
    )
    assert platform.fingerprint("acme") == before


def test_destruction_waits_for_the_time_the_trail_planned_and_takes_the_trails_dates(
    platform: Platform,
) -> None:
    settings = platform.settings
    case = platform.case("acme")
    export_and_deliver(platform, case)
    planned = acknowledge(settings, case, grace=timedelta(days=30))
    assert planned is not None
    before = platform.fingerprint("acme")
    _every_destructive_stage_refuses(platform, case, "planned for .* not before")
    assert platform.fingerprint("acme") == before
    # An earlier plan being recorded as the run starts: the destroy flow asks again (only then).
    with pytest.raises(UnauthorisedDestructionError) as early:
        require_warrant(settings, case)
    assert early.value.may_pass_later

    later = require_warrant(settings, case, now=planned.scheduled_for)
    assert (later.acknowledged_at, later.deadline) == (planned.acknowledged_at, planned.deadline)
    assert later.deadline == planned.acknowledged_at + timedelta(days=90)
    require_agreement(later, tenant="acme", deadline=planned.deadline)  # agrees: fine
    for wrong in (
        {"tenant": "globex"},
        {"acknowledged_at": planned.acknowledged_at - timedelta(days=60)},
        {"deadline": planned.deadline + timedelta(days=365)},
    ):
        with pytest.raises(UnauthorisedDestructionError, match="disagree"):
            require_agreement(later, **wrong)  # type: ignore[arg-type]


def test_a_forged_event_in_the_trail_refuses_destruction(platform: Platform) -> None:
    settings = platform.settings
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(settings, case)
    trail = AuditTrail.open(settings, case)
    last = trail.events()[-1]
    forged = last.body.replace(b'"seq"', b'"seq" ', 1)
    stored = Path(urlparse(settings.store_url("archive")).path) / last.key
    stored.chmod(0o644)  # the local write-once store leaves its files read-only
    stored.write_bytes(forged)
    with pytest.raises(UnauthorisedDestructionError, match="does not verify"):
        destruction.check_warrant(settings, case)


def test_a_tenant_table_created_after_the_export_stops_destruction_naming_it(
    platform: Platform,
) -> None:
    """Rows in a table the frozen inventory never saw were never delivered: they used to be
    destroyed silently and the case certified."""
    case = platform.case("acme")
    export_and_deliver(platform, case)
    platform.query(
        "CREATE TABLE late_notes (id bigint PRIMARY KEY, tenant_id text NOT NULL, body text);"
        "CREATE INDEX ON late_notes (tenant_id);"
        "INSERT INTO late_notes VALUES (1, 'acme', 'written after the export')"
    )
    before = platform.fingerprint("acme")
    with pytest.raises(IntegrityError, match=r"public\.late_notes .*not in the case's frozen"):
        destroy_everything(platform, case)
    assert platform.fingerprint("acme") == before
    assert platform.query("SELECT count(*) FROM late_notes") == [(1,)]
