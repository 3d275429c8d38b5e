"""Destruction of the tenant's rows in PostgreSQL: the relational core's proof and batched
delete (offboarding/locations/relational/: proof.py, deletion.py), run by PostgreSQL's engine.

What is PostgreSQL's own here:
- the lists: temporary tables built with one `CREATE TABLE AS`, reply threads ordered by
  serial key or else by depth (a recursive query), held in the session's memory;
- the plans: every statement starts from the tenant's rows (its tenant-column index, then
  the keys of the lists) where the indexes the inventory asks for exist, so the cost grows
  with the tenant, not with the platform. (Turning sequential scans off for the whole session
  was tried: where a foreign key has no index, PostgreSQL's own referential checks then walk
  a whole primary-key index per deleted row, 50x slower on the demo platform.);
- the delete: `WITH gone AS (DELETE ... RETURNING owners)` counts, in the statement itself,
  the returned rows that are not the tenant's;
- after each table's deletes, VACUUM (ANALYZE) of it (before the next table's): its statistics
  resampled from the rows left; at the end, the tenant's own schema dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError
from offboarding.core.records import CaseRef
from offboarding.datamap import platform_shape
from offboarding.locations.base import Removal
from offboarding.locations.postgres.catalog import classify, column_list, ident, read_indexes
from offboarding.locations.postgres.listing import names as _names
from offboarding.locations.postgres.listing import row as _row
from offboarding.locations.postgres.scope import PostgresDialect, Scope, measure
from offboarding.locations.postgres.threads import order_by_depth as _order_by_depth
from offboarding.locations.relational import deletion, proof
from offboarding.locations.relational.engine import (
    IsolationProof,
    KeyRefusal,
    Listed,
    Plan,
    Reference,
    Window,
)
from offboarding.planning import CatalogTable, Classification, reached_through_indexes

__all__ = [
    "IsolationProof",
    "Listed",
    "PostgresEngine",
    "Reference",
    "destroy_tenant",
    "drop_schema",
    "engine_for",
    "prove_isolation",
]

_WHOLE_TABLE_PLANS = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
# The session's memory for sorting a thread's list by key (a million keys take about 75 MB):
# held only while the list is built, in the destroying session alone.
_SORT_MEMORY = "128MB"


@contextmanager
def _from_indexes(
    conn: psycopg.Connection[Any], indexed: bool, *, joins: bool = False
) -> Iterator[None]:
    """Within the current transaction, plan the statements from the tenant's rows through
    indexes (sequential scans off), where every needed index exists: otherwise PostgreSQL's
    own plans, since without the index a sequential scan is the cheapest way there is."""
    if not indexed:
        yield
        return
    # `joins`: with sequential scans off, PostgreSQL may still hash- or merge-join a whole
    # table read through an index (measured: every comment of the platform read to find the
    # tenant's replies, or to list its comments); nested loops start from the tenant's rows,
    # or from a list's.
    settings = _WHOLE_TABLE_PLANS if joins else _WHOLE_TABLE_PLANS[:1]
    for setting in settings:
        conn.execute(f"SET LOCAL {setting} = off")
    try:
        yield
    finally:
        if not conn.broken and conn.info.transaction_status == TransactionStatus.INTRANS:
            for setting in settings:
                conn.execute(f"SET LOCAL {setting} TO DEFAULT")  # the session's own value


def _keys(table: CatalogTable) -> tuple[str, ...]:
    return table.primary_key or ("ctid",)


def _key_columns(alias: str, keys: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(alias, k) for k in keys))


class PostgresEngine:
    """The relational core's engine on one PostgreSQL session (relational/proof.py)."""

    kind = "postgres"
    formerly = "OFFBOARD_SHARED_ROWS"
    refuses = True  # its keys' triggers refuse a delete NO ACTION / RESTRICT forbids

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        classification: Classification,
        tables: Sequence[CatalogTable],
        scope: Scope,
        *,
        system: str = "postgres",
        indexed: bool = False,
    ) -> None:
        self.conn = conn
        self.system = system
        self.setting = f"[systems.{system}]"
        self.classification = classification
        self.tables = tables
        self.scope = scope
        self.policies = scope.shared
        self.indexed = indexed
        self._statements: dict[str, sql.Composed] = {}

    @property
    def dialect(self) -> PostgresDialect:
        return self.scope.postgres

    def fetch(self, query: sql.Composable, plan: Plan = "indexes") -> tuple[Any, ...]:
        statement = sql.Composed([query])
        if plan == "own":
            row = self.conn.execute(statement).fetchone()
        else:
            with _from_indexes(self.conn, self.indexed, joins=plan == "joins"):
                row = self.conn.execute(statement).fetchone()
        assert row is not None, "an aggregate returns one row"
        return tuple(row)

    def commit(self) -> None:
        self.conn.commit()

    def execute(self, statement: sql.Composable) -> int:
        changed = self.conn.execute(sql.Composed([statement])).rowcount
        self.conn.commit()
        return int(changed)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction; a key's refusal, by the delete or (a deferred key) at the commit,
        raised as the core's KeyRefusal once rolled back."""
        try:
            with self.conn.transaction():
                yield
        except (psycopg.errors.ForeignKeyViolation, psycopg.errors.RestrictViolation) as error:
            raise KeyRefusal(
                error.diag.constraint_name or "a foreign key",
                error.diag.table_name or "another table",
                (error.diag.message_detail or str(error)).strip().splitlines()[0],
            ) from error

    def before_deleting(self, listed: Listed) -> None:
        pass  # reply threads are ordered in the list itself

    def after_deleting(self, listed: Listed) -> None:
        """VACUUM the table: its dead row versions hold the deleted values until then. Done
        before the next table's deletes, whose key checks then probe this table's indexes
        without its dead entries (measured: the parents' deletes 0.7 s faster on 500,000 posts
        of a million comments, and the VACUUM itself half as long). With ANALYZE: the table's
        statistics (pg_stats' common values and histograms) are sampled again from the rows
        left, no longer from the tenant's (a bounded sample, whatever the table's size)."""
        if not listed.rows:
            return
        self.conn.autocommit = True  # (VACUUM runs outside a transaction; none is open here)
        try:
            self.conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident(listed.table)))
        finally:
            self.conn.autocommit = False

    def list_rows(self, table: CatalogTable, number: int) -> Listed:
        """List the table's doomed rows by key, in an order they can be deleted in, in a temporary
        table. Reply threads (one key into the table itself): when every reply's key is greater
        than its parent's (serial keys), descending key order deletes replies first, at the cost
        of one pass; otherwise each row's depth in its thread is computed and the deepest go first.
        """
        conn, indexed = self.conn, self.indexed
        temp_name = f"offboarding_doomed_{number}"
        temp = sql.Identifier(temp_name)
        keys, name = _keys(table), table.qualified
        threads = [fk for fk in table.foreign_keys if fk.references == name]
        thread = threads[0] if len(threads) == 1 else None
        width = len(thread.columns) if thread else 0
        serial = thread is not None and len(keys) == 1 and thread.referenced_columns == keys
        # The key a reply points at (r): the row's own key (k) where the thread refers to it.
        pointed = "k" if thread is None or thread.referenced_columns == keys else "r"
        selected = [
            *(sql.SQL("{} AS {}").format(sql.Identifier("x", k), sql.Identifier(f"k{n}"))
              for n, k in enumerate(keys)),
        ]  # fmt: skip
        if thread:  # the key a reply points at (r, unless it is k) and the reply's reference (s)
            selected += [
                sql.SQL("{} AS {}").format(sql.Identifier("x", c), sql.Identifier(f"{p}{n}"))
                for p, columns in (("r", thread.referenced_columns), ("s", thread.columns))
                if p == "s" or pointed == "r"
                for n, c in enumerate(columns)
            ]
        # A thread is ordered by key (replies after what they answer); any other table's rows
        # go in the order they are found (from the tenant's rows: no sort).
        key_order = sql.SQL("ORDER BY {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} DESC" if serial else "{}").format(sql.Identifier("x", k)) for k in keys
            )
        ) if thread else sql.SQL("")  # fmt: skip
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(temp))
        conn.execute(f"SET LOCAL work_mem = '{_SORT_MEMORY}'")  # the list sorted in memory
        with _from_indexes(conn, indexed, joins=True):
            rows = conn.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE {temp} AS SELECT {cols}, row_number() OVER ({order}) "
                    "AS ord, {together} AS cyclic FROM {t} AS x WHERE {w}"
                ).format(
                    temp=temp, cols=sql.SQL(", ").join(selected), order=key_order,
                    # Several keys into the table itself: no single order; all rows go together.
                    together=sql.SQL("true" if threads and not thread else "false"),
                    t=ident(name), w=self.scope.destroyed(name, "x"),
                )
            ).rowcount  # fmt: skip
        cyclic = rows if threads and not thread else 0
        k = _names("k", len(keys))
        if thread:
            misordered = serial and conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE s0 >= k0)").format(temp)
            ).fetchone() == (True,)
            if not serial or misordered:
                cyclic = _order_by_depth(conn, temp_name, len(keys), width, pointed)
        # Written in `ord` order: a block-range index finds a window in a few pages, and is
        # built in a fraction of a B-tree's time (still exact where the order is not kept).
        conn.execute(sql.SQL("CREATE INDEX ON {} USING brin (ord)").format(temp))
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(temp, k))
        conn.execute(sql.SQL("ANALYZE {}").format(temp))
        return Listed(
            table=name, temp=temp_name, keys=keys, rows=rows,
            bytes=rows * _average_row(conn, name) if rows else 0, cyclic=cyclic,
        )  # fmt: skip

    def lock(self, listed: Listed, window: Window) -> None:
        with _from_indexes(self.conn, self.indexed):
            self.conn.execute(
                sql.SQL("SELECT 1 FROM {t} AS x WHERE {rows} FOR UPDATE OF x").format(
                    t=ident(listed.table), rows=_window_rows(listed)
                ),
                (window.low, window.high),
            )

    def delete(self, listed: Listed, window: Window, proof: IsolationProof) -> tuple[int, int]:
        statement = self._statements.get(listed.table)
        if statement is None:
            statement = self._statements[listed.table] = self._delete_statement(listed, proof)
        with _from_indexes(self.conn, self.indexed):
            row = self.conn.execute(statement, (window.low, window.high)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _delete_statement(self, listed: Listed, proof: IsolationProof) -> sql.Composed:
        """The window's rows deleted, counting those returned and those not the tenant's."""
        name, classification = listed.table, self.classification
        owner_columns = sorted(
            {classification.owner_column(name)}
            if name in classification.tenant_scoped
            else set(classification.entities[name].key)
            if name in classification.entities
            else {c for fk in classification.derived.get(name, ()) for c in fk.involved}
        )
        return sql.SQL(
            "WITH gone AS (DELETE FROM {t} AS x WHERE {rows} RETURNING {owners}) "
            "SELECT count(*), count(*) FILTER (WHERE ({mine}) IS NOT TRUE) FROM gone"
        ).format(
            t=ident(name), rows=_window_rows(listed),
            owners=sql.SQL(", ").join(sql.Identifier("x", c) for c in owner_columns),
            mine=self._owner_check(proof.doomed, name),
        )  # fmt: skip

    def _owner_check(self, doomed: Mapping[str, Listed], table: str) -> sql.Composable:
        """The deleted row `gone` is the tenant's: its tenant column, or, for a row whose only
        route is one key to a listed parent, that key among the parent's listed keys (the lists
        are the tenant's rows as proved before deleting); else the scope's own condition."""
        if table in self.scope.classification.entities:
            # Its memberships went before it: one still linking it is another tenant's.
            return self.scope.entity_free(table, "gone")
        route = self.scope.classification.derived.get(table, ())
        parent = doomed.get(route[0].references) if len(route) == 1 else None
        if parent is None or route[0].referenced_columns != parent.keys or route[0].conditional:
            return self.scope.destroyed(table, "gone")
        return sql.SQL("EXISTS (SELECT 1 FROM {p} pl WHERE {keys} = {cols})").format(
            p=sql.Identifier(parent.temp),
            keys=_row("k", len(parent.keys), "pl"),
            cols=column_list(route[0].columns, "gone"),
        )


def _average_row(conn: psycopg.Connection[Any], table: str) -> int:
    """A row's bytes in `table`, on average, as `pg_column_size` of the row would give them: its
    columns' average widths from the table's statistics plus the row's header; without
    statistics, the table's size over its rows. (Summing each listed row's own size cost the
    list 40% more time, measured: the certificate's bytes are the tenant's rows times this.)
    A table never analysed (new, or not yet reached by autovacuum) is ANALYZEd first: it reads
    a bounded sample whatever the table's size, where the certificate would otherwise say 0."""
    query = (
        "SELECT coalesce((SELECT 24 + sum(s.avg_width) FROM pg_stats s WHERE s.schemaname = "
        "n.nspname AND s.tablename = c.relname AND s.inherited = (c.relkind = 'p')), "
        "CASE WHEN c.reltuples > 0 THEN pg_relation_size(c.oid) / c.reltuples END, 0)::bigint "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s::regclass"
    )
    regclass = (ident(table).as_string(conn),)
    row = conn.execute(query, regclass).fetchone()
    if row is None or not row[0]:  # (a role that may not ANALYZE it gets a warning, not an error)
        conn.execute(sql.SQL("ANALYZE {}").format(ident(table)))
        row = conn.execute(query, regclass).fetchone()
    return int(row[0]) if row else 0


def _window_rows(listed: Listed) -> sql.Composed:
    """The condition on `x` selecting a window's listed rows (its bounds the two parameters).
    One key column: `= ANY(array)`, which PostgreSQL serves from the key's index (or the row's
    address), where a join to the list may be planned as a scan of the whole table."""
    keys = listed.keys
    return (
        sql.SQL("{x} = ANY(ARRAY(SELECT d.k0 FROM {d} AS d WHERE d.ord > %s AND d.ord <= %s))")
        if len(keys) == 1
        else sql.SQL("{x} IN (SELECT {dk} FROM {d} AS d WHERE d.ord > %s AND d.ord <= %s)")
    ).format(
        x=sql.Identifier("x", keys[0]) if len(keys) == 1 else _key_columns("x", keys),
        d=sql.Identifier(listed.temp), dk=_names("k", len(keys), "d"),
    )  # fmt: skip


def engine_for(
    conn: psycopg.Connection[Any], settings: Settings, tenant: str, *, strict: bool = True
) -> PostgresEngine:
    """The engine on `conn`, with the catalogue classified under the settings."""
    classification, tables, _ = classify(conn, settings, strict=strict)
    scope = Scope(classification, tenant, platform_shape(settings).shared_rows)
    indexed = reached_through_indexes(classification, tables, read_indexes(conn))
    return PostgresEngine(conn, classification, tables, scope, indexed=indexed)


def _prove(
    conn: psycopg.Connection[Any],
    settings: Settings,
    case: CaseRef,
    inventoried: Mapping[str, int] | None,
    listed: bool = True,
) -> tuple[PostgresEngine, IsolationProof]:
    """The relational core's proof on `conn` (whose temporary tables then hold the lists).
    Raises, having deleted nothing, if it fails."""
    engine = engine_for(conn, settings, case.tenant)
    return engine, proof.prove(engine, case, inventoried, listed=listed)


def prove_isolation(
    settings: Settings, case: CaseRef, inventoried: Mapping[str, int] | None = None
) -> IsolationProof:
    """The proof alone, from the scope's conditions, deleting nothing: run before any
    location is destroyed, so a case that cannot be destroyed cleanly stops with every copy
    still in place. (The destroy repeats it on its lists, right before deleting.)"""
    with psycopg.connect(settings.require_database()) as conn:
        _session(conn)
        return _prove(conn, settings, case, inventoried, listed=False)[1]


def _session(conn: psycopg.Connection[Any]) -> None:
    """The proof's and the deletion's session settings. No JIT compilation: their statements
    each walk the tenant's rows once from an index, where compiling them costs more than it
    saves (measured: 0.1 s of the 1.2 s a million replies' reference check takes)."""
    conn.execute("SET jit = off")
    conn.commit()


def destroy_tenant(
    settings: Settings,
    case: CaseRef,
    technique: str,
    inventoried: Mapping[str, int] | None = None,
) -> tuple[Removal, IsolationProof]:
    """Prove, then delete children first by key ranges in bounded transactions, each row
    checked to be the tenant's; VACUUM; drop the tenant's own schema."""
    with psycopg.connect(settings.require_database()) as conn:
        # Room for the lists in this session's memory (temporary tables live in temp_buffers,
        # 8 MB by default: a tenant's million keys would otherwise go through the disk).
        conn.execute("SET temp_buffers = '256MB'")
        _session(conn)
        engine, proved = _prove(conn, settings, case, inventoried)
        own_schema = list(engine.classification.schema_tables_of(case.tenant))
        in_schema = [measure(conn, t, sql.SQL("TRUE")) for t in own_schema]
        # The platform's write guard lets this session, and only it, change a frozen tenant.
        conn.execute(
            "SELECT set_config('offboarding.destroying_tenant', %s, false)", (case.tenant,)
        )
        conn.commit()
        deletion.delete_listed(engine, case, proved, settings.destruction.delete_batch_rows)
        drop_schema(
            conn,
            platform_shape(settings).tenant_schema_pattern.format(tenant=case.tenant),
            own_schema,
        )
    removal = Removal(
        items_before=sum(d.rows for d in proved.doomed.values()) + sum(r for r, _ in in_schema),
        bytes_before=sum(d.bytes for d in proved.doomed.values()) + sum(b for _, b in in_schema),
        items_removed=sum(proved.deleted.values()) + sum(r for r, _ in in_schema),
        technique=technique,
        isolation=proved.summary(platform_shape(settings).shared_rows),
        details={f"deleted {t}": str(n) for t, n in proved.deleted.items() if n},
    )
    return removal, proved


def drop_schema(conn: psycopg.Connection[Any], schema: str, tables: list[str]) -> None:
    with conn.transaction():
        if tables:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.SQL(", ").join(ident(t) for t in tables)
                )
            )
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))
        except psycopg.errors.DependentObjectsStillExist as error:
            raise DestructionIncompleteError(
                f"schema {schema} of tenant still holds objects other than tables ({error}); "
                "drop them after review, then rerun the destruction"
            ) from error
