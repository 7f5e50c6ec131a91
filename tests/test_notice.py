"""The first-run notice: once per machine, only to a person at a terminal, never when off."""

from __future__ import annotations

import pytest
from helpers import PYTHON, ROOT, clean_env, run_stderr_on, wait_for_senders_to_exit

from visivo_telemetry._files import Unreadable, paths
from visivo_telemetry._notice import NOTICE_KEY
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
        "# mine\nposthog_api_key: phc_x  # keep\ntelemetry_notice_shown: true\n"
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
