"""A command ended by SIGTERM or SIGINT is recorded, and the process ends exactly as it would
without telemetry: same exit status, same output. Real processes, real signals."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import PYTHON, flush, spool_rows, wait_for_senders_to_exit

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.click import instrument

CLI = Path(__file__).with_name("visivo_shaped_cli.py")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start(mode: str, args: list[str], env, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(CLI), mode, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running a minute after {signal.Signals(signum).name}")
    return proc.returncode, out, err


def interrupted(mode: str, command: str, signum: int, env, cwd) -> tuple[int, str, str]:
    """`visivo wait` or `visivo query` (run until stopped), stopped by `signum` once ready."""
    proc = start(mode, [command], env, cwd)
    assert proc.stderr.readline() == "ready\n"
    code, out, err = stop(proc, signum)
    return code, out, "ready\n" + err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> int:
    try:
        with NO_PROXY.open(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def served_and_stopped(mode: str, signum: int, env, cwd) -> tuple[int, str, str]:
    """`visivo serve` (Flask's development server), asked for /api/health 5 times, stopped."""
    port = free_port()
    proc = start(mode, ["serve", "--port", str(port)], env, cwd)
    url = f"http://127.0.0.1:{port}/api/health"
    deadline = time.monotonic() + 30
    while True:
        try:
            assert get(url) == 200
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            time.sleep(0.1)
    assert [get(url) for _ in range(4)] == [200] * 4
    code, out, err = stop(proc, signum)
    return code, out, comparable(err, port)


def comparable(stderr: str, port: int) -> str:
    """Flask's log without what differs between two runs: the port and the request times."""
    return re.sub(r"\[[^\]]*\d\d:\d\d:\d\d\]", "[time]", stderr.replace(str(port), "PORT"))


def delivered(env, home, collector, expected: int) -> list[dict]:
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    events = collector.wait_for_events(expected)
    assert spool_rows(home) == []
    return [e["properties"] for e in events]


@pytest.mark.parametrize(
    "command, signum, status, error_type",
    [
        ("wait", signal.SIGTERM, -signal.SIGTERM, "SIGTERM"),
        ("wait", signal.SIGINT, 1, "KeyboardInterrupt"),
        ("query", signal.SIGTERM, -signal.SIGTERM, "SIGTERM"),  # the main thread stays in C
    ],
)
def test_a_command_stopped_by_a_signal_is_recorded_and_ends_the_same(
    env, home, project, collector, command, signum, status, error_type
):
    plain = interrupted("plain", command, signum, env, project)
    wired = interrupted("wired", command, signum, env, project)

    assert wired == plain
    assert wired[0] == status, "SIGTERM kills (143 in a shell); Ctrl-C is click's Abort, 1"
    [event] = delivered(env, home, collector, 1)
    assert (event["command"], event["success"], event["error_type"]) == (
        command,
        False,
        error_type,
    )
    assert event["duration_ms"] > 0


@pytest.mark.parametrize(
    "signum, status, success, error_type",
    [
        (signal.SIGTERM, -signal.SIGTERM, False, "SIGTERM"),
        (signal.SIGINT, 0, True, None),  # the server catches Ctrl-C and exits 0: a success
    ],
)
def test_a_served_command_stopped_by_a_signal_keeps_its_event_and_its_requests(
    env, home, project, collector, signum, status, success, error_type
):
    """`success` follows how the run ended, as the exit status does (and as Visivo 2.2.1
    recorded it): a server stopped by Ctrl-C, its only way to stop, ends normally."""
    plain = served_and_stopped("plain", signum, env, project)
    wired = served_and_stopped("wired", signum, env, project)

    assert wired == plain
    assert wired[0] == status, "SIGTERM kills; the development server ends a Ctrl-C with 0"
    props = delivered(env, home, collector, 2)
    [command] = [p for p in props if "command" in p]
    assert (command["command"], command["success"], command["error_type"]) == (
        "serve",
        success,
        error_type,
    )
    requests = [p for p in props if "endpoint" in p]
    assert sum(p["request_count"] for p in requests) == 5
    assert {p["endpoint"] for p in requests} == {"/api/health"}


def test_a_host_handler_is_left_alone_and_its_exit_is_recorded(env, home, project, collector):
    code = f"""\
import signal, sys
sys.argv[1:1] = ["wired"]
sys.path.insert(0, {str(CLI.parent)!r})
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
import visivo_shaped_cli as cli
from visivo_telemetry.integrations.click import instrument
instrument(cli.visivo, cli.telemetry, project_dir_param="working_dir")
cli.visivo(["wait"], prog_name="visivo")
"""
    proc = subprocess.Popen(
        [PYTHON, "-c", code],
        env=env,
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)

    assert proc.returncode == 3, "the host's own handler decided"
    [event] = delivered(env, home, collector, 1)
    assert event["success"] is False and event["error_type"] == "SystemExit"


def test_handlers_are_restored_once_the_command_has_ended(home, project, monkeypatch):
    monkeypatch.chdir(project)

    @click.group()
    def cli() -> None:
        """A CLI."""

    seen = []

    @cli.command()
    def look() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    instrument(cli, Telemetry("2.2.1", api_key="phc_test_key"))
    assert CliRunner().invoke(cli, ["look"]).exit_code == 0

    assert seen[0] is not signal.SIG_DFL, "a handler while the command runs"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
