"""Failures injected on purpose, for tests and fault drills only: inert unless
`OFFBOARD_STORE_FAILURE_RATE` is set (the way dlt's fake destination drives its retries).
A share of calls fails with TransientStoreError before being done, so the retries above it
must carry every case through."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from offboarding.core.errors import TransientStoreError
from offboarding.stores.base import HashingWriter, ObjectInfo, ObjectStore

__all__ = ["FlakyStore"]

_T = TypeVar("_T")


class FlakyStore:
    """Fails a share of calls with TransientStoreError before doing them (tests only)."""

    def __init__(self, inner: ObjectStore, rate: float, seed: int | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.rate = rate
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not security

    def _maybe_fail(self, what: str) -> None:
        if self._random.random() < self.rate:
            raise TransientStoreError(f"{self.url}: injected transient failure ({what}, 503)")

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        self._maybe_fail("list")
        return self.inner.list_objects(prefix)

    def exists(self, key: str) -> bool:
        self._maybe_fail("exists")
        return self.inner.exists(key)

    def open_read(self, key: str, generation: int | None = None) -> BinaryIO:
        self._maybe_fail("read")
        return self.inner.open_read(key, generation)

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        self._maybe_fail("upload")
        return self.inner.put_file(key, source)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        self._maybe_fail("upload")
        return self.inner.put_bytes(key, data)

    def write_stream(self, key: str, fill: Callable[[HashingWriter], None]) -> ObjectInfo:
        self._maybe_fail("upload")
        return self.inner.write_stream(key, fill)

    def delete(self, key: str) -> bool:
        self._maybe_fail("delete")
        return self.inner.delete(key)

    def __getattr__(self, name: str) -> object:  # backend extras (generations, soft delete)
        return getattr(self.inner, name)
