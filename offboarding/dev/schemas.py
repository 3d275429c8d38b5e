"""JSON Schemas of the records an auditor or a client reads, kept in `schemas/`.

`python -m offboarding.dev.schemas` rewrites them; a test fails when they drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from offboarding.core.records import Certificate, Inventory, Manifest
from offboarding.datamap import DataMap

__all__ = ["SCHEMAS", "render", "write_all"]

SCHEMAS: dict[str, type[BaseModel]] = {
    "manifest.schema.json": Manifest,
    "inventory.schema.json": Inventory,
    "certificate.schema.json": Certificate,
    "datamap.schema.json": DataMap,
}
# Files people write are checked as input; records the pipeline writes, as its output.
_INPUTS = (DataMap,)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation" if model in _INPUTS else "serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMAS.items():
        (directory / name).write_text(render(model))


if __name__ == "__main__":
    write_all()
