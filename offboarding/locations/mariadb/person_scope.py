"""Where one person's rows are in a MariaDB database of the platform, as the data map's
`[person.systems.<name>.tables]` declares them, checked against the catalogue (fail closed):
per table, the person's own rows (`by`) and the rows of others whose columns point at the
person (`links`, each with its rule), always within the tenant's rows; and the proof that no
row outside the person's references a row an erasure would delete.

Conditions are written for the table as `t`, with %(tenant)s and %(person)s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offboarding.core.errors import ConfigurationError, IsolationBreachError
from offboarding.core.names import split_qualified
from offboarding.datamap import PersonSystem, PersonTable
from offboarding.locations.mariadb.dialect import quote
from offboarding.planning import CatalogTable, Classification

if TYPE_CHECKING:
    from offboarding.locations.mariadb import MariaDBLocation
    from offboarding.locations.mariadb.catalogue import Catalogue, Column
    from offboarding.locations.mariadb.catalogue import Connection as _Connection

__all__ = ["CHUNK", "TEXT", "PersonTables", "in_keys", "load", "mark", "refuse_outside", "scalar"]

TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
# Marked keys are bound as parameters per statement, this many rows at a time.
CHUNK = 500


def _check_entry(
    where: str, qualified: str, entry: PersonTable, columns: dict[str, Column]
) -> None:
    """The entry's columns exist, and what an erasure does with them can be done here."""
    named = [*([entry.by] if entry.by else []), *entry.personal, *entry.links, *entry.disclose]
    for name in dict.fromkeys(named):
        if name not in columns:
            raise ConfigurationError(f"{where}: {qualified} has no column {name!r}")
    if entry.files:
        raise ConfigurationError(
            f"{where}: {qualified} names files columns; files of a person are declared "
            "on the platform database's tables, whose erasure deletes them"
        )
    if "tombstone" in (entry.reference, *(link.rule for link in entry.links.values())):
        raise ConfigurationError(
            f"{where}: {qualified} reassigns to the tombstone person, a row of the platform "
            "database's person table; in this system clear the column or keep it with why"
        )


def _erasure_problems(qualified: str, entry: PersonTable, columns: dict[str, Column]) -> list[str]:
    """What an erasure would refuse whatever the data (an access answer is not concerned)."""
    problems = [
        f"{qualified}.{name} is NOT NULL, so the erasure cannot clear it: keep it with why, "
        "or allow NULL"
        for name, link in entry.links.items()
        if link.rule == "clear" and not columns[name].nullable
    ]
    personal = entry.personal if entry.erase == "pseudonymise" else []
    problems += [
        f"{qualified}.{name} is NOT NULL and not text, so a kept row's value cannot be "
        'replaced: erase = "delete", or allow NULL'
        for name in personal
        if not columns[name].nullable and columns[name].data_type.lower() not in TEXT
    ]
    return problems


class PersonTables:
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
        self.refusals: list[str] = []  # what an erasure would refuse whatever the data
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
            if not table.primary_key:
                raise ConfigurationError(f"{where}: {qualified} has no primary key to mark rows")
            columns = {c.name: c for c in catalogue.columns[table.name]}
            _check_entry(where, qualified, entry, columns)
            self.refusals += _erasure_problems(qualified, entry, columns)
            self.tables[qualified] = (table, entry)

    def _is_person(self, qualified: str, column: str) -> str:
        tenant = self.location._where(self.classification, qualified, "t")
        return f"({tenant} AND t.{quote(column)} = %(person)s)"

    def condition(self, qualified: str) -> str:
        """The person's own rows of the table (none for a table of links only)."""
        entry = self.tables[qualified][1]
        return self._is_person(qualified, entry.by) if entry.by else "FALSE"

    def others(self, qualified: str, column: str | None = None) -> str:
        """Rows pointing at the person through `column` (or any link), not the person's."""
        entry = self.tables[qualified][1]
        links = [self._is_person(qualified, c) for c in entry.links if column in (None, c)]
        either = " OR ".join(links) or "FALSE"
        return f"(({either}) AND NOT COALESCE({self.condition(qualified)}, FALSE))"

    def everything(self, qualified: str) -> str:
        """Every row of the table a request about the person concerns: own or linked."""
        return f"({self.condition(qualified)} OR {self.others(qualified)})"

    def withheld(self, qualified: str) -> list[str]:
        """Columns of others' rows an access answer leaves out: all but their keys, their
        references and the disclosed ones (GDPR Art. 15(4))."""
        table, entry = self.tables[qualified]
        if not entry.links:
            return []
        kept = {
            *table.primary_key,
            *entry.links,
            *entry.disclose,
            *([entry.by] if entry.by else []),
        }
        kept.update(c for fk in table.foreign_keys for c in fk.involved)
        return [c.name for c in self.catalogue.columns[table.name] if c.name not in kept]


def load(location: MariaDBLocation, conn: _Connection, declared: PersonSystem) -> PersonTables:
    catalogue = location._catalogue(conn)
    classification, _ = location._classify(catalogue)
    return PersonTables(location, catalogue, classification, declared)


def scalar(conn: _Connection, statement: str, params: dict[str, Any] | list[Any]) -> int:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        row = cur.fetchone()
    return int(row[0] or 0) if row else 0


def in_keys(
    alias: str, keys: tuple[str, ...], marked: list[tuple[Any, ...]]
) -> tuple[str, list[Any]]:
    """`(alias.k1, ...) IN ((%s, ...), ...)` for the marked keys, and their values."""
    columns = ", ".join(f"{alias}.{quote(k)}" for k in keys)
    row = "(" + ", ".join(["%s"] * len(keys)) + ")"
    values = [v for key in marked for v in key]
    return f"({columns}) IN ({', '.join([row] * len(marked))})", values


def mark(
    conn: _Connection, found: PersonTables, params: dict[str, Any], *, lock: bool = True
) -> dict[str, list[tuple[Any, ...]]]:
    """Each declared table's rows of the person, locked (unless `lock` is false, to predict
    in a read-only snapshot), by primary key."""
    marked: dict[str, list[tuple[Any, ...]]] = {}
    with conn.cursor() as cur:
        for qualified, (table, _) in found.tables.items():
            keys = ", ".join(f"t.{quote(k)}" for k in table.primary_key)
            cur.execute(
                f"SELECT {keys} FROM {quote(table.name)} t WHERE {found.condition(qualified)}"
                + (" FOR UPDATE" if lock else ""),
                params,
            )
            marked[qualified] = [tuple(row) for row in cur.fetchall()]
    return marked


def refuse_outside(
    conn: _Connection, found: PersonTables, doomed: dict[str, list[tuple[Any, ...]]]
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
            for start in range(0, len(parent_rows), CHUNK):
                chunk = parent_rows[start : start + CHUNK]
                match, values = in_keys("p", parent.primary_key, chunk)
                joined = " AND ".join(
                    f"p.{quote(r)} = c.{quote(c)}"
                    for c, r in zip(fk.columns, fk.referenced_columns, strict=True)
                )
                own = doomed.get(child.qualified, [])
                outside = ""
                if own:
                    own_match, own_values = in_keys("c", child.primary_key, own)
                    outside, values = f" AND NOT {own_match}", values + own_values
                count = scalar(
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
