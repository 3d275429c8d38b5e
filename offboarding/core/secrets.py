"""Local secrets kept in the keys directory, created on first use with mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["load_or_create_secret", "write_private"]


def write_private(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 holding `data`; False if another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer (threads share a pid): a shared partial file, once linked,
    # would be the secret itself, and another writer's O_TRUNC would rewrite it in place.
    partial = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(8)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        os.link(partial, path)
    except FileExistsError:
        return False
    finally:
        partial.unlink()
    return True


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    if not path.exists():
        write_private(path, secrets.token_bytes(size))
    return path.read_bytes()
