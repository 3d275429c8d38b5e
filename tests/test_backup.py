"""Backups (encrypted per tenant, in two locations) and what destruction does to them: deleted
everywhere, the key crypto-shredded, the canary dead, the neighbours' backups intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offboarding.backup.backup import restore_check, take_backup
from offboarding.core.errors import IntegrityError, KeyDestroyedError, TenantError
from offboarding.keys.keyring import open_keyring
from offboarding.locations.backups import backup_prefix
from offboarding.registry import TenantRegistry
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

NEIGHBOURS = ("acme-corp", "globex", "initech")


def backup_files(platform: Platform, tenant: str) -> dict[str, list[str]]:
    return {
        url: sorted(o.key for o in open_store(url).list_objects(backup_prefix(tenant)))
        for url in platform.settings.backup_store_urls()
    }


def test_a_backup_is_encrypted_in_every_location_and_restores(platform: Platform) -> None:
    result = take_backup(platform.settings, "acme")
    listings = backup_files(platform, "acme")
    assert len(listings) == 2
    for keys in listings.values():
        assert len(keys) == 2
        assert keys[0].endswith(f"/{result.backup_id}/backup.json")
        assert keys[1].endswith(".zip.enc")
    first = platform.settings.backup_store_urls()[0]
    root = Path(first.removeprefix("file://"))
    sealed = (root / listings[first][1]).read_bytes()
    assert not sealed.startswith(b"PK") and b"manifest.json" not in sealed  # no ZIP in clear
    email = platform.query("SELECT email FROM users WHERE tenant_id = 'acme' LIMIT 1")[0][0]
    assert str(email).encode() not in sealed

    checks = restore_check(platform.settings, "acme")
    assert [c.location for c in checks] == platform.settings.backup_store_urls()
    assert all(c.rows == result.rows and c.backup_id == result.backup_id for c in checks)


def test_a_tampered_backup_fails_its_restore_check(platform: Platform) -> None:
    take_backup(platform.settings, "globex")
    url = platform.settings.backup_store_urls()[1]
    key = next(k for k in backup_files(platform, "globex")[url] if k.endswith(".enc"))
    path = Path(url.removeprefix("file://")) / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="altered"):
        restore_check(platform.settings, "globex")


def test_a_frozen_tenant_is_not_backed_up(platform: Platform) -> None:
    TenantRegistry(platform.settings).freeze("initech", "initech-0123456789ab")
    with pytest.raises(TenantError, match="only active tenants"):
        take_backup(platform.settings, "initech")
    assert backup_files(platform, "initech") == {
        url: [] for url in platform.settings.backup_store_urls()
    }


def test_destruction_removes_backups_everywhere_and_shreds_the_key(platform: Platform) -> None:
    settings = platform.settings
    for tenant in ("acme", *NEIGHBOURS):
        take_backup(settings, tenant)
    neighbours_backups = {t: backup_files(platform, t) for t in NEIGHBOURS}
    neighbours_before = {t: platform.fingerprint(t) for t in NEIGHBOURS}
    keyring = open_keyring(settings)
    assert keyring.canary("acme").decrypts

    case = platform.case("acme")
    export_and_deliver(platform, case)
    archived = destroy_everything(platform, case)

    assert backup_files(platform, "acme") == {url: [] for url in settings.backup_store_urls()}
    assert keyring.state("acme").state == "destroyed"
    canary = keyring.canary("acme")
    assert canary.present and not canary.decrypts
    with pytest.raises(KeyDestroyedError):
        keyring.data_key("acme")
    with pytest.raises((TenantError, KeyDestroyedError)):
        take_backup(settings, "acme")  # no new copy after destruction
    with pytest.raises(KeyDestroyedError):
        restore_check(settings, "acme")

    assert {t: backup_files(platform, t) for t in NEIGHBOURS} == neighbours_backups
    assert {t: platform.fingerprint(t) for t in NEIGHBOURS} == neighbours_before
    assert all(keyring.canary(t).decrypts for t in NEIGHBOURS)
    assert restore_check(settings, "globex")

    archive = open_store(settings.store_url("archive"))
    with archive.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    by_location = {loc["location"]: loc for loc in certificate["locations"]}
    assert by_location["backups"]["items_before"] == 4 and by_location["backups"]["remaining"] == 0
    assert by_location["keys"]["method"] == "purge"
    assert by_location["keys"]["details"]["canary"] == "does not decrypt"
    assert by_location["keys"]["details"]["key_state"] == "destroyed"
    assert certificate["data_backed_up"] is True
    assert certificate["backup_locations"] == settings.backup_store_urls()
    assert certificate["deadline_met"] is True
