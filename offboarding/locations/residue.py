"""Looking for canaries in files: the part of every plug-in's residue scan that is the same
whoever reads the bytes (the server, through SQL, or this host, from a data directory).

A file is read in chunks; consecutive chunks overlap by the longest canary, so a value split
across two reads is still found. The cost is the size of the files named, read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from offboarding.locations.plugin import Canary, Residue

__all__ = ["CHUNK", "Finder", "read_local"]

CHUNK = 8 * 1024 * 1024


class Finder:
    """The canaries found so far, file by file, fed one chunk at a time."""

    def __init__(self, canaries: list[Canary]) -> None:
        self.canaries = canaries
        self.residue = Residue(canaries=len(canaries))
        self._values = [c.value for c in canaries]
        self._overlap = max((len(v) for v in self._values), default=1) - 1

    def read(self, name: str, chunks: Iterable[bytes]) -> None:
        """One whole file, as consecutive chunks (none: a file gone meanwhile, read empty)."""
        tail = b""
        for chunk in chunks:
            window = tail + chunk
            for number, value in enumerate(self._values):
                if value in window and name not in self.residue.found.get(number, []):
                    self.residue.found.setdefault(number, []).append(name)
            self.residue.bytes += len(chunk)
            tail = window[-self._overlap :] if self._overlap else b""
        self.residue.files += 1

    def settle(
        self, owners: Mapping[str, str], live: Callable[[Canary, set[str]], bool]
    ) -> Residue:
        """Found canaries that a live row still holds (another tenant's own words, in the
        canary's table or a table whose file held it) are not residue: `live` says."""
        for number in sorted(self.residue.found):
            tables = {owners[f] for f in self.residue.found[number] if f in owners}
            if live(self.canaries[number], tables):
                self.residue.live.append(number)
                del self.residue.found[number]
        return self.residue


def read_local(path: Path) -> Iterable[bytes]:
    """A file of this host in chunks; nothing if it is gone (a log rotated away meanwhile)."""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    except FileNotFoundError:
        return
