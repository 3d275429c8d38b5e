"""One person's rows in the platform's PostgreSQL database, from one snapshot, through the
export's own Parquet writer, and the objects of the files store they name (read at
packaging): an access or portability answer's part of the bundle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from psycopg import sql

from exporters.bundle import safe_entry_paths
from exporters.parquet import ColumnPlan, plan_column, select_query
from offboarding.core.config import Settings
from offboarding.core.names import table_folder
from offboarding.core.records import ExportedPart, FileItem, TableItem
from offboarding.datamap import PersonScope
from offboarding.locations.base import PartTask, PersonExport, ScratchSink, foreign_key_schemas
from offboarding.locations.postgres.catalog import column_schema, ident
from offboarding.locations.postgres.person_scope import (
    PersonSelection,
    person_conditions,
    person_files,
    require_person,
)
from offboarding.locations.postgres.scope import measure, scope_kind
from offboarding.locations.postgres.snapshot import (
    ExportJob,
    SnapshotReaders,
    array_dimensions,
    leader_snapshot,
    run_job,
    source_dsn,
)
from offboarding.locations.prefixed import digest_object
from offboarding.stores import ObjectStore, open_store

__all__ = ["export_person"]


def export_person(
    settings: Settings, scope: PersonScope, tenant: str, person: str, scratch: Path
) -> PersonExport:
    """The person's rows (Parquet, under `scratch`) and files (named, read at packaging),
    from one snapshot, with the tables and files the bundle must reconcile with."""
    files = open_store(settings.store_url("files"))
    sink = ScratchSink(scratch)
    with leader_snapshot(settings) as (leader, snapshot_id, snapshot_time):
        selection = person_conditions(leader, settings, scope, tenant, person)
        conditions = selection.conditions
        require_person(leader, scope, selection.own, tenant, person)
        items: list[TableItem] = []
        jobs: list[ExportJob] = []
        for name, condition in conditions.items():
            table, pg_columns = selection.tables[name], selection.columns[name]
            rows, size = measure(leader, name, condition)
            dimensions = array_dimensions(leader, ident(name), pg_columns, condition)
            plans = [plan_column(c, dimensions=dimensions.get(c.name, 1)) for c in pg_columns]
            withheld = _withheld(scope, selection, name)
            if withheld:
                plans = _withholding(plans, withheld, selection.own.get(name))
            items.append(TableItem(
                schema_name=table.schema, table=table.name,
                scope=scope_kind(selection.classification, name), rows=rows,
                bytes_estimate=size, columns=[column_schema(p) for p in plans],
                primary_key=list(table.primary_key), foreign_keys=foreign_key_schemas(table),
                withheld=sorted(withheld),
            ))  # fmt: skip
            jobs.append(ExportJob(
                table=name, relative=f"{table_folder(name)}part-00000.parquet", plans=plans,
                query=select_query(
                    ident(name), plans, condition, list(table.primary_key)
                ).as_string(),
            ))  # fmt: skip
        keys = person_files(leader, scope, selection, files, tenant, person)
        readers = SnapshotReaders(source_dsn(settings), snapshot_id)
        try:
            parts = [
                run_job(settings, readers, PartTask("postgres", snapshot_id, job.relative, job),
                        sink)
                for job in jobs
            ]  # fmt: skip
        finally:
            readers.close()
    prefix = selection.files_prefix or ""
    file_items = [FileItem(key=k, referenced=True, **_sized(files, k)) for k in keys]
    paths = safe_entry_paths("files/", [k.removeprefix(prefix) for k in keys])
    parts += [
        ExportedPart(path=path, source=f"store:{f.key}", kind="file", size=f.size, sha256=f.sha256)
        for f, path in zip(file_items, paths, strict=True)
    ]
    return PersonExport(tables=items, parts=parts, files=file_items, snapshot_time=snapshot_time)


def _sized(store: ObjectStore, key: str) -> dict[str, Any]:
    size, sha256 = digest_object(store, key)
    return {"size": size, "sha256": sha256}


def _withheld(scope: PersonScope, selection: PersonSelection, table: str) -> set[str]:
    """The columns of others' rows (rows that only point at the person) an access answer
    leaves out: all but their keys, their references (the relation to the person and to
    the rest of the data) and the columns the data map discloses (GDPR Art. 15(4): others'
    words are theirs). Empty for a table without links."""
    if not any(t == table for t, _ in selection.links):
        return set()
    catalog_table = selection.tables[table]
    kept = {*catalog_table.primary_key}
    kept.update(c for fk in catalog_table.foreign_keys for c in fk.involved)
    kept.update(c for t, c in selection.links if t == table)
    entry = scope.tables.get(table)
    kept.update(scope.disclose if table == scope.table else entry.disclose if entry else [])
    if entry and entry.by:
        kept.add(entry.by)
    return {c.name for c in selection.columns[table]} - kept


def _withholding(
    plans: list[ColumnPlan], withheld: set[str], own: sql.Composable | None
) -> list[ColumnPlan]:
    """The plans with each withheld column given only on the person's own rows: NULL on
    others' rows (the Parquet column accepts NULL)."""
    chosen = []
    for plan in plans:
        if plan.column.name not in withheld:
            chosen.append(plan)
            continue
        given = sql.SQL("CASE WHEN coalesce({own}, FALSE) THEN {value} END AS {name}").format(
            own=own if own is not None else sql.SQL("FALSE"),
            value=plan.select,
            name=sql.Identifier(plan.column.name),
        )
        column = replace(plan.column, not_null=False)
        chosen.append(replace(plan, column=column, select=given))
    return chosen
