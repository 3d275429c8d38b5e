"""Which columns that select a tenant's rows lead no index (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from offboarding.planning.tables import CatalogTable, Classification

__all__ = ["MissingIndex", "index_serves", "missing_indexes", "reached_through_indexes"]


@dataclass(frozen=True)
class MissingIndex:
    """Columns that select a tenant's rows but lead no index: every statement that selects
    them reads the whole table, so its cost grows with the platform, not with the tenant."""

    table: str
    columns: tuple[str, ...]
    reason: str


def missing_indexes(
    classification: Classification,
    tables: list[CatalogTable],
    indexes: dict[str, list[tuple[str, ...]]],
) -> list[MissingIndex]:
    """The tenant column of every tenant-scoped table, and the foreign keys through which
    derived rows (and reply threads) are found, that no valid index leads with (pure).

    An index serves the columns when its first columns are exactly those, in any order."""

    def served(table: str, columns: tuple[str, ...]) -> bool:
        return index_serves(indexes, table, columns)

    by_name = {t.qualified: t for t in tables}
    found: list[MissingIndex] = []
    for table in classification.tenant_scoped:
        column = (classification.owner_column(table),)
        if not served(table, column):
            found.append(MissingIndex(table, column, "the tenant column"))
    for table in classification.owned:
        links = list(classification.derived.get(table, ()))
        links += [
            fk
            for fk in by_name[table].foreign_keys
            if fk.references == table and fk not in links  # reply threads, deleted leaves first
        ]
        for fk in links:
            if not served(table, fk.columns) and not served(table, fk.involved):
                kind = "declared reference" if fk.declared else "foreign key"
                found.append(MissingIndex(table, fk.columns, f"the {kind} to {fk.references}"))
    return found


def index_serves(
    indexes: dict[str, list[tuple[str, ...]]], table: str, columns: tuple[str, ...]
) -> bool:
    """Some index of `table` leads with exactly `columns` (in any order)."""
    wanted = set(columns)
    return any(set(index[: len(columns)]) == wanted for index in indexes.get(table, []))


def reached_through_indexes(
    classification: Classification,
    tables: list[CatalogTable],
    indexes: dict[str, list[tuple[str, ...]]],
) -> bool:
    """Every column that selects a tenant's rows leads an index (`missing_indexes` finds none),
    and so does every foreign key into a tenant-owned table: then every statement of the
    destruction, PostgreSQL's own referential checks included, can start from the tenant's
    rows and never needs to read the whole of a table."""
    owned = set(classification.owned)
    return not missing_indexes(classification, tables, indexes) and all(
        index_serves(indexes, t.qualified, fk.columns)
        for t in tables
        for fk in t.foreign_keys
        if fk.references in owned
    )
