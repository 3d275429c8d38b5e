"""A Redis cache declared in the data map: the tenant's keys, found by the declared patterns.

A cache holds copies of what the database holds (pages, sessions, computed views), so nothing
of it goes into the bundle. Destruction scans each pattern (SCAN MATCH, never KEYS, which
blocks the server) and unlinks what it finds in batches (UNLINK frees memory off the main
thread); each key is checked to carry the tenant's id followed by the pattern's separator
before it is unlinked. Verification is a fresh scan on a new connection.

SCAN walks the whole keyspace whatever the pattern: on a cache of many tenants its cost grows
with the cache, not the tenant. A platform that gives each large tenant its own logical
database or cluster avoids that; the destruction benchmark's notes give the rate.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
    ServiceError,
    TenantError,
)
from offboarding.core.records import CaseRef, LocationInventory
from offboarding.datamap import PersonDeclaration, PersonSystem, RedisSystem
from offboarding.locations import cache_residue
from offboarding.locations.base import (
    Canary,
    Capability,
    CopiesOnly,
    LocationFacts,
    PersonErased,
    PersonItems,
    Plugin,
    Remaining,
    Removal,
    Residue,
    ResidueSite,
    Stage,
    quiet,
    require_system_declaration,
)

__all__ = ["PLUGIN", "RedisLocation", "glob_escape"]

_BATCH = 500
_GLOB_SPECIALS = frozenset("*?[]\\")
_SEPARATORS = frozenset(":/|#")


def glob_escape(text: str) -> str:
    """`text` as a literal inside a Redis glob pattern."""
    return "".join(f"\\{c}" if c in _GLOB_SPECIALS else c for c in text)


class RedisLocation(CopiesOnly):
    def __init__(self, settings: Settings, name: str, system: RedisSystem) -> None:
        self.name = name
        self.system = system
        self.batch = min(_BATCH, settings.destruction.delete_batch_rows)

    @property
    def _address(self) -> str:
        """host:port/db, never the password."""
        url = urlsplit(self.system.url)
        return f"{url.hostname}:{url.port or 6379}{url.path or '/0'}"

    @contextmanager
    def _client(self) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(self.system.url, socket_timeout=30, socket_connect_timeout=10)
        try:
            client.ping()
            yield client
        except redis.ConnectionError as error:
            raise ServiceError(
                f"the data map's system {self.name!r} (Redis at {self._address}) did not "
                f"answer: {error}. Check its url in the data map and that the server runs"
            ) from None
        except redis.AuthenticationError:
            raise ServiceError(
                f"the data map's system {self.name!r} (Redis at {self._address}) refused the "
                "credentials of its url"
            ) from None
        finally:
            client.close()

    def reach(self) -> str:
        """Reach the server (`offboard datamap check`): its version."""
        with self._client() as client:
            info = client.info("server")
        return f"Redis {info.get('redis_version', '?')} at {self._address}"

    def describe(self) -> LocationFacts:
        return LocationFacts(
            media=f"Redis cache {self.name} at {self._address}",
            method="clear",
            technique=f"SCAN MATCH of the declared key patterns ({len(self.system.patterns)}), "
            f"UNLINK in batches of {self.batch}",
            verification_method="a fresh SCAN MATCH of every declared pattern on a new connection",
        )

    def _patterns(self, tenant: str) -> list[str]:
        literal = glob_escape(tenant)
        return [p.replace("{tenant}", literal) for p in self.system.patterns]

    def _carries(self, key: bytes, tenant: str) -> bool:
        """The key holds the tenant's id where a pattern puts it: between the pattern's
        literal neighbours (its separator after, and the character before if literal)."""
        for pattern in self.system.patterns:
            before, after = pattern.split("{tenant}", 1)
            lead = before[-1:] if before[-1:] and before[-1] not in _GLOB_SPECIALS else ""
            mark = f"{lead}{tenant}{after[:1]}".encode()
            if (after and mark in key) or (not after and key.endswith(mark)):
                return True
        return False

    def _scan(self, client: redis.Redis, tenant: str) -> Iterator[bytes]:
        seen: set[bytes] = set()  # SCAN may return a key twice; patterns may overlap
        for pattern in self._patterns(tenant):
            for key in client.scan_iter(match=pattern, count=1000):
                if key not in seen:
                    seen.add(key)
                    yield key

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        items = size = 0
        with self._client() as client:
            batch: list[bytes] = []
            for key in self._scan(client, case.tenant):
                batch.append(key)
                if len(batch) >= self.batch:
                    size += _memory(client, batch)
                    items, batch = items + len(batch), []
            size += _memory(client, batch)
            items += len(batch)
        return LocationInventory(location=self.name, items=items, bytes=size)

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        removed = found = size = 0
        with self._client() as client:
            batch: list[bytes] = []
            for key in self._scan(client, case.tenant):
                if not self._carries(key, case.tenant):
                    raise IsolationBreachError(
                        f"system {self.name!r}: a key matched the tenant's pattern without the "
                        f"tenant's id between separators; nothing more is unlinked. Check the "
                        f"patterns in the data map ({self.system.patterns})"
                    )
                batch.append(key)
                if len(batch) >= self.batch:
                    size += _memory(client, batch)
                    found += len(batch)
                    removed += int(client.unlink(*batch))
                    batch = []
            if batch:
                size += _memory(client, batch)
                found += len(batch)
                removed += int(client.unlink(*batch))
        return Removal(
            items_before=found,
            bytes_before=size,
            items_removed=removed,
            technique=self.describe().technique,
            isolation="each key matched a declared pattern with the tenant's id as a literal "
            "and was checked to hold the id between the pattern's separators before UNLINK",
        )

    def verify(self, case: CaseRef) -> Remaining:
        with self._client() as client:
            left = sum(1 for _ in self._scan(client, case.tenant))
        return Remaining(
            items=left,
            verification=f"fresh scan of {len(self.system.patterns)} pattern(s): {left} key(s)",
        )

    # -- residue: the unlinked keys in the server's files (cache_residue.py) ---------------------

    def residue_sites(self) -> list[ResidueSite]:
        return cache_residue.SITES

    def canaries(self, case: CaseRef) -> list[Canary]:
        with self._client() as client:
            return cache_residue.sample_canaries(client, self._scan(client, case.tenant))

    def compact(self, places: list[str]) -> list[str]:
        with self._client() as client:
            return cache_residue.compact(client, self.system.data_dir)

    def scan_residue(self, places: list[str], canaries: list[Canary]) -> dict[str, Residue]:
        with self._client() as client:
            return cache_residue.scan(client, self.system.data_dir, canaries)

    # -- one person (the data map's [person.systems.<name>] patterns) ----------------------------

    def _person_patterns(self, tenant: str, person: str, declared: PersonSystem) -> list[str]:
        self._within_tenant_patterns(declared)
        if any(c in _SEPARATORS or c in _GLOB_SPECIALS for c in person):
            raise TenantError(
                f"system {self.name!r}: person key {person!r} holds a key separator or a glob "
                "character, so a pattern could not tell this person's keys from another's; "
                "the data map's patterns for this system need keys without them"
            )
        return [
            p.replace("{tenant}", glob_escape(tenant)).replace("{person}", glob_escape(person))
            for p in declared.patterns
        ]

    def _within_tenant_patterns(self, declared: PersonSystem) -> None:
        """Every person pattern's keys are keys of a tenant pattern: else a person's key
        that only the person pattern matches would outlive the tenant's destruction. Checked
        on a sample key of each person pattern (its wildcards as plain characters)."""
        for pattern in declared.patterns:
            sample = pattern.replace("{tenant}", "t").replace("{person}", "p")
            sample = re.sub(r"\[[^\]]*\]", "x", sample).replace("*", "x").replace("?", "x")
            tenant_patterns = [p.replace("{tenant}", "t") for p in self.system.patterns]
            if not any(fnmatch.fnmatchcase(sample, p) for p in tenant_patterns):
                raise ConfigurationError(
                    f"system {self.name!r}: the person pattern {pattern!r} matches keys no "
                    f"tenant pattern ({', '.join(self.system.patterns)}) matches, so they "
                    "would outlive the tenant's destruction: add a tenant pattern covering "
                    "them under [systems.<name>] patterns, or fix the person pattern"
                )

    def _person_keys(
        self, client: redis.Redis, tenant: str, person: str, declared: PersonSystem
    ) -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = {}
        seen: set[bytes] = set()
        for pattern, literal in zip(
            declared.patterns, self._person_patterns(tenant, person, declared), strict=True
        ):
            keys = [k for k in client.scan_iter(match=literal, count=1000) if k not in seen]
            seen.update(keys)
            found[pattern] = keys
        return found

    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems:
        """The person's keys, by the declared patterns, counted with their memory."""
        declared = require_system_declaration(declared, self.name)
        with self._client() as client:
            found = self._person_keys(client, tenant, person, declared)
            sizes = {pattern: _memory(client, keys) for pattern, keys in found.items()}
        return PersonItems(counts={p: len(k) for p, k in found.items()}, sizes=sizes)

    def erase_person(
        self,
        tenant: str,
        person: str,
        declared: PersonDeclaration,
        replacement: str,
        *,
        person_kept: bool = False,
        say: Callable[[str], None] = quiet,
    ) -> PersonErased:
        """UNLINK the person's keys, then a fresh scan must find none (keys are copies: none
        is kept and rewritten)."""
        declared = require_system_declaration(declared, self.name)
        deleted: dict[str, int] = {}
        with self._client() as client:
            for pattern, keys in self._person_keys(client, tenant, person, declared).items():
                removed = 0
                for start in range(0, len(keys), self.batch):
                    removed += int(client.unlink(*keys[start : start + self.batch]))
                deleted[pattern] = removed
        with self._client() as client:
            left = sum(len(k) for k in self._person_keys(client, tenant, person, declared).values())
        if left:
            raise DestructionIncompleteError(
                f"system {self.name!r}: {left} key(s) of the person were written again while "
                "they were unlinked (the person is still signed in?): retry once their "
                "sessions are closed"
            )
        return PersonErased(
            deleted=deleted,
            pseudonymised={},
            verification=f"UNLINK of every key matching {len(declared.patterns)} pattern(s) "
            "with the tenant's and the person's ids as literals; a fresh SCAN found none",
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """Every other key with its value (DUMP), sorted: equal before and after."""
        digest = hashlib.sha256()
        with self._client() as client:
            skip = {k for t in (case.tenant, *excluded) for k in self._scan(client, t)}
            keys = sorted(k for k in client.scan_iter(count=1000) if k not in skip)
            for start in range(0, len(keys), self.batch):
                chunk = keys[start : start + self.batch]
                pipe = client.pipeline(transaction=False)
                for key in chunk:
                    pipe.dump(key)
                for key, value in zip(chunk, pipe.execute(), strict=True):
                    digest.update(hashlib.sha256(key).digest())
                    digest.update(hashlib.sha256(value or b"").digest())
        return digest.hexdigest()


def _memory(client: redis.Redis, keys: list[bytes]) -> int:
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    return sum(int(n or 0) for n in pipe.execute())


PLUGIN = Plugin(
    kind="redis",
    config=RedisSystem,
    location=RedisLocation,
    capabilities=frozenset(
        {Capability.DESTROY, Capability.VERIFY, Capability.PERSON_ERASURE, Capability.RESIDUE}
    ),
    stage=Stage.COPIES,
    person_by="patterns",
    summary="a Redis cache: the tenant's keys by pattern, removed with SCAN and UNLINK; copies "
    "only, nothing of it in the bundle",
)
