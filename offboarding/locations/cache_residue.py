"""What a deletion leaves on disk in Redis, found by canaries, and the rewrite that clears it.

UNLINK frees a key in memory; the server's files still hold it. The append-only file logs
every write (the tenant's keys as they were set, in plain bytes) until BGREWRITEAOF writes a
new base from the live keyspace and deletes the old files; the snapshot (RDB) holds the
keyspace as it was at the last save until BGSAVE replaces it. `compact` runs both, one after
the other, and waits for each to finish, each checked ok: the new files are written from a
keyspace the destruction's verification found empty of the tenant. A server that keeps no
files (no AOF, no save points, no dump) gets no new one: BGSAVE would write every tenant's
keys to a disk that held none.

The canaries are the tenant's key names and the first bytes of its values. The RDB
compresses strings longer than 20 bytes (LZF), so a value may be in an old dump without its
bytes showing: for the snapshot, the rewrite from a verified keyspace is the proof, and the
scan adds what the bytes show. Every key the rewrite keeps is live, so a canary found after it
is a key of the tenant's that came back: residue, reported, never set apart.

The files are read from the server's data directory (CONFIG GET dir, or the data map's
`data_dir` as this host reads it): the pipeline must be able to read them. The rewrite's cost is
the whole instance's keyspace, not the tenant's: a platform that gives large tenants their own
instance keeps it to the tenant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from offboarding.core.errors import ConfigurationError, ServiceError
from offboarding.locations.plugin import Canary, Residue, ResidueSite
from offboarding.locations.residue import Finder, read_local

__all__ = ["AOF", "RDB", "SITES", "compact", "files", "sample_canaries", "scan"]

_MIN_BYTES = 16
_WAIT = 600.0  # seconds a rewrite may take before the run says so

AOF = ResidueSite(
    place="append-only file",
    ends="the compact flow's next run rewrites it (BGREWRITEAOF)",
    rewritten=True,
    method="BGREWRITEAOF (a new base from the live keyspace, the old files deleted), waited "
    "for and checked ok, then every file of the append-only directory read",
)
RDB = ResidueSite(
    place="snapshot (RDB)",
    ends="the compact flow's next run saves a new one (BGSAVE)",
    rewritten=True,
    method="BGSAVE (the dump replaced by one of the live keyspace), waited for and checked "
    "ok, then the dump read; values over 20 bytes are LZF-compressed in it, so for those the "
    "save after the verified deletion is the proof",
)
SITES = [AOF, RDB]


def sample_canaries(client: redis.Redis, keys: Iterator[bytes], *, count: int = 64) -> list[Canary]:
    """Up to `count` of the tenant's key names and values (their first 64 bytes) of at least
    16 bytes, from the first keys found: a few times the sample, at most."""
    found: dict[bytes, Canary] = {}
    for number, key in enumerate(keys):
        if len(found) >= count or number >= count * 4:
            break
        kind = client.type(key)
        name = kind if isinstance(kind, bytes) else str(kind).encode()
        values: list[Any] = []
        if name == b"string":
            values.append(client.getrange(key, 0, 63))
        elif name == b"hash":
            values.extend(list(client.hvals(key))[:4])
        elif name == b"list":
            values.extend(client.lrange(key, 0, 3))
        elif name == b"set":
            values.extend(client.srandmember(key, 4) or [])
        elif name == b"zset":
            values.extend(client.zrange(key, 0, 3))
        for value in [key, *values]:
            raw = value if isinstance(value, bytes) else str(value).encode()
            if len(raw) >= _MIN_BYTES and len(found) < count:
                found.setdefault(raw[:64], Canary(raw[:64], "", name.decode(), True))
    return list(found.values())


def _config(client: redis.Redis, name: str) -> str:
    try:
        found = client.config_get(name)
    except redis.ResponseError:
        raise ConfigurationError(
            f"the residue scan asks Redis where its files are (CONFIG GET {name}) and the "
            "server refused: allow CONFIG for the pipeline's user, or name the data directory "
            "in the data map's data_dir for this system"
        ) from None
    value = found.get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def files(client: redis.Redis, declared: str | None) -> dict[str, list[str]]:
    """The append-only directory's files and the dump, as this host reads them."""
    folder = Path(declared or _config(client, "dir"))
    if not folder.is_dir():
        raise ConfigurationError(
            f"the residue scan reads Redis's files, and {folder} is not a directory this host "
            "can read: run the pipeline where it can (a read-only mount) and name it in the "
            "data map's data_dir for this system"
        )
    aof = folder / (_config(client, "appenddirname") or "appendonlydir")
    legacy = folder / (_config(client, "appendfilename") or "appendonly.aof")
    dump = folder / (_config(client, "dbfilename") or "dump.rdb")
    logs = sorted(str(p) for p in aof.iterdir() if p.is_file()) if aof.is_dir() else []
    return {
        AOF.place: logs + ([str(legacy)] if legacy.is_file() else []),
        RDB.place: [str(dump)] if dump.is_file() else [],
    }


def scan(client: redis.Redis, declared: str | None, canaries: list[Canary]) -> dict[str, Residue]:
    found = {}
    for place, paths in files(client, declared).items():
        finder = Finder(canaries)
        for path in paths:
            finder.read(path, read_local(Path(path)))
        found[place] = finder.residue
    return found


def _wait(client: redis.Redis, busy: str, status: str, what: str) -> None:
    deadline = time.monotonic() + _WAIT
    while True:
        info = client.info("persistence")
        if not int(info.get(busy, 0)) and not int(info.get("aof_rewrite_scheduled", 0)):
            break
        if time.monotonic() > deadline:
            raise ServiceError(f"Redis's {what} did not finish within {_WAIT:.0f} s: run again")
        time.sleep(0.05)
    if str(info.get(status, "ok")) != "ok":
        raise ServiceError(f"Redis's {what} failed ({status}: {info.get(status)}): see its log")


def compact(client: redis.Redis, declared: str | None) -> list[str]:
    """BGREWRITEAOF when the server keeps an append-only file, then BGSAVE when it keeps or
    has kept a dump; each waited for and checked. Returns the places rewritten."""
    kept = files(client, declared)
    done = []
    _wait(client, "aof_rewrite_in_progress", "aof_last_bgrewrite_status", "AOF rewrite")
    if _config(client, "appendonly") == "yes":
        client.bgrewriteaof()
        _wait(client, "aof_rewrite_in_progress", "aof_last_bgrewrite_status", "AOF rewrite")
        done.append(AOF.place)
    if _config(client, "save") or kept[RDB.place]:
        _wait(client, "rdb_bgsave_in_progress", "rdb_last_bgsave_status", "snapshot")
        client.bgsave()
        _wait(client, "rdb_bgsave_in_progress", "rdb_last_bgsave_status", "snapshot")
        done.append(RDB.place)
    return done
