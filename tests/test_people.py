"""What people say stays in the ledger under an opaque reference; the archive names them by
pseudonyms under a per-case key, answerable while the key exists and by nobody once the
contact data is forgotten (clause 1.1.4)."""

from __future__ import annotations

import hashlib
import json

import pytest

from offboarding.cli import main
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer, load_public_key
from offboarding.evidence.archive import verify_archive
from offboarding.people import forget_tenant, keep_statement, matches, pseudonym, statement
from offboarding.runs import AcknowledgementInput
from offboarding.scheduling.scheduling import schedule_destruction
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events
from tests.conftest import Platform
from tests.helpers import export_and_deliver

NAME = "Zéphyrine Acme-Legal"


class _ScheduledRuns:
    """Scheduling's one orchestrator call, answered with a fixed run id."""

    def schedule_destruction(self, case: CaseRef, **_: object) -> str:
        return "00000000-0000-0000-0000-00000000d357"


def test_a_statement_is_kept_under_a_reference_and_resolved_for_its_tenant_and_kind(
    platform: Platform,
) -> None:
    settings = platform.settings
    ref = keep_statement(settings, "acme", "acknowledgement", name=f"  {NAME} ", note="all there")
    assert ref.startswith("st-") and len(ref) == 35 and NAME not in ref
    said = statement(settings, ref, "acme", "acknowledgement")
    assert said.fields == {"name": NAME, "note": "all there"}
    with pytest.raises(TenantError, match="not a acknowledgement statement of tenant 'globex'"):
        statement(settings, ref, "globex", "acknowledgement")  # another tenant's reference
    with pytest.raises(TenantError, match="not a hold statement"):
        statement(settings, ref, "acme", "hold")
    with pytest.raises(TenantError, match="is not a statement reference"):
        statement(settings, NAME, "acme", "acknowledgement")  # words instead of a reference
    with pytest.raises(TenantError, match="needs the name"):
        keep_statement(settings, "acme", "hold", reason="court order")
    with pytest.raises(TenantError, match="has no field"):
        keep_statement(settings, "acme", "termination", reason="ended", name=NAME)


def test_pseudonyms_are_keyed_per_case_and_tolerate_spacing_case_and_unicode_form(
    platform: Platform,
) -> None:
    settings = platform.settings
    one, two = platform.case("acme"), platform.case("acme")
    recorded = pseudonym(settings, one, NAME)
    assert recorded.startswith("hmac-sha256:")
    assert recorded != "hmac-sha256:" + hashlib.sha256(NAME.encode()).hexdigest()
    assert pseudonym(settings, one, NAME) == recorded  # stable within the case
    assert pseudonym(settings, two, NAME) != recorded  # another case, another key
    decomposed = "Ze\u0301phyrine  ACME-legal "  # NFD, other case, other spacing
    assert matches(settings, one, decomposed, recorded) is True
    assert matches(settings, one, "Zephyrine Acme-Legal", recorded) is False
    assert matches(settings, two, NAME, recorded) is False


def test_who_acknowledged_is_provable_until_the_contact_data_is_forgotten(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, case = platform.settings, platform.case("acme")
    export_and_deliver(platform, case)
    ref = keep_statement(settings, "acme", "acknowledgement", name=NAME, note="checked")
    schedule_destruction(
        settings,
        _ScheduledRuns(),
        case,
        AcknowledgementInput(statement=ref),  # type: ignore[arg-type]
    )
    trail = AuditTrail.open(settings, case)
    (acknowledged,) = trail.of(events.Acknowledged)
    assert acknowledged.statement == ref and acknowledged.note_given
    assert acknowledged.by_pseudonym and acknowledged.by_sha256 is None
    archive = open_store(settings.store_url("archive"))
    raw = b"".join(e.body for e in trail.events())
    assert NAME.encode() not in raw and b"checked" not in raw
    assert hashlib.sha256(NAME.encode()).hexdigest().encode() not in raw
    assert matches(settings, case, NAME, acknowledged.by_pseudonym) is True
    for name, value in (("HOME", settings.home), ("DATABASE_URL", platform.dsn),
                        ("DATAMAP", settings.datamap)):  # fmt: skip
        monkeypatch.setenv(f"OFFBOARD_{name}", str(value))
    assert main(["audit", "person", case.case_id, NAME.lower()]) == 0
    assert f"matches: event {acknowledged_seq(trail):05d} (acknowledged)" in capsys.readouterr().out
    assert main(["audit", "person", case.case_id, "Somebody Else"]) == 1

    forgotten = forget_tenant(settings, "acme")
    assert (forgotten.statements, forgotten.case_keys) == (1, 1)
    assert matches(settings, case, NAME, acknowledged.by_pseudonym) is None  # nobody can tell
    with pytest.raises(TenantError, match="forgotten"):
        statement(settings, ref, "acme", "acknowledgement")
    assert main(["audit", "person", case.case_id, NAME]) == 3
    assert "nobody can link a name to it" in capsys.readouterr().out
    # The record itself is untouched and still verifies.
    public_key = load_public_key(Signer.load_or_create(settings.keys_dir).public_pem)
    assert verify_archive(archive, public_key).events == len(trail.events())


def acknowledged_seq(trail: AuditTrail) -> int:
    return next(e.seq for e in trail.recorded() if isinstance(e.data, events.Acknowledged))


def test_a_record_from_before_pseudonyms_still_reads(platform: Platform) -> None:
    """Archives outlive releases: an `acknowledged` event with a plain digest parses."""
    earlier = json.loads(
        '{"by_sha256": "%s", "at": "2026-01-05T10:00:00+00:00", '
        '"days_until_destruction": null, "note_given": false}' % ("ab" * 32)
    )
    parsed = events.parse_event_data("acknowledged", earlier, where="test")
    assert isinstance(parsed, events.Acknowledged) and parsed.by_pseudonym is None


def test_a_case_suspended_by_release_0_1_resumes_with_its_old_form(platform: Platform) -> None:
    """Its form asked for a name: typed there, the name is moved to a statement as the case
    resumes; sent by the new commands, the old field carries the statement's reference."""
    settings, case = platform.settings, platform.case("acme")
    export_and_deliver(platform, case)
    typed = AcknowledgementInput.model_validate({"acknowledged_by": NAME, "note": "ok"})
    schedule_destruction(settings, _ScheduledRuns(), case, typed)  # type: ignore[arg-type]
    (acknowledged,) = AuditTrail.open(settings, case).of(events.Acknowledged)
    assert acknowledged.statement and acknowledged.note_given
    assert matches(settings, case, NAME, acknowledged.by_pseudonym or "") is True

    ref = keep_statement(settings, "acme", "acknowledgement", name=NAME)
    sent = AcknowledgementInput(statement=ref).as_run_input(legacy_form=True)
    assert sent == {"acknowledged_by": ref}
    assert AcknowledgementInput.model_validate(sent).statement == ref
    with pytest.raises(ValueError, match="statement"):
        AcknowledgementInput.model_validate({"days_until_destruction": 3})


def test_the_forms_schemas_refuse_words_where_a_reference_belongs() -> None:
    """What Prefect's server checks before a flow sees an input or a parameter."""
    from prefect.utilities.schema_tools import ValidationError, validate

    from flows.adapter import Acknowledgement, Attestation
    from flows.offboard import offboard
    from flows.support import legal_hold

    ref = "st-" + "a" * 32
    schemas = {
        "acknowledgement": Acknowledgement.model_json_schema(by_alias=True),
        "attestation": Attestation.model_json_schema(by_alias=True),
        "offboard": offboard.parameters.model_dump(),
        "legal-hold": legal_hold.parameters.model_dump(),
    }
    extra = {
        "attestation": {"action": "done", "evidence": "T-1"},
        "offboard": {"tenant": "acme"},
        "legal-hold": {"tenant": "acme", "action": "place"},
    }
    field = {"offboard": "reason_ref"}
    for name, schema in schemas.items():
        given = {**extra.get(name, {})}
        validate({**given, field.get(name, "statement"): ref}, schema, raise_on_error=True)
        with pytest.raises(ValidationError):
            validate({**given, field.get(name, "statement"): NAME}, schema, raise_on_error=True)
    with pytest.raises(ValidationError):  # the acknowledgement names someone, always
        validate({"days_until_destruction": 5}, schemas["acknowledgement"], raise_on_error=True)


def test_the_contract_terminated_event_refuses_words_before_it_is_sent() -> None:
    """The offboard deployment's trigger would refuse the run on the server, which says so only
    in its log: the event is refused here instead, with what to send."""
    from flows.adapter import emit_contract_terminated
    from offboarding.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="statement reference"):
        emit_contract_terminated("acme", NAME)
