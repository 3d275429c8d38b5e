"""What the relational core works with: the lists, the batches, the references found, the
proof, and the two things a database supplies, its dialect (the pieces of a statement) and its
engine (a session that runs them and does what only that database can)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from offboarding.locations.relational.scope import RelationalScope
from offboarding.planning import CatalogTable

__all__ = [
    "CHANGES_REFERENCING",
    "REFUSES_DELETE",
    "Engine",
    "IsolationProof",
    "KeyRefusal",
    "Listed",
    "Plan",
    "Queries",
    "Reference",
    "RelationalDialect",
    "Window",
]

Q = TypeVar("Q")
Plan = Literal["own", "indexes", "joins"]
RULES = {
    "a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT",
    "x": "nothing: declared in the data map, unknown to the database",
}  # fmt: skip
# Keys whose referencing rows the database itself changes when the referenced row goes.
CHANGES_REFERENCING = frozenset("cnd")
# Keys through which the database refuses the delete of a row still referenced.
REFUSES_DELETE = frozenset("ar")


class KeyRefusal(Exception):
    """The database refused a batch's delete (or its commit): a row it does not list still
    references one of the batch's rows through `constraint` on `table`. The batch is rolled
    back; the core finds and names the rows."""

    def __init__(self, constraint: str, table: str, detail: str) -> None:
        super().__init__(detail)
        self.constraint, self.table, self.detail = constraint, table, detail


@dataclass(frozen=True)
class Listed:
    """One table's doomed rows, listed by key in the session's temporary table `temp`
    (columns k0.. for the key, ord from 1 in the order they can be deleted)."""

    table: str
    temp: str
    keys: tuple[str, ...]  # the table's primary key (or PostgreSQL's row address, ctid)
    rows: int
    bytes: int
    cyclic: int = 0  # rows in reference cycles: deleted together in the last statement
    again: str = ""  # a second copy of the list, where a statement may not open one twice

    @property
    def second(self) -> str:
        return self.again or self.temp


@dataclass(frozen=True)
class Window:
    """Listed rows of `table` with `low < ord <= high`: one batch of its deletion."""

    table: str
    low: int
    high: int


@dataclass(frozen=True)
class Reference:
    """Rows outside the tenant's scope that reference the tenant's rows through one key."""

    constraint: str
    table: str
    references: str
    on_delete: str
    rows: int
    tenants: tuple[str, ...] = ()  # owners of the referencing rows, where a column names them
    crosses_tenants: bool = True
    allowed: bool = False  # shared rows the data map leaves in place, detached by SET NULL
    # rows of an excluded table whose copy another system covers (the data map's handled_by)
    left_for: str = ""

    def describe(self) -> str:
        owners = f", of tenant(s) {', '.join(map(repr, self.tenants))}" if self.tenants else ""
        return (
            f"{self.rows} row(s) of {self.table} through {self.constraint} (ON DELETE "
            f"{RULES.get(self.on_delete, self.on_delete)}) reference the tenant's rows in "
            f"{self.references}{owners}"
        )


@dataclass
class IsolationProof:
    """What was established before deleting, and what each statement confirmed while
    deleting: the certificate's evidence that nothing else was touched."""

    doomed: dict[str, Listed]
    references_checked: int
    # Keys left to the batches while deleting (refused by the database, or declared and
    # checked again for each batch's rows): proved by the isolation check before any location.
    references_guarded: int = 0
    detached: list[Reference] = field(default_factory=list)
    shared: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    earlier: dict[str, int] = field(default_factory=dict)  # removed by an interrupted attempt
    pseudonymised: dict[str, int] = field(default_factory=dict)  # shared entities' rows kept
    indexed: bool = False  # every statement could start from the tenant's rows (see planning)

    def summary(self, policies: Mapping[str, str]) -> str:
        parts = [
            f"before deleting, {sum(d.rows for d in self.doomed.values()):,} rows of the tenant "
            f"in {len(self.doomed)} shared tables listed by key; {self.references_checked} "
            "foreign keys checked: no row outside the tenant's scope references them"
            + (
                f" ({self.references_guarded} of them checked before any location was "
                "destroyed, then batch by batch: refused by the database, or a declared "
                "reference checked again for the batch's rows)"
                if self.references_guarded
                else ""
            )
        ]
        detached = [r for r in self.detached if not r.left_for]
        if detached:
            parts.append(
                "shared rows left in place, detached by their keys' ON DELETE SET NULL: "
                + "; ".join(r.describe() for r in detached)
            )
        left = [r for r in self.detached if r.left_for]
        if left:
            parts.append(
                "rows of excluded tables left for the systems the data map names to cover them: "
                + "; ".join(f"{r.describe()} (system {r.left_for})" for r in left)
            )
        if self.shared:
            parts.append(
                "rows shared with other tenants, as configured: "
                + ", ".join(f"{t} {n} ({policies.get(t, '?')})" for t, n in self.shared.items())
            )
        if self.deleted:
            listed = {t: d.rows for t, d in self.doomed.items()}
            short = {
                t: (n, listed.get(t, 0)) for t, n in self.deleted.items() if n != listed.get(t)
            }
            parts.append(
                "each delete statement returned its rows' owner columns: each deleted row's "
                "owner was returned and checked, all of them the tenant's; "
                + (
                    f"rows deleted per table equal rows listed ({sum(self.deleted.values()):,})"
                    if not short
                    else "rows deleted per table differ from rows listed where rows went "
                    "before their batch: "
                    + ", ".join(f"{t} {n} of {m}" for t, (n, m) in short.items())
                )
            )
            if self.pseudonymised:
                parts.append(
                    "shared entities' rows no other tenant linked, kept with their personal "
                    "columns replaced: "
                    + ", ".join(f"{t} {n}" for t, n in self.pseudonymised.items())
                )
            if self.earlier:
                parts.append(
                    "removed by an earlier interrupted attempt: "
                    + ", ".join(f"{t} {n}" for t, n in self.earlier.items())
                )
        return "; ".join(parts)


class RelationalDialect(Protocol[Q]):
    """What the proof's queries need of a dialect beyond the scope's pieces."""

    def text(self, sql: str) -> Q: ...
    def fill(self, template: str, **parts: Q) -> Q: ...
    def join(self, parts: Sequence[Q], separator: str) -> Q: ...
    def table(self, qualified: str) -> Q: ...
    def column(self, table: str, alias: str | None, column: str) -> Q: ...
    def alias(self, name: str) -> Q: ...

    def number(self, value: int) -> Q:
        """An integer written into the statement."""
        ...

    def distinct(self, left: Q, right: Q) -> Q:
        """`left` and `right` differ, NULL counting as a value."""
        ...

    def owners(self, column: Q | None) -> Q:
        """The distinct values of `column` over the selected rows, exactly (no collation
        folding); without a column, the database's empty list of them."""
        ...

    def owner_values(self, value: Any) -> tuple[str, ...]:
        """What `owners` returned, as the set of tenants (sorted, without empties)."""
        ...


class Engine(Protocol[Q]):
    """One database's session for the proof and the deletion: it runs the statements the
    core writes (the dialect's pieces) and does, its own way, what only it can."""

    @property
    def kind(self) -> str:
        """The plug-in's kind, e.g. "postgres": names its fault points."""
        ...

    @property
    def system(self) -> str:
        """The data map's name of the system, for messages."""
        ...

    @property
    def setting(self) -> str:
        """Where its shape is declared, e.g. "[systems.postgres]"."""
        ...

    @property
    def formerly(self) -> str:
        """The setting shared_rows replaced, for its users' sake ("" if none)."""
        ...

    @property
    def scope(self) -> RelationalScope[Q]: ...

    @property
    def tables(self) -> Sequence[CatalogTable]: ...

    @property
    def policies(self) -> Mapping[str, str]:
        """Table -> its shared-rows policy."""
        ...

    @property
    def indexed(self) -> bool:
        """Every statement can start from the tenant's rows (see planning)."""
        ...

    @property
    def refuses(self) -> bool:
        """The database refuses, by itself, a delete of a row still referenced through one of
        its keys ON DELETE NO ACTION / RESTRICT, raising `KeyRefusal` from `delete` or from
        the batch: the proof before deleting may then leave such keys to it."""
        ...

    @property
    def dialect(self) -> RelationalDialect[Q]: ...

    def fetch(self, query: Q, plan: Plan = "indexes") -> tuple[Any, ...]:
        """The first row of a read. `plan`: "indexes" to start from the tenant's rows where
        the indexes allow, "joins" for a statement joining platform tables only (no list),
        "own" to leave the plan to the database."""
        ...

    def commit(self) -> None: ...

    def execute(self, statement: Q) -> int:
        """A write in its own transaction (committed); the rows it changed."""
        ...

    def list_rows(self, table: CatalogTable, number: int) -> Listed:
        """Step 1 for one table: its `scope.destroyed` rows into temporary table number
        `number`, in an order they can be deleted in."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """One transaction: committed at the end, rolled back on an exception."""
        ...

    def lock(self, listed: Listed, window: Window) -> None:
        """Lock the window's rows until the batch ends (a row written meanwhile that
        references them waits, then meets the proof's check again)."""
        ...

    def delete(self, listed: Listed, window: Window, proof: IsolationProof) -> tuple[int, int]:
        """Delete the window's rows, returning their owner columns, each checked to be the
        tenant's: (rows deleted, rows that were not the tenant's). A key's refusal raises
        `KeyRefusal`."""
        ...

    def before_deleting(self, listed: Listed) -> None:
        """Whatever the database needs before a table's first batch (nothing, mostly)."""
        ...

    def after_deleting(self, listed: Listed) -> None:
        """Whatever the database needs once a table's last batch is committed, before the next
        table's first (nothing, mostly)."""
        ...


class Queries(Generic[Q]):
    """The proof's statements, written once from a dialect's pieces."""

    def __init__(self, dialect: RelationalDialect[Q]) -> None:
        self.d = dialect

    def columns(self, alias: str, names: Sequence[str]) -> Q:
        d = self.d
        return d.fill("({c})", c=d.join([d.column("", alias, n) for n in names], ", "))

    def listed_keys(self, alias: str, width: int) -> Q:
        return self.columns(alias, [f"k{n}" for n in range(width)])

    def count(self, table: str, where: Q) -> Q:
        return self.d.fill("SELECT count(*) FROM {t} WHERE {w}", t=self.d.table(table), w=where)

    def is_listed(self, listed: Listed, alias: str, *, second: bool = False) -> Q:
        """The row `alias` of listed.table is one of the listed rows."""
        d = self.d
        return d.fill(
            "EXISTS (SELECT 1 FROM {t} dd WHERE {dk} = {xk})",
            t=d.alias(listed.second if second else listed.temp),
            dk=self.listed_keys("dd", len(listed.keys)),
            xk=self.columns(alias, listed.keys),
        )
