"""The code's shape, as docs/architecture.md draws it: checked, so it stays true.

The layers themselves are import-linter contracts in pyproject.toml (`make lint` runs them);
these tests keep the contracts complete and prove they bite.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
# What the flows may take from Prefect themselves: the decorators and deployment declarations.
FLOW_PREFECT_NAMES = {
    "prefect": {"flow", "task", "serve"},
    "prefect.cache_policies": {"NO_CACHE"},
    "prefect.client.schemas.objects": {"State"},
    "prefect.deployments.runner": {"RunnerDeployment"},
    "prefect.events": {"DeploymentEventTrigger"},
}


def _contract(contract_id: str) -> dict[str, object]:
    return next(c for c in CONTRACTS["contracts"] if c["id"] == contract_id)


def _packages_of_offboarding() -> set[str]:
    found = set()
    for path in (ROOT / "offboarding").iterdir():
        if path.name.startswith("_") or path.name == "__pycache__":
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            found.add(f"offboarding.{path.name}")
        elif path.suffix == ".py":
            found.add(f"offboarding.{path.stem}")
    return found


def test_every_package_of_the_library_has_a_place_in_the_layers() -> None:
    layered = {
        name.strip()
        for layer in _contract("layers")["layers"]  # type: ignore[attr-defined]
        for name in layer.replace(":", "|").split("|")
    }
    missing = _packages_of_offboarding() - layered
    assert not missing, f"add {sorted(missing)} to the layers contract in pyproject.toml"
    edges = {"offboarding.cli", "offboarding.dev"}
    library = set(_contract("library-knows-nothing-of-prefect")["source_modules"])  # type: ignore[arg-type]
    assert _packages_of_offboarding() - edges <= library, (
        "a library package is missing from the library-knows-nothing-of-prefect contract"
    )


def test_the_flows_take_only_decorators_from_prefect_and_the_rest_from_the_adapter() -> None:
    for path in sorted((ROOT / "flows").glob("*.py")):  # the adapter/ package is apart
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
                assert not [n for n in names if n.split(".")[0] == "prefect"], (path, names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefect"):
                allowed = FLOW_PREFECT_NAMES.get(node.module or "", set())
                used = {alias.name for alias in node.names}
                assert used <= allowed, (
                    f"{path.name} imports {sorted(used - allowed)} from {node.module}: call it "
                    "through flows/adapter/"
                )


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("offboarding/trail/state.py", "import prefect", "knows nothing of Prefect"),
        ("offboarding/core/records.py", "import offboarding.stores", "Layers"),
        ("offboarding/dev/demo/platform.py", "from prefect import get_client", "only through"),
    ],
)
def test_the_import_contracts_fail_when_a_module_breaks_them(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    for package in ("offboarding", "flows", "exporters"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    kept = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout[-2000:]
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    failed = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert failed.returncode != 0, failed.stdout[-2000:]
    assert broken in failed.stdout.replace("\n", " ")


# Modules and functions over the limits when the limits came (issue 27), each at most the size
# it had: the lists only shrank, and are empty since. Tests and offboarding/dev/ are outside.
_MODULE_LIMIT, _FUNCTION_LIMIT = 450, 80
_OVER_MODULE_LIMIT: dict[str, int] = {}
_OVER_FUNCTION_LIMIT: dict[str, int] = {}


def _sources() -> list[Path]:
    return [
        path
        for root in ("offboarding", "flows", "exporters")
        for path in sorted((ROOT / root).rglob("*.py"))
        if "dev" not in path.relative_to(ROOT).parts
    ]


def test_no_module_over_450_lines_and_no_function_over_80_except_the_shrinking_list() -> None:
    grown: list[str] = []
    for path in _sources():
        name = str(path.relative_to(ROOT))
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > _OVER_MODULE_LIMIT.get(name, _MODULE_LIMIT):
            grown.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
                length = node.end_lineno - node.lineno + 1
                key = f"{name}:{node.name}"
                if length > _OVER_FUNCTION_LIMIT.get(key, _FUNCTION_LIMIT):
                    grown.append(f"{key}: {length} lines")
    assert not grown, (
        f"over {_MODULE_LIMIT} lines a module, {_FUNCTION_LIMIT} a function (or grown past "
        f"its listed size): {grown}. Split it by what it does"
    )


def test_the_library_reads_the_data_map_through_one_typed_accessor() -> None:
    """`datamap_of(settings)` is the one way to the data map (parsed once per process while its
    file stays the same); a module parsing a path of its own would read another one."""
    readers = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if "load_datamap(" in path.read_text()
        and path.relative_to(ROOT).parts[:2] != ("offboarding", "datamap")
        and path.relative_to(ROOT).parts[:2] != ("offboarding", "dev")
    ]
    assert not readers, f"call datamap_of(settings) instead of load_datamap in {readers}"
