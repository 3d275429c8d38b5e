"""A client's retention rule in the platform's PostgreSQL database: checked against the
catalogue, and run (offboarding/persons/retention.py describes the proof whole).

The rule's table must hold this tenant's own rows, and no row of it may belong to two tenants
at once. A run marks and locks the rows past the cutoff; a row outside them that references
one stops the rule for this run; the DELETE must remove exactly the marked rows; the objects
they named go, every generation, before the commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError, TenantError
from offboarding.core.names import split_qualified
from offboarding.datamap import platform_shape
from offboarding.locations.base import RuleOutcome
from offboarding.locations.postgres.catalog import classify, ident
from offboarding.locations.postgres.rows import (
    affect,
    count_rows,
    lock_rows,
    mark_rows,
    references_now,
)
from offboarding.locations.postgres.scope import Scope
from offboarding.locations.prefixed import tenant_prefix
from offboarding.planning import CatalogTable
from offboarding.stores import delete_object_versions, open_store

__all__ = ["check_rule", "run_rule"]

_DATED = frozenset({"date", "timestamp", "timestamptz"})
_TEXT = frozenset({"text", "varchar", "bpchar"})


def check_rule(
    settings: Settings, tenant: str, target: str, age_column: str, files: str | None
) -> None:
    """Refuse a rule that could reach another tenant's rows, or names the wrong columns."""
    with psycopg.connect(settings.require_database()) as conn:
        _check_rule(conn, settings, tenant, target, age_column, files)


def _check_rule(
    conn: psycopg.Connection[Any],
    settings: Settings,
    tenant: str,
    target: str,
    age_column: str,
    files: str | None,
) -> tuple[sql.Composable, CatalogTable, list[CatalogTable]]:
    """The condition selecting the tenant's own rows of `target` (refusing any table a rule
    could reach another tenant through), the catalogue's table, and every table."""
    classification, tables, columns = classify(conn, settings)
    if target not in columns:
        raise TenantError(
            f"{target!r} is not a table of the platform database: name its schema.table"
        )
    if target == classification.registry:
        raise TenantError(f"{target} is the platform's tenants table: no rule deletes a tenant")
    owner = classification.schema_tables.get(target)
    if owner is not None and owner != tenant:
        raise TenantError(
            f"{target} is in tenant {owner!r}'s own schema: a rule of {tenant!r} cannot touch it"
        )
    if owner is None and target not in classification.owned:
        why = classification.global_tables.get(target) or classification.excluded.get(target)
        raise TenantError(
            f"{target} holds no rows of one tenant ({why or 'unclassified'}): a rule there "
            "would touch every tenant's data"
        )
    scope = Scope(classification, tenant, platform_shape(settings).shared_rows)
    if scope.may_share(target):
        raise TenantError(
            f"a row of {target} can belong to two tenants at once (it reaches tenants through "
            "several foreign keys): a rule there could delete another tenant's row"
        )
    kinds = {c.name: c.type_name for c in columns[target]}
    if kinds.get(age_column) not in _DATED:
        raise TenantError(
            f"{target}.{age_column} is not a date or timestamp column "
            f"({kinds.get(age_column, 'no such column')}): name the column that dates each row"
        )
    if files is not None and kinds.get(files) not in _TEXT:
        raise TenantError(
            f"{target}.{files} is not a text column naming an object of the files store"
        )
    table = next(t for t in tables if t.qualified == target)
    own = sql.SQL("({} AND NOT {})").format(scope.where(target), scope.shared_rows(target))
    return own, table, tables


def run_rule(
    settings: Settings,
    tenant: str,
    ref: str,
    target: str,
    age_column: str,
    period: str,
    files_column: str | None,
    now: datetime,
) -> RuleOutcome:
    """Delete the tenant's rows of `target` dated before `now` minus `period`, provably; rows
    changed under the run make it delete nothing this time."""
    try:
        return _run_rule(settings, tenant, ref, target, age_column, period, files_column, now)
    except psycopg.errors.SerializationFailure:
        return RuleOutcome(
            now, 0, 0, refused="the rows changed while the rule ran: nothing deleted; the next "
            "run tries again",
        )  # fmt: skip


def _run_rule(
    settings: Settings,
    tenant: str,
    ref: str,
    target: str,
    age_column: str,
    period: str,
    files_column: str | None,
    now: datetime,
) -> RuleOutcome:
    files = open_store(settings.store_url("files"))
    with psycopg.connect(settings.require_database()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            row = conn.execute("SELECT %s::timestamptz - %s::interval", (now, period)).fetchone()
            assert row is not None
            cutoff: datetime = row[0]
            own, table, catalog = _check_rule(
                conn, settings, tenant, target, age_column, files_column
            )
            schema, name = split_qualified(target)
            doomed = sql.SQL("({own} AND {age} < {cutoff})").format(
                own=own,
                age=sql.Identifier(schema, name, age_column),
                cutoff=sql.Literal(cutoff),
            )
            marked = mark_rows(conn, {target: table}, {target: doomed})[target]
            count = count_rows(conn, target, marked)
            if not count:
                return RuleOutcome(cutoff, 0, 0)
            lock_rows(conn, target, marked)  # no new reference to them meanwhile
            blocked = references_now(settings.require_database(), catalog, {target: doomed})
            if blocked:
                return RuleOutcome(
                    cutoff, 0, 0,
                    refused=f"{'; '.join(map(str, blocked))}: nothing deleted. Add a rule for the "
                    "referencing table (it goes first), or keep these rows",
                )  # fmt: skip
            keys = _named_files(conn, tenant, ref, target, files_column, marked, files)
            affect(conn, sql.SQL("DELETE FROM {} WHERE {}").format(ident(target), doomed),
                   count, target)  # fmt: skip
            if count_rows(conn, target, marked):
                raise DestructionIncompleteError(
                    f"rule {ref}: marked rows of {target} remain after the delete; "
                    "nothing was deleted"
                )
            for key in keys:
                delete_object_versions(files, key)
            if any(files.exists(k) for k in keys):
                raise DestructionIncompleteError(
                    f"rule {ref}: objects named by the rows remain; nothing was deleted"
                )
    return RuleOutcome(cutoff, count, len(keys))


def _named_files(
    conn: psycopg.Connection[Any],
    tenant: str,
    ref: str,
    target: str,
    files_column: str | None,
    marked: sql.Composable,
    files: Any,
) -> list[str]:
    if files_column is None:
        return []
    keys = sorted({
        str(r[0])
        for r in conn.execute(
            sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {w} AND {c} IS NOT NULL").format(
                c=sql.Identifier(files_column), t=ident(target), w=marked
            )
        )
    })  # fmt: skip
    prefix = tenant_prefix(tenant)
    outside = [k for k in keys if not k.startswith(prefix)]
    if outside:
        raise TenantError(
            f"rule {ref}: {len(outside)} object(s) named by the rows are outside tenant "
            f"{tenant!r}'s prefix {prefix}: nothing was deleted; correct the rows"
        )
    return [k for k in keys if files.exists(k)]
