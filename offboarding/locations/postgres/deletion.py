"""Destruction of the tenant's rows: shared tables children first (foreign-key order), in
batches of their own transactions, then VACUUM so dead tuples go; the tenant's own schema
dropped. The platform's write guard lets only this session change a frozen tenant."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef
from offboarding.locations.base import Removal
from offboarding.locations.postgres.catalog import classify, ident
from offboarding.locations.postgres.scope import Scope, measure
from offboarding.planning import CatalogTable, deletion_order

__all__ = ["delete_rows", "destroy_tenant", "drop_schema"]


def destroy_tenant(settings: Settings, case: CaseRef, technique: str) -> Removal:
    """Shared tables: delete children first, in batches of their own transactions, then
    VACUUM. The tenant's own schema: drop its tables, then the schema."""
    with psycopg.connect(settings.require_database()) as conn:
        classification, tables, _ = classify(conn, settings)
        scope = Scope(classification, case.tenant)
        owned = list(classification.owned)
        own_schema = list(classification.schema_tables_of(case.tenant))
        by_name = {t.qualified: t for t in tables}
        measured = [measure(conn, scope, t) for t in owned + own_schema]
        # The platform's write guard lets this session, and only it, change a frozen tenant.
        conn.execute(
            "SELECT set_config('offboarding.destroying_tenant', %s, false)", (case.tenant,)
        )
        conn.commit()
        parents = {t: {fk.references for fk in by_name[t].foreign_keys} for t in owned}
        removed = sum(
            delete_rows(conn, scope, by_name[table], settings.destruction.delete_batch_rows)
            for table in deletion_order(parents)
        )
        removed += sum(rows for rows, _ in measured[len(owned) :])
        drop_schema(
            conn, settings.platform.tenant_schema_pattern.format(tenant=case.tenant), own_schema
        )
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        for table in owned:
            # Dead tuples still hold the deleted values until vacuumed.
            conn.execute(sql.SQL("VACUUM {}").format(ident(table)))
    return Removal(
        items_before=sum(rows for rows, _ in measured),
        bytes_before=sum(size for _, size in measured),
        items_removed=removed,
        technique=technique,
    )


def delete_rows(
    conn: psycopg.Connection[Any], scope: Scope, table: CatalogTable, batch_rows: int
) -> int:
    # Rows that other rows of the same table point at go last (threaded comments).
    self_refs = [fk for fk in table.foreign_keys if fk.references == table.qualified]
    leaves = sql.SQL("").join(
        sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {t} c WHERE {cc} = {xc})").format(
            t=ident(table.qualified),
            cc=sql.SQL("({})").format(
                sql.SQL(", ").join(sql.Identifier("c", col) for col in fk.columns)
            ),
            xc=sql.SQL("({})").format(
                sql.SQL(", ").join(sql.Identifier("x", col) for col in fk.referenced_columns)
            ),
        )
        for fk in self_refs
    )
    batch = sql.SQL(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY("
        "SELECT x.ctid FROM {t} x WHERE {w}{leaves} LIMIT {n}))"
    ).format(
        t=ident(table.qualified),
        w=scope.where(table.qualified),
        leaves=leaves,
        n=sql.Literal(batch_rows),
    )
    removed = 0
    while True:
        with conn.transaction():
            deleted = conn.execute(batch).rowcount
        crash_point("postgres:batch-deleted")
        removed += deleted
        if deleted == 0:
            break
    if self_refs:  # rows in a reference cycle are never leaves: one statement takes them
        with conn.transaction():
            removed += conn.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(
                    ident(table.qualified), scope.where(table.qualified)
                )
            ).rowcount
    return removed


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
