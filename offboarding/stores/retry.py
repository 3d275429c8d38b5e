"""Transient storage errors: retried with backoff where the operation is safe to repeat, and a
clear failure once the attempts are spent. Every store `open_store` returns is wrapped.

`OFFBOARD_STORE_FAILURE_RATE` (tests and fault drills only) puts a `FlakyStore`
(offboarding/stores/flaky.py) under the retries, to prove they hold.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from offboarding.core.errors import OffboardingError, StoreUnavailableError, TransientStoreError
from offboarding.stores.base import HashingWriter, ObjectInfo, ObjectStore

__all__ = ["RetryingStore", "StoreUnavailableError", "TransientStoreError", "wrap"]

_T = TypeVar("_T")


def _transient_types() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [TransientStoreError, ConnectionError, TimeoutError]
    try:
        from google.api_core import exceptions as google

        kinds += [google.TooManyRequests, google.ServiceUnavailable, google.InternalServerError,
                  google.GatewayTimeout, google.BadGateway]  # fmt: skip
    except ImportError:  # pragma: no cover - google-cloud-storage is a dependency
        pass
    return tuple(kinds)


class RetryingStore:
    """Retries every call on transient errors, with exponential backoff and jitter.

    All calls are safe to repeat: reads and listings; uploads to one key with the same bytes
    (a write-once upload that did land before its reply was lost is recognised by its digest);
    deletes (a delete that landed reports "removed" on its retry too)."""

    def __init__(
        self, inner: ObjectStore, attempts: int = 6, wait: float = 0.5, wait_max: float = 8.0
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.attempts = attempts
        self.wait = wait
        self.wait_max = wait_max

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        retrying = Retrying(
            retry=retry_if_exception_type(_transient_types()),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.wait, max=self.wait_max, jitter=self.wait),
            reraise=False,
        )
        try:
            return retrying(call)
        except RetryError as spent:
            cause = spent.last_attempt.exception()
            raise StoreUnavailableError(
                f"{self.url}: {what} failed {self.attempts} times ({type(cause).__name__}: "
                f"{cause}); the store is unavailable: retry the step once it is back"
            ) from cause

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return iter(self._call("listing", lambda: list(self.inner.list_objects(prefix))))

    def exists(self, key: str) -> bool:
        return self._call("lookup", lambda: self.inner.exists(key))

    def open_read(self, key: str, generation: int | None = None) -> BinaryIO:
        return self._call("read", lambda: self.inner.open_read(key, generation))

    def _put(
        self, key: str, upload: Callable[[], ObjectInfo], sha256: Callable[[], str]
    ) -> ObjectInfo:
        failed_before = False

        def attempt() -> ObjectInfo:
            nonlocal failed_before
            try:
                return upload()
            except _transient_types():
                failed_before = True
                raise
            except OffboardingError:
                # A write-once upload whose earlier attempt landed: same bytes means done.
                if failed_before and self.inner.exists(key):
                    with self.inner.open_read(key) as handle:
                        import hashlib

                        digest = hashlib.sha256(handle.read()).hexdigest()
                    if digest == sha256():
                        return ObjectInfo(key=key, size=0, sha256=digest)
                raise

        return self._call("upload", attempt)

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        from offboarding.stores.base import sha256_file

        return self._put(key, lambda: self.inner.put_file(key, source), lambda: sha256_file(source))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        import hashlib

        return self._put(
            key, lambda: self.inner.put_bytes(key, data), lambda: hashlib.sha256(data).hexdigest()
        )

    def write_stream(self, key: str, fill: Callable[[HashingWriter], None]) -> ObjectInfo:
        # `fill` produces the same bytes each time it is called: a retry writes them again.
        return self._call("upload", lambda: self.inner.write_stream(key, fill))

    def delete(self, key: str) -> bool:
        failed_before = False

        def attempt() -> bool:
            nonlocal failed_before
            try:
                return self.inner.delete(key) or failed_before
            except _transient_types():
                failed_before = True
                raise

        return self._call("delete", attempt)

    def __getattr__(self, name: str) -> object:  # backend extras (generations, soft delete)
        return getattr(self.inner, name)


def wrap(store: ObjectStore) -> ObjectStore:
    """Every store the pipeline uses: retried, and flaky on purpose when a test asks."""
    rate = float(os.environ.get("OFFBOARD_STORE_FAILURE_RATE") or 0)
    if rate:
        from offboarding.stores.flaky import FlakyStore

        seed = os.environ.get("OFFBOARD_STORE_FAILURE_SEED")
        store = FlakyStore(store, rate, int(seed) if seed else None)
    attempts = int(os.environ.get("OFFBOARD_STORE_RETRY_ATTEMPTS") or 6)
    wait = float(os.environ.get("OFFBOARD_STORE_RETRY_WAIT") or 0.5)  # first wait, seconds
    return RetryingStore(store, attempts=attempts, wait=wait)
