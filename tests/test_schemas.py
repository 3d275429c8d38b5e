"""The JSON Schemas in schemas/ are the models' own: regenerate with `make schemas`."""

from __future__ import annotations

import pytest

from offboarding.dev.schemas import SCHEMA_DIR, SCHEMAS, render


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_file_matches_the_model(name: str) -> None:
    assert (SCHEMA_DIR / name).read_text() == render(SCHEMAS[name]), (
        f"schemas/{name} is stale: run `make schemas`"
    )
