"""Names that come from the platform (schemas, tables, columns, object keys) are data: the one
place that turns them into text keys, paths and entry names (DESIGN.md, principle 9).

    qualified(schema, table)      the one text form of a table's name: `schema.table`, each
                                  part double-quoted (as SQL writes it) when it holds a dot or
                                  a quote, so `"tenant_acme.eu".notes` is never read as schema
                                  `tenant_acme`
    split_qualified(text, parts)  its exact inverse (and the parser of names in settings)
    safe_segment(name)            one path segment or entry name from any text: nothing that
                                  climbs, no separator, no control character, bounded length
    table_folder(qualified)       the bundle's and the scratch area's folder of one table
    inside(root, relative)        a relative path under a directory, refused if it would climb

A name is parsed once, from the catalogue's separate columns; it is never split at a dot.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from offboarding.core.errors import ConfigurationError, IntegrityError

__all__ = ["inside", "qualified", "safe_segment", "split_qualified", "table_folder"]

# Most file systems cap a name at 255 bytes; leave room for a '~' tag.
MAX_SEGMENT_BYTES = 200
# A table folder that is already safe everywhere, case-insensitive file systems included.
_PLAIN_FOLDER = re.compile(r"[a-z0-9_][a-z0-9_.-]*")


def _quoted(part: str) -> str:
    if part and "." not in part and '"' not in part:
        return part
    return '"' + part.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """`schema.table` (or `schema.table.column`), each part quoted only when it must be."""
    return ".".join(_quoted(part) for part in parts)


def split_qualified(text: str, parts: int = 2) -> tuple[str, ...]:
    """The parts of a qualified name, exactly as `qualified` joined them; a malformed one is
    refused with the form it should take."""
    found: list[str] = []
    at = 0
    while True:
        if text.startswith('"', at):
            end, part = at + 1, []
            while True:
                close = text.find('"', end)
                if close < 0:
                    raise _malformed(text, parts)
                part.append(text[end:close])
                if text.startswith('"', close + 1):  # a doubled quote inside the name
                    part.append('"')
                    end = close + 2
                    continue
                at = close + 1
                break
            found.append("".join(part))
        else:
            end = text.find(".", at)
            end = len(text) if end < 0 or len(found) == parts - 1 else end
            part_text = text[at:end]
            if not part_text or '"' in part_text or (len(found) == parts - 1 and "." in part_text):
                raise _malformed(text, parts)
            found.append(part_text)
            at = end
        if at == len(text):
            break
        if text[at] != "." or len(found) == parts:
            raise _malformed(text, parts)
        at += 1
    if len(found) != parts:
        raise _malformed(text, parts)
    return tuple(found)


def _malformed(text: str, parts: int) -> ConfigurationError:
    form = "schema.table" if parts == 2 else "schema.table.column"
    return ConfigurationError(
        f"{text!r} is not a qualified name: write it as {form}, double-quoting any part that "
        'holds a dot or a quote as SQL does (e.g. "tenant_acme.eu".notes, "a""b" for a"b)'
    )


def _tag(name: str) -> str:
    return "~" + hashlib.sha256(name.encode()).hexdigest()[:12]


def safe_segment(name: str) -> str:
    """One path segment from any text: Unicode NFC, no control character, no separator ('/',
    '\\', ':'), no leading or trailing dot or space (so never '.' or '..'), at most
    MAX_SEGMENT_BYTES bytes (a cut name keeps its extension and a digest of the whole)."""
    segment = unicodedata.normalize("NFC", name)
    segment = "".join(ch for ch in segment if unicodedata.category(ch)[0] != "C")
    segment = segment.replace("/", "_").replace("\\", "_").replace(":", "_").strip(" .")
    segment = segment or "_"
    if len(segment.encode()) <= MAX_SEGMENT_BYTES:
        return segment
    stem, dot, suffix = segment.rpartition(".")
    if not dot or len(suffix.encode()) > 16:
        stem, dot, suffix = segment, "", ""
    tag = _tag(segment)
    room = MAX_SEGMENT_BYTES - len(tag.encode()) - len(dot + suffix)
    cut = stem.encode()[:room].decode("utf-8", "ignore")
    return f"{cut}{tag}{dot}{suffix}"


def table_folder(qualified_name: str) -> str:
    """`tables/<name>/`: the table's qualified name when it is plain lower-case ASCII (the
    usual case); otherwise made safe and tagged with a digest of the exact name, so that two
    tables never share a folder, on a case-insensitive file system either (`Posts`, `posts`).
    The manifest says which table each folder holds."""
    if _PLAIN_FOLDER.fullmatch(qualified_name) and ".." not in qualified_name:
        return f"tables/{qualified_name}/"
    # Letters, digits, '_', '.', '-' only: a folder any system can create (Windows refuses
    # '"', '*', '?', '<', '>', '|').
    safe = re.sub(r"[^\w.-]", "_", safe_segment(qualified_name)).strip(".") or "_"
    room = MAX_SEGMENT_BYTES - 13
    safe = safe.encode()[:room].decode("utf-8", "ignore").rstrip(" .") or "_"
    return f"tables/{safe}{_tag(qualified_name)}/"


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refused unless it stays under `root`: the last guard between a
    name and the disk (every name was made safe before; this proves it)."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise IntegrityError(
            f"{relative!r} would leave {root}: a path built from a platform name must go "
            "through offboarding.core.names; nothing was written"
        )
    return root.joinpath(*parts)
