"""An administrator's opt-out for the whole machine: `/etc/visivo/config.yml`.

Each process runs in its own mount namespace where /etc is an overlay holding the test's
`visivo/config.yml`: the real /etc is never written, and tests in parallel never see each
other's file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import PYTHON, clean_env, host_code, spool_path, wait_for_senders_to_exit

from visivo_telemetry._files import machine_config

MACHINE_FILE = "/etc/visivo/config.yml"


def overlay_reason() -> str | None:
    if os.geteuid() != 0:
        return "a private /etc (an overlay in a mount namespace) needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


@pytest.fixture
def machine(tmp_path: Path):
    """`run(argv, env, cwd)` runs a process that sees `text` as /etc/visivo/config.yml
    (`text=None`: no such file; a dict of relative paths to texts plants several)."""
    reason = overlay_reason()
    if reason:
        pytest.skip(reason)

    def run(argv: list[str], env: dict[str, str], cwd, text: str | None):
        upper, work = tmp_path / "etc-upper", tmp_path / "etc-work"
        shutil.rmtree(upper, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        upper.mkdir()
        work.mkdir()
        if text is not None:
            (upper / "visivo").mkdir()
            (upper / "visivo" / "config.yml").write_text(text)
        script = (
            'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc '
            '&& shift 2 && exec "$@"'
        )
        return subprocess.run(
            ["unshare", "-m", "--", "sh", "-c", script, "sh", str(upper), str(work), *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def status(machine, env, project, text) -> dict:
    result = machine([PYTHON, "-m", "visivo_telemetry.cli", "status", "--json"], env, project, text)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def user_enables(home: Path) -> None:
    (home / ".visivo").mkdir(exist_ok=True)
    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: true\n")


def test_the_machine_file_beats_the_users_enable(machine, home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
    user_enables(home)
    text = "# set by IT\ntelemetry_enabled: false\n"

    ran = machine([PYTHON, "-c", host_code()], env, project, text)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []
    assert not spool_path(home).exists() and collector.requests() == []

    info = status(machine, env, project, text)
    assert info["enabled"] is False and info["decided_by"] == "machine"
    assert info["source"] == MACHINE_FILE and "every user of this machine" in info["reason"]

    enabled = machine([PYTHON, "-m", "visivo_telemetry.cli", "enable"], env, project, text)
    assert enabled.returncode == 0
    assert f"note: still off here because {MACHINE_FILE} opts out" in enabled.stderr

    without = status(machine, env, project, None)  # the control: the same user, no machine file
    assert without["enabled"] is True and without["decided_by"] == "default"


def test_a_machine_opt_out_purges_what_waits(machine, home, project):
    env = clean_env(home)
    ran = machine([PYTHON, "-c", host_code()], env, project, None)
    assert ran.returncode == 0 and spool_path(home).exists()
    assert wait_for_senders_to_exit(home) == []

    ran = machine([PYTHON, "-c", host_code()], env, project, "telemetry_enabled: no\n")
    assert (ran.returncode, ran.stderr) == (0, "")
    assert not spool_path(home).exists()


@pytest.mark.parametrize(
    "text",
    [
        "telemetry_enabled: true\n",
        "posthog_host: http://127.0.0.1:9\nposthog_api_key: phc_admin\n",
        "",
    ],
)
def test_the_machine_file_can_only_turn_telemetry_off(machine, home, project, text):
    env = clean_env(home)
    info = status(machine, env, project, text)
    assert info["enabled"] is True and info["decided_by"] == "default"
    assert info["api_key_source"] != "machine"

    (home / ".visivo").mkdir()
    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")
    info = status(machine, env, project, text)
    assert info["enabled"] is False and info["decided_by"] == "global"


@pytest.mark.parametrize(
    "text",
    [
        "telemetry_enabled: false\ntelemetry_enabled: true\n",  # named twice: unclear
        "telemetry_enabled: [unclosed\n",  # mentions the key, cannot be parsed
    ],
)
def test_an_unclear_machine_file_is_an_opt_out(machine, home, project, text):
    info = status(machine, clean_env(home), project, text)
    assert info["enabled"] is False and info["decided_by"] == "machine"


def test_the_machine_file_on_windows_is_under_programdata():
    assert machine_config({"PROGRAMDATA": "D:\\Data"}, "win32") == "D:\\Data\\visivo\\config.yml"
    assert machine_config({}, "win32") == "C:\\ProgramData\\visivo\\config.yml"
    assert machine_config({"PROGRAMDATA": "D:\\Data"}, "darwin") == MACHINE_FILE
