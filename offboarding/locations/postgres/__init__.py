"""PostgreSQL: the tenant's rows in shared tables, in tables derived from them through foreign
keys, in the tenant's own schema, and its row in the registry. Discovery reads the catalog,
never a hand list.

    catalog    the catalog and the classification of every table under the settings
    scope      which rows of a table are the tenant's, and what they count and weigh
    snapshot   the export: one snapshot, parallel Parquet parts (planned in parts.py)
    deletion   destruction proved by construction: the tenant's rows listed, no outside row
               referencing them, then deleted children first in bounded batches, each row's
               owner checked; VACUUM; the tenant's schema dropped
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from exporters.parquet import plan_column
from offboarding.core.canonical import compact_json
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.records import CaseRef, ExportedPart, LocationInventory, TableItem
from offboarding.datamap import PersonDeclaration, PostgresSystem, platform_shape
from offboarding.locations.base import (
    Canary,
    Capability,
    ExportPlan,
    ExportProgress,
    LocationExport,
    LocationFacts,
    PartSink,
    PartTask,
    PersonErased,
    PersonExport,
    PersonItems,
    Plugin,
    Remaining,
    Removal,
    Residue,
    ResidueSite,
    RuleOutcome,
    Stage,
    foreign_key_schemas,
    quiet,
    require_whole_scope,
)
from offboarding.locations.postgres import named, person_erasure, person_export, residue, retention
from offboarding.locations.postgres.catalog import (
    classify,
    column_schema,
    read_catalog,
    read_indexes,
    table_size,
)
from offboarding.locations.postgres.check import check_platform
from offboarding.locations.postgres.deletion import (
    IsolationProof,
    PostgresEngine,
    destroy_tenant,
    prove_isolation,
)
from offboarding.locations.postgres.files import objects_of
from offboarding.locations.postgres.person_footprint import count_person
from offboarding.locations.postgres.scope import Scope, digest_query, measure, scope_kind
from offboarding.locations.postgres.snapshot import export_part, export_tenant, plan_export
from offboarding.locations.relational import coverage
from offboarding.locations.relational import named as tenant_named
from offboarding.locations.relational.proof import require_shared_policies, shared_counts
from offboarding.planning import Classification, MissingIndex, missing_indexes
from offboarding.registry import LEDGER_SCHEMA, registry_table

__all__ = ["PLUGIN", "PostgresLocation", "column_schema", "read_catalog"]


class PostgresLocation:
    name = "postgres"

    def __init__(
        self, settings: Settings, name: str = "postgres", system: PostgresSystem | None = None
    ) -> None:
        self.settings = settings

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.require_database(), **kwargs)

    def reach(self) -> str:
        """Reach the database (`offboard datamap check`): its version and the tenants table."""
        registry = registry_table(self.settings)
        with self._connect(connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            found = conn.execute("SELECT to_regclass(%s)", (registry,)).fetchone()
            address = conninfo_to_dict(conn.info.dsn)
            if not found or found[0] is None:
                raise ConfigurationError(
                    f"the platform database has no tenants table {registry}: name it in the "
                    "data map's [tenants] table (schema.table)"
                )
            checked = check_platform(conn, self.settings)
        return "; ".join(
            [
                f"PostgreSQL {version[0] if version else '?'} at {address.get('host')}:"
                f"{address.get('port')}/{address.get('dbname')}, tenants table {registry}",
                *checked,
            ]
        )

    def tenant_schema(self, tenant: str) -> str:
        return platform_shape(self.settings).tenant_schema_pattern.format(tenant=tenant)

    def _tenant_tables(self, classification: Classification, tenant: str) -> list[str]:
        """Registry first, then shared tables, then the tenant's own schema."""
        return [
            classification.registry,
            *classification.exported,
            *classification.schema_tables_of(tenant),
        ]

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        """Every table from one snapshot, in parallel Parquet parts (snapshot.py)."""
        return export_tenant(self.settings, case, inventory, scratch, progress)

    def plan_export(
        self, case: CaseRef, inventory: LocationInventory
    ) -> AbstractContextManager[ExportPlan]:
        return plan_export(self.settings, case, inventory)

    def export_part(self, case: CaseRef, task: PartTask, sink: PartSink) -> ExportedPart:
        return export_part(self.settings, task, sink)

    def describe(self) -> LocationFacts:
        info = conninfo_to_dict(self.settings.require_database())
        return LocationFacts(
            media=f"PostgreSQL database {info.get('dbname', '?')} on {info.get('host', 'local')}",
            method="clear",
            technique="list the tenant's rows by key and prove no other row references them; "
            "delete them children first (foreign-key order, reply threads deepest first) in "
            "bounded batches, each deleted row checked to be the tenant's; VACUUM the tables "
            "touched; drop the tenant's own schema",
            verification_method="count of the tenant's rows in every classified table, and the "
            "tenant schema's absence, re-queried after deletion",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        """In a dry run, unclassified tables are listed instead of raising."""
        with self._connect() as conn:
            classification, tables, columns = classify(conn, self.settings, strict=not dry_run)
            scope = self._scope(classification, case)
            by_name = {t.qualified: t for t in tables}
            engine = PostgresEngine(conn, classification, tables, scope)
            shared = shared_counts(engine)
            if not dry_run:
                require_shared_policies(engine, case, shared)
            items: list[TableItem] = []
            for name in self._tenant_tables(classification, case.tenant):
                table = by_name[name]
                rows, size = measure(conn, name, scope.where(name))
                items.append(
                    TableItem(
                        schema_name=table.schema,
                        table=table.name,
                        scope=scope_kind(classification, name),
                        tenant_column=classification.owner_column(name)
                        if name in classification.tenant_scoped
                        else None,
                        rows=rows,
                        bytes_estimate=size,
                        columns=[column_schema(plan_column(c)) for c in columns[name]],
                        primary_key=list(table.primary_key),
                        parents=sorted(
                            {fk.references for fk in classification.derived.get(name, ())}
                        ),
                        foreign_keys=foreign_key_schemas(table),
                    )
                )
            warnings = [
                _index_warning(conn, missing)
                for missing in missing_indexes(classification, tables, read_indexes(conn))
            ]
            counting = Scope(classification.counting_excluded(), case.tenant)
            omitted = coverage.left_out(
                self.name,
                classification,
                lambda t: measure(conn, t, counting.where(t))[0],
                platform_shape(self.settings).handled_by,
                lambda t: (
                    measure(conn, t, scope.where(t))[0] - measure(conn, t, scope.destroyed(t))[0]
                ),
            )
            objects = self._named(conn, case)
            if not dry_run:
                coverage.require_handled(case, "[systems.postgres]", omitted)
                tenant_named.require_declared(case, "systems.postgres", objects)
            warnings += coverage.warnings(omitted) + tenant_named.warnings(objects)
            omitted += tenant_named.left_out(self.name, objects)
            policies = platform_shape(self.settings).shared_rows
            warnings += [
                f"{table}: {count} row(s) reference both this tenant's rows and another "
                "tenant's; "
                + (
                    f"configured to {policies[table]} them"
                    if table in policies
                    else "the case stops until the data map's [systems.postgres] shared_rows "
                    "(formerly OFFBOARD_SHARED_ROWS) says whether to leave, delete or export them"
                )
                for table, count in shared.items()
            ]
        return LocationInventory(
            location=self.name,
            items=sum(t.rows for t in items),
            bytes=sum(t.bytes_estimate for t in items),
            tables=items,
            global_tables=classification.global_tables,
            excluded_tables=classification.excluded,
            unclassified=list(classification.unclassified),
            warnings=warnings,
            shared_rows=shared,
            left_out=omitted,
        )

    def _named(
        self, conn: psycopg.Connection[Any], case: CaseRef
    ) -> list[tenant_named.NamedObject]:
        """Sequences, roles and publications named after the tenant (named.py)."""
        return named.find_named(
            conn,
            case.tenant,
            list(platform_shape(self.settings).tenant_objects),
            self.tenant_schema(case.tenant),
        )

    def _scope(self, classification: Classification, case: CaseRef) -> Scope:
        return Scope(classification, case.tenant, platform_shape(self.settings).shared_rows)

    def prove_isolation(
        self, case: CaseRef, inventoried: Mapping[str, int] | None = None
    ) -> IsolationProof:
        """Before any location is destroyed: the tenant's rows listed, and no outside row
        referencing them (deletion.py). Raises, deleting nothing, if that does not hold."""
        return prove_isolation(self.settings, case, inventoried)

    def check_isolation(
        self, case: CaseRef, inventoried: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        proof = self.prove_isolation(case, inventoried)
        policies = platform_shape(self.settings).shared_rows
        return {table: f"{n} rows: {policies[table]}" for table, n in proof.shared.items()}

    # -- one person: the data map's [person] scope (person_scope.py, person_export.py,
    # person_erasure.py) --------------------------------------------------------------------

    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems:
        return count_person(self.settings, require_whole_scope(declared, self.name), tenant, person)

    def export_person(
        self, tenant: str, person: str, declared: PersonDeclaration, scratch: Path
    ) -> PersonExport:
        scope = require_whole_scope(declared, self.name)
        return person_export.export_person(self.settings, scope, tenant, person, scratch)

    def erase_person(
        self,
        tenant: str,
        person: str,
        declared: PersonDeclaration,
        replacement: str,
        *,
        person_kept: bool = False,
        say: Callable[[str], None] = quiet,
    ) -> PersonErased:
        """`person_kept` is the scope's own (its erase for the person's row)."""
        scope = require_whole_scope(declared, self.name)
        return person_erasure.erase_person(self.settings, scope, tenant, person, replacement, say)

    # -- the client's retention rules (retention.py) -------------------------------------------

    def check_retention_rule(
        self, tenant: str, target: str, age_column: str, files: str | None
    ) -> None:
        retention.check_rule(self.settings, tenant, target, age_column, files)

    def run_retention_rule(
        self,
        tenant: str,
        ref: str,
        target: str,
        age_column: str,
        period: str,
        files: str | None,
        now: datetime,
    ) -> RuleOutcome:
        return retention.run_rule(
            self.settings, tenant, ref, target, age_column, period, files, now
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        """Prove isolation, then delete children first by key ranges, each statement's rows
        checked to be the tenant's; VACUUM; drop the tenant's own schema (deletion.py)."""
        removal = destroy_tenant(self.settings, case, self.describe().technique, inventoried)[0]
        with self._connect() as conn:
            dropped = named.drop_named(conn, self._named(conn, case))
        if not dropped:
            return removal
        return replace(
            removal,
            items_before=removal.items_before + len(dropped),
            items_removed=removal.items_removed + len(dropped),
            details={**removal.details, "dropped, named after the tenant": ", ".join(dropped)},
        )

    def verify(self, case: CaseRef) -> Remaining:
        schema = self.tenant_schema(case.tenant)
        with self._connect() as conn:
            classification, _, _ = classify(conn, self.settings)
            scope = self._scope(classification, case)
            owned = list(classification.owned)
            left = {t: measure(conn, t, scope.destroyed(t))[0] for t in owned}
            row = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            schema_left = int(row[0]) if row else 0
            objects = [o.describe() for o in tenant_named.to_drop(self._named(conn, case))]
        nonzero = {t: n for t, n in left.items() if n}
        return Remaining(
            items=sum(left.values()) + schema_left + len(objects),
            verification=(
                f"count(*) of the tenant's rows in {len(owned)} shared tables: "
                + (json.dumps(nonzero) if nonzero else "all zero")
                + f"; schema {schema} {'present' if schema_left else 'absent'}"
                + (f"; still present: {', '.join(objects)}" if objects else "")
            ),
        )

    def residue_sites(self) -> list[ResidueSite]:
        return residue.sites(self.settings)

    def canaries(self, case: CaseRef) -> list[Canary]:
        return residue.canaries_of(self.settings, case.tenant)

    def compact(self, places: list[str]) -> list[str]:
        return residue.compact_tables(self.settings, places)

    def scan_residue(self, places: list[str], canaries: list[Canary]) -> dict[str, Residue]:
        return residue.scan_places(self.settings, places, canaries)

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        digests: dict[str, str] = {}
        skipped = {case.tenant, *excluded}
        with self._connect() as conn:
            classification, _, _ = classify(conn, self.settings)
            policies = platform_shape(self.settings).shared_rows
            scopes = [Scope(classification, tenant, policies) for tenant in sorted(skipped)]
            for table in (classification.registry, *classification.owned):
                # The tenant's own rows (its registry row changes status) and those of tenants
                # with open cases of their own are left out; every other row must not change.
                not_skipped = sql.SQL(" AND ").join(
                    sql.SQL("NOT coalesce({}, false)").format(scope.destroyed(table))
                    for scope in scopes
                )
                row = conn.execute(digest_query(table, not_skipped))
                digests[table] = str((row.fetchone() or ("",))[0])
            others = [
                t for t, owner in classification.schema_tables.items() if owner not in skipped
            ]
            for table in [*classification.global_tables, *others]:
                # The ledger's rows of the cases under way change with their steps (and their
                # statements and pseudonym keys are written as they go).
                where = (
                    sql.SQL("tenant <> ALL({})").format(sql.Literal(sorted(skipped)))
                    if table.startswith(f"{LEDGER_SCHEMA}.")
                    else sql.SQL("TRUE")
                )
                row = conn.execute(digest_query(table, where))
                digests[table] = str((row.fetchone() or ("",))[0])
        return hashlib.sha256(compact_json(digests)).hexdigest()

    def referenced_objects(self, case: CaseRef) -> set[str]:
        """Object keys that the tenant's rows reference (e.g. documents.object_key)."""
        with self._connect() as conn:
            classification, _, _ = classify(conn, self.settings, strict=False)
            return objects_of(conn, self.settings, self._scope(classification, case))

    def referenced_by_others(self, case: CaseRef, keys: set[str]) -> set[str]:
        """Which of `keys` rows outside the tenant's scope reference too (any other tenant's,
        or a shared row): such an object is not the tenant's alone to destroy."""
        if not keys:
            return set()
        with self._connect() as conn:
            classification, _, _ = classify(conn, self.settings, strict=False)
            return objects_of(conn, self.settings, self._scope(classification, case), keys)


def _index_warning(conn: psycopg.Connection[Any], missing: MissingIndex) -> str:
    rows, size = table_size(conn, missing.table)
    columns = ", ".join(missing.columns)
    return (
        f"{missing.table}: no index leads with ({columns}), {missing.reason}: selecting, "
        f"counting and deleting the tenant's rows reads the whole table (about {rows:,} rows, "
        f"{size / 1024**2:,.1f} MB) each time, so the case costs what the platform costs. "
        f"Fix: CREATE INDEX CONCURRENTLY ON {missing.table} ({columns})"
    )


PLUGIN = Plugin(
    kind="postgres",
    config=PostgresSystem,
    location=PostgresLocation,
    capabilities=frozenset(
        {
            Capability.EXPORT,
            Capability.DESTROY,
            Capability.VERIFY,
            Capability.ISOLATION,
            Capability.PERSON_ACCESS,
            Capability.PERSON_ERASURE,
            Capability.RETENTION,
            Capability.RESIDUE,
        }
    ),
    stage=Stage.ROWS,
    export_rank=1,
    person_by="scope",
    summary="the platform's PostgreSQL database (OFFBOARD_DATABASE_URL): one snapshot "
    "exported in parallel parts; rows listed by key, isolation proved, deleted in batches",
)
