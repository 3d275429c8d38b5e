"""The local object store keeps tenants apart and the archive unchangeable."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.stores import LocalStore, open_store
from offboarding.stores.base import check_key
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


def test_prefixes_must_end_with_a_slash(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("tenants/acme/a.txt", b"a")
    store.put_bytes("tenants/acme-corp/b.txt", b"b")
    with pytest.raises(ConfigurationError, match="must end with '/'"):
        list(store.list_objects("tenants/acme"))
    assert [o.key for o in store.list_objects("tenants/acme/")] == ["tenants/acme/a.txt"]


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "tenants//x", "tenants/./x", ""])
def test_unclean_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigurationError, match="clean relative key"):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_a_write_once_store_refuses_overwrite_and_delete(tmp_path: Path) -> None:
    archive = LocalStore(tmp_path, write_once=True)
    archive.put_bytes("certificates/c.json", b"{}")
    with pytest.raises(IntegrityError, match="write-once"):
        archive.put_bytes("certificates/c.json", b"{forged}")
    with pytest.raises(IntegrityError, match="write-once"):
        archive.delete("certificates/c.json")


def test_an_unknown_store_url_says_what_is_understood() -> None:
    with pytest.raises(ConfigurationError, match="file:///path"):
        open_store("s3://bucket")


def test_a_secret_created_by_many_threads_at_once_is_one_secret(tmp_path: Path) -> None:
    """Regression: threads share a pid; a shared partial file let one writer rewrite the key
    another had already used (the backup flow's tenants wrapped keys with a lost KEK)."""
    from concurrent.futures import ThreadPoolExecutor

    from offboarding.core.secrets import load_or_create_secret

    for attempt in range(20):
        path = tmp_path / f"kek-{attempt}.key"
        with ThreadPoolExecutor(8) as pool:
            seen = set(pool.map(load_or_create_secret, [path] * 8))
        assert seen == {path.read_bytes()}
        assert not list(tmp_path.glob("*.partial"))


def test_writers_racing_on_one_write_once_key_agree_or_the_second_is_refused(
    tmp_path: Path,
) -> None:
    """Two certifications archive the same public key at once: both succeed (same bytes);
    different bytes under one write-once key are refused, whoever comes second."""
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path / "archive", write_once=True)
    for round_ in range(20):
        key = f"keys/k{round_}.pem"
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: store.put_bytes(k, b"same"), [key] * 4))
        assert store.open_read(key).read() == b"same"
    assert [o.key for o in store.list_objects("keys/")] == sorted(
        f"keys/k{n}.pem" for n in range(20)
    )
    with pytest.raises(IntegrityError, match="already exists"):
        store.put_bytes("keys/k0.pem", b"other")


def test_a_tenants_file_named_like_a_partial_write_is_listed_exported_and_destroyed(
    platform: Platform,
) -> None:
    """The local store used to hide every name ending in `.partial`: a tenant's
    `minutes.partial` was neither exported nor destroyed, and verification said 0 left."""
    key = "tenants/acme/documents/9/minutes.partial"
    platform.files.put_bytes(key, b"the minutes, still being typed")
    assert key in {o.key for o in platform.files.list_objects("tenants/acme/")}
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        assert (
            archive.read("files/documents/9/minutes.partial") == b"the minutes, still being typed"
        )
    destroy_everything(platform, case)
    assert not platform.files.exists(key)
    assert not list(platform.files.root.rglob("*.partial"))
    with pytest.raises(ConfigurationError, match="a write under way"):
        check_key("tenants/acme/.offboarding-0123456789abcdef.partial")
