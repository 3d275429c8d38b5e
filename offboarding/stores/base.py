"""Object stores: one small interface, selected by URL.

`file:///path` is the embedded default: a directory tree where each key is a file. Google
Cloud Storage (`gs://bucket/prefix`) plugs in behind the same interface.

Prefixes given to `list_objects` must end with `/`, so that `tenants/acme/` can never match
`tenants/acme-corp/...` (clause 2.1.2: one client cannot reach another client's data).
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from offboarding.core.errors import ConfigurationError, IntegrityError, IsolationBreachError

__all__ = [
    "HashingWriter",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "check_key",
    "check_prefix",
    "require_under",
    "sha256_file",
]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str
    generation: int | None = None  # stores with versioning (Cloud Storage); None on disk


class ObjectStore(Protocol):
    url: str

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def exists(self, key: str) -> bool: ...

    def open_read(self, key: str, generation: int | None = None) -> BinaryIO: ...

    def put_file(self, key: str, source: Path) -> ObjectInfo: ...

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    def write_stream(self, key: str, fill: Callable[[HashingWriter], None]) -> ObjectInfo:
        """Write an object of unknown size as `fill` produces it, without a local copy: the
        object appears whole once `fill` returns, or not at all if it raises."""
        ...

    def delete(self, key: str) -> bool: ...


class HashingWriter:
    """A write-only stream that counts and hashes (SHA-256, and any `extra` hash such as
    CRC32C) what passes through to `raw`. It cannot seek, so `zipfile` writes each entry's
    sizes after its data (data descriptors) instead of going back."""

    def __init__(self, raw: BinaryIO | Any, *extra: Any) -> None:
        self._raw = raw
        self._sha256 = hashlib.sha256()
        self._extra = extra
        self.size = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self._sha256.update(view)
        for hasher in self._extra:
            hasher.update(bytes(view))
        self._raw.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# The local store's own temporary name for a write under way: hidden from listings, and no
# object may take it (a tenant's `minutes.partial` is an object like any other).
_WRITE_UNDER_WAY = re.compile(r"\.offboarding-[0-9a-f]{16}\.partial")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigurationError(
            f"object key {key!r} is not a clean relative key: no leading '/', empty, '.' or '..' "
            "segments"
        )
    if _WRITE_UNDER_WAY.fullmatch(parts[-1]):
        raise ConfigurationError(
            f"object key {key!r} takes the name the local store gives a write under way; "
            "rename the object"
        )
    return key


def require_under(prefix: str, keys: Iterable[str]) -> None:
    """Every key a delete is about to remove lies under `prefix` (ending in '/'), checked key
    by key before the first delete: a listing that strays stops the delete, nothing removed."""
    check_prefix(prefix)
    strays = sum(1 for key in keys if not key.startswith(prefix))
    if strays:
        raise IsolationBreachError(
            f"a listing of {prefix!r} returned {strays} key(s) outside it; nothing was "
            "deleted. Check the store's listing (and its prefix settings) before rerunning",
            facts={
                "nature": "an object listing strayed outside the tenant's prefix (no deletes)",
                "affected_tenants": [], "categories": ["objects"],
                "approximate_records": strays, "approximate_people": None,
            },
        )  # fmt: skip


def check_prefix(prefix: str) -> str:
    if not prefix.endswith("/"):
        raise ConfigurationError(
            f"prefix {prefix!r} must end with '/' so it cannot match a neighbour's keys "
            "(tenants/acme would also match tenants/acme-corp)"
        )
    check_key(prefix[:-1])
    return prefix


class LocalStore:
    """A directory tree as an object store. With `write_once`, existing keys cannot change."""

    def __init__(self, root: Path, *, write_once: bool = False) -> None:
        self.root = root
        self.write_once = write_once
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / check_prefix(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for filename in sorted(filenames):
                if _WRITE_UNDER_WAY.fullmatch(filename):
                    continue  # a write under way (see _write); only the writer's own names
                path = Path(dirpath) / filename
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key=key, size=path.stat().st_size, sha256=sha256_file(path))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def open_read(self, key: str, generation: int | None = None) -> BinaryIO:
        if generation is not None:
            raise ConfigurationError(f"{self.url} keeps no generations; read {key} without one")
        return self._path(key).open("rb")

    def _prepare(self, key: str) -> Path:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _seal(self, target: Path) -> None:
        if self.write_once:
            target.chmod(0o444)

    def _write(self, key: str, fill: Callable[[Path], object]) -> Path:
        """Write through a partial file of this writer's own (threads and processes may write
        the same key at once), then move it in place. A write-once key is linked, never
        replaced: a second writer of the same bytes succeeds, of other bytes fails."""
        target = self._prepare(key)
        partial = target.with_name(f".offboarding-{secrets.token_hex(8)}.partial")
        try:
            fill(partial)
            if not self.write_once:
                partial.replace(target)
                return target
            try:
                os.link(partial, target)
            except FileExistsError:
                if not filecmp.cmp(partial, target, shallow=False):
                    raise IntegrityError(
                        f"{self.url}: {key} already exists with other content and this store "
                        "is write-once"
                    ) from None
            self._seal(target)
            return target
        finally:
            partial.unlink(missing_ok=True)

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        target = self._write(key, lambda partial: shutil.copyfile(source, partial))
        return ObjectInfo(key=key, size=target.stat().st_size, sha256=sha256_file(target))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        self._write(key, lambda partial: partial.write_bytes(data))
        return ObjectInfo(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def write_stream(self, key: str, fill: Callable[[HashingWriter], None]) -> ObjectInfo:
        written: list[HashingWriter] = []

        def produce(partial: Path) -> None:
            with partial.open("wb") as handle:
                writer = HashingWriter(handle)
                fill(writer)
                written.append(writer)

        self._write(key, produce)
        return ObjectInfo(key=key, size=written[0].size, sha256=written[0].sha256)

    def delete(self, key: str) -> bool:
        if self.write_once:
            raise IntegrityError(f"{self.url} is write-once: {key} cannot be deleted")
        target = self._path(key)
        if not target.exists():
            return False
        target.unlink()
        for parent in target.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break
        return True
