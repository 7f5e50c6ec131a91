"""The distribution earns its dependencies and carries the metadata a reviewer expects.

What is read here is the installed distribution (`importlib.metadata`, the same on every
supported Python) and the modules the import system really loads as `visivo_telemetry` and
`visivo_telemetry._sender`. What only a built wheel and sdist can show (their file lists, the
top-level names a non-editable install provides) is checked by `scripts/check_install.sh`,
which `.ci/run` runs after the suites.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import visivo_telemetry
import visivo_telemetry._sender
from visivo_telemetry._version import __version__

DIST = "visivo-telemetry"
KNOWN_IMPORT_NAMES = {"pyyaml": {"yaml"}}
"""Distributions whose import name is not their own; used only if the installed metadata
(`packages_distributions`) cannot tell."""
OPTIONAL_INTEGRATIONS = {"flask": "flask", "typer": "typer"}
"""Imported only by an integration module whose host already has it: import name → extra."""
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def requirements() -> list[Requirement]:
    return [Requirement(line) for line in importlib.metadata.requires(DIST) or []]


def runtime_requirements() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in requirements() if r.marker is None}


def extra_requirements(extra: str) -> set[str]:
    return {
        canonicalize_name(r.name)
        for r in requirements()
        if r.marker is not None and r.marker.evaluate({"extra": extra})
    }


def installed_sources() -> Iterator[Path]:
    """Every module the installed `visivo_telemetry` (the sender included) is made of."""
    folders = [*visivo_telemetry.__path__, *visivo_telemetry._sender.__path__]
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(Path(folder).resolve().rglob("*.py")):
            if "__pycache__" not in path.parts and path not in seen:
                seen.add(path)
                yield path


def absolute_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module, wherever they stand in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imports_by_module() -> dict[Path, set[str]]:
    return {path: absolute_imports(path) for path in installed_sources()}


def third_party(names: set[str]) -> set[str]:
    return {
        name
        for name in names
        if name not in sys.stdlib_module_names and name not in {"__future__", "visivo_telemetry"}
    }


def import_names(distribution: str) -> set[str]:
    """The top-level names a distribution provides, from what is installed."""
    provided = {
        top
        for top, dists in importlib.metadata.packages_distributions().items()
        if distribution in {canonicalize_name(d) for d in dists}
    }
    return provided or KNOWN_IMPORT_NAMES.get(distribution, {distribution.replace("-", "_")})


def test_the_scan_sees_the_library_and_the_sender():
    files = {path.name for path in installed_sources()}
    assert {"_client.py", "_spool.py", "cli.py", "drain.py", "transport.py", "run.py"} <= files


def test_every_runtime_dependency_is_imported_by_installed_code():
    imported = set().union(*imports_by_module().values())
    runtime = runtime_requirements()
    assert runtime, "the installed distribution declares no dependency at all?"
    unused = {dist for dist in runtime if not import_names(dist) & imported}
    assert not unused, f"runtime dependencies no installed module imports: {sorted(unused)}"


def test_every_third_party_import_of_installed_code_is_declared():
    runtime = set().union(*(import_names(dist) for dist in runtime_requirements()))
    undeclared = {}
    for path, names in imports_by_module().items():
        for name in third_party(names) - runtime:
            extra = OPTIONAL_INTEGRATIONS.get(name)
            in_integrations = path.parent.name == "integrations"
            if extra is None or not in_integrations or name not in extra_requirements(extra):
                undeclared.setdefault(name, []).append(path.name)
    assert not undeclared, f"imported but not a runtime dependency: {undeclared}"


def test_runtime_dependencies_have_lower_bounds_and_no_upper_bounds():
    for name, requirement in runtime_requirements().items():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{name}: {requirement.specifier or 'unbounded'}"


def test_sqlite_utils_serves_only_the_collector_tests_and_benchmark():
    assert "sqlite-utils" not in runtime_requirements()
    assert "sqlite-utils" in extra_requirements("test")
    assert "sqlite-utils" in extra_requirements("bench")
    for path, names in imports_by_module().items():
        assert "sqlite_utils" not in names, path


def test_installed_code_never_imports_a_top_level_sender():
    """PyPI's `sender`, or a `sender/` on PYTHONPATH, must never stand in for ours."""
    offenders = [path for path, names in imports_by_module().items() if "sender" in names]
    assert offenders == []
    assert Path(visivo_telemetry._sender.__path__[0]).resolve().name in {"sender", "_sender"}
    assert visivo_telemetry._sender.__name__ == "visivo_telemetry._sender"


def test_the_metadata_a_reviewer_expects():
    meta = importlib.metadata.metadata(DIST)
    assert meta["Name"] == DIST
    assert meta["Version"] == __version__
    assert meta["Requires-Python"] == ">=3.10"
    assert meta.get_all("License-Expression") == ["MIT"]
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639: no license"
    pythons = {c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c)}
    assert pythons == set(SUPPORTED_PYTHONS)
    assert {
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Operating System :: Microsoft :: Windows",
    } <= set(classifiers)
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert urls.get("Homepage") == "https://visivo.io"
    assert urls.get("Source", "").startswith("https://github.com/")
    assert urls.get("Issues", "").startswith(urls["Source"])
    assert "telemetry" in (meta["Keywords"] or "").split(",")


def test_the_license_is_mit_with_our_copyright():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The Visivo telemetry authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_ci_runs_the_oldest_and_the_newest_supported_python():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for version in (SUPPORTED_PYTHONS[0], SUPPORTED_PYTHONS[-1]):
        assert re.search(rf"\b{re.escape(version)}\b", ci), f".ci/run never tests Python {version}"
    assert "scripts/check_install.sh" in ci
