"""`offboard datamap check`: the data map is valid, every system is bound, and every bound
system answers. Read-only: it touches no tenant's data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from offboarding.core.config import Settings
from offboarding.core.errors import OffboardingError
from offboarding.datamap import AttestedSystem, DataMap, UnboundSystem, datamap_of
from offboarding.locations import get_location
from offboarding.locations.base import Reachable

__all__ = ["Reachable", "SystemCheck", "check_datamap"]


@dataclass(frozen=True)
class SystemCheck:
    name: str
    description: str
    binding: str  # "plug-in redis", "attested by <role>", "unbound"
    status: Literal["reached", "attested", "unbound", "unreachable"]
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("reached", "attested")


def check_datamap(settings: Settings) -> tuple[DataMap, list[SystemCheck]]:
    """Load the data map (a malformed one raises, saying what to fix) and check each system."""
    datamap = datamap_of(settings)
    checks = []
    for name, system in datamap.systems.items():
        if isinstance(system, UnboundSystem):
            checks.append(
                SystemCheck(
                    name, system.description, "unbound", "unbound",
                    "bind it to a plug-in (plugin = ...) or an attested step "
                    f"([systems.{name}.attested] with role and procedure)",
                )
            )  # fmt: skip
        elif isinstance(system, AttestedSystem):
            attestation = system.attested
            checks.append(
                SystemCheck(
                    name, system.description, f"attested by {attestation.role}", "attested",
                    f"{attestation.procedure} (within {attestation.within.days} days of the "
                    "start of destruction; the role confirms in the Prefect UI)",
                )
            )  # fmt: skip
        else:
            location = get_location(name, settings)
            binding = f"plug-in {system.plugin}"
            if not isinstance(location, Reachable):  # pragma: no cover - every plug-in is
                raise TypeError(f"the {system.plugin} plug-in cannot be reached")
            try:
                checks.append(
                    SystemCheck(name, system.description, binding, "reached", location.reach())
                )
            except OffboardingError as error:
                checks.append(
                    SystemCheck(name, system.description, binding, "unreachable", str(error))
                )
            except Exception as error:  # a driver's own error: named, with its message
                checks.append(
                    SystemCheck(
                        name, system.description, binding, "unreachable",
                        f"{type(error).__name__}: {str(error).strip().splitlines()[0]}",
                    )
                )  # fmt: skip
    return datamap, checks
