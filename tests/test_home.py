"""One home: the library looks for `~/.visivo` exactly where Visivo writes it, `Path.home()`.

Visivo's `telemetry off` writes `Path.home() / ".visivo" / "config.yml"`; Visivo's tests patch
`Path.home()`; on Windows Python's `Path.home()` ignores the `HOME` that Git Bash, MSYS2 and
Cygwin set. An opt-out written there must be read there. An empty or relative `HOME` is no home.
"""

from __future__ import annotations

import json
import ntpath
import os
import pathlib
import posixpath
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TEST_API_KEY, clean_env, host_code, run_host, wait_for_senders_to_exit

from visivo_telemetry import Telemetry
from visivo_telemetry._files import home_folder, paths
from visivo_telemetry.cli import main


@pytest.fixture
def visivo_home(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`Path.home()` patched as Visivo's tests patch it, away from `HOME`."""
    patched = tmp_path / "path-home"
    patched.mkdir()
    monkeypatch.setattr(pathlib.Path, "home", classmethod(lambda cls: cls(patched)))
    return patched


def test_an_opt_out_written_under_path_home_is_read_there(visivo_home, home):
    (visivo_home / ".visivo").mkdir()
    (visivo_home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")

    telemetry = Telemetry("2.2.1", api_key=TEST_API_KEY, project_dir=None)
    status = CliRunner().invoke(main, ["status", "--json"])

    assert (telemetry.enabled, telemetry.decided_by) == (False, "global")
    assert status.exit_code == 0 and json.loads(status.output)["enabled"] is False
    assert not (home / ".visivo").exists(), "nothing under the HOME Visivo does not use"


def test_events_are_spooled_under_path_home(visivo_home, home):
    with Telemetry("2.2.1", api_key=TEST_API_KEY, project_dir=None).command("run"):
        pass
    assert (visivo_home / ".visivo" / "telemetry.db").exists()
    assert not (home / ".visivo").exists()


@pytest.mark.parametrize(
    "env",
    [
        {"HOME": "/c/Users/ada", "USERPROFILE": r"C:\Users\ada"},  # Git Bash, MSYS2, Cygwin
        {"HOME": "/home/ada", "HOMEDRIVE": "D:", "HOMEPATH": r"\Users\ada"},
        {"HOME": "/home/ada", "USERPROFILE": r"C:\Users\ada", "HOMEDRIVE": "D:", "HOMEPATH": r"\x"},
    ],
    ids=["git-bash", "homedrive", "userprofile-first"],
)
def test_on_windows_the_home_is_what_python_says_not_home(env, monkeypatch):
    """The oracle is Python's own Windows rule (`ntpath.expanduser`, which `Path.home()` uses)."""
    for name in ("HOME", "USERPROFILE", "HOMEDRIVE", "HOMEPATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = ntpath.expanduser("~")

    assert expected != env["HOME"]
    assert home_folder(env, platform="win32") == expected
    assert paths(env, platform="win32").config == ntpath.join(expected, ".visivo", "config.yml")


@pytest.mark.parametrize("value", ["/home/ada", "/root/", "/"])
def test_elsewhere_the_home_is_what_python_says(value, monkeypatch):
    monkeypatch.setenv("HOME", value)
    assert home_folder({"HOME": value}, platform="linux") == posixpath.expanduser("~")


@pytest.mark.parametrize("value", ["", "relative/home", "."])
def test_an_empty_or_relative_home_is_no_home(value, tmp_path, home, project):
    assert home_folder({"HOME": value}, platform="linux") is None
    env = {**clean_env(home), "HOME": value}
    before = os.path.exists("/.visivo")

    result, _ = run_host(host_code(), env, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert list(project.iterdir()) == [], "nothing below the working directory"
    assert os.path.exists("/.visivo") == before, "nothing at the root"


def test_the_sender_drains_the_spool_of_the_home_its_host_found(visivo_home, home, env, collector):
    """A host that found its home through a patched `Path.home()` starts a sender that drains
    that very spool, never the one under `HOME`."""
    with Telemetry("2.2.1", api_key=TEST_API_KEY, project_dir=None).command("run", ["-x"]):
        pass
    [event] = collector.wait_for_events(1, timeout=30)
    assert event["properties"]["command"] == "run"
    assert wait_for_senders_to_exit(visivo_home) == []
    assert not (home / ".visivo").exists()
