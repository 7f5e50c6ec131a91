"""The public surface is what Visivo calls, and nothing else (as httpx tests its exports).

Adding a public name is a decision to document it in the README; these tests make it one.
"""

from __future__ import annotations

from helpers import ROOT

import visivo_telemetry
from visivo_telemetry import Telemetry
from visivo_telemetry.integrations import click as click_integration
from visivo_telemetry.integrations import flask as flask_integration

PACKAGE_NAMES = {
    "Telemetry",
    "__version__",
    "run_sender_if_requested",
    "sanitize_args",
    "sanitize_endpoint",
    "set_metric",
}
TELEMETRY_MEMBERS = {"command", "request", "notice", "close", "enabled", "decided_by", "debug"}
INTEGRATION_MEMBERS = {"request_counter"}
"""What integrations call besides the host's API: documented in `visivo_telemetry.integrations`."""


def test_the_package_exports_exactly_the_documented_names():
    assert set(visivo_telemetry.__all__) == PACKAGE_NAMES
    for name in PACKAGE_NAMES:
        assert getattr(visivo_telemetry, name) is not None


def test_telemetry_shows_only_what_a_host_calls():
    public = {name for name in dir(Telemetry) if not name.startswith("_")}
    assert public == TELEMETRY_MEMBERS | INTEGRATION_MEMBERS


def test_an_instance_adds_no_public_attribute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    telemetry = Telemetry("1.4.0", project_dir=None, api_key="phc_test_key")
    assert {name for name in vars(telemetry) if not name.startswith("_")} == set()


def test_each_integration_is_one_instrument_call():
    assert callable(click_integration.instrument)
    assert callable(flask_integration.instrument)


def test_the_version_is_the_distribution_version():
    from importlib.metadata import version

    assert visivo_telemetry.__version__ == version("visivo-telemetry")


def test_the_test_helper_module_exports_one_documented_name():
    from visivo_telemetry import testing

    assert testing.__all__ == ["capture_events"]
    assert "capture_events()" in (ROOT / "README.md").read_text()
    assert "visivo_telemetry.testing import capture_events" in (ROOT / "docs/wiring.md").read_text()
