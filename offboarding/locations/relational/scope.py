"""Which rows of a table are the tenant's, for any SQL database: written once, rendered by the
database's dialect.

A row of a derived table (no tenant column) is the tenant's when its foreign keys reach the
tenant's rows and no other tenant's: every key that is set points at a row of the tenant. A
row whose keys reach the tenant and another tenant at once is *shared* (a neighbour's post
mentioning one of ours): it is neither the tenant's to export nor to destroy, and a case
stops on it unless the data map's `shared_rows` says, for its table, to leave it, delete it
with the tenant, or export it without destroying it.

Conditions are correlated subqueries (EXISTS on the parent's key), so the database reaches
the tenant's rows through indexes and never needs to read another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, Literal, Protocol, TypeVar

from offboarding.core.errors import ConfigurationError
from offboarding.planning import Classification, ForeignKey

__all__ = ["Dialect", "RelationalScope", "SharedRows"]

SharedRows = Literal["leave", "delete", "export"]
Q = TypeVar("Q")
# Past this depth a chain of foreign keys is refused rather than followed (a classification
# never derives one so deep; a loop would otherwise recurse without end).
_MAX_DEPTH = 32


class Dialect(Protocol[Q]):
    """How one database writes the pieces of a condition. `Q` is its fragment: a composed
    statement its driver quotes (psycopg), or text with named parameters (MySQLdb)."""

    def text(self, sql: str) -> Q:
        """SQL written by the pipeline itself, verbatim."""
        ...

    def fill(self, template: str, **parts: Q) -> Q:
        """`template` (SQL with `{name}` slots) with each slot replaced by its fragment."""
        ...

    def join(self, parts: Iterable[Q], separator: str) -> Q: ...

    def table(self, qualified: str) -> Q:
        """The table `schema.table`, quoted."""
        ...

    def column(self, table: str, alias: str | None, column: str) -> Q:
        """A column of `table`, through `alias` or else the table's full name, quoted."""
        ...

    def alias(self, name: str) -> Q: ...

    def value(self, value: str | int) -> Q:
        """A constant of the data map (a reference's none or type value), quoted."""
        ...

    def pseudonym(self, key: Q) -> Q:
        """A text that replaces a personal value: 'erased-' and a digest of the row's `key`
        (unique per row, the same at every attempt)."""
        ...

    def is_tenant(self, column: Q) -> Q:
        """The column holds exactly the tenant's id (the id bound by the dialect)."""
        ...


class RelationalScope(Generic[Q]):
    """Builds, for any table holding the tenant's rows, the condition that selects them.

    `alias` names the table in the query the condition goes into; without one, columns are
    qualified with the table's full name (a FROM without an alias)."""

    def __init__(
        self,
        classification: Classification,
        dialect: Dialect[Q],
        shared: Mapping[str, SharedRows] | None = None,
    ) -> None:
        self.classification = classification
        self.dialect = dialect
        self.shared: dict[str, SharedRows] = dict(shared or {})
        for table in self.shared:
            if len(classification.derived.get(table, ())) < 2:
                raise ConfigurationError(
                    f"shared_rows (formerly OFFBOARD_SHARED_ROWS) names {table!r}, which is not a "
                    "table whose rows reach tenants through two or more foreign keys (only such "
                    "rows can be shared): remove it, or fix its schema.table name"
                )

    def _columns(self, table: str, alias: str | None, columns: tuple[str, ...]) -> Q:
        d = self.dialect
        return d.fill("({c})", c=d.join((d.column(table, alias, c) for c in columns), ", "))

    def is_set(self, table: str, alias: str | None, fk: ForeignKey) -> Q:
        """The row's key `fk` points somewhere: no column NULL or one of the reference's none
        values, and the type columns of a polymorphic one hold its type."""
        d = self.dialect
        parts = [d.fill("{c} IS NOT NULL", c=d.column(table, alias, c)) for c in fk.columns]
        if fk.none:
            values = d.join((d.value(v) for v in fk.none), ", ")
            parts += [
                d.fill("{c} NOT IN ({v})", c=d.column(table, alias, c), v=values)
                for c in fk.columns
            ]
        parts += [
            d.fill("{c} = {v}", c=d.column(table, alias, c), v=d.value(v)) for c, v in fk.when
        ]
        return d.join(parts, " AND ")

    def pointing(self, table: str, alias: str | None, fk: ForeignKey) -> Q:
        """`AND` the key is set, where NULL alone does not say so (none or type values); else
        nothing (the key's equality already needs it set)."""
        if not fk.conditional:
            return self.dialect.text("")
        return self.dialect.fill(" AND {s}", s=self.is_set(table, alias, fk))

    def _reaches(self, table: str, alias: str | None, fk: ForeignKey, depth: int) -> Q:
        """The row's key `fk` points at a row the tenant's destruction removes."""
        parent = f"p{depth}"
        return self.dialect.fill(
            "EXISTS (SELECT 1 FROM {t} {p} WHERE {ref} = {cols}{set} AND {cond})",
            t=self.dialect.table(fk.references),
            p=self.dialect.alias(parent),
            ref=self._columns(fk.references, parent, fk.referenced_columns),
            cols=self._columns(table, alias, fk.columns),
            set=self.pointing(table, alias, fk),
            cond=self._destroyed(fk.references, parent, depth + 1),
        )

    def _elsewhere(self, table: str, alias: str | None, fk: ForeignKey, depth: int) -> Q:
        """The row's key `fk` is set and points at a row that is not the tenant's."""
        is_set = self.is_set(table, alias, fk)
        return self.dialect.fill(
            "({s} AND NOT {r})", s=is_set, r=self._reaches(table, alias, fk, depth)
        )

    def _derived(
        self, table: str, alias: str | None, depth: int, kind: Literal["own", "shared"]
    ) -> Q:
        d = self.dialect
        links = self.classification.derived[table]
        touches = d.fill(
            "({r})", r=d.join((self._reaches(table, alias, fk, depth) for fk in links), " OR ")
        )
        if len(links) == 1:  # one route: a row that reaches the tenant is the tenant's
            return touches if kind == "own" else d.text("FALSE")
        other = d.join((self._elsewhere(table, alias, fk, depth) for fk in links), " OR ")
        template = "({t} AND NOT ({o}))" if kind == "own" else "({t} AND ({o}))"
        return d.fill(template, t=touches, o=other)

    def _linked(self, table: str, alias: str | None, depth: int, kind: str) -> Q:
        """A shared entity's row is linked by a membership: of the tenant ('mine'), of anyone
        else ('others'), or of anyone ('any')."""
        d, entity = self.dialect, self.classification.entities[table]
        member = f"m{depth}"
        condition = {
            "mine": lambda: d.fill(
                " AND {c}", c=self._destroyed(entity.through, member, depth + 1)
            ),
            "others": lambda: d.fill(
                " AND ({c}) IS NOT TRUE", c=self._destroyed(entity.through, member, depth + 1)
            ),
            "any": lambda: d.text(""),
        }[kind]()
        return d.fill(
            "EXISTS (SELECT 1 FROM {t} {m} WHERE {cols} = {key}{c})",
            t=d.table(entity.through),
            m=d.alias(member),
            cols=self._columns(entity.through, member, entity.columns),
            key=self._columns(table, alias, entity.key),
            c=condition,
        )

    def _unshared(self, table: str, alias: str | None, depth: int) -> Q:
        return self.dialect.fill(
            "({m} AND NOT {o})",
            m=self._linked(table, alias, depth, "mine"),
            o=self._linked(table, alias, depth, "others"),
        )

    def unshared(self, table: str, alias: str | None = None) -> Q:
        """A shared entity's rows the tenant's memberships link and no other's."""
        return self._unshared(table, alias, 0)

    def entity_free(self, table: str, alias: str | None = None) -> Q:
        """No membership links the entity's row any more (its tenant's gone before it, any
        other tenant's would have kept it)."""
        return self.dialect.fill("NOT {l}", l=self._linked(table, alias, 0, "any"))

    def _destroyed(self, table: str, alias: str | None, depth: int) -> Q:
        c, d = self.classification, self.dialect
        if table in c.entities:
            if not c.entities[table].erased:
                return d.text("FALSE")  # kept: exported as the tenant's view, never destroyed
            return self._unshared(table, alias, depth)
        if depth > _MAX_DEPTH:
            raise ConfigurationError(
                f"{table}: foreign keys reach the tenant only through more than {_MAX_DEPTH} "
                "tables: declare the table global or excluded, or give it the tenant column"
            )
        if c.registry and table == c.registry:
            return d.is_tenant(d.column(table, alias, c.registry_id))
        if table in c.schema_tables:
            return d.text("TRUE")  # the whole table is in the tenant's own schema
        if table in c.tenant_scoped:
            return d.is_tenant(d.column(table, alias, c.owner_column(table)))
        if table not in c.derived:
            return d.text("FALSE")  # no route to a tenant: none of its rows is the tenant's
        own = self._derived(table, alias, depth, "own")
        if self.shared.get(table) != "delete":
            return own
        return d.fill("({o} OR {s})", o=own, s=self._derived(table, alias, depth, "shared"))

    def where(self, table: str, alias: str | None = None) -> Q:
        """The rows exported as the tenant's: its own, shared rows where the table's policy is
        'export', and the shared entities its memberships link (its view of them)."""
        if table in self.classification.entities:
            return self._linked(table, alias, 0, "mine")
        if self.shared.get(table) == "export":
            return self.dialect.fill(
                "({o} OR {s})",
                o=self._derived(table, alias, 0, "own"),
                s=self.shared_rows(table, alias),
            )
        if self.shared.get(table) == "delete":
            return self._derived(table, alias, 0, "own")
        return self._destroyed(table, alias, 0)

    def destroyed(self, table: str, alias: str | None = None) -> Q:
        """The rows destruction removes: its own, and shared rows where the table's policy is
        'delete'."""
        return self._destroyed(table, alias, 0)

    def shared_rows(self, table: str, alias: str | None = None) -> Q:
        """Rows reaching the tenant's rows and another tenant's at once (FALSE for a table
        whose rows have a single route to a tenant)."""
        if table not in self.classification.derived:
            return self.dialect.text("FALSE")
        return self._derived(table, alias, 0, "shared")

    def may_share(self, table: str) -> bool:
        return len(self.classification.derived.get(table, ())) > 1
