"""Reading the data map: its TOML, `${VAR}` references to the environment, each system's
model by its plug-in; once per process for a file that has not changed."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.datamap.model import DEFAULT_DATAMAP, DataMap, named
from offboarding.datamap.people import ContactsScope, PersonScope
from offboarding.datamap.systems import (
    _PLUGINS,
    _SINGLETONS,
    AttestedSystem,
    System,
    UnboundSystem,
)
from offboarding.datamap.tenants import TenantsTable

__all__ = ["datamap_of", "load_datamap", "parse_datamap"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigurationError(
                    f"the data map's {where} names ${{{name}}}, which is not set in the "
                    f"environment: set {name}, or write the value in the file"
                )
            return os.environ[name]

        return _ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _system(name: str, raw: Any) -> System:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"data map: [systems.{name}] must be a table")
    fields = _expand(raw, f"systems.{name}")
    plugin, attested = fields.get("plugin"), fields.get("attested")
    if plugin is not None and attested is not None:
        raise ConfigurationError(
            f"data map: system {name!r} is bound twice (plugin = {plugin!r} and attested): "
            "keep the plug-in if the pipeline can reach the system, else the attestation"
        )
    if plugin is not None and plugin not in _PLUGINS:
        raise ConfigurationError(
            f"data map: system {name!r} names plugin {plugin!r}, which does not exist: use one "
            f"of {', '.join(sorted(_PLUGINS))}, or bind it as attested"
        )
    if plugin in _SINGLETONS and name != plugin:
        raise ConfigurationError(
            f"data map: the {plugin} plug-in is the platform's own (OFFBOARD_"
            f"{'DATABASE' if plugin == 'postgres' else 'FILES'}_URL): declare it as "
            f"[systems.{plugin}], not [systems.{name}]"
        )
    model: type[BaseModel] = (
        _PLUGINS[plugin] if plugin else AttestedSystem if attested is not None else UnboundSystem
    )
    try:
        return model.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'system'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"data map: system {name!r}: {problems}") from None


def parse_datamap(document: dict[str, Any], source: str = "") -> DataMap:
    unknown = set(document) - {"systems", "tenants", "person", "contacts"}
    if unknown:
        raise ConfigurationError(
            f"data map {source}: unknown top-level key(s) {sorted(unknown)}; the file holds "
            "[tenants], [systems.<name>], [person] and [contacts] tables"
        )
    try:
        contacts = ContactsScope.model_validate(_expand(document.get("contacts", {}), "contacts"))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'contacts'}: {e['msg']}"
            for e in error.errors()
        )
        raise ConfigurationError(f"data map {source}: [contacts]: {problems}") from None
    person: PersonScope | None = None
    if "person" in document:
        try:
            person = PersonScope.model_validate(_expand(document["person"], "person"))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'person'}: {e['msg']}"
                for e in error.errors()
            )
            raise ConfigurationError(f"data map {source}: [person]: {problems}") from None
    try:
        tenants = TenantsTable.model_validate(_expand(document.get("tenants", {}), "tenants"))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"data map {source}: [tenants]: {problems}") from None
    systems_raw = document.get("systems")
    if not isinstance(systems_raw, dict) or not systems_raw:
        raise ConfigurationError(
            f"data map {source}: no [systems.<name>] table: declare every system that holds "
            'tenant data, at least [systems.postgres] with plugin = "postgres"'
        )
    if "postgres" not in systems_raw:
        raise ConfigurationError(
            f"data map {source}: [systems.postgres] is missing: the platform's database (with "
            'its tenants) is a system of every platform; declare it with plugin = "postgres"'
        )
    systems = {name: _system(name, raw) for name, raw in systems_raw.items()}
    try:
        return named(
            DataMap(systems=systems, tenants=tenants, person=person, contacts=contacts), source
        )
    except ValidationError as error:
        named_badly = [e for e in error.errors() if e["loc"]]
        faults = [str(e["msg"]).removeprefix("Value error, ") for e in error.errors()
                    if not e["loc"]]  # fmt: skip
        if named_badly:
            faults.append(
                "system names are 1-40 lowercase letters, digits and dashes, starting with a "
                f"letter ({len(named_badly)} not)"
            )
        raise ConfigurationError(f"data map {source}: {'; '.join(faults)}") from None


# Parsed maps by file, text and the environment values they name: a process parses an
# unchanged data map once, however many stages ask for it.
_PARSED: dict[tuple[str, str, tuple[tuple[str, str | None], ...]], DataMap] = {}
_KEEP = 16


def datamap_of(settings: Settings) -> DataMap:
    """The data map the settings name (OFFBOARD_DATAMAP), typed: the one way the library reads
    it. Parsed once per process while its file, and the ${VAR}s it names, stay the same."""
    return load_datamap(settings.datamap)


def load_datamap(path: Path | None) -> DataMap:
    """The data map at `path`, or the default one (the settings' database and files)."""
    if path is None:
        return DEFAULT_DATAMAP
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(
            f"OFFBOARD_DATAMAP names {path}, which does not exist: give the path of the data "
            "map (docs/operators.md has an example), or unset it for the default"
        ) from None
    names = sorted(set(_ENV_REFERENCE.findall(text)))
    key = (str(path), text, tuple((name, os.environ.get(name)) for name in names))
    parsed = _PARSED.get(key)
    if parsed is None:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError(f"data map {path} is not valid TOML: {error}") from None
        parsed = parse_datamap(document, str(path))
        if len(_PARSED) >= _KEEP:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = parsed
    return parsed
