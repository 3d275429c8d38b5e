"""Settings are grouped per concern, and every OFFBOARD_* variable of 0.1 still sets the same
value: an operator's environment keeps working across the regrouping."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from offboarding.core.config import FLAT_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
# A value of each type as an operator writes it, and what it reads as.
SAMPLES: dict[str, tuple[str, Any]] = {
    "str": ("sample-value", "sample-value"),
    "timedelta": ("P5D", timedelta(days=5)),
    "dict[str, str]": ('{"public.x": "why"}', {"public.x": "why"}),
    "list[str]": ('["a://1", "b://2"]', ["a://1", "b://2"]),
    "list[timedelta]": ('["P2D"]', [timedelta(days=2)]),
    "Path | None": ("/srv/key.json", Path("/srv/key.json")),
    "bool": ("true", True),
    "dict[str, typing.Literal['leave', 'delete', 'export']]": (
        '{"public.mentions": "leave"}',
        {"public.mentions": "leave"},
    ),
}


@pytest.mark.parametrize("flat", sorted(FLAT_NAMES))
def test_every_variable_of_0_1_sets_its_field_in_its_section(
    flat: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    section, name = FLAT_NAMES[flat]
    model = type(getattr(Settings(), section))
    annotation = str(model.model_fields[name].annotation).replace("datetime.", "")
    annotation = annotation.replace("pathlib.", "").replace("<class '", "").replace("'>", "")
    if annotation == "int":  # the default plus one: within every field's bounds
        expected = model.model_fields[name].default + 1
        raw = str(expected)
    else:
        raw, expected = SAMPLES[annotation]
    if flat == "destruction_grace":
        raw, expected = "P5D", timedelta(days=5)
    monkeypatch.setenv(f"OFFBOARD_{flat.upper()}", raw)
    assert getattr(getattr(Settings(), section), name) == expected
    # and the flat keyword of 0.1 reaches the same field
    assert getattr(getattr(Settings(**{flat: expected}), section), name) == expected


def test_every_variable_the_readme_documents_exists() -> None:
    documented = set(re.findall(r"`OFFBOARD_([A-Z_]+)`", (ROOT / "README.md").read_text()))
    top = {"HOME", "OPERATOR_NAME", "ORCHESTRATOR_RESULTS_PATH", "DATAMAP"}
    known = {n.upper() for n in FLAT_NAMES} | top
    known |= {"FILES_URL", "DELIVERY_URL", "ARCHIVE_URL"}  # the README lists them together
    # Settings newer than 0.1 have no flat name: their section's prefix and their field's.
    for section in Settings.model_fields:
        model = type(getattr(Settings(), section))
        prefix = str(getattr(model, "model_config", {}).get("env_prefix", ""))
        if prefix.startswith("OFFBOARD_"):
            known |= {f"{prefix.removeprefix('OFFBOARD_')}{f.upper()}" for f in model.model_fields}
    assert documented <= known, documented - known


def test_a_setting_newer_than_the_flat_names_is_read_from_its_sections_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFBOARD_EXPORT_BUNDLE_WORKERS", "5")
    assert Settings().export.bundle_workers == 5
    monkeypatch.setenv("OFFBOARD_EXPORT_BUNDLE_WORKERS", "0")
    with pytest.raises(ValueError, match="bundle_workers"):
        Settings()


def test_replace_validates_and_keeps_what_it_does_not_change(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="dbname=x", export_workers=3)
    changed = settings.replace(delete_batch_rows=10, export={"split_rows": 2_000})
    assert (changed.destruction.delete_batch_rows, changed.export.split_rows) == (10, 2_000)
    assert changed.export.workers == 3 and changed.platform.database_url == "dbname=x"
    assert changed.home == tmp_path
    with pytest.raises(ValueError, match="between 0 and 90 days"):
        settings.replace(destruction_grace=timedelta(days=91))
