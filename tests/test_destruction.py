"""Destruction against the real PostgreSQL and file store, without the orchestrator: every
location emptied, neighbours byte-identical, certificate signed, legal hold respected."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from offboarding.core.errors import DestructionIncompleteError, LegalHoldError, SharedRowsError
from offboarding.core.signing import Signer, load_public_key, verify_signature
from offboarding.destruction import destruction as stages
from offboarding.export import export as stages_export
from offboarding.locations import Remaining, get_location
from offboarding.registry import TenantRegistry
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events, verify_chain
from tests.conftest import Platform
from tests.helpers import acknowledge, destroy_everything, export_and_deliver

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
NEIGHBOURS = ("acme-corp", "globex", "initech")


def test_destruction_empties_every_location_and_spares_the_neighbours(platform: Platform) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    neighbours_before = {t: platform.fingerprint(t) for t in NEIGHBOURS}

    archived = destroy_everything(platform, case)

    left = platform.fingerprint("acme")
    assert all(t["rows"] == 0 for t in left["tables"].values())  # type: ignore[attr-defined]
    assert left["files"]["count"] == 0  # type: ignore[index]
    assert left["cache"]["count"] == 0  # type: ignore[index]
    assert {t: platform.fingerprint(t) for t in NEIGHBOURS} == neighbours_before
    assert platform.files.exists(next(iter(platform.files.list_objects("tenants/acme-corp/"))).key)
    delivery = open_store(platform.settings.store_url("delivery"))
    assert list(delivery.list_objects("bundles/acme/")) == []
    assert not (platform.settings.scratch_root / "acme").exists()
    assert TenantRegistry(platform.settings).get("acme").status == "destroyed"

    archive = open_store(platform.settings.store_url("archive"))
    with archive.open_read(archived.key) as body, archive.open_read(archived.key + ".sig") as sig:
        certificate, signature = body.read(), sig.read()
    public_key = load_public_key(Signer.load_or_create(platform.settings.keys_dir).public_pem)
    assert verify_signature(public_key, certificate, signature)
    document = json.loads(certificate)
    jsonschema.validate(document, json.loads((SCHEMA_DIR / "certificate.schema.json").read_text()))
    assert {loc["location"]: loc["remaining"] for loc in document["locations"]} == {
        "bundles": 0, "files": 0, "postgres": 0, "cache": 0, "backups": 0, "keys": 0,
        "scratch": 0, "orchestrator": 0,
    }  # fmt: skip
    cache = next(loc for loc in document["locations"] if loc["location"] == "cache")
    assert cache["items_before"] == cache["items_removed"] == 40 * 2 + 1  # pages, sessions, list
    assert "hold the id between the pattern's separators" in cache["isolation"]
    postgres = next(loc for loc in document["locations"] if loc["location"] == "postgres")
    assert postgres["items_before"] == document["inventory_rows"] - 1  # the registry row stays
    assert "no row outside the tenant's scope references them" in postgres["isolation"]
    assert "rows deleted per table equal rows listed" in postgres["isolation"]
    files = next(loc for loc in document["locations"] if loc["location"] == "files")
    assert "tenants/acme/" in files["isolation"]
    assert document["neighbours_unchanged"] is None  # the digests are an opt-in audit mode
    trail = AuditTrail(platform.settings, case, Signer.load_or_create(platform.settings.keys_dir))
    assert verify_chain(trail.events(), public_key) == trail.head()


def test_destruction_is_idempotent(platform: Platform) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    first = destroy_everything(platform, case)
    trail = AuditTrail.open(platform.settings, case)
    first_pass = {e.location: e.items_removed for e in trail.of(events.LocationDestroyed)}
    second = destroy_everything(platform, case)  # a rerun after a crash finds nothing left
    assert second.sha256 == first.sha256  # the one certificate, the same bytes
    destroyed = trail.of(events.LocationDestroyed)
    assert {e.location: e.items_removed for e in destroyed[len(first_pass) :]} == {
        name: 0 for name in first_pass
    }  # the rerun removed nothing: there was nothing left to remove
    assert first_pass["postgres"] > 0 and first_pass["files"] > 0 and first_pass["bundles"] > 0
    assert len(trail.of(events.CertificateRecorded)) == len(trail.of(events.Certified)) == 1
    archive = platform.settings.home / "stores" / "archive"
    body = (archive / first.key).read_bytes()
    assert hashlib.sha256(body).hexdigest() == first.sha256
    assert sorted(p.name for p in (archive / "certificates" / "acme").iterdir()) == [
        f"{case.case_id}.json",
        f"{case.case_id}.json.sig",
    ]


def test_a_tenant_on_legal_hold_is_not_destroyed_and_the_refusal_is_recorded(
    platform: Platform,
) -> None:
    case = platform.case("initech")
    export_and_deliver(platform, case)
    TenantRegistry(platform.settings).set_hold("initech", True, "litigation 2026-17")
    before = platform.fingerprint("initech")
    with pytest.raises(LegalHoldError, match="legal hold"):
        destroy_everything(platform, case)
    assert platform.fingerprint("initech") == before
    trail = AuditTrail(platform.settings, case, Signer.load_or_create(platform.settings.keys_dir))
    assert [e.reason for e in trail.of(events.DestructionRefused)] == ["legal hold"]


def test_no_certificate_while_anything_remains_or_when_a_neighbour_changed(
    platform: Platform,
) -> None:
    case = platform.case("acme")
    export_and_deliver(platform, case)
    acknowledge(platform.settings, case)
    now = datetime.now(UTC)
    with pytest.raises(DestructionIncompleteError, match="remains"):
        stages.certify(platform.settings, case, stages.DestructionEvidence(
            started_at=now, removals={},
            remaining={"files": Remaining(items=3, verification="3 objects")},
            neighbours_before={}, neighbours_after={},
        ))  # fmt: skip
    with pytest.raises(DestructionIncompleteError, match="other tenants"):
        stages.certify(platform.settings, case, stages.DestructionEvidence(
            started_at=now, removals={}, remaining={},
            neighbours_before={"files": "a"}, neighbours_after={"files": "b"},
        ))  # fmt: skip


def test_threaded_rows_are_deleted_leaves_first_in_small_batches(platform: Platform) -> None:
    threads = platform.query(
        "SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id "
        "WHERE p.tenant_id = 'acme' AND c.parent_id IS NOT NULL"
    )[0][0]
    assert threads > 0  # the demo data has replies
    settings = platform.settings.replace(delete_batch_rows=1)
    case = platform.case("acme")
    removal = get_location("postgres", settings).destroy(case)
    assert stages.verify_location(settings, case, "postgres").items == 0
    assert removal.items_removed == removal.items_before


def test_replies_older_than_their_parents_are_still_deleted_deepest_first(
    platform: Platform,
) -> None:
    """Keys not serial (imported threads): descending key order is no longer replies-first,
    and each row's depth in its thread decides, deepest first, one row per transaction."""
    platform.query(
        "INSERT INTO comments (id, post_id, parent_id, body, created_at) "
        "SELECT 900003, id, NULL, 'root', now() FROM posts WHERE tenant_id = 'acme' LIMIT 1;"
        "INSERT INTO comments (id, post_id, parent_id, body, created_at) "
        "SELECT 900001, post_id, 900003, 'older reply', now() FROM comments WHERE id = 900003;"
        "INSERT INTO comments (id, post_id, parent_id, body, created_at) "
        "SELECT 900002, post_id, 900001, 'reply to it', now() FROM comments WHERE id = 900003"
    )
    settings = platform.settings.replace(delete_batch_rows=1)
    case = platform.case("acme")
    removal = get_location("postgres", settings).destroy(case)
    assert removal.items_removed == removal.items_before
    assert platform.query("SELECT count(*) FROM comments WHERE id >= 900001") == [(0,)]
    assert stages.verify_location(settings, case, "postgres").items == 0


def test_a_thread_through_a_unique_column_goes_deepest_first_and_its_cycle_last(
    platform: Platform,
) -> None:
    """Replies that point at another row's unique code, not its key: ordered by depth (the
    codes say nothing of age), one row per transaction; a cycle of replies goes together."""
    platform.query(
        "CREATE TABLE outline (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), code text NOT NULL UNIQUE, parent_code text REFERENCES outline (code));"
        "INSERT INTO outline VALUES (1, 'acme', 'z', NULL), (2, 'acme', 'a', 'z'), "
        "(3, 'acme', 'm', 'a'), (4, 'acme', 'b', 'm'), (5, 'globex', 'g', NULL), "
        "(6, 'acme', 'c1', NULL), (7, 'acme', 'c2', 'c1');"
        "UPDATE outline SET parent_code = 'c2' WHERE code = 'c1'"
    )
    settings = platform.settings.replace(delete_batch_rows=1)
    case = platform.case("acme")
    removal = get_location("postgres", settings).destroy(case)
    assert removal.items_removed == removal.items_before
    assert platform.query("SELECT id, code FROM outline") == [(5, "g")]
    assert stages.verify_location(settings, case, "postgres").items == 0


def test_tenant_data_found_in_prefects_result_storage_blocks_the_certificate(
    platform: Platform, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows import adapter
    from offboarding.locations import get_location

    storage = tmp_path / "prefect-storage"
    storage.mkdir()
    (storage / "clean-result").write_bytes(b'{"rows": 12, "sha256": "ab12"}')
    case = platform.case("acme")
    # The flows take the path from Prefect's settings (the adapter); the library is told it.
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}):
        assert adapter.settings().orchestrator_results_path == storage
    settings = platform.settings.replace(orchestrator_results_path=storage)
    location = get_location("orchestrator", settings)
    assert location.verify(case).items == 0
    (storage / "leaky-result").write_bytes(b'{"key": "tenants/acme/documents/cv.pdf"}')
    assert location.verify(case).items == 1
    export_and_deliver(platform, case, settings)
    with pytest.raises(DestructionIncompleteError, match="orchestrator"):
        destroy_everything(platform, case, settings)


def test_two_tenants_destroyed_at_once_both_certify_and_spare_the_others(
    platform: Platform,
) -> None:
    """Each destruction changes its own tenant's data: the other's audit digests must leave it
    out (it is frozen: it has a case of its own), while active tenants stay byte-identical."""
    from concurrent.futures import ThreadPoolExecutor

    settings = platform.settings.replace(neighbours_audit=True)
    cases = [platform.case("acme"), platform.case("globex")]
    for case in cases:
        export_and_deliver(platform, case)
    bystanders = {t: platform.fingerprint(t) for t in ("acme-corp", "initech")}
    with ThreadPoolExecutor(2) as pool:
        archived = list(pool.map(lambda case: destroy_everything(platform, case, settings), cases))
    archive = open_store(platform.settings.store_url("archive"))
    for case, certificate in zip(cases, archived, strict=True):
        with archive.open_read(certificate.key) as body:
            document = json.loads(body.read())
        assert document["neighbours_unchanged"] is True
        other = next(c.tenant for c in cases if c != case)
        assert document["neighbours_excluded"] == [other]
    assert {t: platform.fingerprint(t) for t in bystanders} == bystanders


def test_objects_outside_the_prefix_go_with_the_tenant_unless_another_references_them(
    platform: Platform,
) -> None:
    """A row may point outside `tenants/<id>/` (a shared folder, a legacy path). Only this
    tenant's rows referencing it: exported and destroyed with the tenant. Another tenant's
    rows referencing it too: the case stops before anything is exported."""
    for key, body in (("legacy/acme-brochure.pdf", b"brochure"), ("shared/logo.png", b"logo")):
        platform.files.put_bytes(key, body)
    document = (
        "INSERT INTO documents (id, tenant_id, filename, object_key, size_bytes, sha256, "
        "uploaded_at) VALUES (%s, %s, 'f', %s, 1, 'x', now())"
    )
    platform.query(document, 900001, "acme", "legacy/acme-brochure.pdf")
    platform.query(document, 900002, "acme", "shared/logo.png")
    platform.query(document, 900003, "globex", "shared/logo.png")
    case = platform.case("acme")
    stages_export.freeze(platform.settings, case)
    with pytest.raises(SharedRowsError, match=r"1 object.* referenced by its rows and by rows of"):
        stages_export.take_inventory(platform.settings, case)
    report = (
        platform.settings.scratch_root / "acme" / case.case_id / "reports" / "shared-objects.txt"
    )
    assert report.read_text() == "shared/logo.png\n"

    platform.query("UPDATE documents SET object_key = 'tenants/globex/logo.png' WHERE id = 900003")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
    assert {
        "files/_referenced/legacy/acme-brochure.pdf",
        "files/_referenced/shared/logo.png",
    } <= names
    archived = destroy_everything(platform, case)
    assert not platform.files.exists("legacy/acme-brochure.pdf")
    assert not platform.files.exists("shared/logo.png")
    archive_store = open_store(platform.settings.store_url("archive"))
    with archive_store.open_read(archived.key) as body:
        files = next(
            loc for loc in json.loads(body.read())["locations"] if loc["location"] == "files"
        )
    assert files["details"]["outside the prefix"].startswith("2 object(s)")
