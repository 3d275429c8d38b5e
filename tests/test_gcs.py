"""The Cloud Storage backend with the real google-cloud-storage client against a local emulator
on loopback: uploads, listings, generations, delivery to the tenant's region, V4 signed links
whose signature is checked here with the public key (the emulator checks none)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.cloud import storage
from starlette.testclient import TestClient

from exporters.bundle import verify_bundle
from flows.adapter import PrefectRuns
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.signing import Signer
from offboarding.delivery.links import REDIRECT_LIFETIME
from offboarding.delivery.mail import read_outbox
from offboarding.delivery.receipts import downloads
from offboarding.dev.services import GcsEmulator
from offboarding.locations.bundles import BundlesLocation
from offboarding.stores import HashingWriter, backend, open_store
from offboarding.stores.gcs import GcsLinkSigner, GcsStore
from offboarding.web import create_app
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage.Client]:
    emulator = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    try:
        yield storage.Client()
    finally:
        emulator.stop()
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved


@pytest.fixture
def bucket(gcs: storage.Client, request: pytest.FixtureRequest) -> str:
    name = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    gcs.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def service_account(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    """A service-account key made here: links are signed offline, checked with its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account", "project_id": "offboarding-test", "private_key_id": "k1",
        "private_key": pem, "client_email": "links@offboarding-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }  # fmt: skip
    path = tmp_path_factory.mktemp("sa") / "links-sa.json"
    path.write_text(json.dumps(info))
    return path, key.public_key()


def verify_v4_signature(url: str, public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """Rebuild the V4 string-to-sign from the URL, as Cloud Storage does, and check the RSA
    signature; return the query parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    signed = sorted((k, v) for k, v in query if k != "X-Goog-Signature")
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in signed)
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
         hashlib.sha256(canonical_request.encode()).hexdigest()]
    )  # fmt: skip
    public_key.verify(
        bytes.fromhex(params["X-Goog-Signature"]),
        string_to_sign.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    return params


def test_a_streamed_write_is_a_resumable_upload_checked_end_to_end(
    gcs: storage.Client, bucket: str
) -> None:
    """An object of unknown size (a bundle part as it is produced) goes up in 8 MiB chunks:
    read back whole, its SHA-256 in the metadata; a producer that fails leaves nothing."""
    store = open_store(f"gs://{bucket}/exports")
    chunk = os.urandom(1024 * 1024)

    def fill(target: HashingWriter) -> None:
        for _ in range(20):  # 20 MiB: three chunks of the resumable upload
            target.write(chunk)

    info = store.write_stream("bundles/acme/case/part.zip", fill)
    assert info.size == 20 * len(chunk)
    assert info.sha256 == hashlib.sha256(chunk * 20).hexdigest()
    with store.open_read("bundles/acme/case/part.zip") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == info.sha256
    blob = gcs.bucket(bucket).get_blob("exports/bundles/acme/case/part.zip")
    assert blob is not None and blob.metadata == {"sha256": info.sha256}

    def broken(target: HashingWriter) -> None:
        target.write(chunk * 9)
        raise OSError("the source went away mid-part")

    with pytest.raises(OSError, match="went away"):
        backend(store).write_stream("bundles/acme/case/broken.zip", broken)
    assert not store.exists("bundles/acme/case/broken.zip")


def test_the_store_streams_lists_by_prefix_and_reads_at_a_generation(
    gcs: storage.Client, bucket: str, tmp_path: Path
) -> None:
    store = backend(open_store(f"gs://{bucket}/platform"))
    assert isinstance(store, GcsStore)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024 + 17))  # above one resumable chunk
    stored = store.put_file("tenants/acme/big.bin", big)
    assert stored.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    store.put_bytes("tenants/acme-corp/x.txt", b"neighbour")
    # An object the platform wrote without our metadata: its sha256 is computed on listing.
    gcs.bucket(bucket).blob("platform/tenants/acme/plain.txt").upload_from_string(b"plain")

    listed = {o.key: o for o in store.list_objects("tenants/acme/")}
    assert sorted(listed) == ["tenants/acme/big.bin", "tenants/acme/plain.txt"]
    assert listed["tenants/acme/plain.txt"].sha256 == hashlib.sha256(b"plain").hexdigest()
    assert listed["tenants/acme/big.bin"].size == big.stat().st_size
    with pytest.raises(ConfigurationError, match="must end with '/'"):
        list(store.list_objects("tenants/acme"))

    generation = listed["tenants/acme/plain.txt"].generation
    assert generation is not None
    with store.open_read("tenants/acme/plain.txt", generation=generation) as handle:
        assert handle.read() == b"plain"
    assert store.delete("tenants/acme/plain.txt") is True
    assert store.delete("tenants/acme/plain.txt") is False
    assert not store.exists("tenants/acme/plain.txt")


def gcs_settings(platform: Platform, bucket: str, key_file: Path, **extra: object) -> Settings:
    """Two regions, two buckets (the second one the same bucket's other prefix)."""
    return Settings(
        home=platform.settings.home,
        database_url=platform.dsn,
        delivery_regions={
            "europe-west1": f"gs://{bucket}/exports",
            "us-east1": f"gs://{bucket}/exports-us",
        },
        gcs_signing_key_file=key_file,
        link_lifetime=timedelta(days=7),
        **extra,  # type: ignore[arg-type]
    )


def test_a_bundle_is_delivered_to_the_tenants_region_with_links_that_verify(
    platform: Platform,
    gcs: storage.Client,
    bucket: str,
    service_account: tuple[Path, rsa.RSAPublicKey],
    tmp_path: Path,
) -> None:
    key_file, public_key = service_account
    settings = gcs_settings(platform, bucket, key_file)
    case = platform.case("acme")  # region europe-west1
    _, delivery, _ = export_and_deliver(platform, case, settings)
    assert delivery.store_url == f"gs://{bucket}/exports"

    blobs = list(gcs.list_blobs(bucket, prefix=f"exports/bundles/{case.tenant}/"))
    assert [b.name.rsplit("/", 1)[-1] for b in blobs] == [f"offboarding-{case.case_id}.zip"]
    assert blobs[0].metadata["sha256"] == delivery.parts[0].sha256

    # The notice's link goes through the link endpoint, which records the download and
    # redirects to a Cloud Storage URL signed for that request only.
    notice = read_outbox(next((settings.root / "outbox").glob(f"{case.case_id}-delivery-*.eml")))
    body = notice.get_content()
    link = next(line.strip() for line in body.splitlines() if "/d/" in line)
    assert "X-Goog-Signature" not in body
    endpoint = TestClient(create_app(settings, PrefectRuns()))
    answer = endpoint.get(
        link.removeprefix(settings.delivery.link_base_url), follow_redirects=False
    )
    assert answer.status_code == 307
    url = answer.headers["location"]
    params = verify_v4_signature(url, public_key)
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert int(params["X-Goog-Expires"]) <= REDIRECT_LIFETIME.total_seconds()
    [receipt] = downloads(settings, case)
    assert (receipt.via, receipt.size) == ("redirect", delivery.parts[0].size)
    assert params["response-content-disposition"] == (
        f'attachment; filename="offboarding-{case.case_id}.zip"'
    )
    assert urlsplit(url).path == f"/{bucket}/exports/bundles/{case.tenant}/{case.case_id}/" + (
        f"offboarding-{case.case_id}.zip"
    )
    tampered = url.replace("X-Goog-Expires=", "X-Goog-Expires=1")
    with pytest.raises(InvalidSignature):
        verify_v4_signature(tampered, public_key)

    # The client downloads through the link (the emulator serves it) and verifies the bundle.
    downloaded = tmp_path / "download.zip"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback emulator
        downloaded.write_bytes(response.read())
    signer = Signer.load_or_create(settings.keys_dir)
    assert verify_bundle([downloaded], signer.public_pem).rows > 0

    location = BundlesLocation(settings)
    assert location.inventory(case).items == 1
    removal = location.destroy(case)
    assert removal.items_removed == 1 and location.verify(case).items == 0


def test_a_tenant_whose_region_has_no_delivery_bucket_stops_with_a_clear_error(
    platform: Platform, bucket: str, service_account: tuple[Path, rsa.RSAPublicKey]
) -> None:
    settings = gcs_settings(platform, bucket, service_account[0])
    case = platform.case("globex")  # region europe-west3: not configured
    with pytest.raises(ConfigurationError, match="no delivery store for region 'europe-west3'"):
        export_and_deliver(platform, case, settings)
    assert list(open_store(f"gs://{bucket}/exports").list_objects("bundles/")) == []


def test_a_signed_link_cannot_outlive_seven_days(
    gcs: storage.Client, bucket: str, service_account: tuple[Path, rsa.RSAPublicKey]
) -> None:
    store = GcsStore(f"gs://{bucket}")
    store.put_bytes("bundles/acme/c/x.zip", b"x")
    signer = GcsLinkSigner(service_account[0])
    too_late = datetime.now(UTC) + timedelta(days=8)
    with pytest.raises(ConfigurationError, match="at most 7 days"):
        store.signed_url(
            "bundles/acme/c/x.zip", filename="x.zip", expires_at=too_late, signer=signer
        )


def files_on_cloud_storage(platform: Platform, bucket: str) -> tuple[GcsStore, Settings]:
    """The platform's uploaded files copied to a bucket, and settings that read them there."""
    files = GcsStore(f"gs://{bucket}/files")
    for info in platform.files.list_objects("tenants/"):
        with platform.files.open_read(info.key) as handle:
            files.put_bytes(info.key, handle.read())
    settings = Settings(
        home=platform.settings.home, database_url=platform.dsn, files_url=f"gs://{bucket}/files"
    )
    return files, settings


def test_tenant_files_on_cloud_storage_are_exported_at_the_inventoried_generation(
    platform: Platform, gcs: storage.Client, bucket: str, tmp_path: Path
) -> None:
    _, settings = files_on_cloud_storage(platform, bucket)
    case = platform.case("acme")
    inventory, _, bundle = export_and_deliver(platform, case, settings)
    assert inventory.files and all(f.generation for f in inventory.files)
    expected = sorted(o.sha256 for o in platform.files.list_objects("tenants/acme/"))
    report = verify_bundle([bundle], Signer.load_or_create(settings.keys_dir).public_pem)
    assert sorted(e.sha256 for e in report.manifest.entries if e.kind == "file") == expected


def test_destruction_on_cloud_storage_removes_every_generation_and_dates_soft_deleted_copies(
    platform: Platform, gcs: storage.Client, bucket: str
) -> None:
    files, settings = files_on_cloud_storage(platform, bucket)
    neighbours = sorted(o.key for o in files.list_objects("tenants/acme-corp/"))
    case = platform.case("acme")
    export_and_deliver(platform, case, settings)
    archived = destroy_everything(platform, case, settings)

    assert list(files.list_versions("tenants/acme/")) == []
    assert sorted(o.key for o in files.list_objects("tenants/acme-corp/")) == neighbours
    lingering = files.soft_deleted("tenants/acme/")
    assert lingering  # the emulator keeps soft-deleted copies, as Cloud Storage does

    archive = open_store(settings.store_url("archive"))
    with archive.open_read(archived.key) as body:
        certificate = json.loads(body.read())
    evidence = next(loc for loc in certificate["locations"] if loc["location"] == "files")
    assert evidence["remaining"] == 0
    assert datetime.fromisoformat(evidence["pending_until"]) == max(lingering)
    assert datetime.fromisoformat(certificate["all_copies_gone_by"]) == max(lingering)
    assert "soft-deleted copies, unrecoverable from" in evidence["verification"]
