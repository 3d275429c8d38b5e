"""The tenants registry: who the tenant is, where its data lives, and whether it may be touched.

The registry row outlives the tenant's data: it keeps what the audit record needs, and the
date after which the contact details must go (clause 1.1.4: three years after the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import DuplicateCaseError, LegalHoldError, TenantError

__all__ = ["TenantRecord", "TenantRegistry"]

CONTACT_RETENTION_YEARS = 3


@dataclass(frozen=True)
class TenantRecord:
    id: str
    name: str
    region: str
    status: str
    legal_hold: bool
    legal_hold_reason: str | None
    contact_email: str | None
    frozen_at: datetime | None
    offboarding_case: str | None = None

    @property
    def contact_domain(self) -> str:
        """The only part of the contact address that may appear in logs."""
        return (self.contact_email or "").rpartition("@")[2] or "(none)"


def _table(settings: Settings) -> sql.Composable:
    schema, _, name = settings.platform.registry_table.partition(".")
    return sql.Identifier(schema, name)


class TenantRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.settings.require_database(), row_factory=dict_row)

    def get(self, tenant: str) -> TenantRecord:
        validate_tenant_id(tenant)
        with self._connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT id, name, region, status, legal_hold, legal_hold_reason, "
                    "contact_email, frozen_at, offboarding_case FROM {} WHERE id = %s"
                ).format(_table(self.settings)),
                (tenant,),
            ).fetchone()
        if row is None:
            raise TenantError(
                f"tenant {tenant!r} is not in the registry "
                f"{self.settings.platform.registry_table}: check the id (ids are exact, 'acme' "
                "is not 'acme-corp')"
            )
        return TenantRecord(**row)

    def tenants(self, status: str | None = None) -> list[str]:
        """Tenant ids, optionally only those with `status` ('active', 'frozen', 'destroyed')."""
        with self._connect() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT id FROM {} WHERE %s::text IS NULL OR status = %s ORDER BY id"
                ).format(_table(self.settings)),
                (status, status),
            ).fetchall()
        return [str(row["id"]) for row in rows]

    def freeze(self, tenant: str, case_id: str) -> TenantRecord:
        """Make the tenant read-only for the platform and the case its only case: idempotent
        for that case, refused for a second one (two events never open two cases) and once
        destroyed. One UPDATE, so two cases starting at once cannot both win."""
        record = self.get(tenant)
        if record.status == "destroyed":
            raise TenantError(
                f"tenant {tenant!r} was already offboarded and destroyed: nothing to export"
            )
        with self._connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "UPDATE {} SET status = 'frozen', frozen_at = coalesce(frozen_at, now()), "
                    "offboarding_case = coalesce(offboarding_case, %s) WHERE id = %s "
                    "RETURNING offboarding_case"
                ).format(_table(self.settings)),
                (case_id, tenant),
            ).fetchone()
        owner = row["offboarding_case"] if row else None
        if owner != case_id:
            raise DuplicateCaseError(
                f"tenant {tenant!r} already has offboarding case {owner}: no second case is "
                "opened. Follow that case in the Prefect UI",
                existing_case=str(owner),
            )
        return self.get(tenant)

    def require_no_hold(self, tenant: str) -> None:
        record = self.get(tenant)
        if record.legal_hold:
            raise LegalHoldError(
                f"tenant {tenant!r} is on legal hold ({record.legal_hold_reason or 'no reason'}): "
                "destruction refused. Lift the hold in the registry, then run destruction again "
                "before the deadline"
            )

    def set_hold(self, tenant: str, held: bool, reason: str | None = None) -> None:
        self.get(tenant)
        with self._connect() as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET legal_hold = %s, legal_hold_reason = %s WHERE id = %s"
                ).format(_table(self.settings)),
                (held, reason if held else None, tenant),
            )

    def mark_destroyed(self, tenant: str, at: datetime) -> date:
        """Record the destruction; return the date the contact details must be erased by."""
        erase_contact_by = date(at.year + CONTACT_RETENTION_YEARS, at.month, min(at.day, 28))
        with self._connect() as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET status = 'destroyed', destroyed_at = %s, "
                    "contact_delete_after = %s WHERE id = %s"
                ).format(_table(self.settings)),
                (at.astimezone(UTC), erase_contact_by, tenant),
            )
        return erase_contact_by
