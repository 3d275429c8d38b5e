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
    "PersonLink",
    "PersonScope",
    "PersonSystem",
    "PersonTable",
    "Tombstone",
]

_QUALIFIED = r"^[^.\s]+\.[^.\s]+$"
_PERSON_PLACEHOLDER = "{person}"


LinkRule = Literal["clear", "tombstone", "keep"]


class PersonLink(BaseModel):
    """A column of other people's rows that points at the person (a ticket's assignee, a
    message's recipient, a colleague's manager): the row is not the person's, the link is.
    An erasure clears the column (it must allow NULL), reassigns it to the tombstone person
    ([person] tombstone), or keeps it, with why (named in the certificate as a link that
    remains)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: LinkRule = Field(
        description="'clear' sets the column to NULL; 'tombstone' points it at [person] "
        "tombstone; 'keep' leaves it (the certificate names it, with why)."
    )
    why: str = Field(default="", description="Why a kept link must stay (required for keep).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"rule": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kept_with_why(self) -> PersonLink:
        if self.rule == "keep" and not self.why.strip():
            raise ValueError(
                'a kept link needs why = "..." (the certificate names every link that '
                'remains, with its reason); or clear it, or reassign it with "tombstone"'
            )
        return self


class PersonTable(BaseModel):
    """How one table's rows point at a person, and what an erasure does with them: the
    person's own rows (`by`, e.g. the author), and other people's rows that point at them
    (`links`, e.g. the assignee), each column with its own rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str | None = Field(
        default=None,
        min_length=1,
        description="The column holding the person's key (e.g. author_id): the person's rows "
        "of this table are those where it equals the person's key, within the tenant.",
    )
    erase: Literal["delete", "pseudonymise"] | None = Field(
        default=None,
        description="'delete' removes the person's rows; 'pseudonymise' keeps them (where "
        "deleting would break the client's shared content: a comment others answered, a post "
        "others commented) and replaces their personal columns. Required with `by`.",
    )
    reference: LinkRule | None = Field(
        default=None,
        description="For pseudonymised rows: what becomes of their `by` column. 'clear' "
        "(NULL), 'tombstone' (reassigned to [person] tombstone, so the kept rows cannot be "
        "linked together again) or 'keep'. Default: clear where the person's row is deleted, "
        "keep where it is pseudonymised (the certificate names what remains linkable).",
    )
    links: dict[str, PersonLink] = Field(
        default_factory=dict,
        description="Other columns of the table pointing at the person, each with its rule: "
        '{ assignee_id = "clear", reviewer_id = { rule = "keep", why = "..." } }. Their rows '
        "are in the person's access answers, with the keys and references only (see disclose).",
    )
    disclose: list[str] = Field(
        default_factory=list,
        description="Columns of other people's rows given in an access answer beyond their "
        "keys and references (a ticket's subject, a status). Everything else of those rows is "
        "withheld (NULL in the answer): their words are theirs (GDPR Art. 15(4)).",
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
        if self.by is None:
            if not self.links:
                raise ValueError(
                    "give by (the column of the person's own rows) or links (columns of "
                    "other people's rows pointing at the person), or both"
                )
            if self.erase or self.personal or self.files or self.reference:
                raise ValueError(
                    "erase, personal, files and reference apply to the person's own rows: "
                    "name their column with by, or drop them (links keep the rows)"
                )
            return self
        if self.erase is None:
            raise ValueError(f'by = "{self.by}" needs erase = "delete" or "pseudonymise"')
        if self.by in self.links:
            raise ValueError(f"{self.by} is both by and a link: the person's rows or others'")
        if self.reference and self.erase != "pseudonymise":
            raise ValueError(
                'reference says what a kept row keeps: only with erase = "pseudonymise"'
            )
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


class Tombstone(BaseModel):
    """The person row that kept rows are reassigned to: by key (`value` alone, `{tenant}`
    allowed) or as the tenant's one row whose `column` holds `value`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1)
    column: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"value": str(value)} if isinstance(value, str | int) else value


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
    links: dict[str, PersonLink] = Field(
        default_factory=dict,
        description="Columns of the person table pointing at another person (manager_id): "
        "the colleagues whose column names the person, each column with its rule, as "
        "[person.tables] links.",
    )
    disclose: list[str] = Field(
        default_factory=list,
        description="Columns of those colleagues' rows given in an access answer beyond "
        "their keys and references; the rest is withheld (GDPR Art. 15(4)).",
    )
    tombstone: Tombstone | None = Field(
        default=None,
        description="The person row that kept rows are reassigned to (rule 'tombstone'), so "
        "what stays cannot be linked back: its key ('0', or 'ghost-{tenant}'), or { column = "
        '"login", value = "ghost" } for the tenant\'s row holding that value.',
    )
    tables: dict[Annotated[str, Field(pattern=_QUALIFIED)], PersonTable] = Field(
        default_factory=dict, description="Every table whose rows point at a person."
    )
    systems: dict[str, PersonSystem] = Field(
        default_factory=dict, description="Every other system of the data map, for one person."
    )

    @field_validator("files")
    @classmethod
    def _files_are_keys(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if any(ch in pattern for ch in "*?["):
                raise ValueError(f"file {pattern!r} is a key, not a pattern: no * ? [")
        return patterns

    def confine_files(self, folder: str | None) -> None:
        """Each of the person's own files is the tenant's: under the files store's folder of
        the tenant (`folder`, its template), or, where the product keeps no folder per
        tenant, naming the tenant; and names the person once."""
        for pattern in self.files:
            if folder and not pattern.startswith(folder):
                raise ValueError(
                    f"[person] file {pattern!r} must start with {folder!r}: a person's files "
                    "are the tenant's, under its folder ([systems.files] prefix)"
                )
            if pattern.count(_PERSON_PLACEHOLDER) != 1 or pattern.count(_TENANT_PLACEHOLDER) != 1:
                raise ValueError(
                    f"[person] file {pattern!r} must name {_TENANT_PLACEHOLDER} and "
                    f"{_PERSON_PLACEHOLDER} once each"
                )

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
        reassigned = [f"{t} {c}" for t, c, rule in self.link_rules() if rule == "tombstone"]
        if reassigned and self.tombstone is None:
            raise ValueError(
                f"{', '.join(reassigned)} reassign to the tombstone person, but [person] names "
                'none: add tombstone = "<key>" (or { column, value }), or clear or keep them'
            )
        return self

    def link_rules(self) -> list[tuple[str, str, LinkRule]]:
        """Every column pointing at the person in rows the erasure keeps, with its rule:
        the links of each table (the person table's own too), then the `by` column of each
        pseudonymised table (its `reference`, or the default)."""
        rules = [(table, column, link.rule) for table, column, link in self.every_link()]
        for table, entry in self.tables.items():
            if entry.by and entry.erase == "pseudonymise":
                rules.append((table, entry.by, self.kept_reference(entry)))
        return rules

    def every_link(self) -> list[tuple[str, str, PersonLink]]:
        """(table, column, link) of every column of others' rows pointing at the person: the
        person table's links first."""
        found = [(self.table, column, link) for column, link in self.links.items()]
        for table, entry in self.tables.items():
            found += [(table, column, link) for column, link in entry.links.items()]
        return found

    def kept_reference(self, entry: PersonTable) -> LinkRule:
        """What becomes of a pseudonymised row's `by` column: as declared, else cleared
        where the person's row goes and kept where it stays."""
        return entry.reference or ("clear" if self.erase == "delete" else "keep")


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
