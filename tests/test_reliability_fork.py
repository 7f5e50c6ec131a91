"""Servers record from many threads and from pre-forked workers; every event arrives."""

from __future__ import annotations

import sqlite3
import textwrap

from helpers import run_host, spool_path, wait_for_senders_to_exit
from reliability_support import spool_count

THREADS = 8
EACH = 50

MANY_THREADS = textwrap.dedent(
    f"""
    import threading
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".", long_running=True)

    def serve(n):
        for i in range({EACH}):
            t.request("GET", "/api/charts/", 200, 1.0)
            with t.command("run", ["--t" + str(n), "--i" + str(i)]):
                pass

    threads = [threading.Thread(target=serve, args=(n,)) for n in range({THREADS})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t.close()
    """
)

PRE_FORK = textwrap.dedent(
    """
    import os
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".", long_running=True)
    with t.command("run", ["--parent-before"]):
        pass
    workers = []
    for w in range(3):
        pid = os.fork()
        if pid == 0:
            for i in range(20):
                with t.command("run", ["--w" + str(w), "--i" + str(i)]):
                    pass
            t.close()
            os._exit(0)
        workers.append(pid)
    for pid in workers:
        assert os.waitpid(pid, 0)[1] == 0
    with t.command("run", ["--parent-after"]):
        pass
    t.close()
    """
)


def commands(collector) -> list[tuple[str, ...]]:
    return [tuple(e["properties"].get("command_args", ())) for e in collector.events()]


def test_many_threads_of_one_server_record_every_event(env, home, project, collector):
    result, _ = run_host(MANY_THREADS, env, cwd=project)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    total = THREADS * EACH
    assert wait_for_senders_to_exit(home) == []
    received = collector.events()
    requests = [e["properties"] for e in received if e["event"] == "api_request"]
    assert sum(p["request_count"] for p in requests) == total, "every request counted, once"
    assert len({c for c in commands(collector) if c and c[0].startswith("--t")}) == total
    assert spool_count(home) == 0


def test_pre_forked_workers_record_without_sharing_a_connection(env, home, project, collector):
    result, _ = run_host(PRE_FORK, env, cwd=project, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    received = collector.wait_for_events(62, timeout=30)
    assert wait_for_senders_to_exit(home) == []
    got = set(commands(collector))
    expected = {("--parent-before",), ("--parent-after",)}
    expected |= {(f"--w{w}", f"--i{i}") for w in range(3) for i in range(20)}
    assert got == expected and len(received) == 62
    sessions = {e["properties"]["session_id"] for e in received}
    assert len(sessions) == 4, "each worker is its own session"
    check = sqlite3.connect(spool_path(home)).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


CLI_FORK = textwrap.dedent(
    """
    import os
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
    with t.command("run", ["--parent"]):
        pass
    pid = os.fork()
    if pid == 0:
        with t.command("run", ["--child"]):
            pass
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    """
)

FORK_WHILE_A_THREAD_RECORDS = textwrap.dedent(
    """
    import os, signal, threading, warnings
    # Python 3.12+ warns when a process that runs threads forks; the thread here is this
    # host's own, so the host silences exactly that warning (telemetry starts no thread).
    warnings.filterwarnings(
        "ignore", "This process .* is multi-threaded, use of fork.* may lead to deadlocks",
        DeprecationWarning,
    )
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".", long_running=True)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            with t.command("run", ["--busy"]):
                pass

    thread = threading.Thread(target=busy)
    thread.start()
    hung = 0
    for _ in range(10):
        pid = os.fork()
        if pid == 0:
            signal.alarm(2)
            with t.command("run", ["--child"]):
                pass
            os._exit(0)
        hung += os.waitpid(pid, 0)[1] != 0
        if hung:
            break
    stop.set()
    thread.join()
    print(hung)
    """
)


def test_a_child_forked_after_its_parent_recorded_delivers_its_own_event(
    env, home, project, collector
):
    result, _ = run_host(CLI_FORK, env, cwd=project, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    collector.wait_for_events(2, timeout=15)
    assert wait_for_senders_to_exit(home) == []
    assert sorted(commands(collector)) == [("--child",), ("--parent",)]


def test_a_fork_while_another_thread_records_never_hangs_the_child(env, home, project):
    result, _ = run_host(FORK_WHILE_A_THREAD_RECORDS, env, cwd=project, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == "0", "a forked child hung on a lock held by a parent thread"
    assert wait_for_senders_to_exit(home) == []
