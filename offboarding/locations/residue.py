"""Looking for canaries in files: the part of every plug-in's residue scan that is the same
whoever reads the bytes (the server, through SQL, or this host, from a data directory).

A file is read in chunks; consecutive chunks overlap by the longest canary, so a value split
across two reads is still found. The cost is the size of the files named, read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from ahocorasick_rs import BytesAhoCorasick

from offboarding.locations.plugin import Canary, Residue

__all__ = ["CHUNK", "Finder", "blocks", "read_local", "spread"]

CHUNK = 8 * 1024 * 1024


class Finder:
    """The canaries found so far, file by file, fed one chunk at a time. Every canary is
    looked for in one pass over each chunk (an Aho-Corasick automaton), so the cost is the
    bytes read, whatever the number of canaries."""

    def __init__(self, canaries: list[Canary]) -> None:
        self.canaries = canaries
        self.residue = Residue(canaries=len(canaries))
        values = [c.value for c in canaries]
        self._automaton = BytesAhoCorasick(values) if values else None
        self._overlap = max((len(v) for v in values), default=1) - 1

    def read(self, name: str, chunks: Iterable[bytes]) -> None:
        """One whole file, as consecutive chunks (none: a file gone meanwhile, read empty)."""
        tail = b""
        for chunk in chunks:
            window = tail + chunk
            if self._automaton is not None:
                for number, _, _ in self._automaton.find_matches_as_indexes(
                    window, overlapping=True
                ):
                    if name not in self.residue.found.get(number, []):
                        self.residue.found.setdefault(number, []).append(name)
            self.residue.bytes += len(chunk)
            tail = window[-self._overlap :] if self._overlap else b""
        self.residue.files += 1

    def settle(
        self,
        owners: Mapping[str, str],
        held: Callable[[dict[str, list[Canary]]], set[bytes]],
    ) -> Residue:
        """Found canaries that a live row still holds (another tenant's own words, in the
        canary's table or a table whose file held it) are not residue. `held` is asked once,
        with each table and the found canaries to look for in its live rows, and answers
        the values it found."""
        asked: dict[str, list[Canary]] = {}
        for number in sorted(self.residue.found):
            canary = self.canaries[number]
            for table in {canary.table, *(owners[f] for f in self.residue.found[number]
                                          if f in owners)} - {""}:  # fmt: skip
                asked.setdefault(table, []).append(canary)
        live = held(asked) if asked else set()
        for number in sorted(self.residue.found):
            if self.canaries[number].value in live:
                self.residue.live.append(number)
                del self.residue.found[number]
        return self.residue


def blocks(pieces: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Small pieces (a COPY's rows) joined into blocks of about `size` bytes."""
    buffer: list[bytes] = []
    held = 0
    for piece in pieces:
        buffer.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def read_local(path: Path) -> Iterable[bytes]:
    """A file of this host in chunks; nothing if it is gone (a log rotated away meanwhile)."""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    except FileNotFoundError:
        return


def spread(per_column: list[list[Canary]], count: int) -> list[Canary]:
    """Up to `count` distinct canaries taken round-robin over the columns' samples, so the
    sample spreads over every table and column."""
    found: dict[bytes, Canary] = {}
    for rank in range(count):
        for canaries in per_column:
            if rank < len(canaries) and len(found) < count:
                found.setdefault(canaries[rank].value, canaries[rank])
    return list(found.values())
