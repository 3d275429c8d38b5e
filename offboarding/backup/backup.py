"""Per-tenant backups: the same snapshot export and signed bundle the client gets, encrypted
with the tenant's own data key (AES-256-GCM) and written to every backup location.

    backups/<tenant>/<backup id>/<part>.zip.enc    the encrypted bundle part(s)
    backups/<tenant>/<backup id>/backup.json       how to open them: key id, nonce, tag, digests

`backup.json` is written last in each location, so a backup without it is incomplete (and
still removed by destruction, which empties the whole prefix). Only active tenants are backed
up: once a tenant is frozen for offboarding, no new copy is made, and once its key is destroyed
none can be.

`restore_check` decrypts the newest backup in each location and verifies it as a bundle
(signature, every entry's sha256), so the operator knows backups work before relying on them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from exporters.bundle import verify_bundle
from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError, MissingDataError, TenantError
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer
from offboarding.export.export import export_snapshot, inventory_of, package
from offboarding.keys.encryption import Sealed, decrypt_stream, encrypt_stream
from offboarding.keys.keyring import open_keyring
from offboarding.locations import scratch_dir
from offboarding.locations.backups import backup_prefix
from offboarding.registry import TenantRegistry
from offboarding.stores import ObjectStore, open_store

__all__ = ["BackupResult", "RestoreCheck", "restore_check", "take_backup"]

_FORMAT = "tenant-offboarding-backup/1"


def _associated_data(tenant: str, backup_id: str, name: str) -> bytes:
    """Binds a ciphertext to its tenant, backup and part: none can pass for another."""
    return f"{_FORMAT}|{tenant}|{backup_id}|{name}".encode()


@dataclass(frozen=True)
class BackupResult:
    tenant: str
    backup_id: str
    key_id: str
    locations: list[str]
    parts: int
    rows: int
    files: int
    bytes: int


def take_backup(settings: Settings, tenant: str) -> BackupResult:
    record = TenantRegistry(settings).get(tenant)
    if record.status != "active":
        raise TenantError(
            f"tenant {tenant!r} is {record.status}: only active tenants are backed up, so no "
            "new copy appears while it is offboarded"
        )
    stores = [open_store(url) for url in settings.backup_store_urls()]
    keyring = open_keyring(settings)
    keyring.create(tenant)
    key_id, key = keyring.data_key(tenant)
    taken_at = datetime.now(UTC)
    backup_id = f"{taken_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    work = CaseRef(tenant=tenant, case_id=f"{tenant}-{secrets.token_hex(6)}")  # scratch only
    try:
        inventory = inventory_of(settings, work)
        exported = export_snapshot(settings, work, inventory, record=False)
        bundle = package(settings, work, inventory, exported, record=False)
        prefix = f"{backup_prefix(tenant)}{backup_id}/"
        sealed_parts: list[dict[str, object]] = []
        for part in bundle.parts:
            source = Path(part.path)
            name = f"{source.name}.enc"
            encrypted = source.with_name(name)
            with source.open("rb") as plain, encrypted.open("wb") as out:
                sealed = encrypt_stream(
                    key, plain, out.write, _associated_data(tenant, backup_id, name)
                )
            source.unlink()  # the plaintext copy goes as soon as it is sealed
            crash_point("backup:part-sealed")
            for store in stores:
                stored = store.put_file(prefix + name, encrypted)
                if stored.sha256 != sealed.ciphertext_sha256:
                    raise IntegrityError(f"{store.url}: {prefix}{name} stored with other bytes")
            sealed_parts.append({"name": name, **sealed.__dict__})
            encrypted.unlink()
        metadata = {
            "format": _FORMAT,
            "tenant": tenant,
            "backup_id": backup_id,
            "taken_at": taken_at.isoformat(),
            "snapshot_time": exported.snapshot_time.isoformat(),
            "key_id": key_id,
            "algorithm": "AES-256-GCM",
            "manifest_sha256": bundle.manifest_sha256,
            "rows": bundle.rows,
            "files": bundle.files,
            "parts": sealed_parts,
        }
        body = canonical_json(metadata)
        for store in stores:
            store.put_bytes(prefix + "backup.json", body)
    finally:
        shutil.rmtree(scratch_dir(settings, work), ignore_errors=True)
    return BackupResult(
        tenant=tenant,
        backup_id=backup_id,
        key_id=key_id,
        locations=[store.url for store in stores],
        parts=len(sealed_parts),
        rows=bundle.rows,
        files=bundle.files,
        bytes=sum(int(str(p["plaintext_bytes"])) for p in sealed_parts),
    )


@dataclass(frozen=True)
class RestoreCheck:
    location: str
    backup_id: str
    taken_at: datetime
    rows: int
    entries: int


def _newest(
    store: ObjectStore, tenant: str, backup_id: str | None = None
) -> dict[str, object] | None:
    """The record of the backup `backup_id`, or of the last one taken (by its time: two
    backups of one second have ids that do not sort by time)."""
    keys = [
        o.key for o in store.list_objects(backup_prefix(tenant)) if o.key.endswith("/backup.json")
    ]
    if backup_id is not None:
        keys = [k for k in keys if k == f"{backup_prefix(tenant)}{backup_id}/backup.json"]
    records: list[dict[str, object]] = []
    for key in keys:
        with store.open_read(key) as handle:
            records.append(json.load(handle))
    return max(records, key=lambda r: (str(r["taken_at"]), str(r["backup_id"])), default=None)


def restore_check(
    settings: Settings, tenant: str, backup_id: str | None = None
) -> list[RestoreCheck]:
    """Decrypt the newest backup (or `backup_id`) in every location and verify it as a signed
    bundle."""
    key_id, key = open_keyring(settings).data_key(tenant)
    public_key = Signer.load_or_create(settings.keys_dir).public_pem
    checks: list[RestoreCheck] = []
    for url in settings.backup_store_urls():
        store = open_store(url)
        metadata = _newest(store, tenant, backup_id)
        if metadata is None and backup_id is not None:
            raise MissingDataError(f"no backup {backup_id} of tenant {tenant!r} in {store.url}")
        if metadata is None:
            raise MissingDataError(
                f"no backup of tenant {tenant!r} in {store.url}: run the backup flow "
                f"(`offboard backup {tenant}`) before relying on backups"
            )
        backup_id = str(metadata["backup_id"])
        if metadata["key_id"] != key_id:
            raise IntegrityError(
                f"{store.url}: backup {backup_id} of {tenant!r} was sealed with key "
                f"{metadata['key_id']}, not the tenant's key {key_id}"
            )
        work = scratch_dir(settings, CaseRef(tenant=tenant, case_id=f"restore-{backup_id}"))
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            restored: list[Path] = []
            for part in metadata["parts"]:  # type: ignore[attr-defined]
                name = str(part["name"])
                target = work / name.removesuffix(".enc")
                sealed = Sealed(**{k: part[k] for k in Sealed.__dataclass_fields__})
                prefix = f"{backup_prefix(tenant)}{backup_id}/"
                with store.open_read(prefix + name) as source, target.open("wb") as out:
                    decrypt_stream(
                        key, source, out.write, _associated_data(tenant, backup_id, name), sealed
                    )
                restored.append(target)
            report = verify_bundle(restored, public_key)
            if report.rows != metadata["rows"]:
                raise IntegrityError(
                    f"{store.url}: backup {backup_id} holds {report.rows} rows, its record says "
                    f"{metadata['rows']}"
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        checks.append(
            RestoreCheck(
                location=store.url,
                backup_id=backup_id,
                taken_at=datetime.fromisoformat(str(metadata["taken_at"])),
                rows=report.rows,
                entries=report.entries_checked,
            )
        )
    return checks
