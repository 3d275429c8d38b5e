"""Settings of the pipeline, read from `OFFBOARD_*` environment variables.

Flows receive no settings object from Prefect (that would put configuration into flow
parameters); each process reads its own environment, so a worker on another machine is
configured the way any twelve-factor service is.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.core.sections import (
    CONTRACT_DESTRUCTION_LIMIT,
    FLAT_NAMES,
    MAX_LINK_LIFETIME,
    DeliverySettings,
    DestructionSettings,
    EvidenceSettings,
    ExportSettings,
    KeyringSettings,
    PlatformSettings,
    StoreSettings,
)

__all__ = [
    "CONTRACT_DESTRUCTION_LIMIT",
    "FLAT_NAMES",
    "MAX_LINK_LIFETIME",
    "DeliverySettings",
    "DestructionSettings",
    "EvidenceSettings",
    "ExportSettings",
    "KeyringSettings",
    "PlatformSettings",
    "Settings",
    "StoreSettings",
    "validate_tenant_id",
]

# The platform's own ids: slugs (acme-corp), upper case (ACME), underscores (acme_eu), dots,
# UUIDs in either case. ASCII letters and digits at both ends, no slash, no space, nothing a
# path, a key or a shell could read as something else; values reach SQL only as parameters.
_TENANT_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")


def validate_tenant_id(tenant: str) -> str:
    """Return the tenant id unchanged if it is safe to use in keys, paths and SQL values."""
    if not isinstance(tenant, str) or not _TENANT_ID.fullmatch(tenant):
        raise TenantError(
            f"tenant id {tenant!r} is not valid: use 1-128 ASCII letters, digits and inner "
            "dots, underscores or dashes (for example 'acme-corp', 'ACME_eu' or a UUID), "
            "exactly as in the tenants registry"
        )
    return tenant


class Settings(BaseSettings):
    """Where tenant data lives, where the pipeline writes, and the contract's time limits: a
    few installation-wide values and one section per concern. Every value is read from its
    `OFFBOARD_*` environment variable (README's table); `Settings(database_url=...)` and
    `replace(...)` also take the flat names of 0.1 (`FLAT_NAMES`)."""

    model_config = SettingsConfigDict(env_prefix="OFFBOARD_", extra="ignore", frozen=True)

    operator_name: str = Field(
        default="the operator (set OFFBOARD_OPERATOR_NAME)",
        description="Who performs destruction, as the certificate names it.",
    )
    home: Path = Field(
        default=Path(".offboard"),
        description="Working directory of this installation: keys, local stores, scratch space.",
    )
    orchestrator_results_path: Path | None = Field(
        default=None,
        description="Where the orchestrator keeps task results (scanned at destruction for "
        "tenant data). Unset: the flows take it from Prefect's settings; elsewhere "
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH, or PREFECT_HOME/storage (Prefect's default).",
    )
    datamap: Path | None = Field(
        default=None,
        description="The data map: every system holding tenant data and how each is destroyed "
        "(docs/operators.md). Unset: the platform database and the files store only.",
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    stores: StoreSettings = Field(default_factory=StoreSettings)
    keyring: KeyringSettings = Field(default_factory=KeyringSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    destruction: DestructionSettings = Field(default_factory=DestructionSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, values: Any) -> Any:
        """Route the flat names of 0.1 to their sections."""
        if not isinstance(values, dict):
            return values
        routed: dict[str, Any] = {}
        for name, value in values.items():
            if name in FLAT_NAMES:
                section, field_name = FLAT_NAMES[name]
                given = routed.setdefault(section, dict(values.get(section) or {}))
                given[field_name] = value
            elif name not in routed:
                routed[name] = value
        return routed

    def replace(self, **values: Any) -> Settings:
        """A copy with some values changed (flat names of 0.1, or `section={field: value}`),
        validated like any settings; the rest come from this object, not the environment."""
        current: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("operator_name", "home", "orchestrator_results_path", "datamap")
        }
        for section in (
            "platform", "stores", "keyring", "delivery", "export", "destruction", "evidence",
        ):  # fmt: skip
            current[section] = getattr(self, section).model_dump()
        for name, value in values.items():
            if name in FLAT_NAMES:
                section, field_name = FLAT_NAMES[name]
                current[section][field_name] = value
            elif isinstance(value, dict) and isinstance(current.get(name), dict):
                current[name].update(value)
            else:
                current[name] = value
        return Settings(**current)

    @cached_property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def scratch_root(self) -> Path:
        return self.root / "scratch"

    def store_url(self, name: str) -> str:
        """URL of a named store; the embedded default is a directory under `home`."""
        configured = {
            "files": self.stores.files_url,
            "delivery": self.stores.delivery_url,
            "archive": self.stores.archive_url,
        }
        if name not in configured:
            raise ConfigurationError(f"unknown store {name!r}: use one of {sorted(configured)}")
        return configured[name] or (self.root / "stores" / name).as_uri()

    def backup_store_urls(self) -> list[str]:
        urls = self.stores.backup_urls or [
            (self.root / "stores" / name).as_uri() for name in ("backup-a", "backup-b")
        ]
        if len(set(urls)) < 2:
            raise ConfigurationError(
                "OFFBOARD_BACKUP_URLS must name at least two distinct backup locations "
                '(clause 2.3.8), e.g. ["gs://backups-eu-west1", "gs://backups-eu-north1"]'
            )
        return urls

    def delivery_store_url(self, region: str) -> str:
        """The delivery store of a region: bundles stay in the tenant's region."""
        if not self.stores.delivery_regions:
            return self.store_url("delivery")
        if region not in self.stores.delivery_regions:
            raise ConfigurationError(
                f"no delivery store for region {region!r}: add it to OFFBOARD_DELIVERY_REGIONS, "
                f'e.g. {{"{region}": "gs://<bucket in {region}>"}} (configured: '
                f"{sorted(self.stores.delivery_regions)}); the bundle stays undelivered until then"
            )
        return self.stores.delivery_regions[region]

    def delivery_store_urls(self) -> list[str]:
        """Every store that may hold a bundle (destruction empties the tenant's part of each)."""
        return sorted(set(self.stores.delivery_regions.values())) or [self.store_url("delivery")]

    def require_ledger(self) -> str:
        """The ledger's database: OFFBOARD_LEDGER_URL, else the platform's."""
        return self.platform.ledger_url or self.require_database()

    def require_database(self) -> str:
        if not self.platform.database_url:
            raise ConfigurationError(
                "OFFBOARD_DATABASE_URL is not set: give the platform database's connection "
                "string, e.g. 'host=127.0.0.1 port=5432 dbname=platform user=offboard'"
            )
        return self.platform.database_url
