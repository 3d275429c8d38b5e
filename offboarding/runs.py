"""What the library asks of the orchestrator, as one small Protocol, and the acknowledgement a
waiting case is given.

The library never imports Prefect: the flows hand it a `Runs`, and `flows/adapter/` is the
one module that implements it with Prefect's API. Tests of the policy can hand it any `Runs`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from offboarding.core.records import CaseRef

__all__ = [
    "CANCELLABLE",
    "DEEMED_BY",
    "STATEMENT_PATTERN",
    "AcknowledgementInput",
    "AttestationInput",
    "OptionalStatementRef",
    "RunState",
    "Runs",
    "StatementRef",
]

RunState = Literal[
    "SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "CANCELLED", "COMPLETED",
    "FAILED", "CRASHED", "UNKNOWN",
]  # fmt: skip
# A destruction run in one of these states has not started: cancelling it loses nothing.
CANCELLABLE: frozenset[str] = frozenset({"SCHEDULED", "PENDING"})

DEEMED_BY = "case watch: no acknowledgement within the acknowledgement period"


# A statement kept outside the orchestrator (offboarding/people.py): the forms carry only this.
STATEMENT_PATTERN = r"^st-[0-9a-f]{32}$"
_STATEMENT_HELP = (
    "The reference (st-…) of what the person said, kept in the pipeline's ledger: support "
    "staff's page (/staff/ on the link endpoint, which can also resume a waiting case), "
    "`offboard statement` or the acknowledgement page prints it. Prefect keeps every input, so "
    "names and notes never go into this form."
)

# A flow parameter that names a statement: its schema refuses anything else, free text included.
StatementRef = Annotated[str, Field(pattern=STATEMENT_PATTERN, description=_STATEMENT_HELP)]
OptionalStatementRef = Annotated[
    str, Field(pattern=r"^(st-[0-9a-f]{32})?$", description=_STATEMENT_HELP)
]


class AcknowledgementInput(BaseModel):
    """What a person (or the case watch) gives a waiting case. The orchestrator renders it as
    the Resume form and validates it against this schema on its server, so 91 days is refused
    before the flow sees it; the CLI and the acknowledgement page build it the same way. Who
    acknowledged and their note are a statement, named here by its reference only."""

    # The form requires the statement; the schema is what Prefect's server validates against.
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=lambda schema: schema.update(required=["statement"])
    )

    statement: Annotated[str, Field(pattern=STATEMENT_PATTERN)] | SkipJsonSchema[None] = Field(
        default=None, description=_STATEMENT_HELP
    )
    days_until_destruction: int | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Days after acknowledgement before destruction (0-90, clause 2.3.2). "
        "Empty: the configured grace period.",
    )
    deemed_delivered: bool = Field(
        default=False,
        description="Set by the case watch when no acknowledgement came within the "
        "acknowledgement period; staff acknowledging for the client leave it unticked.",
    )

    # What the form of release 0.1 asked, still read from the cases it suspended (never in the
    # form's schema, so a new form refuses them): a name typed there is moved to a statement
    # when the case resumes; the new commands put the statement's reference in it.
    acknowledged_by: SkipJsonSchema[str | None] = Field(default=None, max_length=200)
    note: SkipJsonSchema[str | None] = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _reference_in_the_old_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("statement"):
            named = data.get("acknowledged_by")
            if isinstance(named, str) and re.fullmatch(STATEMENT_PATTERN, named):
                data = {**data, "statement": named, "acknowledged_by": None}
        return data

    @model_validator(mode="after")
    def _someone(self) -> AcknowledgementInput:
        if self.statement is None and not (self.acknowledged_by or "").strip():
            raise ValueError("statement: the reference of who acknowledges is required")
        return self

    @classmethod
    def deemed(cls, statement: str) -> AcknowledgementInput:
        """The case watch's, with the statement it kept (its own name, DEEMED_BY)."""
        return cls(statement=statement, deemed_delivered=True)

    def as_run_input(self, *, legacy_form: bool = False) -> dict[str, Any]:
        """The fields as the resume call sends them (unset ones left out). A case suspended by
        release 0.1 has that release's form: the statement's reference goes in its name field."""
        sent = self.model_dump(exclude_defaults=True)
        if legacy_form and "statement" in sent:
            sent["acknowledged_by"] = sent.pop("statement")
        return sent


class AttestationInput(BaseModel):
    """What the role responsible for an attested system (data map) confirms once it has
    destroyed the tenant's data there. The orchestrator renders it as the Resume form of the
    destruction run waiting for it (one form per system, which names it)."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(
        pattern=STATEMENT_PATTERN,
        description="Who did it and confirms: " + _STATEMENT_HELP,
    )
    action: str = Field(
        min_length=1,
        max_length=1000,
        description="What was done, e.g. 'deleted index t-acme; _cat/indices shows none'. "
        "No personal data: it goes into the certificate.",
    )
    evidence: str = Field(
        min_length=1,
        max_length=500,
        description="Where the proof is kept: a ticket, the vendor's deletion receipt id, a URL.",
    )

    def as_run_input(self) -> dict[str, Any]:
        return self.model_dump()


class Runs(Protocol):
    """The orchestrator's runs, as the library needs them."""

    def schedule_destruction(
        self, case: CaseRef, *, scheduled_for: datetime, idempotency_key: str
    ) -> str:
        """Create (or find, by key) the case's destruction run for `scheduled_for`; its id.
        The run is given the case id alone: it reads its dates from the case's trail."""
        ...

    def state(self, run_id: str) -> str:
        """The run's state type (a `RunState`), 'UNKNOWN' if it has none."""
        ...

    def cancel(self, run_id: str, message: str) -> None: ...

    def waiting_cases(self) -> list[tuple[str, str]]:
        """(run id, tenant) of every offboard run suspended for an acknowledgement."""
        ...

    def resume(self, run_id: str, acknowledgement: AcknowledgementInput) -> None:
        """Resume a waiting case; NotWaitingError or AcknowledgementRejected when refused."""
        ...
