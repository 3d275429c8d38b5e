"""The data map itself: every system of the platform, the person scope, the contacts."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from offboarding.core.errors import ConfigurationError
from offboarding.core.records import SystemEntry
from offboarding.datamap.people import ContactsScope, PersonScope
from offboarding.datamap.systems import (
    _SINGLETONS,
    AttestedSystem,
    BoundSystem,
    FilesSystem,
    PluginSystem,
    PostgresSystem,
    System,
    UnboundSystem,
    handlers,
)
from offboarding.datamap.tenants import TenantsTable

__all__ = ["DEFAULT_DATAMAP", "DataMap", "named", "system_entries"]


class DataMap(BaseModel):
    """Every system of the platform that holds tenant data (TOML, OFFBOARD_DATAMAP), each bound
    to a plug-in (verified destruction) or an attested step (a role confirms)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="tenant-offboarding data map")

    _source: str = PrivateAttr(default="")  # the file it was read from, for messages
    tenants: TenantsTable = Field(
        default_factory=TenantsTable,
        description="The platform's tenants table, its columns, and its freeze hook.",
    )
    systems: dict[
        Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")],
        Annotated[System, Field(union_mode="left_to_right")],
    ] = Field(description="Every system holding tenant data, by name.")
    person: PersonScope | None = Field(
        default=None,
        description="How one person of a tenant is found in every system (person requests).",
    )
    contacts: ContactsScope = Field(
        default_factory=ContactsScope,
        description="The operator's other systems holding the client's contacts, erased three "
        "years after the contract's end by the role each names.",
    )

    @model_validator(mode="after")
    def _handlers_are_systems(self) -> DataMap:
        for name, system in self.systems.items():
            excluded = getattr(system, "excluded_tables", None) or {}
            for table, handled in handlers(excluded).items():
                if handled not in self.systems or handled == name:
                    others = ", ".join(n for n in self.systems if n != name)
                    raise ValueError(
                        f"[systems.{name}] excluded_tables {table!r}: handled_by = {handled!r} "
                        f"must name another system of this data map ({others}), e.g. an "
                        "attested step a role performs"
                    )
        return self

    @model_validator(mode="after")
    def _person_files_are_the_tenants(self) -> DataMap:
        if self.person is not None:
            self.person.confine_files(self.files_folder)
        return self

    @property
    def files_folder(self) -> str | None:
        """The files store's folder template of a tenant ('tenants/{tenant}/' unless the
        data map says otherwise), None where the product keeps no folder per tenant."""
        files = self.systems.get("files")
        template = (
            files.prefix if isinstance(files, FilesSystem) else FilesSystem(plugin="files").prefix
        )
        return template or None

    def files_prefix(self, tenant: str) -> str | None:
        """The tenant's folder in the files store, or None (see `files_folder`)."""
        folder = self.files_folder
        return folder.replace("{tenant}", tenant) if folder else None

    @property
    def source(self) -> str:
        return self._source

    def require_person_scope(self) -> PersonScope:
        """The person scope, checked against the systems: every system beside the database and
        the files declared for one person, and no other."""
        if self.person is None:
            raise ConfigurationError(
                f"the data map {self._source} has no [person] table: a person request needs to "
                "know how a person is found in every system (the person table and its key, "
                "each table pointing at it, each other system); docs/operators.md shows one"
            )
        others = set(self.systems) - set(_SINGLETONS)
        missing = sorted(others - set(self.person.systems))
        unknown = sorted(set(self.person.systems) - others)
        if missing:
            raise ConfigurationError(
                f"the data map {self._source} does not say how system(s) {', '.join(missing)} "
                "hold a person's data: add [person.systems.<name>] with lingers, attested or "
                "holds_nothing for each, so no copy goes unanswered"
            )
        if unknown:
            raise ConfigurationError(
                f"the data map {self._source}: [person.systems] names {', '.join(unknown)}, "
                "which [systems] does not declare (the database and the files are covered by "
                "[person.tables] and [person] files)"
            )
        return self.person

    def bound(self) -> dict[str, BoundSystem]:
        return {n: s for n, s in self.systems.items() if isinstance(s, PluginSystem)}

    def attested(self) -> dict[str, AttestedSystem]:
        return {n: s for n, s in self.systems.items() if isinstance(s, AttestedSystem)}

    def unbound(self) -> list[str]:
        return [n for n, s in self.systems.items() if isinstance(s, UnboundSystem)]

    def require_bound(self) -> None:
        unbound = self.unbound()
        if unbound:
            raise ConfigurationError(
                f"the data map {self._source} declares systems bound to nothing: "
                f'{", ".join(unbound)}. Bind each to a plug-in (plugin = "redis", ...) or to '
                "an attested step ([systems.<name>.attested] with role and procedure); the "
                "case cannot take its inventory until then, so no copy goes uncounted"
            )


def named(datamap: DataMap, source: str) -> DataMap:
    datamap._source = source
    return datamap


DEFAULT_DATAMAP = named(
    DataMap(
        # The demo platform's tenants table, as the first release read it.
        tenants=TenantsTable(name="name", region="region", contact="contact_email"),
        systems={
            "postgres": PostgresSystem(plugin="postgres", description="The platform's database"),
            "files": FilesSystem(plugin="files", description="The platform's uploaded files"),
        },
    ),
    "(default: the settings' database and files store)",
)


def system_entries(datamap: DataMap) -> list[SystemEntry]:
    """Every bound system as the inventory and the certificate list it."""
    entries = []
    for name, system in datamap.systems.items():
        if isinstance(system, AttestedSystem):
            entries.append(
                SystemEntry(
                    name=name,
                    description=system.description,
                    handling="attested",
                    method=f"{system.attested.role}: {system.attested.procedure}",
                )
            )
        elif not isinstance(system, UnboundSystem):
            entries.append(
                SystemEntry(
                    name=name,
                    description=system.description,
                    handling="verified",
                    method=f"plug-in {system.plugin}",
                )
            )
    return entries
