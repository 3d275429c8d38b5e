"""Person, retention and contacts records are typed, signed and chained per tenant: `audit
verify` reports a record deleted, changed or moved, and counts what it checked per kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.signing import Signer, load_key_list
from offboarding.evidence.archive import verify_archive
from offboarding.persons.records import archive_signed
from offboarding.stores import LocalStore, open_store
from offboarding.trail.records import (
    ContactsSystemAttested,
    PersonRequestClosed,
    RetentionRuleRecorded,
    chain_prefix,
)


def _closed(tenant: str, ref: str) -> PersonRequestClosed:
    return PersonRequestClosed(
        tenant=tenant, request=ref, kind="objection", received_at="2026-11-02T10:00:00+00:00",
        due_on="2026-12-02", statement="st-1", by="hmac-sha256:ab",
    )  # fmt: skip


def _rule(tenant: str) -> RetentionRuleRecorded:
    return RetentionRuleRecorded(
        record="retention-rule-set", tenant=tenant, rule="r-1", table="public.tickets",
        age_column="created_at", period="1 year", files=None, statement="st-2", by="hmac-sha256:cd",
    )  # fmt: skip


def _attested(tenant: str) -> ContactsSystemAttested:
    return ContactsSystemAttested(
        tenant=tenant, system="crm", role="account manager", action="deleted", evidence="CRM-1"
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    archive_signed(settings, "persons/acme/req-1/closed.json", _closed("acme", "req-1"))
    archive_signed(settings, "retention/acme/rules/r-1-set.json", _rule("acme"))
    archive_signed(settings, "contacts/acme/crm.json", _attested("acme"))
    archive_signed(settings, "persons/globex/req-2/closed.json", _closed("globex", "req-2"))
    return settings


def _verify(settings: Settings):  # type: ignore[no-untyped-def]
    store = open_store(settings.store_url("archive"))
    return verify_archive(store, load_key_list(settings.keys_dir))


def _archive(settings: Settings) -> Path:
    return settings.root / "stores" / "archive"


def test_every_record_is_chained_and_counted_per_kind(settings: Settings) -> None:
    again = archive_signed(settings, "persons/acme/req-1/closed.json", _closed("acme", "req-1"))
    assert again["request"] == "req-1"  # a rerun returns the record, and adds no entry
    report = _verify(settings)
    assert report.records == {
        "contacts-system-attested": 1, "person-request-closed": 2, "retention-rule-set": 1,
    }  # fmt: skip
    assert (report.record_chains, report.record_entries, report.unchained_records) == (2, 4, 0)
    assert (report.person_records, report.retention_runs, report.contact_records) == (2, 1, 1)


def test_a_deleted_record_is_reported(settings: Settings) -> None:
    os.unlink(_archive(settings) / "retention/acme/rules/r-1-set.json")
    with pytest.raises(IntegrityError, match=r"r-1-set.json, which is not in the archive"):
        _verify(settings)


def test_a_removed_or_reordered_entry_is_reported(settings: Settings) -> None:
    chain = _archive(settings) / chain_prefix("acme")
    os.rename(chain / "000001.json", chain / "000001.json.gone")
    with pytest.raises(IntegrityError, match="entry 1 of acme's records is missing or moved"):
        _verify(settings)
    os.rename(chain / "000001.json.gone", chain / "000001.json")
    _verify(settings)
    for name in ("000001.json", "000001.json.sig"):  # the last two entries swapped
        os.rename(chain / name, chain / f"x{name}")
    for a, b in (("000002", "000001"), ("x000001", "000002")):
        for suffix in (".json", ".json.sig"):
            os.rename(chain / f"{a}{suffix}", chain / f"{b}{suffix}")
    with pytest.raises(IntegrityError, match="missing or moved"):
        _verify(settings)


def test_a_record_whose_entry_was_removed_is_reported(settings: Settings) -> None:
    chain = _archive(settings) / chain_prefix("acme")
    for suffix in (".json", ".json.sig"):  # the last entry: the chain itself still holds
        os.unlink(chain / f"000002{suffix}")
    with pytest.raises(
        IntegrityError, match=r"contacts/acme/crm\.json: written after acme's chain"
    ):
        _verify(settings)


def test_a_changed_record_is_reported(settings: Settings) -> None:
    target = _archive(settings) / "persons/globex/req-2/closed.json"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"objection", b"access"))
    with pytest.raises(IntegrityError):
        _verify(settings)


def test_a_record_from_before_chaining_is_accepted_and_counted_apart(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    signer = Signer.load_or_create(settings.keys_dir)
    document = _attested("initech").model_dump(mode="json")
    document |= {"at": "2026-01-05T09:00:00+00:00", "signing_key": signer.fingerprint}
    body = canonical_json(document)
    store = LocalStore(_archive(settings), write_once=True)
    store.put_bytes("contacts/initech/crm.json.sig", signer.sign(body))
    store.put_bytes("contacts/initech/crm.json", body)
    archive_signed(settings, "contacts/initech/erp.json", _attested("initech"))
    report = _verify(settings)
    assert report.unchained_records == 1 and report.record_entries == 1
