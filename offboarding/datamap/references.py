"""References the platform's database does not declare, declared in the data map instead: the
model of `[[systems.<name>.references]]`, and the plain declaration the planning adds to the
catalogue as a foreign key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from offboarding.core.names import qualified, split_qualified

__all__ = ["Declaration", "DeclaredReference", "Membership", "SharedEntity"]


@dataclass(frozen=True)
class Declaration:
    """A reference the data map declares where the database has no foreign key: the child's
    columns hold the parent's key (`referenced_columns`, by default its primary key)."""

    table: str
    columns: tuple[str, ...]
    references: str
    referenced_columns: tuple[str, ...] = ()
    none: tuple[str | int, ...] = ()
    when: tuple[tuple[str, str | int], ...] = ()

    @property
    def conditional(self) -> bool:
        return bool(self.none or self.when)

    def describe(self) -> str:
        when = "".join(f" when {c} = {v!r}" for c, v in self.when)
        to = f"({', '.join(self.referenced_columns)})" if self.referenced_columns else ""
        return f"{self.table}({', '.join(self.columns)}) -> {self.references}{to}{when}"


# `table(column, ...)`: the table as the system's other settings name it, then its columns.
_COLUMNS = re.compile(r"^(?P<table>[^()\s]+)(?:\((?P<columns>[^()]+)\))?$")


def _table_columns(text: str, side: str, need_columns: bool) -> tuple[str, tuple[str, ...]]:
    match = _COLUMNS.match(text.strip())
    listed = match["columns"] if match else None
    columns = tuple(c.strip() for c in listed.split(",")) if listed else ()
    if match is None or (need_columns and not columns) or not all(columns):
        form = "schema.table(column)" if need_columns else "schema.table or schema.table(column)"
        raise ValueError(
            f"{side} = {text!r} is not {form}: columns in parentheses, separated by commas, "
            "e.g. 'public.posts(channel_id)' or 'public.members(team_id, user_id)'"
        )
    return match["table"], columns


def _name(table: str, schema: str | None) -> str:
    """A table's qualified name: `schema` qualifies a bare name (MariaDB's tables)."""
    return qualified(schema, table) if schema is not None else qualified(*split_qualified(table))


class DeclaredReference(BaseModel):
    """A reference the database does not declare: each `from` row's columns hold the key of a
    `to` row. It works exactly like a foreign key for classification, export, the isolation
    proof and deletion (a row whose parent is the tenant's is the tenant's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(
        alias="from",
        description="The referencing table and its columns, e.g. 'public.posts(channel_id)' "
        "(for MariaDB, the table without a schema: 'posts(channel_id)').",
    )
    to: str = Field(
        description="The referenced table, with the columns the key holds, e.g. "
        "'public.channels(id)' (default: its primary key)."
    )
    none: list[str | int] = Field(
        default_factory=list,
        description="Values besides NULL meaning 'no reference', e.g. [''] where the product "
        "writes an empty string for none, or [0].",
    )
    when: dict[str, str | int] = Field(
        default_factory=dict,
        description="A polymorphic reference: it points into `to` only where these columns hold "
        "these values, e.g. { target_type = 'Post' } (one declaration per target table).",
    )
    reason: str = Field(default="", description="Why the reference holds (for the reader).")

    @field_validator("from_")
    @classmethod
    def _from(cls, text: str) -> str:
        _table_columns(text, "from", True)
        return text

    @field_validator("to")
    @classmethod
    def _to(cls, text: str) -> str:
        _table_columns(text, "to", False)
        return text

    def declaration(self, schema: str | None = None) -> Declaration:
        """The planning's declaration; `schema` qualifies bare table names (MariaDB's)."""

        def name(table: str) -> str:
            return _name(table, schema)

        table, columns = _table_columns(self.from_, "from", True)
        references, referenced = _table_columns(self.to, "to", False)
        return Declaration(
            table=name(table),
            columns=columns,
            references=name(references),
            referenced_columns=referenced,
            none=tuple(self.none),
            when=tuple(self.when.items()),
        )


@dataclass(frozen=True)
class Membership:
    """Rows of `table` (user profiles...) that belong to tenants through a membership table:
    each row of `through` whose `columns` hold an entity's `key` links it to that row's tenant."""

    table: str
    through: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()  # the entity's columns the membership holds (its primary key)
    policy: str = "keep"  # "keep", "erase-unshared" or "pseudonymise-unshared"
    why: str = ""
    personal: tuple[str, ...] = ()  # replaced where no other tenant links the row

    @property
    def erased(self) -> bool:
        return self.policy == "erase-unshared"

    @property
    def pseudonymised(self) -> bool:
        return self.policy == "pseudonymise-unshared"


class SharedEntity(BaseModel):
    """Rows such as user profiles, linked to tenants through a membership table rather than
    owned by one: exported as the tenant's view (every one its memberships link), and then
    kept, or erased once no other tenant links them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    through: str = Field(
        description="The membership table and its columns holding the entity's key, e.g. "
        "'chat.team_members(user_id)' (a tenant table: its rows are the tenant's)."
    )
    key: list[str] = Field(
        default_factory=list,
        description="The entity's columns the membership holds (default: its primary key).",
    )
    policy: Literal["keep", "erase-unshared", "pseudonymise-unshared"] = Field(
        description="'keep': exported, never destroyed (the certificate names them and why); "
        "'erase-unshared': destroyed with the tenant where no other tenant's membership links "
        "them, the rest kept and named; 'pseudonymise-unshared': those kept, their `personal` "
        "columns replaced (rows other data still names, e.g. authors of kept messages)."
    )
    why: str = Field(min_length=1, description="Why they are shared, for the certificate.")
    personal: list[str] = Field(
        default_factory=list,
        description="For 'pseudonymise-unshared': the columns replaced (text columns get "
        "'erased-' and a digest of the row's key, unique per row; others NULL).",
    )

    @model_validator(mode="after")
    def _personal(self) -> SharedEntity:
        if (self.policy == "pseudonymise-unshared") != bool(self.personal):
            raise ValueError(
                "personal lists the columns a 'pseudonymise-unshared' policy replaces, and only "
                "that policy's: give both, or neither"
            )
        return self

    @field_validator("through")
    @classmethod
    def _through(cls, text: str) -> str:
        _table_columns(text, "through", True)
        return text

    def membership(self, table: str, schema: str | None = None) -> Membership:
        def name(text: str) -> str:
            return _name(text, schema)

        through, columns = _table_columns(self.through, "through", True)
        return Membership(
            table=name(table),
            through=name(through),
            columns=columns,
            key=tuple(self.key),
            policy=self.policy,
            why=self.why,
            personal=tuple(self.personal),
        )
