"""One person's footprint in the platform's PostgreSQL database, and every refusal an erasure
of theirs would meet, found before anything is changed or anyone is asked.

The footprint counts, in one read-only snapshot, the person's own rows per table, the rows of
others that point at the person per column (each with its rule: clear, tombstone or keep),
and the objects their rows name. The refusals are those of the erasure's own checks, run on
the same snapshot: the scope against the catalogue (a missing declaration, a NOT NULL column
to clear) stops the footprint itself, naming every problem at once; rows outside the person's
that reference rows the erasure would delete (a colleague's pin on the person's message) are
listed, each with what the operator can do.
"""

from __future__ import annotations

from typing import Any

import psycopg

from offboarding.core.config import Settings
from offboarding.datamap import PersonScope
from offboarding.locations.base import PersonItems
from offboarding.locations.postgres.person_scope import (
    PersonSelection,
    person_conditions,
    person_files,
    person_keys,
    require_person,
)
from offboarding.locations.postgres.rows import Reference, references_into
from offboarding.locations.postgres.scope import measure
from offboarding.locations.prefixed import digest_object
from offboarding.stores import open_store

__all__ = ["advice", "count_person", "doomed_tables", "refusals"]


def doomed_tables(scope: PersonScope) -> list[str]:
    """The tables whose person's rows are deleted (the person table last, if it goes)."""
    return [t for t, p in scope.tables.items() if p.erase == "delete"] + (
        [scope.table] if scope.erase == "delete" else []
    )


def advice(scope: PersonScope, reference: Reference) -> str:
    """What the operator can actually do about one blocking reference."""
    keep = (
        'erase = "pseudonymise" under [person]'
        if reference.references == scope.table
        else f'erase = "pseudonymise" under [person.tables."{reference.references}"]'
    )
    if reference.table == scope.table == reference.references:
        return (
            f"{reference}: other people's rows point at the person ({reference.constraint}, "
            f"e.g. their manager). They are not the person's: declare the column under "
            f'[person] links (clear it, reassign it with "tombstone", or keep it with why), '
            f"or keep the person's row with {keep}."
        )
    if reference.table == scope.table or reference.table in scope.tables:
        return (
            f"{reference}: rows the erasure keeps reference rows it deletes: delete them too "
            f'(erase = "delete" for {reference.table}), or keep the referenced rows with {keep}.'
        )
    return (
        f"{reference}: keep the referenced rows with {keep}; declare {reference.table} under "
        "[person.tables] only if those rows are the person's own (a column holding the "
        "person's key)."
    )


def refusals(
    conn: psycopg.Connection[Any], scope: PersonScope, selection: PersonSelection
) -> list[str]:
    """Rows outside the erasure's that reference rows it would delete, as of `conn`'s
    snapshot: each refuses the erasure (nothing changes), with what to do about it."""
    doomed = {t: selection.own[t] for t in doomed_tables(scope)}
    blocked = references_into(
        conn, selection.catalog, doomed, person_keys(scope, selection.catalog)
    )
    return [advice(scope, r) for r in blocked]


def count_person(settings: Settings, scope: PersonScope, tenant: str, person: str) -> PersonItems:
    """The person's rows per table (the person table first), the rows of others pointing at
    them per column, their objects, and what an erasure would refuse, in one read-only
    snapshot. Stops if the person is not a person of the tenant, or the data map contradicts
    the catalogue (naming every problem)."""
    files = open_store(settings.store_url("files"))
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    with psycopg.connect(settings.require_database()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            selection = person_conditions(conn, settings, scope, tenant, person)
            counts[scope.table], sizes[scope.table] = require_person(
                conn, scope, selection.own, tenant, person
            )
            for table, condition in selection.own.items():
                counts[table], sizes[table] = measure(conn, table, condition)
            links = {
                f"{table}.{column}": measure(conn, table, selection.others(table, column))[0]
                for table, column in selection.links
            }
            keys = person_files(conn, scope, selection, files, tenant, person)
            refused = [*selection.refusals, *refusals(conn, scope, selection)]
    return PersonItems(
        counts=counts,
        sizes=sizes,
        objects=len(keys),
        object_bytes=sum(digest_object(files, k)[0] for k in keys),
        links=links,
        refusals=refused,
    )
