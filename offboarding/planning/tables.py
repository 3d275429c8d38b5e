"""Which tables hold a tenant's rows: the catalogue (with the data map's declared
references) sorted into classes. Pure: plain data in, plain data out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from offboarding.core.errors import ConfigurationError, UnclassifiedDataError
from offboarding.core.names import qualified
from offboarding.datamap.references import Declaration, Membership

__all__ = [
    "CatalogTable",
    "Classification",
    "ForeignKey",
    "classify_tables",
    "declare",
    "tenant_schema_regex",
]


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    references: str  # the referenced table's qualified name (offboarding.core.names)
    referenced_columns: tuple[str, ...]
    name: str = ""
    # What deleting a referenced row does to the referencing one (pg_constraint.confdeltype):
    # a = no action, r = restrict (the delete fails), c = cascade, n = set null, d = set default;
    # x = declared in the data map, unknown to the database (a deletion leaves its rows as
    # they are, so the proof must find every one).
    on_delete: str = "a"
    # Values that mean "no reference" in these columns besides NULL, e.g. '' or 0.
    none: tuple[str | int, ...] = ()
    # A polymorphic reference: the key is this table's only where these columns hold these
    # values, e.g. (("target_type", "Post"),).
    when: tuple[tuple[str, str | int], ...] = ()

    @property
    def declared(self) -> bool:
        return self.on_delete == "x"

    @property
    def conditional(self) -> bool:
        """Whether a row's key columns being set is not enough for it to point at a row."""
        return bool(self.none or self.when)

    @property
    def involved(self) -> tuple[str, ...]:
        """Every column that decides where the key points: its own and the `when` columns."""
        return tuple(dict.fromkeys((*self.columns, *(c for c, _ in self.when))))


@dataclass(frozen=True)
class CatalogTable:
    schema: str
    name: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def qualified(self) -> str:
        """The one text form of the name (offboarding.core.names): never split at a dot."""
        return qualified(self.schema, self.name)


def memberships(
    tables: list[CatalogTable], entities: list[Membership] | tuple[Membership, ...]
) -> list[Declaration]:
    """Each shared entity's membership as a reference (membership -> entity), unless the
    catalogue already has it (a foreign key, or a declared reference)."""
    by_name = {t.qualified: t for t in tables}
    found = []
    for entity in entities:
        through = by_name.get(entity.through)
        if through is not None and any(
            fk.columns == entity.columns and fk.references == entity.table
            for fk in through.foreign_keys
        ):
            continue
        found.append(Declaration(entity.through, entity.columns, entity.table, entity.key))
    return found


def declare(tables: list[CatalogTable], declarations: list[Declaration]) -> list[CatalogTable]:
    """The catalog with the declared references added as foreign keys (on_delete 'x'), each
    checked against it: its tables and columns exist, as many columns on each side, the
    parent's columns its primary key or unique by the declaration's word. A reference the
    database has as a foreign key already is the database's (with its ON DELETE rule)."""
    by_name = {t.qualified: t for t in tables}
    added: dict[str, list[ForeignKey]] = {}
    for declared in declarations:
        where = f"the data map's reference {declared.describe()}"
        child, parent = by_name.get(declared.table), by_name.get(declared.references)
        for name, found in ((declared.table, child), (declared.references, parent)):
            if found is None:
                raise ConfigurationError(
                    f"{where}: table {name!r} does not exist in the database; fix its name "
                    "(schema.table, as the catalogue spells it)"
                )
        assert child is not None and parent is not None
        referenced = declared.referenced_columns or parent.primary_key
        if not referenced:
            raise ConfigurationError(
                f"{where}: {parent.qualified} has no primary key, so name the referenced "
                'columns, e.g. to = "schema.table(id)"'
            )
        for table, wanted in (
            (child, (*declared.columns, *(c for c, _ in declared.when))),
            (parent, referenced),
        ):
            missing = [c for c in wanted if c not in table.columns]
            if missing:
                raise ConfigurationError(
                    f"{where}: {table.qualified} has no column {', '.join(map(repr, missing))}"
                    f" (it has {', '.join(table.columns)})"
                )
        if len(referenced) != len(declared.columns):
            raise ConfigurationError(
                f"{where}: {len(declared.columns)} column(s) cannot hold the "
                f"{len(referenced)}-column key {parent.qualified}({', '.join(referenced)})"
            )
        if any(fk.columns == declared.columns and fk.references == parent.qualified
               and not fk.declared and not declared.conditional
               for fk in child.foreign_keys):  # fmt: skip
            continue  # the database's own key says it already (and its ON DELETE rule)
        added.setdefault(child.qualified, []).append(
            ForeignKey(
                columns=declared.columns,
                references=parent.qualified,
                referenced_columns=tuple(referenced),
                name=f"declared {declared.describe()}",
                on_delete="x",
                none=declared.none,
                when=declared.when,
            )
        )
    return [
        replace(t, foreign_keys=t.foreign_keys + tuple(added[t.qualified]))
        if t.qualified in added
        else t
        for t in tables
    ]


@dataclass(frozen=True)
class Classification:
    """Every table of the database, sorted into exactly one class."""

    tenant_scoped: tuple[str, ...]
    # derived table -> the foreign keys through which its rows reach tenant-owned rows
    derived: dict[str, tuple[ForeignKey, ...]] = field(default_factory=dict)
    registry: str = ""
    global_tables: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    # schema-per-tenant layout: table -> the tenant whose schema holds it (all of its rows)
    schema_tables: dict[str, str] = field(default_factory=dict)
    unclassified: tuple[str, ...] = ()
    tenant_column: str = "tenant_id"
    # tenant-scoped tables whose owner column is not `tenant_column`
    owner_columns: dict[str, str] = field(default_factory=dict)
    registry_id: str = "id"  # the registry's column of the tenant's id
    # Excluded tables that hold tenants' rows (by their owner column: no links; or through
    # these keys to tenant rows): left out of export and destruction, so accounted for.
    excluded_holding: dict[str, tuple[ForeignKey, ...]] = field(default_factory=dict)
    # excluded table -> the data map's system covering the tenant's copy of its rows
    handled_by: dict[str, str] = field(default_factory=dict)
    # shared entity table -> how tenants link to its rows, and what a destruction does to them
    entities: dict[str, Membership] = field(default_factory=dict)

    def counting_excluded(self) -> Classification:
        """This classification with the excluded tables that hold tenants' rows counted as
        tenant tables: for counting what is left out, never for export or destruction."""
        holding = self.excluded_holding
        return replace(
            self,
            tenant_scoped=self.tenant_scoped
            + tuple(t for t, links in holding.items() if not links),
            derived={**self.derived, **{t: links for t, links in holding.items() if links}},
            excluded={t: why for t, why in self.excluded.items() if t not in holding},
            excluded_holding={},
        )

    def owner_column(self, table: str) -> str:
        """The column naming each row's tenant in a tenant-scoped table."""
        return self.owner_columns.get(table, self.tenant_column)

    @property
    def owned(self) -> tuple[str, ...]:
        """Shared tables holding tenant rows a destruction removes, in a stable order (scoped,
        derived, then the shared entities erased where no other tenant links them)."""
        erased = tuple(sorted(t for t, e in self.entities.items() if e.erased))
        return self.tenant_scoped + tuple(sorted(self.derived)) + erased

    @property
    def exported(self) -> tuple[str, ...]:
        """Shared tables whose rows the tenant's bundle holds: the owned ones, and the kept
        shared entities (the tenant's view of them)."""
        kept = tuple(sorted(t for t, e in self.entities.items() if not e.erased))
        return self.owned + kept

    @property
    def pseudonymised(self) -> tuple[str, ...]:
        """Shared entities whose rows no other tenant links are kept, their personal columns
        replaced."""
        return tuple(sorted(t for t, e in self.entities.items() if e.pseudonymised))

    def schema_tables_of(self, tenant: str) -> tuple[str, ...]:
        return tuple(sorted(t for t, owner in self.schema_tables.items() if owner == tenant))

    def require_complete(self) -> Classification:
        """Fail closed: nothing is exported while any table is unclassified."""
        if self.unclassified:
            first = self.unclassified[0]
            raise UnclassifiedDataError(
                f"table(s) {', '.join(self.unclassified)} hold(s) no '{self.tenant_column}' "
                "column, no foreign key to tenant data, are in no tenant schema, and are not "
                "listed as global or excluded. Nothing is exported until every table is "
                "classified. In the data map's [systems.postgres]: name the column that holds "
                f'its tenant, owner_columns = {{ "{first}" = "<column>" }}; or declare the '
                "reference the database does not, [[systems.postgres.references]] from = "
                f'"{first}(<column>)", to = "<schema.table>(<key>)"; or, if it holds no tenant '
                f'data, global_tables = {{ "{first}" = "<why>" }} (formerly '
                "OFFBOARD_GLOBAL_TABLES)"
            )
        return self


def tenant_schema_regex(pattern: str) -> re.Pattern[str]:
    """`tenant_{tenant}` -> a regex whose group `tenant` captures the tenant id."""
    if pattern.count("{tenant}") != 1:
        raise ConfigurationError(
            f"OFFBOARD_TENANT_SCHEMA_PATTERN {pattern!r} must contain '{{tenant}}' exactly once"
        )
    before, after = (re.escape(part) for part in pattern.split("{tenant}"))
    return re.compile(f"^{before}(?P<tenant>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?){after}$")


def _require_named(
    tables: list[CatalogTable],
    global_tables: dict[str, str],
    excluded: dict[str, str],
    owner_columns: dict[str, str],
    registry: str,
) -> None:
    """Every table and column the data map names exists in the catalogue."""
    by_name = {t.qualified: t for t in tables}
    for listed, kind in [
        *((n, "global") for n in global_tables),
        *((n, "excluded") for n in excluded),
        *((n, "owner_columns") for n in owner_columns),
    ]:
        if listed not in by_name:
            raise UnclassifiedDataError(
                f"{kind} table {listed!r} from the data map does not exist in the database: "
                f"remove it from {kind if kind == 'owner_columns' else kind + '_tables'} or "
                "fix its schema.table name"
            )
    for owned_table, column in owner_columns.items():
        if column not in by_name[owned_table].columns:
            raise UnclassifiedDataError(
                f"owner_columns names {column!r} for {owned_table}, which has no such column "
                f"(it has {', '.join(by_name[owned_table].columns)}): fix the column's name"
            )
    if registry and registry not in by_name:  # "" for a database without the registry
        raise UnclassifiedDataError(
            f"tenants registry {registry!r} not found: set OFFBOARD_REGISTRY_TABLE to its "
            "schema.table"
        )


def classify_tables(
    tables: list[CatalogTable],
    *,
    tenant_column: str,
    registry: str,
    global_tables: dict[str, str],
    excluded: dict[str, str],
    tenant_schema_pattern: str | None = "tenant_{tenant}",
    owner_columns: dict[str, str] | None = None,
    registry_id: str = "id",
    entities: list[Membership] | tuple[Membership, ...] = (),
) -> Classification:
    """Sort every table into scoped, derived, tenant schema, registry, global, excluded, or
    unclassified (which `require_complete` refuses).

    A table is derived when it has no tenant column but a foreign key to a tenant-owned
    table, at any depth. A row of a derived table belongs to the tenant if any of those
    foreign keys points at one of the tenant's rows. Self-references are not routes.
    """
    owner_columns = dict(owner_columns or {})
    _require_named(tables, global_tables, excluded, owner_columns, registry)
    schema_regex = tenant_schema_regex(tenant_schema_pattern) if tenant_schema_pattern else None
    schema_tables = {
        t.qualified: match["tenant"]
        for t in tables
        if schema_regex
        and (match := schema_regex.match(t.schema))
        and t.qualified not in (registry, *excluded)
    }
    keys = {t.qualified: t.primary_key for t in tables}
    shared = {e.table: replace(e, key=e.key or keys.get(e.table, ())) for e in entities}
    settled = {*([registry] if registry else []), *global_tables, *excluded}
    settled |= {*schema_tables, *shared}
    owner_columns = {
        **_registry_references(tables, registry, registry_id, settled, tenant_column),
        **owner_columns,
    }
    scoped = sorted(
        t.qualified
        for t in tables
        if t.qualified not in settled and owner_columns.get(t.qualified, tenant_column) in t.columns
    )
    owned = set(scoped)
    derived: dict[str, tuple[ForeignKey, ...]] = {}
    changed = True
    while changed:  # fixpoint: a chain of any depth ends up owned
        changed = False
        for table in tables:
            name = table.qualified
            if name in settled or name in owned:
                continue
            links = tuple(
                fk for fk in table.foreign_keys if fk.references in owned and fk.references != name
            )
            if links:
                derived[name] = links
                owned.add(name)
                changed = True
    _require_memberships(shared, owned, {t.qualified for t in tables}, settled - set(shared))
    return Classification(
        tenant_scoped=tuple(scoped),
        derived=derived,
        entities=shared,
        registry=registry,
        global_tables=dict(global_tables),
        excluded=dict(excluded),
        schema_tables=schema_tables,
        unclassified=tuple(
            sorted(t.qualified for t in tables if t.qualified not in owned | settled)
        ),
        tenant_column=tenant_column,
        owner_columns={
            t: c
            for t, c in owner_columns.items()
            if (t in owned or t in excluded) and c != tenant_column
        },
        registry_id=registry_id,
        excluded_holding=_holding(tables, excluded, owned, owner_columns, tenant_column),
    )


def _registry_references(
    tables: list[CatalogTable],
    registry: str,
    registry_id: str,
    settled: set[str],
    tenant_column: str,
) -> dict[str, str]:
    """Tables without the tenant column whose key to the tenants table (a foreign key, or a
    declared reference) names each row's tenant: that column is their owner column."""
    found: dict[str, str] = {}
    for table in tables:
        if not registry or table.qualified in settled or tenant_column in table.columns:
            continue
        for fk in table.foreign_keys:
            if (
                fk.references == registry
                and fk.referenced_columns == (registry_id,)
                and len(fk.columns) == 1
                and not fk.conditional
            ):
                found[table.qualified] = fk.columns[0]
                break
    return found


def _require_memberships(
    shared: dict[str, Membership], owned: set[str], tables: set[str], settled: set[str]
) -> None:
    for entity in shared.values():
        where = f"shared_entities {entity.table!r}"
        if entity.table not in tables:
            raise ConfigurationError(f"{where}: no such table in the database; fix its name")
        if not entity.key:
            raise ConfigurationError(
                f"{where}: the table has no primary key: name the columns its membership "
                "holds, key = [...]"
            )
        if entity.table in settled:
            raise ConfigurationError(
                f"{where}: the table is also declared global, excluded or the tenants table; "
                "declare it once"
            )
        if entity.through not in owned:
            raise ConfigurationError(
                f"{where}: its membership table {entity.through} holds no tenant's rows (no "
                "owner column, no reference to a tenant table): a membership names the tenant "
                "that links each entity"
            )


def _holding(
    tables: list[CatalogTable],
    excluded: dict[str, str],
    owned: set[str],
    owner_columns: dict[str, str],
    tenant_column: str,
) -> dict[str, tuple[ForeignKey, ...]]:
    """The excluded tables that would hold tenants' rows if they were not excluded."""
    by_name = {t.qualified: t for t in tables}
    holding: dict[str, tuple[ForeignKey, ...]] = {}
    for name in excluded:
        table = by_name.get(name)
        if table is None:
            continue
        if owner_columns.get(name, tenant_column) in table.columns:
            holding[name] = ()
            continue
        links = tuple(
            fk for fk in table.foreign_keys if fk.references in owned and fk.references != name
        )
        if links:
            holding[name] = links
    return holding
