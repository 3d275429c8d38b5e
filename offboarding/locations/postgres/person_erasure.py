"""Erasing one person in the platform's PostgreSQL database, and the objects their rows name,
in one transaction that commits only when the construction checks out (the erasure's
proof: offboarding/persons/erasure.py describes it whole).

Every statement's condition is the tenant's own rows AND the person's key; no row outside the
doomed set may reference a row about to be deleted; each statement must affect exactly the
rows counted before it; afterwards no row of the person is left and kept rows hold no
personal value. The person's row is locked for the whole transaction, so no row can start
pointing at the person meanwhile; rows committed between the snapshot and the lock start the
erasure again on a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
    TenantError,
)
from offboarding.core.names import qualified, split_qualified
from offboarding.datamap import PersonScope, datamap_of
from offboarding.locations.base import KeptLink, PersonErased, quiet
from offboarding.locations.postgres.catalog import ident
from offboarding.locations.postgres.person_footprint import advice, doomed_tables
from offboarding.locations.postgres.person_scope import (
    PersonSelection,
    person_conditions,
    person_files,
    person_keys,
    require_person,
)
from offboarding.locations.postgres.rows import (
    affect,
    count_rows,
    lock_rows,
    mark_rows,
    references_now,
)
from offboarding.planning import deletion_order
from offboarding.stores import delete_object_versions, open_store

__all__ = ["erase_person"]

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_ATTEMPTS = 3


def _replace(selection: PersonSelection, table: str, columns: list[str], text: str) -> sql.Composed:
    types = {c.name: c.type_name for c in selection.columns[table]}
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(
            sql.Identifier(name),
            sql.Literal(text) if types[name] in _TEXT_TYPES else sql.SQL("NULL"),
        )
        for name in columns
    )


def _not_replaced(
    selection: PersonSelection, table: str, columns: list[str], text: str
) -> sql.Composable:
    """True for a kept row still holding a value of the person in one of `columns`."""
    types = {c.name: c.type_name for c in selection.columns[table]}
    schema, name = split_qualified(table)
    tests = [
        sql.SQL("{c} IS DISTINCT FROM {v}").format(
            c=sql.Identifier(schema, name, column),
            v=sql.Literal(text) if types[column] in _TEXT_TYPES else sql.SQL("NULL"),
        )
        for column in columns
    ]
    return sql.SQL(" OR ").join(tests) if tests else sql.SQL("FALSE")


def _delete_order(selection: PersonSelection, doomed: list[str]) -> list[str]:
    """Referencing tables before the tables they reference (the one order of deletion, as
    the destruction computes it), so no delete waits on a row that goes later."""
    return deletion_order(
        {table: {fk.references for fk in selection.tables[table].foreign_keys} for table in doomed}
    )


class _SnapshotBehind(Exception):
    """Rows of the person were committed between the transaction's snapshot and its lock."""


def _snapshot_current(settings: Settings, watched: list[tuple[str, sql.Composable, int]]) -> None:
    """The snapshot is taken at the transaction's first statement, the person's row locked a
    little later: a row pointing at the person that was being written in between committed
    after the snapshot, and the erasure cannot see it. Now that the lock holds new ones off,
    count the person's rows (and others' rows pointing at them) as committed (another
    connection) against what the snapshot counted, per (table, condition, count); any
    difference and the erasure starts again on a fresh snapshot."""
    with psycopg.connect(settings.require_database(), autocommit=True) as fresh:
        behind = [t for t, condition, n in watched if count_rows(fresh, t, condition) != n]
    if behind:
        raise _SnapshotBehind(", ".join(behind))


@dataclass(frozen=True)
class _Erased:
    deleted: dict[str, int]  # table -> rows deleted
    pseudonymised: dict[str, int]  # table -> rows kept, personal columns replaced
    keys: list[str]  # the person's objects, deleted
    generations: int
    file_bytes: int
    triggers: dict[str, list[str]]  # the platform's triggers on the touched tables
    links: list[KeptLink]  # what became of each column of kept rows pointing at the person


def _reference_value(
    selection: PersonSelection, table: str, column: str, rule: str
) -> sql.Composable:
    """What a column pointing at the person becomes by its rule: NULL, or the tombstone's key."""
    if rule == "clear":
        return sql.SQL("NULL")
    assert selection.tombstone is not None  # the data map requires one for the rule
    return selection.cast(table, column, selection.tombstone)


def _pseudonymise(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    counts: dict[str, int],
    replacement: str,
) -> tuple[dict[str, int], list[KeptLink]]:
    """The person's kept rows with their personal columns replaced, and their reference to
    the person cleared, reassigned or kept by its rule: rows changed per table (each
    statement changing exactly the marked rows), and what became of each reference."""
    own = selection.own
    pseudonymised: dict[str, int] = {}
    links: list[KeptLink] = []
    for table, entry in scope.tables.items():
        if entry.erase != "pseudonymise" or entry.by is None:
            continue
        rule = scope.kept_reference(entry)
        changes = (
            [_replace(selection, table, entry.personal, replacement)] if entry.personal else []
        )
        if rule != "keep":
            value = _reference_value(selection, table, entry.by, rule)
            changes.append(sql.SQL("{} = {}").format(sql.Identifier(entry.by), value))
        why = "the person's own rows, kept pseudonymised"
        if rule == "keep" and scope.erase == "delete":
            why += ': they keep the erased person\'s key, as declared (reference = "keep")'
        elif rule == "keep":
            why += ": they stay together under the person's kept row"
        links.append(KeptLink(table, entry.by, rule, counts[table], why))
        if changes and counts[table]:
            pseudonymised[table] = affect(conn, sql.SQL("UPDATE {} SET {} WHERE {}").format(
                ident(table), sql.SQL(", ").join(changes), own[table]
            ), counts[table], table)  # fmt: skip
        elif counts[table]:
            pseudonymised[table] = 0
    if scope.erase == "pseudonymise" and scope.personal:
        pseudonymised[scope.table] = affect(conn, sql.SQL("UPDATE {} SET {} WHERE {}").format(
            ident(scope.table), _replace(selection, scope.table, scope.personal, replacement),
            own[scope.table],
        ), 1, scope.table)  # fmt: skip
    return pseudonymised, links


def _linked_rows(
    selection: PersonSelection, table: str, column: str, doomed: list[str]
) -> sql.Composable:
    """Rows whose `column` names the person and that the erasure keeps."""
    link = selection.links[(table, column)]
    if table not in doomed:
        return link
    return sql.SQL("({} AND NOT coalesce({}, FALSE))").format(link, selection.own[table])


def _relink(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    linked: dict[tuple[str, str], int],
    doomed: list[str],
) -> list[KeptLink]:
    """Others' kept rows pointing at the person, by each column's rule: cleared, reassigned
    to the tombstone person (each statement changing exactly the rows counted), or kept."""
    done: list[KeptLink] = []
    for table, column, link in scope.every_link():
        rows = linked[(table, column)]
        if link.rule != "keep" and rows:
            affect(conn, sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
                ident(table), sql.Identifier(column),
                _reference_value(selection, table, column, link.rule),
                _linked_rows(selection, table, column, doomed),
            ), rows, f"{table}.{column}")  # fmt: skip
        done.append(KeptLink(table, column, link.rule, rows, link.why))
    return done


def _erase_rows(
    conn: psycopg.Connection[Any],
    settings: Settings,
    scope: PersonScope,
    tenant: str,
    person: str,
    replacement: str,
    files: Any,
) -> _Erased:
    """In one transaction: check, change, verify, delete the files, commit."""
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '30s'")
        selection = person_conditions(conn, settings, scope, tenant, person)
        if selection.refusals:
            raise ConfigurationError(
                f"{datamap_of(settings).source}: " + "; ".join(selection.refusals)
            )
        own = selection.own
        require_person(conn, scope, own, tenant, person)
        conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE {} FOR UPDATE").format(
                ident(scope.table), own[scope.table]
            )
        )
        keys = person_files(conn, scope, selection, files, tenant, person, missing_ok=True)
        marked = mark_rows(conn, selection.tables, own)
        _require_only_the_person(conn, scope, selection, marked, person)
        counts = {t: count_rows(conn, t, marked[t]) for t in marked}
        doomed = doomed_tables(scope)
        rows_of = {(t, c): _linked_rows(selection, t, c, doomed) for t, c in selection.links}
        linked = {key: count_rows(conn, key[0], rows) for key, rows in rows_of.items()}
        watched = [(t, own[t], counts[t]) for t in own]
        watched += [(t, rows_of[t, c], n) for (t, c), n in linked.items()]
        _snapshot_current(settings, watched)
        for table in doomed:
            lock_rows(conn, table, marked[table])
        blocked = references_now(
            settings.require_database(), selection.catalog,
            {t: own[t] for t in doomed}, person_keys(scope, selection.catalog),
        )  # fmt: skip
        if blocked:
            raise TenantError(
                "the erasure would reach rows that are not the person's, so nothing was "
                f"changed: {' '.join(advice(scope, r) for r in blocked)}"
            )
        links = _relink(conn, scope, selection, linked, doomed)
        pseudonymised, references = _pseudonymise(conn, scope, selection, counts, replacement)
        links += references
        deleted: dict[str, int] = {}
        for table in _delete_order(selection, doomed):
            deleted[table] = affect(
                conn,
                sql.SQL("DELETE FROM {} WHERE {}").format(ident(table), own[table]),
                counts[table],
                table,
            )
        _verify(conn, selection, scope, replacement, marked, links, rows_of)
        triggers = _triggers(conn, list(selection.conditions))
        removed = [delete_object_versions(files, key) for key in keys]
        still = [k for k in keys if files.exists(k)]
        if still:
            raise DestructionIncompleteError(
                f"{len(still)} of the person's files are still in the files store after "
                "deletion; nothing in the database was changed. Retry the erasure"
            )
    return _Erased(
        deleted=deleted,
        pseudonymised=pseudonymised,
        keys=keys,
        generations=sum(n for n, _ in removed),
        file_bytes=sum(b for _, b in removed),
        triggers=triggers,
        links=links,
    )


def _require_only_the_person(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    marked: dict[str, sql.Composable],
    person: str,
) -> None:
    """Proof, inside the transaction, that the person table's rows about to change are
    exactly one: the row whose key is the person's (whatever the data map declares)."""
    schema, name = split_qualified(scope.table)
    pg_type = next(c.pg_type for c in selection.columns[scope.table] if c.name == scope.key)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE {key} IS DISTINCT FROM {person}::{type}) "
            "FROM {table} WHERE {marked}"
        ).format(
            key=sql.Identifier(schema, name, scope.key),
            person=sql.Literal(person),
            type=sql.SQL(pg_type),
            table=ident(scope.table),
            marked=marked[scope.table],
        )
    ).fetchone()
    rows, others = (int(row[0]), int(row[1])) if row else (0, 0)
    if (rows, others) != (1, 0):
        raise IsolationBreachError(
            f"the erasure selected {rows} row(s) of {scope.table}, {others} of them not the "
            f"person's own (key {scope.key}): nothing was changed. Check [person] in the data "
            "map: the person table's rows are selected by its key alone",
            facts={
                "nature": "an erasure selected rows of the person table other than the person's "
                "(refused before any change)",
                "affected_tenants": [], "categories": [f"rows of {scope.table}"],
                "approximate_records": others, "approximate_people": others,
            },
        )  # fmt: skip


def _verify(
    conn: psycopg.Connection[Any],
    selection: PersonSelection,
    scope: PersonScope,
    replacement: str,
    marked: dict[str, sql.Composable],
    links: list[KeptLink],
    rows_of: dict[tuple[str, str], sql.Composable],
) -> None:
    """Inside the transaction, before it commits: nothing of the person left but the links
    kept by their rule."""
    own = selection.own
    left: list[str] = []
    for table in doomed_tables(scope):
        # Two counts, each served by an index (an OR of the two would read the whole table).
        if n := count_rows(conn, table, own[table]) + count_rows(conn, table, marked[table]):
            left.append(f"{n} row(s) of {table}")
    kept = {t: p.personal for t, p in scope.tables.items() if p.erase == "pseudonymise"}
    if scope.erase == "pseudonymise":
        kept[scope.table] = scope.personal
    for table, personal in kept.items():
        still = sql.SQL("{} AND ({})").format(
            marked[table], _not_replaced(selection, table, personal, replacement)
        )
        if n := count_rows(conn, table, still):
            left.append(f"{n} kept row(s) of {table} with a personal value")
    for link in links:
        rows = rows_of.get((link.table, link.column), own.get(link.table))
        assert rows is not None  # a link's rows, or a pseudonymised table's own
        expected = link.rows if link.rule == "keep" else 0
        if (n := count_rows(conn, link.table, rows)) != expected:
            left.append(
                f"{n} row(s) of {link.table} with {link.column} naming the person "
                f"({expected} kept by rule {link.rule})"
            )
    if left:
        raise DestructionIncompleteError(
            "the erasure did not check out; nothing was changed: " + "; ".join(left)
        )


def _triggers(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, list[str]]:
    """The platform's own triggers on the touched tables (they ran with the erasure)."""
    pairs = [split_qualified(t) for t in tables]
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND (n.nspname, c.relname) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY 1, 2, 3",
        ([schema for schema, _ in pairs], [name for _, name in pairs]),
    ).fetchall()
    found: dict[str, list[str]] = {}
    for schema, table, name in rows:
        found.setdefault(qualified(str(schema), str(table)), []).append(str(name))
    return found


def erase_person(
    settings: Settings,
    scope: PersonScope,
    tenant: str,
    person: str,
    replacement: str,
    say: Callable[[str], None] = quiet,
) -> PersonErased:
    """The person's rows and the objects they name, erased in one REPEATABLE READ transaction,
    tried again on a fresh snapshot when rows of the person were committed meanwhile."""
    files = open_store(settings.store_url("files"))
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with psycopg.connect(settings.require_database()) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                erased = _erase_rows(conn, settings, scope, tenant, person, replacement, files)
            break
        except (_SnapshotBehind, psycopg.errors.SerializationFailure) as moved:
            say(f"the person's rows changed during attempt {attempt} ({moved}): again")
            if attempt == _ATTEMPTS:
                raise TenantError(
                    f"the person's rows kept changing during {_ATTEMPTS} attempts (nothing "
                    "was changed): the person is still writing. Ask the client to disable "
                    "their account, then retry"
                ) from None
    return PersonErased(
        deleted=erased.deleted,
        pseudonymised=erased.pseudonymised,
        verification="in the erasure's REPEATABLE READ transaction, before it committed: the "
        "person's rows marked by key; no other row referencing one to be deleted; each "
        "statement changed exactly the marked rows; no row of the person left in any table, "
        "no personal value in a kept row, no column naming the person but the links kept by "
        "their rule; each file absent afterwards",
        objects=len(erased.keys),
        generations=erased.generations,
        object_bytes=erased.file_bytes,
        triggers=erased.triggers,
        links=erased.links,
    )
