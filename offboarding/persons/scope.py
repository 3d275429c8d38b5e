"""A person's footprint in a tenant: every row, file and key of the person that a request
would touch, counted by the plug-ins of the systems holding them, as the data map's [person]
scope declares (the platform database's plug-in checks it against its catalogue:
offboarding/locations/postgres/person_scope.py).

Only counts, bytes and object keys' count leave this module: a footprint names no value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.datamap import datamap_of
from offboarding.persons.systems import erasable, home

__all__ = ["PersonFootprint", "PersonTableCount", "person_footprint", "person_key"]


@dataclass(frozen=True)
class PersonTableCount:
    table: str
    by: str  # the column pointing at the person ("" for the person table itself)
    # What an erasure does: with the person's own rows, delete or pseudonymise them; with
    # others' rows pointing at the person (a link), clear, reassign (tombstone) or keep it.
    erase: Literal["delete", "pseudonymise", "clear", "tombstone", "keep"]
    rows: int
    bytes: int
    own: bool = True  # the person's own rows; False: others' rows linking to the person


@dataclass(frozen=True)
class PersonFootprint:
    """What a request about one person would touch: rows per table, files, other systems."""

    tenant: str
    person: str
    tables: list[PersonTableCount]
    files: int
    file_bytes: int
    systems: dict[str, str] = field(default_factory=dict)  # name -> how it is handled
    # What an erasure of the person would refuse, found now: nothing is asked of anyone
    # (no system erased, no role notified) while one remains.
    refusals: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """The person's own rows."""
        return sum(t.rows for t in self.tables if t.own)

    @property
    def linked(self) -> int:
        """Others' rows pointing at the person (in an access answer by keys and links)."""
        return sum(t.rows for t in self.tables if not t.own)


def person_key(person: str) -> str:
    if not person or len(person) > 200 or any(ch.isspace() for ch in person):
        raise TenantError(
            f"person reference {person!r} is not a key: give the person's key in the person "
            "table (e.g. the user's id), not a name or an address"
        )
    return person


def person_footprint(settings: Settings, tenant: str, person: str) -> PersonFootprint:
    """Every row and file of `person` in `tenant`, counted; the other systems' handling. Stops
    if the person is not a person of the tenant, or the data map leaves something uncovered."""
    tenant = validate_tenant_id(tenant)
    person = person_key(person)
    datamap = datamap_of(settings)
    scope = datamap.require_person_scope()
    found = home(settings, datamap).find_person(tenant, person, scope)
    counts = [PersonTableCount(scope.table, "", scope.erase, found.counts[scope.table],
                               found.sizes.get(scope.table, 0))]  # fmt: skip
    for table, entry in scope.tables.items():
        if entry.by and entry.erase:
            counts.append(PersonTableCount(table, entry.by, entry.erase, found.counts[table],
                                           found.sizes.get(table, 0)))  # fmt: skip
    counts += [
        PersonTableCount(table, column, link.rule, found.links[f"{table}.{column}"], 0, own=False)
        for table, column, link in scope.every_link()
    ]
    refusals = list(found.refusals)
    systems = {}
    for name, declared, location in erasable(settings, datamap, scope):
        items = location.find_person(tenant, person, declared)
        for item, rows in items.counts.items():
            declared_table = declared.tables.get(item)
            counts.append(
                PersonTableCount(
                    item if declared_table else f"{name}: {item}",
                    (declared_table and declared_table.by) or "",
                    (declared_table and declared_table.erase) or "delete",
                    rows,
                    items.sizes.get(item, 0),
                )
            )
        for key, rows in items.links.items():
            table, column = key.rsplit(".", 1)
            rule = declared.tables[table].links[column].rule
            counts.append(PersonTableCount(table, column, rule, rows, 0, own=False))
        refusals += [f"{name}: {refusal}" for refusal in items.refusals]
        systems[name] = f"found and erased by its plug-in: {items.total} item(s)"
    for name, system in scope.systems.items():
        if system.by_plugin:
            continue
        if system.lingers is not None:
            systems[name] = f"lingers: copies expire within {system.lingers}"
        elif system.attested is not None:
            systems[name] = f"attested by the {system.attested.role}"
        else:
            systems[name] = f"holds nothing of a person: {system.holds_nothing}"
    return PersonFootprint(
        tenant=tenant,
        person=person,
        tables=counts,
        files=found.objects,
        file_bytes=found.object_bytes,
        systems=systems,
        refusals=refusals,
    )
