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
from offboarding.core.names import inside, table_folder
from offboarding.core.records import ExportedPart, TableItem
from offboarding.datamap import PersonSystem
from offboarding.locations.base import KeptLink, PersonErased, PersonExport, PersonItems
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.mariadb.person_scope import (
    CHUNK,
    TEXT,
    PersonTables,
    in_keys,
    load,
    mark,
    refuse_outside,
    scalar,
)
from offboarding.locations.mariadb.snapshot import write_table
from offboarding.planning import CatalogTable, deletion_order

if TYPE_CHECKING:
    from offboarding.locations.mariadb import MariaDBLocation
    from offboarding.locations.mariadb.catalogue import Connection as _Connection

__all__ = ["erase_person", "export_person", "find_person"]


def find_person(
    location: MariaDBLocation, tenant: str, person: str, declared: PersonSystem
) -> PersonItems:
    """The person's own rows per table, others' rows pointing at them per column, and what an
    erasure would refuse, in one consistent read (nothing locked, nothing changed)."""
    params = {"tenant": tenant, "person": person}
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    links: dict[str, int] = {}
    with location._connect() as conn:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        found = load(location, conn, declared)
        refusals = list(found.refusals)
        for qualified, (table, entry) in found.tables.items():
            source = f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE "
            for column in entry.links:
                links[f"{qualified}.{column}"] = scalar(
                    conn, source + found.others(qualified, column), params
                )
            if entry.by:
                counts[qualified] = scalar(conn, source + found.condition(qualified), params)
                average = found.catalogue.rows_estimate.get(table.name, (0, 0))[1]
                sizes[qualified] = counts[qualified] * average
        marked = mark(conn, found, params, lock=False)
        try:
            refuse_outside(conn, found, _doomed(found, marked))
        except IsolationBreachError as refused:
            refusals.append(str(refused))
        conn.rollback()
    return PersonItems(counts=counts, sizes=sizes, links=links, refusals=refusals)


def _doomed(
    found: PersonTables, marked: dict[str, list[tuple[Any, ...]]]
) -> dict[str, list[tuple[Any, ...]]]:
    return {q: k for q, k in marked.items() if found.tables[q][1].erase == "delete"}


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
        found = load(location, conn, declared)
        for qualified, (table, _) in found.tables.items():
            relative = f"{table_folder(qualified)}part-00000.parquet"
            withheld = found.withheld(qualified)
            rows, columns = write_table(
                location.name, conn, table, found.catalogue.columns[table.name],
                found.everything(qualified), params, inside(scratch, relative),
                withheld=(withheld, found.condition(qualified)),
                row_group_rows=location.settings.export.parquet_row_group_rows,
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
            item = location._item(found.classification, table, found.catalogue, rows, size)
            tables.append(item.model_copy(update={"withheld": sorted(withheld)}))
        conn.rollback()
    return PersonExport(tables=tables, parts=parts)


def _changed(conn: _Connection, statement: str, values: list[Any] | dict[str, Any]) -> int:
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
            found = load(location, conn, declared)
            if found.refusals:
                raise ConfigurationError(
                    f"the data map's [person.systems.{location.name}]: " + "; ".join(found.refusals)
                )
            marked = mark(conn, found, params)
            doomed = _doomed(found, marked)
            refuse_outside(conn, found, doomed)
            links = _relink(conn, found, params)
            parents = {
                q: {fk.references for fk in found.tables[q][0].foreign_keys} & set(doomed)
                for q in doomed
            }
            for qualified in deletion_order(parents):
                deleted[qualified] = _apply(conn, found, qualified, marked[qualified], "DELETE")
            for qualified, keys in marked.items():
                entry = found.tables[qualified][1]
                if qualified not in doomed and entry.by:
                    rule = entry.reference or ("keep" if person_kept else "clear")
                    kept[qualified] = _pseudonymise(conn, found, qualified, keys, replacement, rule)
                    links.append(KeptLink(qualified, entry.by, rule, len(keys),
                                          "the person's own rows, kept pseudonymised"))  # fmt: skip
            _verify(conn, found, params, replacement, links)
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
        "value in a kept row, no column naming the person but the links kept by their rule",
        links=links,
    )


def _relink(conn: _Connection, found: PersonTables, params: dict[str, Any]) -> list[KeptLink]:
    """Others' rows pointing at the person, by each column's rule: cleared (each statement
    changing exactly the rows counted, locked) or kept."""
    done: list[KeptLink] = []
    for qualified, (table, entry) in found.tables.items():
        for column, link in entry.links.items():
            others = found.others(qualified, column)
            rows = scalar(conn, f"SELECT COUNT(*) FROM (SELECT 1 FROM {quote(table.name)} t "
                          f"WHERE {others} FOR UPDATE) locked", params)  # fmt: skip
            if link.rule == "clear" and rows:
                changed = _changed(conn, f"UPDATE {quote(table.name)} t SET t.{quote(column)} = "
                                   f"NULL WHERE {others}", params)  # fmt: skip
                if changed != rows:
                    raise DestructionIncompleteError(
                        f"{qualified}.{column}: clearing changed {changed} row(s) of the {rows} "
                        "counted: nothing is kept; retry"
                    )
            done.append(KeptLink(qualified, column, link.rule, rows, link.why))
    return done


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
    for start in range(0, len(keys), CHUNK):
        match, values = in_keys("t", table.primary_key, keys[start : start + CHUNK])
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
    conn: _Connection, found: PersonTables, qualified: str, keys: list[tuple[Any, ...]], verb: str
) -> int:
    table, _ = found.tables[qualified]
    changed = 0
    for level in _levels(conn, table, keys):
        for start in range(0, len(level), CHUNK):
            match, values = in_keys("t", table.primary_key, level[start : start + CHUNK])
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
    found: PersonTables,
    qualified: str,
    keys: list[tuple[Any, ...]],
    replacement: str,
    rule: str,
) -> int:
    """The person's kept rows with their personal columns replaced, and their `by` column
    cleared where the rule says (by default, where the person's own row goes)."""
    table, entry = found.tables[qualified]
    types = {c.name: c for c in found.catalogue.columns[table.name]}
    assignments: list[str] = []
    values: list[Any] = []
    for name in entry.personal:
        if types[name].data_type.lower() in TEXT:
            assignments.append(f"t.{quote(name)} = %s")
            values.append(replacement)
        else:
            assignments.append(f"t.{quote(name)} = NULL")
    if rule == "clear" and entry.by:
        if not types[entry.by].nullable:
            raise ConfigurationError(
                f"{qualified}.{entry.by} is NOT NULL, so a kept row cannot lose its reference "
                'to the deleted person: keep the person\'s row (erase = "pseudonymise" under '
                '[person]), keep the reference (reference = "keep") or delete these rows'
            )
        assignments.append(f"t.{quote(entry.by)} = NULL")
    changed = 0
    for start in range(0, len(keys), CHUNK):
        if not assignments:
            break
        match, key_values = in_keys("t", table.primary_key, keys[start : start + CHUNK])
        # A row already pseudonymised (a rerun) is matched but not changed: count matches.
        changed += scalar(
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
    found: PersonTables,
    params: dict[str, Any],
    replacement: str,
    links: list[KeptLink],
) -> None:
    """Before the commit: no own row of the person left where deleted, no personal value in a
    kept one, no column naming the person but the links kept by their rule."""
    expected = {(k.table, k.column): k.rows if k.rule == "keep" else 0 for k in links}
    for qualified, (table, entry) in found.tables.items():
        source = f"SELECT COUNT(*) FROM {quote(table.name)} t WHERE "
        condition = found.condition(qualified)
        for column in entry.links:
            left = scalar(conn, source + found.others(qualified, column), params)
            if left != expected[qualified, column]:
                raise DestructionIncompleteError(
                    f"{qualified}.{column}: {left} row(s) still name the person, "
                    f"{expected[qualified, column]} kept by rule; nothing is kept (rolled back)"
                )
        if not entry.by:
            continue
        left = scalar(conn, source + condition, params)
        if entry.erase == "delete" or expected.get((qualified, entry.by)) == 0:
            if left:
                raise DestructionIncompleteError(
                    f"{qualified}: {left} row(s) of the person left after the erasure; nothing "
                    "is kept (rolled back)"
                )
            continue
        types = {c.name: c for c in found.catalogue.columns[table.name]}
        personal = [
            f"(t.{quote(n)} IS NOT NULL AND BINARY t.{quote(n)} <> %(replacement)s)"
            if types[n].data_type.lower() in TEXT
            else f"t.{quote(n)} IS NOT NULL"
            for n in entry.personal
        ]
        if personal and scalar(
            conn, source + f"{condition} AND ({' OR '.join(personal)})",
            {**params, "replacement": replacement},
        ):  # fmt: skip
            raise DestructionIncompleteError(
                f"{qualified}: a kept row of the person still holds a personal value; nothing "
                "is kept (rolled back)"
            )
