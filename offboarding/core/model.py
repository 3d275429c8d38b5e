"""The base of every typed record that crosses a stage boundary: frozen, and refusing any
field it does not declare."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Record"]


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
