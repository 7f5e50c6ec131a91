"""Privacy notice: "When telemetry is off ... no process is started, no connection is made."

An opted-out host runs with a `sitecustomize.py` that turns every way out of the process into
a recorded failure: opening a connection (`socket.connect`, `connect_ex`, `sendto`, and a
name lookup), and starting a process (`posix_spawn`, `fork`, `subprocess`, `os.system`). For
each source of an opt-out, nothing is attempted, no sender runs, and the host's exit code and
output are those of a run without the trap. The same trap around a host with telemetry on
records its sender start: the trap can fail.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers import clean_env, run_host, sender_pids, spool_rows
from privacy_support import global_config, project_config, write_text
from reliability_support import seed_spool

TRAP = textwrap.dedent(
    '''
    """Record, then refuse, every connection and every new process (test trap)."""
    import os
    import socket
    import subprocess

    _LOG = os.environ["NETWORK_TRAP_LOG"]


    def _record(what):
        with open(_LOG, "a") as log:
            log.write(what + "\\n")


    def _refusing(name, error=OSError):
        def refuse(*args, **kwargs):
            _record(name)
            raise error(f"trapped: {name}")

        return refuse


    for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
        setattr(socket.socket, _name, _refusing("socket." + _name))
    socket.getaddrinfo = _refusing("socket.getaddrinfo", socket.gaierror)
    socket.create_connection = _refusing("socket.create_connection")
    for _name in ("posix_spawn", "posix_spawnp", "fork", "system", "execv", "execve"):
        if hasattr(os, _name):
            setattr(os, _name, _refusing("os." + _name))
    subprocess.Popen._execute_child = _refusing("subprocess.Popen")
    '''
)

HOST = textwrap.dedent(
    """
    import sys
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
    with t.command("run", ["--threads", "4"]):
        print("compiled 3 charts")
        print("warning: 1 chart is slow", file=sys.stderr)
        sys.exit(3)
    """
)
AS_WITHOUT_TELEMETRY = (3, "compiled 3 charts\n", "warning: 1 chart is slow\n")

OPT_OUTS = {
    "env VISIVO_TELEMETRY_DISABLED": ({"VISIVO_TELEMETRY_DISABLED": "1"}, None, None),
    "env DO_NOT_TRACK": ({"DO_NOT_TRACK": "1"}, None, None),
    "project file": ({}, "defaults:\n  telemetry_enabled: false\n", None),
    "global file": ({}, None, "telemetry_enabled: false\n"),
}


def trapped_env(home: Path, site: Path, log: Path, **extra: str) -> dict[str, str]:
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(TRAP)
    env = clean_env(home, NETWORK_TRAP_LOG=str(log), **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("extra_env, project_text, global_text", OPT_OUTS.values(), ids=OPT_OUTS)
def test_an_opted_out_host_attempts_no_connection_and_starts_no_process(
    home, project, tmp_path, extra_env, project_text, global_text
):
    seed_spool(home, 3)  # events wait: a host with telemetry on would start a sender
    if project_text is not None:
        write_text(project_config(project), project_text)
    if global_text is not None:
        write_text(global_config(home), global_text)
    log = tmp_path / "attempts.log"

    result, _ = run_host(HOST, trapped_env(home, tmp_path / "site", log, **extra_env), project)

    assert (result.returncode, result.stdout, result.stderr) == AS_WITHOUT_TELEMETRY
    assert not log.exists(), log.read_text()
    assert sender_pids(home) == []
    assert spool_rows(home) == [], "an opt-out deletes the waiting events"


def test_the_trap_records_the_sender_a_host_with_telemetry_on_starts(home, project, tmp_path):
    seed_spool(home, 3)
    log = tmp_path / "attempts.log"

    result, _ = run_host(HOST, trapped_env(home, tmp_path / "site", log), project)

    assert (result.returncode, result.stdout, result.stderr) == AS_WITHOUT_TELEMETRY
    attempts = log.read_text().split()
    assert attempts and set(attempts) <= {"os.posix_spawn", "subprocess.Popen"}, attempts
    assert sender_pids(home) == []
    assert len(spool_rows(home)) == 4, "recorded, and no sender could take it"
