"""The platform database's own physical backups and WAL archive, made with pgBackRest.

A physical backup cannot lose one tenant's rows: the rows leave the live database at
destruction, and each backup set taken before that (with the WAL archived before it) keeps
them until the repository's retention expires it. This location finds those sets with
`pgbackrest info`, dates each one's expiry under the retention read from pgBackRest's own
configuration and the operator's backup schedule (data map: `full_every`, `backup_every`),
and reports the last date: the certificate says "in platform backups until D (retention R)",
and planning starts destruction early enough that D is before the 90-day deadline.

With `early_expiry` (operator policy), destruction takes a full backup after the rows are
gone and runs a one-off `expire` that keeps only it: every older set and the WAL before it
are removed at once, which shortens every tenant's point-in-time recovery window. Either way
the live database's pages may keep the deleted rows' bytes in their free space until reused
(docs/backups.md).

Expiry, as pgBackRest does it (its "Full Backup Retention"): with time retention of R days a
full backup (and the differential and incremental sets that depend on it) is expired once the
next full backup is itself R days old; with a count of N, once N newer full backups exist.
Expiry runs after each backup, hence `backup_every` of slack.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, ServiceError
from offboarding.core.records import CaseRef, LocationInventory
from offboarding.datamap import PgBackRestSystem
from offboarding.locations.base import (
    Capability,
    CopiesOnly,
    LocationFacts,
    Plugin,
    Remaining,
    Removal,
    Stage,
)
from offboarding.trail import AuditTrail, events

__all__ = ["PLUGIN", "BackupSet", "PgBackRestLocation", "Retention", "expiry_of"]

_TIMEOUT = 3600  # a full backup of a large database takes a while


@dataclass(frozen=True)
class Retention:
    kind: Literal["time", "count"]
    value: int  # days, or full backups

    def __str__(self) -> str:
        return f"{self.value} days" if self.kind == "time" else f"{self.value} full backups"


@dataclass(frozen=True)
class BackupSet:
    label: str
    kind: str  # full, diff, incr
    started: datetime
    stopped: datetime
    size: int  # bytes in the repository

    @property
    def full_label(self) -> str:
        """The full backup this set depends on (its own label for a full)."""
        return self.label.split("_", 1)[0]


def expiry_of(
    backup: BackupSet,
    sets: list[BackupSet],
    retention: Retention,
    full_every: timedelta,
    backup_every: timedelta,
    now: datetime,
) -> datetime:
    """When pgBackRest expires `backup` under `retention`, given the sets that exist now and
    the schedule of future full backups (those not taken yet are at least `now`)."""
    fulls = sorted((s for s in sets if s.kind == "full"), key=lambda s: s.started)
    own = next((s for s in fulls if s.label == backup.full_label), None)
    base = own.started if own else backup.started
    newer = [s.started for s in fulls if s.started > base]
    needed = 1 if retention.kind == "time" else retention.value
    # The `needed` newer full backups: those that exist, then those the schedule will take.
    last = newer[-1] if newer else base
    while len(newer) < needed:
        last = max(last + full_every, now)
        newer.append(last)
    decisive = newer[needed - 1]
    if retention.kind == "time":
        decisive += timedelta(days=retention.value)
    return decisive + backup_every


def _read_retention(system: PgBackRestSystem) -> Retention:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with system.config.open() as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigurationError(
            f"pgBackRest's configuration {system.config} does not exist: set `config` in the "
            "data map to the file the backups are made with (its retention is read there)"
        ) from None
    except configparser.Error as error:
        raise ConfigurationError(f"{system.config} could not be read: {error}") from None

    def option(name: str) -> str | None:
        for section in (system.stanza, "global"):
            if parser.has_option(section, name):
                return parser.get(section, name).strip()
        return None

    prefix = f"repo{system.repo}-retention-full"
    kind, value = option(f"{prefix}-type") or "count", option(prefix)
    if value is None:
        raise ConfigurationError(
            f"{prefix} is not set in {system.config}: pgBackRest then keeps every backup "
            "forever, so the tenant's rows would never leave the platform's backups. Set it "
            f"(e.g. {prefix}-type=time and {prefix}=30)"
        )
    if kind not in ("time", "count") or not value.isdigit():
        raise ConfigurationError(
            f"{system.config}: {prefix}-type={kind} {prefix}={value} is not understood; "
            "use time (days) or count (full backups) with a whole number"
        )
    return Retention(kind, int(value))  # type: ignore[arg-type]


class PgBackRestLocation(CopiesOnly):
    def __init__(self, settings: Settings, name: str, system: PgBackRestSystem) -> None:
        self.settings = settings
        self.name = name
        self.system = system
        self.retention = _read_retention(system)

    # -- pgBackRest -------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> str:
        argv = [
            *self.system.command, f"--config={self.system.config}",
            f"--stanza={self.system.stanza}", *args,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise ServiceError(
                f"system {self.name!r}: {self.system.command[0]} was not found; install "
                "pgBackRest (Debian: apt-get install pgbackrest) or fix `command` in the data map"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise ServiceError(
                f"system {self.name!r}: pgbackrest {args[-1]} failed ({done.returncode}): "
                f"{detail[-1] if detail else 'no message'}. Check the stanza, `command` and "
                f"`config` in the data map"
            )
        return done.stdout

    def _sets(self) -> tuple[list[BackupSet], dict[str, Any]]:
        info = json.loads(self._run(f"--repo={self.system.repo}", "--output=json", "info"))
        stanza = next((s for s in info if s.get("name") == self.system.stanza), None)
        if stanza is None or stanza.get("status", {}).get("code") not in (0, 2):
            message = (stanza or {}).get("status", {}).get("message", "stanza not found")
            raise ServiceError(f"system {self.name!r}: pgBackRest reports {message!r}")
        sets = [
            BackupSet(
                label=b["label"],
                kind=b["type"],
                started=datetime.fromtimestamp(b["timestamp"]["start"], UTC),
                stopped=datetime.fromtimestamp(b["timestamp"]["stop"], UTC),
                size=int(b["info"]["repository"]["delta"]),
            )
            for b in stanza.get("backup", [])
            if not b.get("error")
        ]
        archive = (stanza.get("archive") or [{}])[-1]
        return sorted(sets, key=lambda s: s.started), archive

    def _expiry(self, backup: BackupSet, sets: list[BackupSet], now: datetime) -> datetime:
        return expiry_of(
            backup, sets, self.retention, self.system.full_every, self.system.backup_every, now
        )

    # -- what the pipeline asks ---------------------------------------------------------------

    def lingering_delay(self) -> tuple[timedelta, str]:
        """How long after destruction the last set holding the tenant's rows may live, and the
        settings that make it so (planning starts destruction this much earlier)."""
        every, slack = self.system.full_every, self.system.backup_every
        if self.retention.kind == "time":
            delay = every + timedelta(days=self.retention.value) + slack
        else:
            delay = every * self.retention.value + slack
        kind = f"repo{self.system.repo}-retention-full"
        return delay, (
            f"{kind}-type={self.retention.kind} and {kind}={self.retention.value} in "
            f"{self.system.config}, with full_every={every.days}d and backup_every="
            f"{slack.days}d for system {self.name!r} in the data map"
            + ("" if not self.system.early_expiry else " (early_expiry removes them at once)")
        )

    def reach(self) -> str:
        sets, archive = self._sets()
        return (
            f"pgBackRest stanza {self.system.stanza} (repo{self.system.repo}): {len(sets)} "
            f"backup set(s), WAL {archive.get('min', '-')}..{archive.get('max', '-')}, "
            f"retention {self.retention}"
        )

    def describe(self) -> LocationFacts:
        delay, _ = self.lingering_delay()
        where = f"pgBackRest repository repo{self.system.repo} of stanza {self.system.stanza}"
        if self.system.early_expiry:
            technique = (
                "a full backup once the rows are deleted, then a one-off expire keeping only "
                "it: every older set and the WAL archived before it removed (operator policy)"
            )
        else:
            technique = (
                "none at once: the rows are gone from the live database, and every set taken "
                f"while they existed expires under the retention ({self.retention})"
            )
        return LocationFacts(
            media=f"{where} (physical backups and WAL archive of the platform database)",
            method="clear",
            technique=technique,
            verification_method="pgbackrest info: every set started before destruction, each "
            "dated by the retention; none may outlive its date",
            lingering="" if self.system.early_expiry else (
                f"backup sets and WAL until the retention expires them ({self.retention}; at "
                f"most {delay.days} days after destruction)"
            ),
        )  # fmt: skip

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        """Every set in the repository holds the tenant's rows while they exist."""
        sets, _ = self._sets()
        return LocationInventory(
            location=self.name, items=len(sets), bytes=sum(s.size for s in sets)
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        now = datetime.now(UTC)
        sets, _ = self._sets()
        holding = [s for s in sets if s.started < self._destroyed_at(case, now)]
        details = {"retention": str(self.retention)}
        if not self.system.early_expiry or not holding:
            until = max((self._expiry(s, sets, now) for s in holding), default=None)
            if until:
                details["in platform backups until"] = f"{until:%Y-%m-%d}"
            return Removal(
                items_before=len(holding),
                bytes_before=sum(s.size for s in holding),
                items_removed=0,
                technique=self.describe().technique,
                isolation="nothing is removed: the sets expire under the repository's retention",
                details=details,
            )
        # pgBackRest dates a set in whole seconds: start in the next second, so the new set
        # can never be mistaken for one taken before destruction.
        time.sleep(1.05 - datetime.now(UTC).microsecond / 1_000_000)
        self._run("--type=full", "backup", timeout=_TIMEOUT)
        kind = f"--repo{self.system.repo}-retention-full"
        self._run(f"--repo={self.system.repo}", f"{kind}-type=count", f"{kind}=1", "expire")
        after, archive = self._sets()
        kept = {s.label for s in after}
        details |= {
            "early expiry": f"{sum(s.label not in kept for s in holding)} set(s) expired at once "
            f"by operator policy; WAL now from {archive.get('min', '-')}",
        }
        return Removal(
            items_before=len(holding),
            bytes_before=sum(s.size for s in holding),
            items_removed=sum(s.label not in kept for s in holding),
            technique=self.describe().technique,
            isolation="the whole repository's older history is removed (operator policy), "
            "not the tenant's part of it: a physical backup has no such part",
            details=details,
        )

    def _destroyed_at(self, case: CaseRef, default: datetime) -> datetime:
        """When the rows left the live database: the trail's record of the database's
        destruction (before it, now)."""
        trail = AuditTrail.open(self.settings, case)
        for event in reversed(trail.recorded()):
            data = event.data
            if isinstance(data, events.LocationDestroyed) and data.location == "postgres":
                return event.at
        return default

    def verify(self, case: CaseRef) -> Remaining:
        now = datetime.now(UTC)
        sets, archive = self._sets()
        holding = [s for s in sets if s.started < self._destroyed_at(case, now)]
        expiries = {s.label: self._expiry(s, sets, now) for s in holding}
        overdue = [label for label, when in expiries.items() if when <= now]
        until = max(expiries.values(), default=None)
        return Remaining(
            items=len(overdue),
            verification=f"pgbackrest info: {len(holding)} set(s) from before destruction, "
            f"{len(overdue)} past their expiry; WAL {archive.get('min', '-')}.."
            f"{archive.get('max', '-')}",
            pending_until=until,
            details={"retention": str(self.retention)}
            | ({"in platform backups until": f"{until:%Y-%m-%d}"} if until else {}),
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """Physical backups are the whole cluster's: the sets themselves are the neighbours'
        data, unchanged unless early expiry removed them (which the removal records)."""
        sets, _ = self._sets()
        return ",".join(s.label for s in sets)


PLUGIN = Plugin(
    kind="pgbackrest",
    config=PgBackRestSystem,
    location=PgBackRestLocation,
    capabilities=frozenset({Capability.DESTROY, Capability.VERIFY, Capability.LINGERING}),
    stage=Stage.BACKUPS,
    summary="the platform database's pgBackRest backups and WAL archive: dated by the "
    "repository's retention, or expired at once (early_expiry)",
)
