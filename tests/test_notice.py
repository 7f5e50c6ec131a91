"""The first-run notice: once per machine, only to a person at a terminal, never when off."""

from __future__ import annotations

import pytest
from helpers import (
    PYTHON,
    ROOT,
    clean_env,
    run_stderr_on,
    spool_path,
    spool_rows,
    vt,
    wait_for_senders_to_exit,
)

from visivo_telemetry import _schema
from visivo_telemetry._files import Unreadable, paths
from visivo_telemetry._notice import CHANGED, FIRST_VERSIONED, NOTICE_KEY, fields_version
from visivo_telemetry._yaml_scan import read_flag

HOST = """\
import sys
from visivo_telemetry import Telemetry
notice = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".").notice()
if notice:
    sys.stderr.write(notice + "\\n")
"""


def run(argv: list[str], env: dict[str, str], cwd, tty: bool) -> tuple[int, str, str]:
    return run_stderr_on(argv, env, cwd, tty)


def host(env, cwd, tty: bool = True) -> str:
    code, _, err = run([PYTHON, "-c", HOST], env, cwd, tty)
    assert code == 0
    return err


def test_the_notice_is_shown_once_per_machine(home, project):
    config = home / ".visivo" / "config.yml"
    config.parent.mkdir()
    config.write_text("# mine\nposthog_api_key: phc_x  # keep\n")
    env = clean_env(home)

    first = host(env, project)
    second = host(env, project)

    assert "anonymous usage data" in first
    assert "visivo-telemetry disable" in first and "VISIVO_TELEMETRY_DISABLED=1" in first
    assert str(home / ".visivo" / "telemetry.db") in first
    assert second == ""
    assert config.read_text() == (
        "# mine\nposthog_api_key: phc_x  # keep\n"
        f"telemetry_notice_version: {fields_version()}\ntelemetry_notice_shown: true\n"
    )
    assert wait_for_senders_to_exit(home) == []


@pytest.mark.parametrize("ci", ["true", "1", "woodpecker"])
def test_no_notice_in_ci_and_it_stays_due(home, project, ci):
    assert host(clean_env(home, CI=ci), project) == ""
    assert not (home / ".visivo").exists()
    assert "anonymous usage data" in host(clean_env(home, CI="false"), project)


def test_no_notice_without_a_terminal_and_it_stays_due(home, project):
    assert host(clean_env(home), project, tty=False) == ""
    assert not (home / ".visivo").exists()
    assert "anonymous usage data" in host(clean_env(home), project)


@pytest.mark.parametrize("how", ["env", "project", "global"])
def test_no_notice_when_telemetry_is_off(home, project, how):
    env = clean_env(home)
    if how == "env":
        env["VISIVO_TELEMETRY_DISABLED"] = "yes"
    elif how == "project":
        (project / "project.visivo.yml").write_text("defaults:\n  telemetry_enabled: false\n")
    else:
        (home / ".visivo").mkdir()
        (home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")
    assert host(env, project) == ""
    assert "telemetry_notice_shown" not in _config_text(home)


def _config_text(home) -> str:
    path = home / ".visivo" / "config.yml"
    return path.read_text() if path.exists() else ""


def test_the_click_cli_shows_the_notice_on_its_first_run_only(home, project):
    argv = [PYTHON, str(ROOT / "scripts" / "visivo_cli.py"), "compile"]
    env = clean_env(home)

    code, out, first = run(argv, env, project, tty=True)
    _, _, second = run(argv, env, project, tty=True)

    assert (code, out) == (0, "compiled 14 objects\n")
    assert first.startswith("Visivo collects anonymous usage data")
    assert second == ""
    assert wait_for_senders_to_exit(home) == []


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("telemetry_notice_shown: 'true'  # quoted, as YAML allows\n", True),
        ("a: 1\ntelemetry_notice_shown: off\n", False),
        ("nested:\n  telemetry_notice_shown: true\n", None),
    ],
)
def test_the_notice_flag_is_read_as_the_opt_out_is(home, text, flag):
    (home / ".visivo").mkdir()
    (home / ".visivo" / "config.yml").write_text(text)

    assert read_flag(paths({"HOME": str(home)}), NOTICE_KEY) is flag


def test_an_unclear_notice_flag_shows_nothing_rather_than_every_time(home, project):
    config = home / ".visivo" / "config.yml"
    config.parent.mkdir()
    text = "telemetry_notice_shown: false\ntelemetry_notice_shown: true\n"
    config.write_text(text)

    with pytest.raises(Unreadable):
        read_flag(paths({"HOME": str(home)}), NOTICE_KEY)
    assert host(clean_env(home), project) == ""
    assert config.read_text() == text


# --------------------------------------------------------------------------- nothing leaves first

CLI = [PYTHON, str(ROOT / "scripts" / "visivo_cli.py")]


def test_the_run_that_shows_the_notice_sends_nothing_and_the_next_sends_both(
    home, project, collector
):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)

    code, _, first = run([*CLI, "compile"], env, project, tty=True)
    assert code == 0 and first.startswith("Visivo collects anonymous usage data")
    assert wait_for_senders_to_exit(home) == []
    assert collector.events() == [] and len(spool_rows(home)) == 1

    code, _, second = run([*CLI, "run"], env, project, tty=True)
    assert (code, second) == (0, "")
    assert wait_for_senders_to_exit(home) == []
    assert sorted(e["properties"]["command"] for e in collector.events()) == ["compile", "run"]
    assert spool_rows(home) == []


def test_disable_after_the_notice_means_nothing_is_ever_sent(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)

    code, _, first = run([*CLI, "compile"], env, project, tty=True)
    assert code == 0 and "visivo-telemetry disable" in first
    assert vt("disable", env=env).returncode == 0
    code, _, second = run([*CLI, "run"], env, project, tty=True)

    assert (code, second) == (0, "")
    assert wait_for_senders_to_exit(home) == []
    assert collector.events() == [] and collector.requests() == []
    assert not spool_path(home).exists()


def test_no_terminal_no_notice_and_the_event_leaves_as_before(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
    code, _, err = run([*CLI, "compile"], env, project, tty=False)
    assert (code, err) == (0, "")
    assert collector.wait_for_events(1, timeout=30)


def test_the_notice_is_shown_again_once_when_the_collected_fields_change(home, project):
    config = home / ".visivo" / "config.yml"
    config.parent.mkdir()
    config.write_text("telemetry_notice_shown: true\ntelemetry_notice_version: fields-00000000\n")
    env = clean_env(home)

    again = host(env, project)
    assert again.startswith("What Visivo's telemetry collects has changed since you last saw")
    assert "anonymous usage data" in again
    assert host(env, project) == ""
    assert f"telemetry_notice_version: {fields_version()}\n" in config.read_text()


def test_a_notice_shown_before_versions_existed_counts_as_the_first_version(home, project):
    config = home / ".visivo" / "config.yml"
    config.parent.mkdir()
    config.write_text("telemetry_notice_shown: true\n")
    shown = host(clean_env(home), project)
    if fields_version() == FIRST_VERSIONED:
        assert shown == ""
    else:
        assert shown.startswith(CHANGED)


def test_the_notice_version_follows_the_allowlist(monkeypatch):
    before = fields_version()
    extra = ("new_field", "cli_command", "string", None, "a new field", False, None)
    monkeypatch.setattr(_schema, "PROPERTIES", (*_schema.PROPERTIES, extra))
    assert fields_version() != before
    monkeypatch.setattr(_schema, "PROPERTIES", tuple(reversed(_schema.PROPERTIES[:-1])))
    assert fields_version() == before, "the order of the declaration is not a change"
