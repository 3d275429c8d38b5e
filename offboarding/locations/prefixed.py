"""Destroy, verify and fingerprint for any location that is a prefix in an object store."""

from __future__ import annotations

import hashlib
import json

from offboarding.locations.base import Remaining, Removal
from offboarding.store import ObjectStore

__all__ = ["count_prefix", "delete_prefix", "digest_outside_prefix"]


def delete_prefix(store: ObjectStore, prefix: str, technique: str) -> Removal:
    objects = list(store.list_objects(prefix))
    removed = sum(1 for o in objects if store.delete(o.key))
    return Removal(
        items_before=len(objects),
        bytes_before=sum(o.size for o in objects),
        items_removed=removed,
        technique=technique,
    )


def count_prefix(store: ObjectStore, prefix: str) -> Remaining:
    left = sum(1 for _ in store.list_objects(prefix))
    return Remaining(items=left, verification=f"listing of {prefix}: {left} objects")


def digest_outside_prefix(store: ObjectStore, root: str, own: str) -> str:
    """Digest of every object under `root` except the tenant's own prefix."""
    listing = [(o.key, o.sha256) for o in store.list_objects(root) if not o.key.startswith(own)]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
