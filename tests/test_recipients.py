"""Bundles only the client can open: a tenant with an age recipient receives every part
encrypted to it; the real `age` tool (Debian's package) decrypts it with the client's identity,
and the decrypted bundle verifies. The operator's side can check the ciphertext, not open it."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from exporters.bundle import verify_bundle
from offboarding.core.errors import IntegrityError, TenantError
from offboarding.core.signing import Signer
from offboarding.delivery.mail import read_outbox
from offboarding.export import export as stages
from tests.conftest import Platform
from tests.helpers import bundle_files, export_and_deliver


def _identity(directory: Path, name: str) -> tuple[Path, str]:
    """A client's age identity, made by the real age-keygen; returns it and its recipient."""
    identity = directory / f"{name}.agekey"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return identity, recipient


def test_a_bundle_encrypted_to_the_client_opens_only_with_its_identity(
    platform: Platform, tmp_path: Path
) -> None:
    identity, recipient = _identity(tmp_path, "acme")
    stranger, _ = _identity(tmp_path, "stranger")
    platform.query("UPDATE tenants SET age_recipient = %s WHERE id = 'acme'", recipient)
    case = platform.case("acme")
    inventory, delivery, delivered = export_and_deliver(platform, case)

    assert delivered.name.endswith(".zip.age")
    assert delivered.read_bytes().startswith(b"age-encryption.org/v1\n")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(delivered)
    refused = subprocess.run(
        ["age", "-d", "-i", str(stranger), str(delivered)], capture_output=True, check=False
    )
    assert refused.returncode != 0 and not refused.stdout

    clear = tmp_path / delivered.name.removesuffix(".age")
    subprocess.run(["age", "-d", "-i", str(identity), "-o", str(clear), str(delivered)], check=True)
    part = delivery.parts[0]
    assert hashlib.sha256(delivered.read_bytes()).hexdigest() == part.sha256
    assert hashlib.sha256(clear.read_bytes()).hexdigest() == part.plaintext_sha256
    public_key = Signer.load_or_create(platform.settings.keys_dir).public_pem
    report = verify_bundle([clear], public_key)
    assert report.complete and report.rows == inventory.total_rows

    notice = next((platform.settings.root / "outbox").glob(f"{case.case_id}-delivery-*.eml"))
    body = read_outbox(notice).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "age -d -i" in body and str(part.plaintext_sha256) in body


def test_a_recipient_that_is_no_age_key_stops_before_anything_is_written(
    platform: Platform,
) -> None:
    platform.query("UPDATE tenants SET age_recipient = 'ssh-rsa AAAA' WHERE id = 'acme'")
    case = platform.case("acme")
    with pytest.raises(TenantError, match="not an age X25519 public key"):
        export_and_deliver(platform, case)
    assert not list((platform.settings.root / "stores").glob("delivery/bundles/acme/*/*.age"))


def test_a_ciphertext_changed_in_the_store_fails_verification(
    platform: Platform, tmp_path: Path
) -> None:
    _, recipient = _identity(tmp_path, "acme")
    platform.query("UPDATE tenants SET age_recipient = %s WHERE id = 'acme'", recipient)
    settings, case = platform.settings, platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    bundle = stages.package(
        settings, case, inventory, stages.export_snapshot(settings, case, inventory)
    )
    assert bundle.encrypted_to == recipient
    stored = bundle_files(bundle)[0]
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="stored ciphertext differs"):
        stages.verify_package(settings, case, bundle, inventory)
