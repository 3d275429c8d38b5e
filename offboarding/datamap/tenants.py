"""The data map's [tenants]: the platform's tenants table, read through its own columns, and
how a tenant is made read-only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FreezeHook", "HttpFreezeHook", "TenantsTable"]


class FreezeHook(BaseModel):
    """How the platform makes a tenant read-only, and how the case checks that it did: two
    SQL statements run on the platform database with the tenant's id bound as %(tenant)s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(
        min_length=1,
        description='Makes the tenant read-only, e.g. "UPDATE public.tenants SET read_only = '
        'true WHERE id = %(tenant)s". Run at every attempt: it must be idempotent.',
    )
    check: str = Field(
        min_length=1,
        description="Returns one row whose first column is true once the tenant is read-only, "
        'e.g. "SELECT read_only FROM public.tenants WHERE id = %(tenant)s".',
    )


class HttpFreezeHook(BaseModel):
    """How the platform makes a tenant read-only through its API: a call, then a GET whose
    JSON answer says so. `{tenant}` in the URLs is the tenant's id, URL-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        pattern=r"^https?://",
        description="Called to freeze, e.g. 'https://platform/api/"
        "tenants/{tenant}/freeze'. Called at every attempt: it must be idempotent.",
    )
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    check_url: str = Field(
        pattern=r"^https?://", description="GET after the call; answers a JSON object."
    )
    check_field: str = Field(
        default="read_only", description="The answer's field that must be true once frozen."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description='e.g. { Authorization = "Bearer ${TOKEN}" }.'
    )
    timeout: float = Field(default=30, gt=0, le=600, description="Seconds per call.")


class TenantsTable(BaseModel):
    """Where the platform keeps its tenants, in its own columns. The pipeline adds nothing to
    it: its cases live in its own ledger (the schema `offboarding` of the same database)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(
        default=None,
        pattern=r"^[^.\s]+\.[^.\s]+$",
        description="schema.table of the platform's tenants (default: OFFBOARD_REGISTRY_TABLE).",
    )
    id: str = Field(
        default="id", description="The column of the tenant's id, as the platform has it."
    )
    name: str | None = Field(
        default=None,
        description="The tenant's display name, if the table has one (left out, or false: none).",
    )
    region: str | None = Field(
        default=None,
        description="Where the tenant's data must stay (delivery regions), if the table says "
        "(left out, or false: none).",
    )
    contact: str | None = Field(
        default=None,
        description="The address the delivery notice goes to (left out, or false: none; a "
        "delivery then stops until one is given).",
    )
    recipient: str | None = Field(
        default=None,
        description="The column holding the client's age recipient (an X25519 public key, "
        "age1...). A tenant with one receives its bundle encrypted to it, so only the holder "
        "of the matching identity can open it; without one, in clear.",
    )

    @field_validator("name", "region", "contact", "recipient", mode="before")
    @classmethod
    def _left_out(cls, value: object) -> object:
        # TOML has no null: `false` says the table has no such column.
        if value is False:
            return None
        if value is True:
            raise ValueError("name the column (a string), or false if the table has none")
        return value

    freeze: FreezeHook | HttpFreezeHook | None = Field(
        default=None,
        description="How the tenant is made read-only. Without one the platform keeps "
        "accepting writes: rows added after the export then stop the destruction.",
    )
