"""Privacy notice: "How to opt out" — the first source that says "off" wins, and only an
opt-out decides; every spelling is honoured, and a file we cannot read never turns telemetry on.

The big matrix runs `precedence.decide` in-process (it reads real files in a temp HOME and project);
a few real host processes then prove the same decisions hold on the real path.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    clean_env,
    host_code,
    run_host,
    sender_pids,
    spool_rows,
    wait_for_senders_to_exit,
)
from privacy_support import files_under, global_config, project_config, write_text
from reliability_support import as_ordinary_user

from visivo_telemetry import Telemetry
from visivo_telemetry import _precedence as precedence

SOURCES = ("env:VISIVO_TELEMETRY_DISABLED", "env:DO_NOT_TRACK", "project", "global")
"""In precedence order: the first one that opts out decides."""

SAYS = {
    "env:VISIVO_TELEMETRY_DISABLED": {"off": "1", "on": "false"},
    "env:DO_NOT_TRACK": {"off": "1", "on": "0"},
    "project": {
        "off": "defaults:\n  telemetry_enabled: false\n",
        "on": "defaults:\n  telemetry_enabled: true\n",
    },
    "global": {"off": "telemetry_enabled: false\n", "on": "telemetry_enabled: true\n"},
}


def _decide(home: Path, project: Path, states: dict[str, str]) -> precedence.Decision:
    """Set each source as `states` says ("off", "on" or absent), then decide."""
    env = {"HOME": str(home)}
    for source, state in states.items():
        text = SAYS[source][state]
        if source.startswith("env:"):
            env[source[4:]] = text
        else:
            write_text(
                project_config(project) if source == "project" else global_config(home), text
            )
    return precedence.decide(project, env=env)


def _expected(states: dict[str, str]) -> tuple[bool, str]:
    first_off = next((s for s in SOURCES if states.get(s) == "off"), None)
    return (False, first_off) if first_off else (True, "default")


MATRIX = [
    {source: state for source, state in zip(SOURCES, combo, strict=True) if state != "absent"}
    for combo in itertools.product(("off", "on", "absent"), repeat=len(SOURCES))
]


@pytest.mark.parametrize(
    "states", MATRIX, ids=[",".join(f"{k}={v}" for k, v in m.items()) or "none" for m in MATRIX]
)
def test_the_first_opt_out_wins_and_nothing_overrides_it(tmp_path, states):
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()

    decision = _decide(home, project, states)

    assert (decision.enabled, decision.decided_by) == _expected(states)


YAML_FALSE = [
    "false", "False", "FALSE", "fAlSe", "no", "No", "NO", "nO", "off", "Off", "OFF", "oFf",
    "n", "N", "0", '"false"', "'no'", '" off "', "", "~", "null", "maybe", "0.0", "[]", "{}",
    "disabled",
]  # fmt: skip
YAML_TRUE = [
    "true", "True", "TRUE", "tRuE", "yes", "Yes", "YES", "yEs", "on", "On", "ON", "y", "Y",
    "1", '"true"', "'yes'",
]  # fmt: skip


def _yaml_cases():
    for value in YAML_FALSE:
        yield value, False
    for value in YAML_TRUE:
        yield value, True


@pytest.mark.parametrize("value, enabled", list(_yaml_cases()))
@pytest.mark.parametrize("where", ["project", "global"])
def test_every_yaml_spelling_is_honoured(tmp_path, where, value, enabled):
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    if where == "project":
        write_text(
            project_config(project), f"name: demo\ndefaults:\n  telemetry_enabled: {value}\n"
        )
    else:
        write_text(global_config(home), f"telemetry_enabled: {value}\n")

    decision = precedence.decide(project, env={"HOME": str(home)})

    assert decision.enabled is enabled
    assert decision.decided_by == ("default" if enabled else where)


DISABLED_OFF = ["1", "true", "TRUE", "True", "tRuE", "yes", "YES", "on", "ON", "y", " 1 ", "2",
                "maybe", "disabled"]  # fmt: skip
DISABLED_NOT_OFF = ["", "0", "false", "FALSE", "False", "no", "NO", "off", "n", " 0 ", " false "]
DNT_OFF = ["1", "true", "yes", "no", "2", "anything", " 1 ", "TRUE"]
DNT_NOT_OFF = ["", "0", "false", "FALSE", "False", " 0 ", " false "]


def _env_cases():
    for value in DISABLED_OFF:
        yield "VISIVO_TELEMETRY_DISABLED", value, False
    for value in DISABLED_NOT_OFF:
        yield "VISIVO_TELEMETRY_DISABLED", value, True
    for value in DNT_OFF:
        yield "DO_NOT_TRACK", value, False
    for value in DNT_NOT_OFF:
        yield "DO_NOT_TRACK", value, True


@pytest.mark.parametrize("name, value, enabled", list(_env_cases()))
def test_every_environment_spelling_is_honoured(tmp_path, name, value, enabled):
    decision = precedence.decide(tmp_path, env={"HOME": str(tmp_path), name: value})

    assert decision.enabled is enabled
    assert decision.decided_by == ("default" if enabled else f"env:{name}")


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

MALFORMED = {
    "unclosed flow": "telemetry_enabled: [unclosed\n",
    "tab indentation": "defaults:\n\ttelemetry_enabled: true\n",
    "duplicate colon": "telemetry_enabled: : :\n  - x\n",
    "binary": b"\x00\xff\xfe telemetry_enabled \x80\x81\x00",
    "invalid UTF-8": b"telemetry_enabled: true\nname: \xff\xfe\n",
    "a list": "- telemetry_enabled: true\n",
    "a scalar": "telemetry_enabled\n",
    "python tag": "telemetry_enabled: !!python/object/apply:os.getcwd []\n",
    "in the wrong place": "defaults:\n  - telemetry_enabled: false\n",
    "nested elsewhere": "settings:\n  telemetry:\n    telemetry_enabled: no\n",
    "alias bomb": BOMB + "defaults: {telemetry_enabled: false}\n",
    "utf-16 saying no": "defaults:\n  telemetry_enabled: no\n".encode("utf-16"),
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("where", ["project", "global"])
def test_a_malformed_file_never_turns_telemetry_on(tmp_path, where, content):
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    write_text(project_config(project) if where == "project" else global_config(home), content)

    decision = precedence.decide(project, env={"HOME": str(home)})

    assert (decision.enabled, decision.decided_by) == (False, where)


SAYS_NOTHING = {
    "a comment only": "# telemetry_enabled: false\nname: demo\n",
    "empty": "",
    "broken but silent on telemetry": "name: [unclosed\n",
    "utf-16 saying yes": "defaults:\n  telemetry_enabled: yes\n".encode("utf-16"),
}


@pytest.mark.parametrize("content", SAYS_NOTHING.values(), ids=SAYS_NOTHING.keys())
def test_a_project_file_that_says_nothing_about_telemetry_decides_nothing(tmp_path, content):
    write_text(project_config(tmp_path), content)

    assert precedence.decide(tmp_path, env={"HOME": str(tmp_path / "home")}) == (
        True,
        "default",
        None,
    )


@pytest.mark.parametrize("where", ["project", "global"])
def test_a_directory_or_fifo_in_place_of_a_config_file_means_off(tmp_path, where):
    home, project = tmp_path / "home", tmp_path / "project"
    path = project_config(project) if where == "project" else global_config(home)
    path.mkdir(parents=True)
    project.mkdir(exist_ok=True)
    assert precedence.decide(project, env={"HOME": str(home)}).decided_by == where

    path.rmdir()
    os.mkfifo(path)
    assert precedence.decide(project, env={"HOME": str(home)}).decided_by == where


def test_an_unreadable_config_file_means_off(tmp_path):
    write_text(global_config(tmp_path), "telemetry_enabled: true\n").chmod(0)
    code = "from visivo_telemetry._precedence import decide; print(decide(None).decided_by)"

    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=as_ordinary_user,  # root would read the file regardless of its mode
    )

    assert (result.returncode, result.stdout.strip()) == (0, "global"), result.stderr


def test_the_host_reports_which_source_decided(home, project):
    write_text(project_config(project), "defaults:\n  telemetry_enabled: off\n")

    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=project)

    assert (telemetry.enabled, telemetry.decided_by) == (False, "project")


# --------------------------------------------------------------------------- real processes

REAL = {
    "VISIVO_TELEMETRY_DISABLED=1": ({"VISIVO_TELEMETRY_DISABLED": "1"}, None, None),
    "DO_NOT_TRACK=1": ({"DO_NOT_TRACK": "1"}, None, None),
    "DISABLED=false does not undo DO_NOT_TRACK": (
        {"VISIVO_TELEMETRY_DISABLED": "false", "DO_NOT_TRACK": "yes"},
        None,
        None,
    ),
    "project says no": ({}, "defaults:\n  telemetry_enabled: no\n", None),
    "project is malformed": ({}, "defaults: {telemetry_enabled: [\n", None),
    "global says OFF": ({}, None, "telemetry_enabled: OFF\n"),
    "project true cannot undo global false": (
        {},
        "defaults:\n  telemetry_enabled: true\n",
        "telemetry_enabled: false\n",
    ),
}


@pytest.mark.parametrize("extra_env, project_text, global_text", REAL.values(), ids=REAL.keys())
def test_an_opted_out_host_writes_nothing_and_starts_nothing(
    home, project, extra_env, project_text, global_text
):
    if project_text is not None:
        write_text(project_config(project), project_text)
    if global_text is not None:
        write_text(global_config(home), global_text)
    before = files_under(home)

    result, _ = run_host(
        host_code("run", ["--threads", "4"]), clean_env(home, **extra_env), project
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert files_under(home) == before
    assert sender_pids(home) == []


def test_a_host_that_is_not_opted_out_does_record(home, project):
    """The control for the test above: the same host, with telemetry on, writes its event."""
    write_text(project_config(project), "defaults:\n  telemetry_enabled: true\n")
    env = clean_env(home, VISIVO_TELEMETRY_DISABLED="false", DO_NOT_TRACK="0")

    result, _ = run_host(host_code("run", ["--threads", "4"]), env, project)

    assert (result.returncode, result.stderr) == (0, "")
    assert [row["properties"]["command"] for row in spool_rows(home)] == ["run"]


OPT_OUT_INSIDE_THE_COMMAND = """
from pathlib import Path
from visivo_telemetry import Telemetry
telemetry = Telemetry("1.4.0", project_dir=".", api_key="phc_test_key")
with telemetry.command("telemetry off", []):
    folder = Path.home() / ".visivo"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "config.yml").write_text({text!r})
"""


@pytest.mark.parametrize("text", ["telemetry_enabled: false\n", "telemetry_enabled: off\n"])
def test_a_command_that_opts_out_is_not_recorded_and_the_spool_goes(home, project, text):
    """Visivo's `telemetry off` opts out while it runs: the user said "off" before the event
    was written, so it is not, and what waited is deleted as for any opt-out."""
    env = clean_env(home)
    run_host(host_code("run", ["--threads", "4"]), env, project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 1, "the control: an earlier event waits"

    result, _ = run_host(OPT_OUT_INSIDE_THE_COMMAND.format(text=text), env, project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert [p.name for p in (home / ".visivo").iterdir() if p.name.startswith("telemetry.db")] == []
    assert sender_pids(home) == []
