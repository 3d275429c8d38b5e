"""The platform database's shape comes from one source, the data map; an old OFFBOARD_* shape
variable still works for a field the data map leaves out, with a warning, and contradicting
the data map stops with an error naming both. The data map is parsed once per process."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.datamap import ShapeVariableDeprecated, load_datamap, platform_shape
from offboarding.datamap import shape as shape_module

_BASE = '[systems.postgres]\nplugin = "postgres"\n'


def _settings(tmp_path: Path, extra: str = "", **platform: object) -> Settings:
    path = tmp_path / "datamap.toml"
    path.write_text(_BASE + extra)
    return Settings(home=tmp_path, datamap=path, **platform)  # type: ignore[arg-type]


def test_the_data_maps_shape_is_the_one_applied(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        'tenant_column = "team_id"\nexcluded_tables = { "public.audit" = "kept by law" }\n',
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing deprecated is used
        shape = platform_shape(settings)
    assert shape.tenant_column == "team_id"
    assert shape.excluded_tables == {"public.audit": "kept by law"}
    # Declared: the demo's defaults (its plans table, its documents' keys) no longer apply.
    assert shape.global_tables == {} and shape.file_columns == []


def test_an_old_variable_still_works_with_a_warning_naming_where_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shape_module, "_warned", set())
    monkeypatch.setenv("OFFBOARD_SHARED_ROWS", '{"public.links": "leave"}')
    settings = _settings(tmp_path, 'tenant_column = "team_id"\n')
    with pytest.warns(ShapeVariableDeprecated, match=r"OFFBOARD_SHARED_ROWS is deprecated: "
                      r"declare shared_rows under \[systems.postgres\]"):  # fmt: skip
        shape = platform_shape(settings)
    assert shape.shared_rows == {"public.links": "leave"} and shape.tenant_column == "team_id"


def test_a_variable_contradicting_the_data_map_stops_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFBOARD_TENANT_COLUMN", "org_id")
    settings = _settings(tmp_path, 'tenant_column = "team_id"\n')
    with pytest.raises(ConfigurationError, match="OFFBOARD_TENANT_COLUMN and the data map's"):
        platform_shape(settings)


def test_without_a_data_map_the_first_releases_defaults_hold(tmp_path: Path) -> None:
    shape = platform_shape(Settings(home=tmp_path))
    assert shape.tenant_column == "tenant_id"
    assert "public.plans" in shape.global_tables
    assert shape.file_columns == ["public.documents.object_key"]


def test_a_data_map_declaring_no_shape_gets_none_of_the_demos(tmp_path: Path) -> None:
    """The demo's plans table and documents' keys never apply to another platform, even when
    its data map declares nothing of its shape (and an old variable names its owner column)."""
    shape = platform_shape(_settings(tmp_path, tenant_column="team_id"))
    assert shape.global_tables == {} and shape.file_columns == []


def test_a_bad_shape_is_refused_saying_what_to_fix(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 'tenant_schema_pattern = "tenant"\n')
    with pytest.raises(ConfigurationError, match=r"must hold \{tenant\} once"):
        platform_shape(settings)
    settings = _settings(tmp_path, 'file_columns = ["documents.object_key"]\n')
    with pytest.raises(ConfigurationError, match="file_columns"):
        platform_shape(settings)


def test_the_data_map_is_parsed_once_per_process_while_it_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "datamap.toml"
    monkeypatch.setenv("CACHE_URL", "redis://127.0.0.1:1/0")
    path.write_text(_BASE + '[systems.cache]\nplugin = "redis"\nurl = "${CACHE_URL}"\n'
                    'patterns = ["t:{tenant}:*"]\n')  # fmt: skip
    first = load_datamap(path)
    assert load_datamap(path) is first
    monkeypatch.setenv("CACHE_URL", "redis://127.0.0.1:2/0")  # a value it names changed
    second = load_datamap(path)
    assert second is not first and second.systems["cache"].url.endswith(":2/0")  # type: ignore[union-attr]
    path.write_text(path.read_text() + '\n[systems.search]\ndescription = "x"\n')
    assert "search" in load_datamap(path).systems
