"""Integrations are written to a documented contract, and the library's inside stays private.

What an integration may use is the public package and the integration API of
`visivo_telemetry.integrations` (its docstring documents it); ours are checked here by reading
their source, so an integration that reaches into `_client` or calls a `Telemetry` method whose
name starts with `_` fails this suite.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import visivo_telemetry
from visivo_telemetry import integrations

PACKAGE = Path(visivo_telemetry.__file__).parent
INTEGRATION_API = {
    "Command",
    "DeclaredOption",
    "INTERRUPT_OR_TERMINATE",
    "MAX_ARGS",
    "REDACTED",
    "RequestCounter",
    "TERMINATE",
    "VALUE",
    "WINDOW_S",
    "is_clean_segment",
    "is_number",
    "is_sensitive_flag",
    "on_signal",
    "remove_signal_callback",
    "sanitize_endpoint",
}
PUBLIC_MODULES = {
    "visivo_telemetry",
    "visivo_telemetry.cli",
    "visivo_telemetry.testing",
    "visivo_telemetry.integrations",
    "visivo_telemetry.integrations.click",
    "visivo_telemetry.integrations.flask",
    "visivo_telemetry.integrations.wsgi",
}
"""The modules a host or an integration imports; every other module's name starts with `_`."""
INTEGRATION_FILES = sorted(
    path for path in (PACKAGE / "integrations").glob("*.py") if path.name != "__init__.py"
)
"""Each integration module; `__init__.py` is the contract itself, which re-exports internals."""


def test_the_integration_api_is_exactly_the_documented_names():
    assert set(integrations.__all__) == INTEGRATION_API
    for name in INTEGRATION_API:
        assert getattr(integrations, name) is not None
        assert f"`{name}" in integrations.__doc__ or name in ("Command", "RequestCounter"), name


def test_every_module_that_is_not_public_is_marked_private():
    found = {"visivo_telemetry"}
    for module in pkgutil.walk_packages([str(PACKAGE)], prefix="visivo_telemetry."):
        found.add(module.name)
    private = {name for name in found if any(p.startswith("_") for p in name.split(".")[1:])}
    assert found - private == PUBLIC_MODULES


def _imports_and_private_uses(source: str) -> tuple[set[tuple[str, str]], list[str]]:
    """Every `from X import name` as (X, name), and every `obj._name` on anything but `self`."""
    tree = ast.parse(source)
    imported: set[tuple[str, str]] = set()
    private: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            imported.update((module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.Attribute):
            name = node.attr
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if name.startswith("_") and not name.startswith("__") and owner != "self":
                private.append(f"{ast.unparse(node)} (line {node.lineno})")
    return imported, private


def _library_names(imported: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The imports that reach this library (relative, or `visivo_telemetry…`)."""
    return {(m, n) for m, n in imported if m.startswith(".") or m.startswith("visivo_telemetry")}


@pytest.mark.parametrize("path", INTEGRATION_FILES, ids=lambda p: p.name)
def test_our_integrations_use_only_the_public_package_and_the_integration_api(path):
    imported, private = _imports_and_private_uses(path.read_text())
    allowed = {("..", name) for name in visivo_telemetry.__all__}
    allowed |= {(".", name) for name in INTEGRATION_API}
    allowed |= {(".wsgi", "CountingMiddleware")}  # one public integration using another
    assert _library_names(imported) <= allowed, _library_names(imported) - allowed
    assert private == [], "an integration touches a private name"


def test_the_check_catches_an_integration_that_reaches_into_the_client():
    """The control: the two ways an integration used to depend on `_client`'s inside."""
    source = (
        "from .. import _client as client\n"
        "def flush(telemetry):\n"
        "    telemetry._count_requests([], None)\n"
    )
    imported, private = _imports_and_private_uses(source)
    allowed = {("..", name) for name in visivo_telemetry.__all__}
    assert _library_names(imported) - allowed == {("..", "_client")}
    assert private == ["telemetry._count_requests (line 3)"]
