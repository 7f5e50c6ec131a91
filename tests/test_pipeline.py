"""The core promise: an event from a CLI run that exits at once arrives, exactly once."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from helpers import (
    PYTHON,
    Collector,
    clean_env,
    flush,
    host_code,
    run_host,
    spool_rows,
    wait_for_senders_to_exit,
)


def test_a_host_that_exits_at_once_still_delivers_its_event(env, home, project, collector):
    result, _ = run_host(host_code("run", ["--threads", "4"]), env, cwd=project)

    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    received = collector.wait_for_events(1)
    assert [e["properties"]["command"] for e in received] == ["run"]
    assert received[0]["properties"]["command_args"] == ["--threads", "<value>"]
    assert wait_for_senders_to_exit(home) == []
    assert spool_rows(home) == []


def test_forty_parallel_hosts_deliver_forty_events_each_once(env, home, project, collector):
    def one(i: int) -> int:
        result, _ = run_host(host_code("run", [f"--n{i}", str(i)]), env, cwd=project)
        return result.returncode

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(one, range(40)))

    assert codes == [0] * 40
    received = collector.wait_for_events(40, timeout=30)
    assert wait_for_senders_to_exit(home) == []
    flags = sorted(e["properties"]["command_args"][0] for e in received)
    assert flags == sorted(f"--n{i}" for i in range(40))
    assert collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []


def test_host_stays_fast_when_the_receiver_black_holes(home, project, tmp_path):
    with Collector(tmp_path / "bh.db", mode="blackhole") as receiver:
        env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
        for _ in range(3):
            result, seconds = run_host(host_code(), env, cwd=project)
            assert result.returncode == 0 and result.stderr == ""
            assert seconds < 1.0, f"host took {seconds:.2f}s with a black-holed receiver"
        assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 3


def test_host_stays_fast_when_the_receiver_refuses(home, project):
    env = clean_env(home)
    for _ in range(3):
        result, seconds = run_host(host_code(), env, cwd=project)
        assert result.returncode == 0 and result.stderr == ""
        assert seconds < 1.0, f"host took {seconds:.2f}s with a refusing receiver"
    assert wait_for_senders_to_exit(home) == []
    rows = spool_rows(home)
    assert len(rows) == 3
    assert rows[0]["attempts"] >= 1


def test_events_wait_while_receiver_is_down_and_arrive_after_flush(home, project, tmp_path):
    down = Collector(tmp_path / "r.db").start()
    port = down.port
    down.stop()
    env = clean_env(home, VISIVO_POSTHOG_HOST=f"http://127.0.0.1:{port}")
    for name in ("run", "compile", "serve"):
        run_host(host_code(name), env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 3

    with Collector(tmp_path / "r.db", port=port) as back:
        result = flush(env)
        assert result.returncode == 0, result.stderr
        assert "sent 3 events" in result.stdout
        names = sorted(e["properties"]["command"] for e in back.wait_for_events(3))
    assert names == ["compile", "run", "serve"]
    assert spool_rows(home) == []


def test_the_wire_body_is_a_posthog_batch(env, home, project, collector):
    run_host(host_code("compile", metrics={"object_counts": {"charts": 3}}), env, cwd=project)
    collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []

    request = collector.requests()[0]
    assert request["status"] == 200
    event = collector.events()[0]
    assert event["api_key"]
    assert event["sent_at"].endswith("Z")
    assert event["event"] == "cli_command"
    assert len(event["uuid"]) == 36 and event["uuid"][14] == "7", "time-ordered uuid7"
    assert event["timestamp"].endswith("Z")
    assert event["distinct_id"] == event["properties"]["session_id"]
    props = event["properties"]
    assert props["$process_person_profile"] is False
    assert props["$geoip_disable"] is True
    assert props["object_counts"] == {"charts": 3}
    assert json.loads(json.dumps(props)) == props


def test_a_failing_command_is_recorded_and_its_exception_passes_through(
    env, home, project, collector
):
    result, _ = run_host(host_code("run", raise_error="ValueError"), env, cwd=project)

    assert result.returncode == 1
    assert result.stderr.strip().endswith("ValueError: boom")
    assert "visivo_telemetry" not in result.stderr
    (event,) = collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []
    props = event["properties"]
    assert (props["command"], props["success"], props["error_type"]) == ("run", False, "ValueError")
    assert spool_rows(home) == []


def _impostor(folder, marker, *modules: str) -> None:
    """A `sender/` package and `modules` that would leave `marker` behind if they ever ran."""
    leave_marker = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (folder / "sender").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py", "run.py", "drain.py"):
        (folder / "sender" / name).write_text(leave_marker)
    for module in modules:
        (folder / f"{module}.py").write_text(leave_marker)


def test_no_sender_folder_in_the_project_or_on_pythonpath_runs_instead_of_ours(
    env, home, project, collector, tmp_path
):
    """An app's `sender/` on `PYTHONPATH`, or a project's `sender/` or `httpx.py`, never runs."""
    marker = tmp_path / "impostor-ran"
    _impostor(project, marker, "httpx", "filelock")
    on_path = tmp_path / "app"
    _impostor(on_path, marker)

    result, _ = run_host(host_code("run"), {**env, "PYTHONPATH": str(on_path)}, cwd=project)

    assert result.returncode == 0, result.stderr
    assert [e["event"] for e in collector.wait_for_events(1)] == ["cli_command"]
    assert wait_for_senders_to_exit(home) == []
    assert not marker.exists(), marker.read_text()


def test_a_host_that_shows_every_warning_still_prints_nothing(env, home, project, collector):
    """`-X dev` shows every warning (Python 3.13 warns about unclosed SQLite connections)."""
    result = subprocess.run(
        [PYTHON, "-X", "dev", "-c", host_code("run")],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(collector.wait_for_events(1)) == 1
    assert wait_for_senders_to_exit(home) == []
