"""What a person gives a waiting case. Prefect renders it as the Resume form in its UI and
validates it on the server against this schema (so 91 days is refused before the flow sees it)."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field

__all__ = ["Acknowledgement"]


class Acknowledgement(RunInput):
    acknowledged_by: str = Field(
        min_length=1,
        max_length=200,
        description="Who acknowledges receipt: the client's contact, or staff on their behalf.",
    )
    days_until_destruction: int | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Days after acknowledgement before destruction (0-90, clause 2.3.2). "
        "Empty: the configured grace period.",
    )
    note: str | None = Field(default=None, max_length=1000, description="Optional note.")
    deemed_delivered: bool = Field(
        default=False,
        description="Set by the case watch when no acknowledgement came within the "
        "acknowledgement period; staff acknowledging for the client leave it unticked.",
    )
