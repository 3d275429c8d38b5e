"""The data map's answers for one person (clause 2.2.7) and for a former client's contacts
(clause 1.1.4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from offboarding.datamap.systems import (
    _TENANT_PLACEHOLDER,
    Attestation,
    _confine,
)

__all__ = [
    "ContactSystem",
    "ContactsScope",
    "PersonDeclaration",
    "PersonScope",
    "PersonSystem",
    "PersonTable",
]

_QUALIFIED = r"^[^.\s]+\.[^.\s]+$"
_PERSON_PLACEHOLDER = "{person}"


class PersonTable(BaseModel):
    """How one table's rows point at a person, and what an erasure does with them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str = Field(
        min_length=1,
        description="The column holding the person's key (e.g. author_id): the person's rows "
        "of this table are those where it equals the person's key, within the tenant.",
    )
    erase: Literal["delete", "pseudonymise"] = Field(
        description="'delete' removes the person's rows; 'pseudonymise' keeps them (where "
        "deleting would break the client's shared content: a comment others answered, a post "
        "others commented) and replaces their personal columns.",
    )
    personal: list[str] = Field(
        default_factory=list,
        description="Columns holding the person's own words or values, replaced when the row "
        "is kept: text by the erasure's pseudonym, anything else by NULL.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Columns naming an object of the files store that the row's person "
        "uploaded (e.g. object_key): exported with the rows, deleted with them.",
    )

    @model_validator(mode="after")
    def _files_go_with_rows(self) -> PersonTable:
        if self.files and self.erase != "delete":
            raise ValueError(
                "files columns are deleted with their rows: a pseudonymised row would keep "
                'naming a deleted file; use erase = "delete" for this table, or drop files'
            )
        return self


class PersonSystem(BaseModel):
    """How a system other than the database and the files holds a person's data: found and
    erased by its plug-in (`tables` for a database, `patterns` for a cache), copies that
    expire by themselves (`lingers`), a role that erases and confirms (`attested`), or nothing
    per person (`holds_nothing`, with why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lingers: timedelta | None = Field(
        default=None, description="Copies expire by themselves within this period (e.g. P1D)."
    )
    attested: Attestation | None = Field(
        default=None, description="A role erases the person there and confirms."
    )
    holds_nothing: str | None = Field(
        default=None, min_length=1, description="Why the system holds nothing of one person."
    )
    tables: dict[Annotated[str, Field(pattern=_QUALIFIED)], PersonTable] = Field(
        default_factory=dict,
        description="For a database whose plug-in finds and erases a person (mariadb): every "
        "table whose rows point at the person, as [person.tables] does for the platform's "
        "database. Each foreign key to those rows is checked at each request.",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="For a cache whose plug-in finds and erases a person (redis): key patterns "
        "of one person's keys, each with {tenant} and {person} between separators, e.g. "
        "'session:{tenant}:{person}:*'.",
    )
    why: str = Field(default="", description="What the system holds of a person, in a line.")

    @field_validator("patterns")
    @classmethod
    def _one_persons_keys(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            _confine(pattern, _TENANT_PLACEHOLDER, "tenant", "'acme' would match 'acme-corp'")
            _confine(pattern, _PERSON_PLACEHOLDER, "person", "person 7 would match 71")
        return patterns

    @model_validator(mode="after")
    def _one_way(self) -> PersonSystem:
        ways = ("tables", "patterns", "lingers", "attested", "holds_nothing")
        given = [n for n in ways if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of tables (a database plug-in finds the person), patterns (a "
                "cache plug-in finds the person's keys), lingers (a duration), attested (role "
                f"and procedure) or holds_nothing (why); found {', '.join(given) or 'none'}"
            )
        return self

    @property
    def by_plugin(self) -> bool:
        """The system's plug-in finds and erases the person itself."""
        return bool(self.tables or self.patterns)


class PersonScope(BaseModel):
    """How a person of a tenant is found in every system, for the client's requests about one
    person (clause 2.2.7): access, portability, erasure. Every foreign key that points at the
    person table must be declared in `tables` (the catalogue is checked at each request), and
    every other system of the data map in `systems`: nothing is assumed to hold nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(pattern=_QUALIFIED, description="schema.table of the platform's people.")
    key: str = Field(default="id", min_length=1, description="The person table's key column.")
    erase: Literal["delete", "pseudonymise"] = Field(
        default="delete",
        description="What erasure does with the person's own row: delete it (the pseudonymised "
        "rows elsewhere then lose their reference), or keep it with its personal columns "
        "replaced.",
    )
    personal: list[str] = Field(
        default_factory=list,
        description="The person row's personal columns, replaced when erase = 'pseudonymise'.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Object keys of the person's own files in the files store, with {tenant} "
        "and {person}, e.g. 'tenants/{tenant}/avatars/{person}.bin'.",
    )
    tables: dict[Annotated[str, Field(pattern=_QUALIFIED)], PersonTable] = Field(
        default_factory=dict, description="Every table whose rows point at a person."
    )
    systems: dict[str, PersonSystem] = Field(
        default_factory=dict, description="Every other system of the data map, for one person."
    )

    @field_validator("files")
    @classmethod
    def _files_confined(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not pattern.startswith("tenants/{tenant}/"):
                raise ValueError(
                    f"file {pattern!r} must start with 'tenants/{{tenant}}/': a person's files "
                    "are the tenant's, under its prefix"
                )
            if pattern.count(_PERSON_PLACEHOLDER) != 1 or pattern.count(_TENANT_PLACEHOLDER) != 1:
                raise ValueError(
                    f"file {pattern!r} must name {_TENANT_PLACEHOLDER} and {_PERSON_PLACEHOLDER} "
                    "once each"
                )
            if any(ch in pattern for ch in "*?["):
                raise ValueError(f"file {pattern!r} is a key, not a pattern: no * ? [")
        return patterns

    @model_validator(mode="after")
    def _pseudonymised_row(self) -> PersonScope:
        if self.table in self.tables:
            raise ValueError(
                f"[person.tables] names the person table {self.table} itself: its rows are "
                f"selected by the key {self.key!r} alone, and nothing may select others there "
                "(by = 'manager_id' would select the person's reports, not the person). Remove "
                f"it. Other people's rows that point at the person stay theirs: keep the "
                'person\'s row with erase = "pseudonymise" under [person] so they can'
            )
        if self.erase == "delete" and self.personal:
            raise ValueError(
                "personal lists the person row's columns to replace when the row is kept: "
                'with erase = "delete" the whole row goes; drop personal, or keep the row'
            )
        return self


# What a plug-in is told of one person: the [person] scope for the system holding the person
# table (its tables, files and the person's own row), a [person.systems.<name>] elsewhere.
PersonDeclaration = PersonSystem | PersonScope


class ContactSystem(BaseModel):
    """One of the operator's own systems that holds the client's contacts (a CRM, billing, the
    support desk): a role erases them there, three years after the contract's end, and confirms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    why: str = Field(default="", description="What the system holds of the client's contacts.")
    attested: Attestation


class ContactsScope(BaseModel):
    """Where the operator keeps the client's contacts beyond the pipeline's own ledger (clause
    1.1.4: no longer than three years after the relationship ends)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")], ContactSystem] = Field(
        default_factory=dict, description="Each system holding contacts, by name."
    )
