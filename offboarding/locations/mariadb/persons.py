"""One person in a MariaDB database of the platform: found, exported and erased as the data
map's `[person.systems.<name>.tables]` declares, with the same proof as an erasure in the
platform's PostgreSQL database.

A person's rows of a table are the tenant's rows (the scope the export and the destruction
use) whose `by` column holds the person's key. The erasure runs in one transaction: the rows
are locked and marked by primary key; no row outside the marked ones may reference a row about
to be deleted (else nothing changes, and the error names the table and key to declare); each
statement changes exactly the marked rows; afterwards no row of the person is left, and no
kept row holds a personal value. Only then does it commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
)
from offboarding.core.names import inside, split_qualified, table_folder
from offboarding.core.records import ExportedPart, TableItem
from offboarding.datamap import PersonSystem, PersonTable
from offboarding.locations.base import PersonErased, PersonExport, PersonItems
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.mariadb.snapshot import write_table
from offboarding.planning import CatalogTable, Classification, deletion_order

if TYPE_CHECKING:
    from offboarding.locations.mariadb import MariaDBLocation
    from offboarding.locations.mariadb.catalogue import Catalogue
    from offboarding.locations.mariadb.catalogue import Connection as _Connection

__all__ = ["erase_person", "export_person", "find_person"]

_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
# Marked keys are bound as parameters per statement, this many rows at a time.
_CHUNK = 500


class _Declared:
    """The declared tables, checked against the catalogue (fail closed)."""

    def __init__(
        self,
        location: MariaDBLocation,
        catalogue: Catalogue,
        classification: Classification,
        declared: PersonSystem,
    ) -> None:
        self.location, self.catalogue, self.classification = location, catalogue, classification
        self.tables: dict[str, tuple[CatalogTable, PersonTable]] = {}
        by_name = {t.qualified: t for t in catalogue.tables}
        where = f"the data map's [person.systems.{location.name}]"
        for qualified, entry in declared.tables.items():
            system, _ = split_qualified(qualified)
            table = by_name.get(qualified)
            if system != location.name or table is None:
                raise ConfigurationError(
                    f"{where} names {qualified!r}, which is not a table of system "
                    f"{location.name!r}: write it as {location.name}.<table>"
                )
            if qualified not in classification.owned:
                raise ConfigurationError(
                    f"{where}: {qualified} holds no tenant rows (not classified as the "
                    "tenant's): a person's rows are always within a tenant's"
                )
            if entry.by is None or entry.links or entry.reference:
                raise ConfigurationError(
                    f"{where}: {qualified} declares links or a reference rule; in a "
                    "MariaDB system a person's rows are declared by `by` alone for now. "
                    "Declare by (the column of the person's own rows) with erase"
                )
            columns = {c.name: c for c in catalogue.columns[table.name]}
            for name in (entry.by, *entry.personal):
                if name not in columns:
                    raise ConfigurationError(f"{where}: {qualified} has no column {name!r}")
            if entry.files:
                raise ConfigurationError(
                    f"{where}: {qualified} names files columns; files of a person are declared "
                    "on the platform database's tables, whose erasure deletes them"
                )
            if not table.primary_key:
                raise ConfigurationError(f"{where}: {qualified} has no primary key to mark rows")
            for name in entry.personal if entry.erase == "pseudonymise" else ():
                column = columns[name]
                if not column.nullable and column.data_type.lower() not in _TEXT:
                    raise ConfigurationError(
                        f"{where}: {qualified}.{name} is NOT NULL and not text, so a kept "
                        'row\'s value cannot be replaced: erase = "delete", or allow NULL'
                    )
            self.tables[qualified] = (table, entry)

    def condition(self, qualified: str) -> str:
        """The person's rows of the table (as `t`), with %(tenant)s and %(person)s."""
        _, entry = self.tables[qualified]
        tenant = self.location._where(self.classification, qualified, "t")
        return f"({tenant} AND t.{quote(_by(entry))} = %(person)s)"


def _by(entry: PersonTable) -> str:
    assert entry.by is not None  # checked by _Declared
    return entry.by


def _load(location: MariaDBLocation, conn: _Connection, declared: PersonSystem) -> _Declared:
    catalogue = location._catalogue(conn)
    classification, _ = location._classify(catalogue)
    return _Declared(location, catalogue, classification, declared)


def _scalar(conn: _Connection, statement: str, params: dict[str, Any] | list[Any]) -> int:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        row = cur.fetchone()
    return int(row[0] or 0) if row else 0


def find_person(
    location: MariaDBLocation, tenant: str, person: str, declared: PersonSystem
) -> PersonItems:
    params = {"tenant": tenant, "person": person}
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    with location._connect() as conn:
        found = _load(location, conn, declared)
        for qualified, (table, _) in found.tables.items():
            counts[qualified] = _scalar(
                conn,
                f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE {found.condition(qualified)}",
                params,
            )
            average = found.catalogue.rows_estimate.get(table.name, (0, 0))[1]
            sizes[qualified] = counts[qualified] * average
        conn.rollback()
    return PersonItems(counts=counts, sizes=sizes)


def export_person(
    location: MariaDBLocation, tenant: str, person: str, declared: PersonSystem, scratch: Path
) -> PersonExport:
    """The person's rows of each declared table, from one consistent read, as Parquet parts."""
    params = {"tenant": tenant, "person": person}
    parts: list[ExportedPart] = []
    tables: list[TableItem] = []
    with location._connect() as conn:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        found = _load(location, conn, declared)
        for qualified, (table, _) in found.tables.items():
            relative = f"{table_folder(qualified)}part-00000.parquet"
            rows, columns = write_table(
                location.name, conn, table, found.catalogue.columns[table.name],
                found.condition(qualified), params, inside(scratch, relative),
            )  # fmt: skip
            size = inside(scratch, relative).stat().st_size
            parts.append(
                ExportedPart(
                    path=relative,
                    source=f"scratch:{relative}",
                    kind="table",
                    table=qualified,
                    rows=rows,
                    columns=columns,
                    size=size,
                )
            )
            tables.append(location._item(found.classification, table, found.catalogue, rows, size))
        conn.rollback()
    return PersonExport(tables=tables, parts=parts)


def _in_keys(
    alias: str, keys: tuple[str, ...], marked: list[tuple[Any, ...]]
) -> tuple[str, list[Any]]:
    """`(alias.k1, ...) IN ((%s, ...), ...)` for the marked keys, and their values."""
    columns = ", ".join(f"{alias}.{quote(k)}" for k in keys)
    row = "(" + ", ".join(["%s"] * len(keys)) + ")"
    values = [v for key in marked for v in key]
    return f"({columns}) IN ({', '.join([row] * len(marked))})", values


def _mark(
    conn: _Connection, found: _Declared, params: dict[str, Any]
) -> dict[str, list[tuple[Any, ...]]]:
    """Each declared table's rows of the person, locked, by primary key."""
    marked: dict[str, list[tuple[Any, ...]]] = {}
    with conn.cursor() as cur:
        for qualified, (table, _) in found.tables.items():
            keys = ", ".join(f"t.{quote(k)}" for k in table.primary_key)
            cur.execute(
                f"SELECT {keys} FROM {quote(table.name)} t WHERE {found.condition(qualified)} "
                "FOR UPDATE",
                params,
            )
            marked[qualified] = [tuple(row) for row in cur.fetchall()]
    return marked


def _refuse_outside_references(
    conn: _Connection, found: _Declared, doomed: dict[str, list[tuple[Any, ...]]]
) -> None:
    """No row outside the doomed ones references a row to be deleted, through any key of the
    database: else a delete would cascade into, null or be refused by someone else's row."""
    by_name = {t.qualified: t for t in found.catalogue.tables}
    problems: list[str] = []
    for child in found.catalogue.tables:
        for fk in child.foreign_keys:
            parent_rows = doomed.get(fk.references)
            if not parent_rows:
                continue
            parent = by_name[fk.references]
            for start in range(0, len(parent_rows), _CHUNK):
                chunk = parent_rows[start : start + _CHUNK]
                match, values = _in_keys("p", parent.primary_key, chunk)
                joined = " AND ".join(
                    f"p.{quote(r)} = c.{quote(c)}"
                    for c, r in zip(fk.columns, fk.referenced_columns, strict=True)
                )
                own = doomed.get(child.qualified, [])
                outside = ""
                if own:
                    own_match, own_values = _in_keys("c", child.primary_key, own)
                    outside, values = f" AND NOT {own_match}", values + own_values
                count = _scalar(
                    conn,
                    f"SELECT COUNT(*) FROM {quote(child.name)} c JOIN {quote(parent.name)} p "
                    f"ON {joined} WHERE {match}{outside}",
                    values,
                )
                if count:
                    problems.append(f"{count} row(s) of {child.qualified} through {fk.name}")
    if problems:
        raise IsolationBreachError(
            f"rows outside the person's reference the rows their erasure would delete: "
            f"{'; '.join(problems)}. Nothing was changed: keep those rows (erase = "
            '"pseudonymise") or declare the referencing tables too',
            facts={
                "nature": "an erasure's delete would reach rows that are not the person's",
                "affected_tenants": [],
                "categories": sorted({p.split(" of ", 1)[1].split(" ")[0] for p in problems}),
                "approximate_records": None,
                "approximate_people": 1,
            },
        )


def _changed(conn: _Connection, statement: str, values: list[Any]) -> int:
    with conn.cursor() as cur:
        cur.execute(statement, values)
        return int(cur.rowcount)


def erase_person(
    location: MariaDBLocation,
    tenant: str,
    person: str,
    declared: PersonSystem,
    replacement: str,
    *,
    person_kept: bool,
) -> PersonErased:
    params = {"tenant": tenant, "person": person}
    deleted: dict[str, int] = {}
    kept: dict[str, int] = {}
    with location._connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION")
        try:
            found = _load(location, conn, declared)
            marked = _mark(conn, found, params)
            doomed = {q: k for q, k in marked.items() if found.tables[q][1].erase == "delete"}
            _refuse_outside_references(conn, found, doomed)
            parents = {
                q: {fk.references for fk in found.tables[q][0].foreign_keys} & set(doomed)
                for q in doomed
            }
            for qualified in deletion_order(parents):
                deleted[qualified] = _apply(conn, found, qualified, marked[qualified], "DELETE")
            for qualified, keys in marked.items():
                if qualified not in doomed:
                    kept[qualified] = _pseudonymise(
                        conn, found, qualified, keys, replacement, person_kept
                    )
            _verify(conn, found, params, replacement, person_kept)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return PersonErased(
        deleted=deleted,
        pseudonymised=kept,
        verification="in one REPEATABLE READ transaction, before it committed: the person's "
        "rows locked and marked by key; no other row referencing one to be deleted; each "
        "statement changed exactly the marked rows; no row of the person left, no personal "
        "value in a kept row",
    )


def _levels(
    conn: _Connection, table: CatalogTable, keys: list[tuple[Any, ...]]
) -> list[list[tuple[Any, ...]]]:
    """The marked rows in deletion rounds: a row before any marked row it references through
    a key of the table to itself (a reply before the comment it answers), since the server
    checks each row's keys as it deletes it."""
    own = [fk for fk in table.foreign_keys if fk.references == table.qualified]
    if not own or len(keys) < 2:
        return [keys]
    columns = [*table.primary_key, *(c for fk in own for c in fk.columns)]
    referenced: dict[tuple[Any, ...], set[tuple[Any, ...]]] = {key: set() for key in keys}
    for start in range(0, len(keys), _CHUNK):
        match, values = _in_keys("t", table.primary_key, keys[start : start + _CHUNK])
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(f't.{quote(c)}' for c in columns)} FROM "
                f"{quote(table.name)} t WHERE {match}",
                values,
            )
            rows = cur.fetchall()
        width = len(table.primary_key)
        for row in rows:
            offset = width
            for fk in own:
                target = tuple(row[offset : offset + len(fk.columns)])
                offset += len(fk.columns)
                if fk.referenced_columns == table.primary_key and target in referenced:
                    referenced[target].add(tuple(row[:width]))
    levels: list[list[tuple[Any, ...]]] = []
    remaining = set(keys)
    while remaining:
        level = [k for k in keys if k in remaining and not (referenced[k] & remaining)]
        if not level:  # a cycle among the person's own rows: the server decides
            level = [k for k in keys if k in remaining]
        levels.append(level)
        remaining -= set(level)
    return levels


def _apply(
    conn: _Connection, found: _Declared, qualified: str, keys: list[tuple[Any, ...]], verb: str
) -> int:
    table, _ = found.tables[qualified]
    changed = 0
    for level in _levels(conn, table, keys):
        for start in range(0, len(level), _CHUNK):
            match, values = _in_keys("t", table.primary_key, level[start : start + _CHUNK])
            statement = f"DELETE t FROM {quote(table.name)} t WHERE {match}"
            changed += _changed(conn, statement, values)
    if changed != len(keys):
        raise DestructionIncompleteError(
            f"{qualified}: {verb} changed {changed} row(s) of the {len(keys)} marked: nothing "
            "is kept; retry"
        )
    return changed


def _pseudonymise(
    conn: _Connection,
    found: _Declared,
    qualified: str,
    keys: list[tuple[Any, ...]],
    replacement: str,
    person_kept: bool,
) -> int:
    table, entry = found.tables[qualified]
    types = {c.name: c for c in found.catalogue.columns[table.name]}
    assignments: list[str] = []
    values: list[Any] = []
    for name in entry.personal:
        if types[name].data_type.lower() in _TEXT:
            assignments.append(f"t.{quote(name)} = %s")
            values.append(replacement)
        else:
            assignments.append(f"t.{quote(name)} = NULL")
    if not person_kept:  # the person's own row goes: the kept rows' reference with it
        if not types[_by(entry)].nullable:
            raise ConfigurationError(
                f"{qualified}.{entry.by} is NOT NULL, so a kept row cannot lose its reference "
                'to the deleted person: keep the person\'s row (erase = "pseudonymise" under '
                "[person]) or delete these rows"
            )
        assignments.append(f"t.{quote(_by(entry))} = NULL")
    changed = 0
    for start in range(0, len(keys), _CHUNK):
        if not assignments:
            break
        match, key_values = _in_keys("t", table.primary_key, keys[start : start + _CHUNK])
        # A row already pseudonymised (a rerun) is matched but not changed: count matches.
        changed += _scalar(
            conn, f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE {match}", key_values
        )
        _changed(
            conn,
            f"UPDATE {quote(table.name)} t SET {', '.join(assignments)} WHERE {match}",
            values + key_values,
        )
    if assignments and changed != len(keys):
        raise DestructionIncompleteError(
            f"{qualified}: {changed} row(s) of the {len(keys)} marked were found to update"
        )
    return len(keys)


def _verify(
    conn: _Connection,
    found: _Declared,
    params: dict[str, Any],
    replacement: str,
    person_kept: bool,
) -> None:
    for qualified, (table, entry) in found.tables.items():
        condition = found.condition(qualified)
        left = _scalar(
            conn, f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE {condition}", params
        )
        if entry.erase == "delete" or not person_kept:
            if left:
                raise DestructionIncompleteError(
                    f"{qualified}: {left} row(s) of the person left after the erasure; nothing "
                    "is kept (rolled back)"
                )
            continue
        types = {c.name: c for c in found.catalogue.columns[table.name]}
        personal = [
            f"(t.{quote(n)} IS NOT NULL AND BINARY t.{quote(n)} <> %(replacement)s)"
            if types[n].data_type.lower() in _TEXT
            else f"t.{quote(n)} IS NOT NULL"
            for n in entry.personal
        ]
        if personal and _scalar(
            conn,
            f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE {condition} AND "
            f"({' OR '.join(personal)})",
            {**params, "replacement": replacement},
        ):
            raise DestructionIncompleteError(
                f"{qualified}: a kept row of the person still holds a personal value; nothing "
                "is kept (rolled back)"
            )
