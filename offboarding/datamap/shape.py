"""The platform database's shape, from one source: the data map's [systems.postgres].

Owner column, schema-per-tenant pattern, global and excluded tables, file columns and the
shared-rows policies were environment variables (OFFBOARD_TENANT_COLUMN, ...) while MariaDB's
came from the data map. They are declared in the data map now; the environment keeps URLs,
secrets and process settings. An old variable still set keeps working for a field the data map
leaves out, with a warning saying where it goes; set in both with different values, it stops
with an error naming both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from offboarding.core.config import PlatformSettings, Settings
from offboarding.core.errors import ConfigurationError
from offboarding.datamap.loading import datamap_of
from offboarding.datamap.model import DEFAULT_DATAMAP
from offboarding.datamap.references import Declaration, Membership
from offboarding.datamap.systems import PostgresSystem, TenantObject, handlers, reasons

__all__ = ["PlatformShape", "ShapeVariableDeprecated", "platform_shape"]


class ShapeVariableDeprecated(FutureWarning):
    """An OFFBOARD_* variable of the platform's shape: declare it in the data map instead."""


@dataclass(frozen=True)
class PlatformShape:
    """How tenant data is laid out in the platform database, as the pipeline applies it."""

    tenant_column: str
    tenant_schema_pattern: str
    global_tables: dict[str, str] = field(default_factory=dict)
    excluded_tables: dict[str, str] = field(default_factory=dict)
    file_columns: list[str] = field(default_factory=list)
    shared_rows: dict[str, Literal["leave", "delete", "export"]] = field(default_factory=dict)
    owner_columns: dict[str, str] = field(default_factory=dict)
    references: tuple[Declaration, ...] = ()
    # excluded table -> the data map's system covering the tenant's copy of its rows
    handled_by: dict[str, str] = field(default_factory=dict)
    entities: tuple[Membership, ...] = ()
    tenant_objects: tuple[TenantObject, ...] = ()
    # file column -> values naming no object besides NULL and ''
    file_none: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def no_object(self, column: str) -> list[str]:
        """The values of a file column (schema.table.column) that name no object."""
        return ["", *self.file_none.get(column, ())]


# Each field of the shape: its old setting, and that setting's variable.
_OLD: dict[str, tuple[str, str]] = {
    "tenant_column": ("tenant_column", "OFFBOARD_TENANT_COLUMN"),
    "tenant_schema_pattern": ("tenant_schema_pattern", "OFFBOARD_TENANT_SCHEMA_PATTERN"),
    "global_tables": ("global_tables", "OFFBOARD_GLOBAL_TABLES"),
    "excluded_tables": ("excluded_tables", "OFFBOARD_EXCLUDED_TABLES"),
    "file_columns": ("file_reference_columns", "OFFBOARD_FILE_REFERENCE_COLUMNS"),
    "shared_rows": ("shared_rows", "OFFBOARD_SHARED_ROWS"),
}
# What a field the data map leaves out is, once the data map declares the shape: nothing of
# the demo platform's (its plans table, its documents' keys) applies to another platform.
_NEUTRAL: dict[str, Any] = {
    "tenant_column": "tenant_id", "tenant_schema_pattern": "tenant_{tenant}",
    "global_tables": {}, "excluded_tables": {}, "file_columns": [], "shared_rows": {},
}  # fmt: skip
_warned: set[str] = set()


def _default(setting: str) -> Any:
    return PlatformSettings.model_fields[setting].get_default(call_default_factory=True)


def platform_shape(settings: Settings) -> PlatformShape:
    """The shape the data map declares; what it leaves out from an old variable still set
    (warned once per process), else a neutral default (no global table, no file column). The
    first release's defaults (the demo's plans and documents) hold only without a data map."""
    datamap = datamap_of(settings)
    system = datamap.systems.get("postgres")
    declared = {
        name: getattr(system, name)
        for name in _OLD
        if isinstance(system, PostgresSystem) and getattr(system, name) is not None
    }
    if "excluded_tables" in declared:
        declared["excluded_tables"] = reasons(declared["excluded_tables"])
    # A data map of the operator's own (a file) declares its platform's shape: nothing of the
    # demo's applies to it. Only without one do the first release's defaults hold.
    own_shape = datamap is not DEFAULT_DATAMAP
    values: dict[str, Any] = {}
    for name, (setting, variable) in _OLD.items():
        old = getattr(settings.platform, setting)
        set_in_environment = old != _default(setting)
        if name in declared:
            if set_in_environment and old != declared[name]:
                raise ConfigurationError(
                    f"{variable} and the data map's [systems.postgres] {name} ({datamap.source}) "
                    f"disagree: the data map is the one source of the platform's shape; unset "
                    f"{variable}"
                )
            values[name] = declared[name]
        elif set_in_environment:
            if variable not in _warned:
                _warned.add(variable)
                warnings.warn(
                    f"{variable} is deprecated: declare {name} under [systems.postgres] in the "
                    "data map (OFFBOARD_DATAMAP); the environment keeps URLs and secrets",
                    ShapeVariableDeprecated,
                    stacklevel=2,
                )
            values[name] = old
        else:
            values[name] = _NEUTRAL[name] if own_shape else _default(setting)
    if isinstance(system, PostgresSystem):
        values["handled_by"] = handlers(system.excluded_tables)
        values["owner_columns"] = dict(system.owner_columns)
        values["references"] = tuple(r.declaration() for r in system.references)
        values["entities"] = tuple(e.membership(t) for t, e in system.shared_entities.items())
        values["tenant_objects"] = tuple(system.tenant_objects)
        values["file_none"] = {c: tuple(v) for c, v in system.file_none.items()}
    return PlatformShape(**values)
