"""Pure planning: which tables belong to a tenant, in what order to delete, when to destroy.

No I/O here: everything takes plain data read elsewhere, so the rules that decide what is
exported and what is destroyed can be tested exhaustively without a database.
"""

from __future__ import annotations

from offboarding.datamap.references import Declaration
from offboarding.planning.indexes import (
    MissingIndex,
    index_serves,
    missing_indexes,
    reached_through_indexes,
)
from offboarding.planning.schedule import (
    DESTRUCTION_MARGIN,
    Schedule,
    deletion_order,
    destruction_schedule,
    latest_destruction_start,
    require_possible,
)
from offboarding.planning.tables import (
    CatalogTable,
    Classification,
    ForeignKey,
    classify_tables,
    declare,
    memberships,
    tenant_schema_regex,
)

__all__ = [
    "DESTRUCTION_MARGIN",
    "CatalogTable",
    "Classification",
    "Declaration",
    "ForeignKey",
    "MissingIndex",
    "Schedule",
    "classify_tables",
    "declare",
    "deletion_order",
    "destruction_schedule",
    "index_serves",
    "latest_destruction_start",
    "memberships",
    "missing_indexes",
    "reached_through_indexes",
    "require_possible",
    "tenant_schema_regex",
]
