"""The one JSON form of everything the project signs or digests, so the same document always
gives the same bytes (and so the same signature and sha256), whoever writes it.

    canonical_json   documents people read: manifests, certificates, incident records,
                     backup metadata. Sorted keys, two-space indent, UTF-8, a final newline.
    compact_json     one-line records: audit events and digests of listings. Sorted keys,
                     no indent, ASCII escapes (the trail's form since its first event).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json", "compact_json"]


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"


def compact_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True).encode()
