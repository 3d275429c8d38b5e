"""Object stores: one interface (`ObjectStore`), a local-filesystem backend (the embedded
default) and Cloud Storage (`gcs`, imported only when a `gs://` URL is opened). Every store
`open_store` returns retries transient errors (`retry`).

    base    ObjectStore, ObjectInfo, LocalStore, key and prefix checks
    gcs     GcsStore: generations, soft-deleted copies, V4 signed URLs
    retry   RetryingStore and the errors of a store that keeps failing
    flaky   FlakyStore: failures injected on purpose (tests and fault drills only)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from offboarding.core.errors import ConfigurationError
from offboarding.stores.base import (
    LocalStore,
    ObjectInfo,
    ObjectStore,
    check_key,
    check_prefix,
    sha256_file,
)
from offboarding.stores.retry import wrap

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "backend",
    "check_key",
    "check_prefix",
    "open_store",
    "sha256_file",
]


def backend(store: ObjectStore) -> ObjectStore:
    """The backend under any wrappers (retries, injected faults)."""
    while hasattr(store, "inner"):
        store = store.inner
    return store


def open_store(url: str, *, write_once: bool = False) -> ObjectStore:
    """Open the store a URL names: `file:///absolute/path` or `gs://bucket/prefix`, with
    transient errors retried (offboarding.stores.retry)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return wrap(LocalStore(Path(parsed.path), write_once=write_once))
    if parsed.scheme == "gs":
        from offboarding.stores.gcs import GcsStore

        return wrap(GcsStore(url, write_once=write_once))
    raise ConfigurationError(f"store URL {url!r} not understood: use file:///path or gs://bucket")
