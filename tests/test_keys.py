"""Signing keys rotate: records name their key, the published list gives each key its period
and carries trust from each key to its successor, and what a retired key signed still
verifies while anything it signs later does not."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from offboarding.cli import main
from offboarding.core.canonical import compact_json
from offboarding.core.errors import IntegrityError
from offboarding.core.records import CaseRef
from offboarding.core.signing import (
    KeyList,
    Signer,
    fingerprint,
    load_key_list,
    rotate_signing_key,
)
from offboarding.delivery.receipts import downloads, record_download
from offboarding.evidence.archive import latest_key_list, verify_archive
from offboarding.stores import open_store
from offboarding.trail import AuditTrail
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


def _archive(platform: Platform) -> Path:
    return Path(platform.settings.store_url("archive").removeprefix("file://"))


@pytest.fixture
def rotated(platform: Platform) -> tuple[Platform, CaseRef, CaseRef, str, str]:
    """acme certified under the first key, then a rotation, then globex under the second."""
    settings = platform.settings
    before, after = platform.case("acme"), platform.case("globex")
    export_and_deliver(platform, before)
    destroy_everything(platform, before)
    retired, new = rotate_signing_key(settings.keys_dir)
    export_and_deliver(platform, after)
    destroy_everything(platform, after)
    return platform, before, after, retired.fingerprint, new.fingerprint


def test_records_of_both_keys_verify_against_the_published_list(
    rotated: tuple[Platform, CaseRef, CaseRef, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    platform, before, after, old, new = rotated
    settings = platform.settings
    for case, key in ((before, old), (after, new)):
        trail = AuditTrail.open(settings, case)
        assert {e.document["signing_key"] for e in trail.events()} == {key}
    listed = load_key_list(settings.keys_dir)
    assert [k.fingerprint for k in listed.keys] == [old, new]
    assert listed.keys[0].valid_until == listed.keys[1].valid_from
    assert listed.keys[1].introduced_by == old

    archive = open_store(settings.store_url("archive"))
    report = verify_archive(archive, listed)
    assert report.certificates == 2 and report.signing_keys == {old, new}
    published = latest_key_list(archive)
    assert published is not None and published[1] == listed  # the archive has the new list
    # With the current key alone, the first case's records name a key it does not know.
    with pytest.raises(IntegrityError, match="not in the operator's key list"):
        verify_archive(archive, KeyList.of(listed.keys[1].public_key))
    list_file = settings.keys_dir / "signing-keys.json"
    code = main(["audit", "verify", str(_archive(platform)), "--key-list", str(list_file)])
    output = capsys.readouterr().out
    assert code == 0 and "signed by 2 key(s) of the list" in output, output


def test_a_retired_key_cannot_sign_a_later_record(
    rotated: tuple[Platform, CaseRef, CaseRef, str, str],
) -> None:
    """Whoever kept the retired private key appends an event to a case, signed and chained."""
    platform, _, after, old, _ = rotated
    settings = platform.settings
    retired_pem = (settings.keys_dir / "retired" / f"{old.replace(':', '-')}.pem").read_bytes()
    retired = serialization.load_pem_private_key(retired_pem, password=None)
    assert isinstance(retired, Ed25519PrivateKey)
    events = sorted(
        (_archive(platform) / "cases" / "globex" / after.case_id / "events").glob("*.json")
    )
    last = json.loads(events[-1].read_bytes())
    previous = hashlib.sha256(events[-1].read_bytes()).hexdigest()
    body = compact_json(
        {**last, "seq": last["seq"] + 1, "prev": previous, "signing_key": old,
         "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}  # an hour after retirement
    )  # fmt: skip
    forged = events[-1].with_name(f"{last['seq'] + 1:05d}-{last['kind']}.json")
    forged.write_bytes(body)
    Path(f"{forged}.sig").write_bytes(retired.sign(body))
    archive = open_store(settings.store_url("archive"))
    with pytest.raises(IntegrityError, match="signed with a key outside its period"):
        verify_archive(archive, load_key_list(settings.keys_dir))


def test_a_key_the_previous_one_did_not_introduce_is_refused(
    rotated: tuple[Platform, CaseRef, CaseRef, str, str],
) -> None:
    platform, *_ = rotated
    document = json.loads((platform.settings.keys_dir / "signing-keys.json").read_bytes())
    impostor = Ed25519PrivateKey.generate().public_key()
    document["keys"][1]["fingerprint"] = fingerprint(impostor)
    document["keys"][1]["public_key"] = impostor.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(IntegrityError, match="was not introduced by its predecessor"):
        KeyList.from_json(json.dumps(document).encode())


def test_download_receipts_signed_before_a_rotation_still_read(platform: Platform) -> None:
    settings, case = platform.settings, platform.case("acme")
    record_download(
        settings, case, part="p.zip.age", sent=5, size=5, via="stream", address="127.0.0.1"
    )
    first = Signer.load_or_create(settings.keys_dir).fingerprint
    rotate_signing_key(settings.keys_dir)
    record_download(
        settings, case, part="p.zip.age", sent=5, size=5, via="stream", address="127.0.0.1"
    )
    receipts = downloads(settings, case)
    assert [r.signing_key == first for r in receipts] == [True, False]
