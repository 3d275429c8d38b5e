"""The JSON Schemas in schemas/ are the models' own: regenerate with `make schemas`."""

from __future__ import annotations

import pytest

from offboarding.dev.schemas import ARCHITECTURE, SCHEMA_DIR, SCHEMAS, render, with_capability_table


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_file_matches_the_model(name: str) -> None:
    assert (SCHEMA_DIR / name).read_text() == render(SCHEMAS[name]), (
        f"schemas/{name} is stale: run `make schemas`"
    )


def test_the_architecture_docs_capability_table_is_the_registrations() -> None:
    document = ARCHITECTURE.read_text()
    assert document == with_capability_table(document), (
        "docs/architecture.md's capability table is stale: run `make schemas`"
    )
