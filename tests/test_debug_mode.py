"""`VISIVO_TELEMETRY_DEBUG=1`: print the exact event, spool nothing, send nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import PYTHON, ROOT, clean_env, host_code, run_host, wait_for_senders_to_exit
from privacy_support import DOCUMENTED_CLI_KEYS
from wire_contract import check_item, strict_json


def exactly_as_sent(line: str) -> dict:
    """The printed item, checked against the documented batch item (never the sender's own
    encoder): exactly PostHog's five keys, the README's properties and fixed values, one line
    of compact JSON with no key repeated. Returns it parsed."""
    item = strict_json(line)
    check_item(item)
    assert line == json.dumps(item, separators=(",", ":"), ensure_ascii=True)
    return item


def documented_common_values() -> dict:
    """What the README says every event of this test host carries, computed independently."""
    return {
        "visivo_version": "1.4.0",
        "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
        "platform": {"linux": "linux", "darwin": "darwin", "win32": "windows"}[sys.platform],
    }


def assert_nothing_left_the_machine(home, collector) -> None:
    assert wait_for_senders_to_exit(home) == []
    time.sleep(0.5)
    assert collector.stats()["requests"] == 0
    assert not (home / ".visivo").exists(), "debug mode never creates the spool"


def test_debug_prints_the_exact_event_and_neither_spools_nor_sends(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url, VISIVO_TELEMETRY_DEBUG="1")
    result, _ = run_host(host_code("run", ["--token", "s3cret", "--threads", "4"]), env, project)

    assert result.returncode == 0 and result.stdout == ""
    [line] = result.stderr.splitlines()
    item = exactly_as_sent(line)
    assert item["event"] == "cli_command"
    expected = {
        **documented_common_values(),
        "command": "run",
        "command_args": ["--token", "<redacted>", "--threads", "<value>"],
        "success": True,
        "error_type": None,
    }
    assert {k: item["properties"][k] for k in expected} == expected
    assert set(item["properties"]) == DOCUMENTED_CLI_KEYS
    assert "s3cret" not in result.stderr
    assert_nothing_left_the_machine(home, collector)


def test_debug_through_the_click_cli_adds_only_the_event_line(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url, VISIVO_TELEMETRY_DEBUG="1")
    cli = [PYTHON, str(ROOT / "scripts" / "visivo_cli.py"), "compile"]
    result = subprocess.run(cli, env=env, cwd=project, capture_output=True, text=True, timeout=30)

    assert result.stdout == "compiled 14 objects\n"
    [line] = result.stderr.splitlines()
    assert exactly_as_sent(line)["properties"]["object_counts"]["charts"] == 4
    assert_nothing_left_the_machine(home, collector)


@pytest.mark.parametrize(
    "opt_out", [{"VISIVO_TELEMETRY_DISABLED": "1"}, {"DO_NOT_TRACK": "1"}, {"CONFIG": "off"}]
)
def test_debug_never_turns_on_opted_out_telemetry(home, project, collector, opt_out):
    if opt_out.pop("CONFIG", None):
        (home / ".visivo").mkdir()
        (home / ".visivo" / "config.yml").write_text("telemetry_enabled: off\n")
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url, VISIVO_TELEMETRY_DEBUG="1", **opt_out)
    result, _ = run_host(host_code("run"), env, project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []
    assert collector.stats()["requests"] == 0
    assert not (home / ".visivo" / "telemetry.db").exists()


@pytest.mark.parametrize(
    ("version", "sent_as"),
    [("1.4.0 (dev)", "1.4.0"), ("2.2.1+local build", "2.2.1+local"), ("(dev)", "unknown")],
)
def test_an_odd_host_version_degrades_the_field_not_the_event(home, project, version, sent_as):
    """The schema allows `visivo_version` only letters, digits and `.+-_`: the builder keeps the
    leading part it allows, so a host's odd version string costs one field, never the event."""
    env = clean_env(home, VISIVO_TELEMETRY_DEBUG="1")
    result, _ = run_host(host_code("run", [], version=version), env, project)

    [line] = result.stderr.splitlines()
    assert json.loads(line)["properties"]["visivo_version"] == sent_as


def test_debug_says_why_an_event_was_not_recorded(home, project):
    """An event the allowlist refuses is not recorded; in debug mode one line says which field."""
    code = (
        "from visivo_telemetry import Telemetry\n"
        "t = Telemetry('1.4.0', api_key='phc_test_key')\n"
        "t.request('GET', '/api/projects/', 999, 2.0)\n"
    )
    result, _ = run_host(code, clean_env(home, VISIVO_TELEMETRY_DEBUG="1"), project)
    quiet, _ = run_host(code, clean_env(home), project)

    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == "visivo-telemetry: api_request not recorded: status_code refused\n"
    assert quiet.stderr == "" and not (home / ".visivo" / "telemetry.db").exists()
