"""Object stores: one interface (`ObjectStore`), a local-filesystem backend (the embedded
default) and Cloud Storage (`gcs`, imported only when a `gs://` URL is opened). Every store
`open_store` returns retries transient errors (`retry`).

    base    ObjectStore, ObjectInfo, LocalStore, key and prefix checks
    gcs     GcsStore: generations, soft-deleted copies, V4 signed URLs
    retry   RetryingStore and the errors of a store that keeps failing
    flaky   FlakyStore: failures injected on purpose (tests and fault drills only)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from offboarding.core.errors import ConfigurationError
from offboarding.stores.base import (
    HashingWriter,
    LocalStore,
    ObjectInfo,
    ObjectStore,
    check_key,
    check_prefix,
    require_under,
    sha256_file,
)
from offboarding.stores.retry import wrap

__all__ = [
    "HashingWriter",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "backend",
    "check_key",
    "check_prefix",
    "delete_every_version",
    "delete_object_versions",
    "every_version",
    "keeps_generations",
    "open_store",
    "sha256_file",
    "soft_deleted_until",
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


# What a backend can do beyond the interface, asked without knowing which backend it is.


def keeps_generations(store: ObjectStore) -> bool:
    """The store keeps older generations of an object (a versioned bucket)."""
    from offboarding.stores.gcs import GcsStore

    return isinstance(backend(store), GcsStore)


def delete_every_version(store: ObjectStore, prefix: str) -> tuple[int, int, int]:
    """Delete every object under the prefix, every generation where the store keeps them;
    return (objects before, bytes before, objects removed)."""
    from offboarding.stores.gcs import GcsStore

    inner = backend(store)
    if isinstance(inner, GcsStore):
        count, size = inner.delete_every_generation(prefix)
        return count, size, count
    objects = list(store.list_objects(prefix))
    require_under(prefix, (o.key for o in objects))
    removed = sum(1 for o in objects if store.delete(o.key))
    return len(objects), sum(o.size for o in objects), removed


def delete_object_versions(store: ObjectStore, key: str) -> tuple[int, int]:
    """Delete one object, every generation where the store keeps them; return (generations
    removed, bytes). An object already gone removes nothing."""
    from offboarding.stores.gcs import GcsStore

    inner = backend(store)
    if isinstance(inner, GcsStore):
        return inner.delete_key_generations(key)
    if not store.exists(key):
        return 0, 0
    size = 0
    with store.open_read(key) as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
    return (1, size) if store.delete(key) else (0, 0)


def every_version(store: ObjectStore, prefix: str) -> Iterator[ObjectInfo]:
    """Every object under the prefix, and every older generation where the store keeps them."""
    from offboarding.stores.gcs import GcsStore

    inner = backend(store)
    return (
        inner.list_versions(prefix) if isinstance(inner, GcsStore) else store.list_objects(prefix)
    )


def soft_deleted_until(store: ObjectStore, prefix: str) -> list[datetime]:
    """When each soft-deleted copy under the prefix is gone for good (none on local stores)."""
    from offboarding.stores.gcs import GcsStore

    inner = backend(store)
    return inner.soft_deleted(prefix) if isinstance(inner, GcsStore) else []
