"""Destroy, verify and fingerprint for any location that is a prefix in an object store."""

from __future__ import annotations

import hashlib

from offboarding.core.canonical import compact_json
from offboarding.locations.base import Remaining, Removal
from offboarding.stores import (
    ObjectStore,
    delete_every_version,
    every_version,
    keeps_generations,
    soft_deleted_until,
)

__all__ = [
    "TENANTS_ROOT",
    "count_in_stores",
    "count_prefix",
    "delete_in_stores",
    "delete_prefix",
    "digest_object",
    "digest_outside_in_stores",
    "digest_outside_prefix",
    "tenant_prefix",
]

TENANTS_ROOT = "tenants/"


def tenant_prefix(tenant: str) -> str:
    """Always ends with '/': `tenants/acme/` never matches `tenants/acme-corp/`."""
    return f"{TENANTS_ROOT}{tenant}/"


def digest_object(store: ObjectStore, key: str) -> tuple[int, str]:
    """One object's size and sha256, streamed."""
    digest = hashlib.sha256()
    size = 0
    with store.open_read(key) as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def delete_prefix(store: ObjectStore, prefix: str, technique: str) -> Removal:
    before, size, removed = delete_every_version(store, prefix)
    if keeps_generations(store):  # every generation, not only the live one
        technique = (technique + "; " if technique else "") + "every object generation"
    return Removal(
        items_before=before,
        bytes_before=size,
        items_removed=removed,
        technique=technique,
        isolation=f"only keys under {prefix} deleted: every listed key checked against the "
        "prefix before the first delete",
    )


def count_prefix(store: ObjectStore, prefix: str) -> Remaining:
    """What is left under the prefix: live objects (and where the store keeps them, noncurrent
    generations too); soft-deleted copies are not counted as left but dated."""
    if not keeps_generations(store):
        left = sum(1 for _ in store.list_objects(prefix))
        return Remaining(items=left, verification=f"listing of {prefix}: {left} objects")
    left = sum(1 for _ in every_version(store, prefix))
    lingering = soft_deleted_until(store, prefix)
    gone_by = max(lingering) if lingering else None
    return Remaining(
        items=left,
        verification=f"listing of {prefix} with every generation: {left} objects; "
        + (
            f"{len(lingering)} soft-deleted copies, unrecoverable from {gone_by:%Y-%m-%d %H:%M} UTC"
            if gone_by
            else "no soft-deleted copies"
        ),
        pending_until=gone_by,
        details={"soft_deleted": str(len(lingering))},
    )


def digest_outside_prefix(
    store: ObjectStore, root: str, own: str, excluded: frozenset[str] = frozenset()
) -> str:
    """Digest of every object under `root` except the tenant's own prefix and the prefixes
    of `excluded` tenants (each `<root><tenant>/`, or a full prefix ending with '/')."""
    skip = (own, *(t if t.endswith("/") else f"{root}{t}/" for t in sorted(excluded)))
    listing = [(o.key, o.sha256) for o in store.list_objects(root) if not o.key.startswith(skip)]
    return hashlib.sha256(compact_json(listing)).hexdigest()


# A location spread over several stores (every delivery store, every backup location).


def delete_in_stores(
    stores: list[ObjectStore], prefix: str, technique: str, summary: str | None = None
) -> Removal:
    """Delete the prefix in every store; one Removal for all (its technique `summary` if given,
    else the first store's)."""
    removals = [delete_prefix(store, prefix, technique) for store in stores]
    return Removal(
        items_before=sum(r.items_before for r in removals),
        bytes_before=sum(r.bytes_before for r in removals),
        items_removed=sum(r.items_removed for r in removals),
        technique=summary if summary is not None else removals[0].technique,
        isolation=removals[0].isolation + f", in each of {len(stores)} store(s)",
    )


def count_in_stores(stores: list[ObjectStore], prefix: str) -> Remaining:
    counts = [count_prefix(store, prefix) for store in stores]
    pending = [c.pending_until for c in counts if c.pending_until]
    return Remaining(
        items=sum(c.items for c in counts),
        pending_until=max(pending) if pending else None,
        verification="; ".join(
            f"{store.url}: {c.verification}" for store, c in zip(stores, counts, strict=True)
        ),
        details={store.url: str(c.items) for store, c in zip(stores, counts, strict=True)},
    )


def digest_outside_in_stores(
    stores: list[ObjectStore], root: str, own: str, excluded: frozenset[str] = frozenset()
) -> str:
    return hashlib.sha256(
        "".join(digest_outside_prefix(store, root, own, excluded) for store in stores).encode()
    ).hexdigest()
