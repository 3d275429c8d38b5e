"""The systems whose plug-in finds and erases one person itself (the data map's
`[person.systems.<name>]` with `tables` or `patterns`), reached through their capabilities:
persons/ orchestrates, the plug-ins know their systems."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.datamap import DataMap, PersonScope, PersonSystem
from offboarding.locations import Capability, get_location, plugin_of
from offboarding.locations.base import PersonAccess, PersonErasure, RetentionRules

__all__ = ["accessible", "erasable", "home", "rules_home"]


def _by_plugin(
    settings: Settings, datamap: DataMap, scope: PersonScope, capability: Capability
) -> Iterator[tuple[str, PersonSystem, object]]:
    bound = datamap.bound()
    for name, declared in scope.systems.items():
        if not declared.by_plugin:
            continue  # lingers, attested, holds nothing: the data map answers for it
        system = bound.get(name)
        if system is None:
            raise ConfigurationError(
                f"the data map's [person.systems.{name}] declares how its plug-in finds the "
                f"person, but system {name!r} is not bound to a plug-in: declare lingers, "
                "attested or holds_nothing instead"
            )
        plugin = plugin_of(system.plugin)
        if Capability.PERSON_ERASURE not in plugin.capabilities:
            raise ConfigurationError(
                f"the data map's [person.systems.{name}] asks its {plugin.kind} plug-in to find "
                "and erase the person, which it cannot: declare lingers, attested or "
                "holds_nothing for this system instead"
            )
        wanted = plugin.person_by
        if wanted is None or not getattr(declared, wanted):
            raise ConfigurationError(
                f"the data map's [person.systems.{name}]: the {plugin.kind} plug-in finds a "
                f"person by {wanted}: declare {wanted} there"
            )
        if capability in plugin.capabilities:
            yield name, declared, get_location(name, settings)


def accessible(
    settings: Settings, datamap: DataMap, scope: PersonScope
) -> list[tuple[str, PersonSystem, PersonAccess]]:
    """The systems whose plug-in exports a person's items (an access answer holds them)."""
    found = []
    for name, declared, location in _by_plugin(settings, datamap, scope, Capability.PERSON_ACCESS):
        if not isinstance(location, PersonAccess):  # pragma: no cover - checked at registration
            raise TypeError(f"{name}: its plug-in declares person access it lacks")
        found.append((name, declared, location))
    return found


def erasable(
    settings: Settings, datamap: DataMap, scope: PersonScope
) -> list[tuple[str, PersonSystem, PersonErasure]]:
    """The systems whose plug-in erases a person's items (every one with `tables` or
    `patterns`: checked to be able to)."""
    found = []
    for name, declared, location in _by_plugin(settings, datamap, scope, Capability.PERSON_ERASURE):
        if not isinstance(location, PersonErasure):  # pragma: no cover - checked at registration
            raise TypeError(f"{name}: its plug-in declares person erasure it lacks")
        found.append((name, declared, location))
    return found


class PersonHome(PersonAccess, PersonErasure, Protocol):
    """The system holding the person table: it finds the person, and answers for them."""


def home(settings: Settings, datamap: DataMap) -> PersonHome:
    """The platform database's plug-in, where the data map's [person] table is: it finds,
    exports and erases the person by the whole [person] scope (its tables and files)."""
    location = get_location("postgres", settings)
    plugin = plugin_of(datamap.systems["postgres"].plugin)  # type: ignore[union-attr]
    capable = isinstance(location, PersonAccess) and isinstance(location, PersonErasure)
    if plugin.person_by != "scope" or not capable:
        raise ConfigurationError(  # pragma: no cover - the postgres plug-in registers so
            f"the {plugin.kind} plug-in holds the person table but cannot answer for a person"
        )
    return location  # type: ignore[return-value]


def rules_home(settings: Settings) -> RetentionRules:
    """The platform database's plug-in, which runs the client's retention rules."""
    location = get_location("postgres", settings)
    if not isinstance(location, RetentionRules):  # pragma: no cover - postgres registers it
        raise ConfigurationError("the platform database's plug-in cannot run retention rules")
    return location
