"""The evidence an auditor checks: one certificate whatever crashes happen during destruction,
`offboard audit verify` catching any tampering, deadlines flagged, incidents recorded."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offboarding.backup.backup import take_backup
from offboarding.cli import main
from offboarding.core.canonical import canonical_json
from offboarding.core.errors import IsolationBreachError
from offboarding.core.faults import InjectedCrash
from offboarding.core.signing import Signer, load_public_key
from offboarding.evidence.archive import verify_archive
from offboarding.evidence.incidents import check_export_isolation, record_incident
from offboarding.export import export as stages
from offboarding.locations import DEFAULT_ORDER, scratch_dir
from offboarding.scheduling.deadlines import case_deadlines
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events
from tests.conftest import Platform
from tests.helpers import acknowledge, destroy_everything, export_and_deliver, record_plan

CRASH_POINTS = [
    *(f"destroy:{name}" for name in DEFAULT_ORDER),
    *(f"verify:{name}" for name in DEFAULT_ORDER),
    "postgres:batch-deleted#3",  # mid-delete, after a committed batch
    "audit:signature-written#2",  # an audit event half written during destruction
    "certify:certificates-signed",
    "certify:certificates-written",
    "certify:reports-signed",
    "certify:reports-written",
]


def archive_root(platform: Platform) -> Path:
    return Path(platform.settings.store_url("archive").removeprefix("file://"))


def audit_verify(platform: Platform, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    public_key = platform.settings.keys_dir / "signing-ed25519.pub.pem"
    code = main(["audit", "verify", str(archive_root(platform)), "--public-key", str(public_key)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_any_destruction_step_then_a_rerun_gives_one_certificate(
    platform: Platform, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_backup(platform.settings, "acme")
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    neighbours = platform.fingerprint("globex")

    monkeypatch.setenv("OFFBOARD_FAULT", point)
    with pytest.raises(InjectedCrash):
        destroy_everything(platform, case)
    monkeypatch.delenv("OFFBOARD_FAULT")
    archived = destroy_everything(platform, case)
    again = destroy_everything(platform, case)  # and a third run changes nothing
    assert again.sha256 == archived.sha256

    certificates = sorted((archive_root(platform) / "certificates" / "acme").iterdir())
    assert [p.name for p in certificates] == [f"{case.case_id}.json", f"{case.case_id}.json.sig"]
    trail = AuditTrail(platform.settings, case, Signer.load_or_create(platform.settings.keys_dir))
    assert len(trail.of(events.CertificateRecorded)) == 1
    assert len(trail.of(events.Certified)) == 1
    left = platform.fingerprint("acme")
    assert all(t["rows"] == 0 for t in left["tables"].values())  # type: ignore[attr-defined]
    assert platform.fingerprint("globex") == neighbours
    public_key = load_public_key(Signer.load_or_create(platform.settings.keys_dir).public_pem)
    report = verify_archive(open_store(platform.settings.store_url("archive")), public_key)
    assert report.certificates == 1 and report.reports == 1


@pytest.fixture
def destroyed(platform: Platform) -> Platform:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    return platform


def tamper(path: Path, change: bytes | None = None) -> None:
    path.chmod(0o600)  # the archive's files are read-only: an attacker with write access
    data = bytearray(path.read_bytes())
    if change is None:
        data[len(data) // 2] ^= 0x20
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(change)


def test_an_intact_archive_verifies(
    destroyed: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = audit_verify(destroyed, capsys)
    assert code == 0, output
    assert "1 case certificate(s) and 1 report(s)" in output


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("certificates/acme/*.json", "signature does not match"),
        ("reports/acme/*.html", "signature does not match"),
        ("cases/acme/*/events/00003-*.json", "signature does not match"),
    ],
)
def test_a_tampered_certificate_report_or_chain_entry_is_named(
    destroyed: Platform, capsys: pytest.CaptureFixture[str], target: str, expected: str
) -> None:
    path = next(archive_root(destroyed).glob(target))
    tamper(path)
    code, output = audit_verify(destroyed, capsys)
    assert code == 1
    assert expected in output and path.name in output


@pytest.mark.parametrize("target", ["certificates/acme/*.json", "cases/acme/*/events/00003-*.json"])
def test_a_tampered_document_that_no_longer_parses_is_a_signature_mismatch_not_an_error(
    destroyed: Platform, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A changed byte can break the JSON (a quote turned into a control character) or the date
    the key's validity is read from: still a document whose signature does not match."""
    path = next(archive_root(destroyed).glob(target))
    body = path.read_bytes()
    tamper(path, body.replace(b'"', b"\x02", 1))
    code, output = audit_verify(destroyed, capsys)
    assert code == 1 and "signature does not match" in output and path.name in output
    if target.startswith("cases/"):  # an event: its date says which key was valid
        at = body.index(b'"at"')
        tamper(path, body[: at + 6] + b"X" + body[at + 7 :])  # the date no longer parses
        code, output = audit_verify(destroyed, capsys)
        assert code == 1 and "signature does not match" in output and path.name in output


def test_a_removed_chain_entry_or_a_forged_certificate_signed_elsewhere_is_caught(
    destroyed: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    root = archive_root(destroyed)
    event = next(root.glob("cases/acme/*/events/00002-*.json"))
    for path in (event, Path(f"{event}.sig")):
        path.unlink()  # a directory entry: the file's own read-only mode does not prevent it
    code, output = audit_verify(destroyed, capsys)
    assert code == 1 and "missing or moved" in output


def test_a_certificate_that_disagrees_with_its_chain_is_caught_even_if_re_signed(
    destroyed: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone holding the signing key rewrites a count: the chain still contradicts it."""
    root = archive_root(destroyed)
    path = next(root.glob("certificates/acme/*.json"))
    document = json.loads(path.read_text())
    document["locations"][0]["items_before"] += 1
    body = canonical_json(document)
    tamper(path, body)
    tamper(Path(f"{path}.sig"), Signer.load_or_create(destroyed.settings.keys_dir).sign(body))
    code, output = audit_verify(destroyed, capsys)
    assert code == 1 and "differs from the certificate recorded in the audit chain" in output


def test_a_signed_and_chained_event_of_an_unknown_kind_fails_the_audit_loudly(
    destroyed: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record the auditor's tool cannot read is not skipped: a state computed around it
    would be a guess. (Signed with the key and chained: only its kind is wrong.)"""
    root = archive_root(destroyed)
    events = sorted(root.glob("cases/acme/*/events/*.json"))
    last = json.loads(events[-1].read_text())
    body = json.dumps(
        {**last, "seq": last["seq"] + 1, "kind": "telemetry", "once": None, "data": {},
         "prev": hashlib.sha256(events[-1].read_bytes()).hexdigest()},
        sort_keys=True,
    ).encode()  # fmt: skip
    path = events[-1].with_name(f"{last['seq'] + 1:05d}-telemetry.json")
    path.write_bytes(body)
    Path(f"{path}.sig").write_bytes(Signer.load_or_create(destroyed.settings.keys_dir).sign(body))
    code, output = audit_verify(destroyed, capsys)
    assert code == 1 and "unknown kind 'telemetry'" in output and path.name in output


def test_cases_near_or_past_their_deadline_are_flagged(
    platform: Platform, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    record_plan(platform, "acme", now + timedelta(days=40))
    record_plan(platform, "globex", now + timedelta(days=3))
    record_plan(platform, "initech", now - timedelta(hours=2))
    statuses = {c.tenant: c.status for c in case_deadlines(platform.settings, now)}
    assert statuses == {"acme": "scheduled", "globex": "due-soon", "initech": "overdue"}
    monkeypatch.setenv("OFFBOARD_HOME", str(platform.settings.home))
    code = main(["deadlines"])
    output = capsys.readouterr().out
    assert code == 1 and "overdue" in output and "due-soon" in output


def test_another_tenants_rows_in_an_export_stop_the_case_with_an_incident_record(
    platform: Platform,
) -> None:
    settings = platform.settings
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    exported = stages.export_snapshot(settings, case, inventory)
    scratch = scratch_dir(settings, case) / "export"
    part = next(p for p in exported.parts if p.table == "public.posts")
    path = scratch / part.source.removeprefix("scratch:")
    table = pq.read_table(path)
    column = table.schema.get_field_index("tenant_id")
    foreign = table.slice(0, 1).set_column(
        column, table.schema.field(column), pa.array(["globex"], pa.string())
    )
    pq.write_table(pa.concat_tables([table, foreign]), path)  # a leaked row, as a bug would

    with pytest.raises(IsolationBreachError, match="1 row") as breach:
        check_export_isolation(
            settings,
            case,
            inventory,
            exported,
            stages.part_opener(settings, case, stages.generations_of(inventory)),
        )
    key = record_incident(settings, case, breach.value, stage="export")
    record = json.loads((archive_root(platform) / key).read_text())
    assert record["clause"] == "2.2.4"
    assert record["affected_tenants"] == ["globex"]
    assert record["approximate_records"] == 1 and record["approximate_people"] == 1
    assert record["categories_of_data"] == ["rows of public.posts"]
    detected = datetime.fromisoformat(record["detected_at"])
    assert datetime.fromisoformat(record["notify_clients_by"]) - detected == timedelta(hours=72)
    trail = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))
    assert trail.of(events.IncidentRecorded)[0].record == key


def test_rows_pointing_at_another_tenants_files_stop_the_case_with_an_incident(
    platform: Platform,
) -> None:
    other = next(platform.files.list_objects("tenants/globex/")).key
    platform.query(
        "UPDATE documents SET object_key = %s WHERE id = "
        "(SELECT min(id) FROM documents WHERE tenant_id = 'acme')",
        other,
    )
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    with pytest.raises(IsolationBreachError, match="incident is recorded"):
        stages.take_inventory(platform.settings, case)
    records = list((archive_root(platform) / "incidents" / "acme").rglob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["affected_tenants"] == ["globex"] and record["stage"] == "inventory"
    assert other not in records[0].read_text()  # the record names no file
