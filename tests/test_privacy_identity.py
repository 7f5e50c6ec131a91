"""Privacy notice: "Nothing identifies you across runs: the session id is made fresh by every
process and never written anywhere but the event" — no machine id, user, host or IP.
"""

from __future__ import annotations

import getpass
import json
import socket
import stat

from helpers import clean_env, host_code, run_host, spool_rows, spool_state
from helpers import wait_for_senders_to_exit as wait_for_senders
from privacy_support import files_under
from reliability_support import seed_spool

TWO_COMMANDS = """
from visivo_telemetry import Telemetry
t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
with t.command("run", []):
    pass
with t.command("compile", []):
    pass
"""


def test_every_process_gets_a_fresh_session_id(env, home, project, collector):
    for _ in range(3):
        run_host(TWO_COMMANDS, env, cwd=project)
    received = collector.wait_for_events(6)
    assert wait_for_senders(home) == []

    sessions = [e["properties"]["session_id"] for e in received]
    assert len(sessions) == 6 and len(set(sessions)) == 3
    for session in set(sessions):
        assert sessions.count(session) == 2
        assert len(session) == 36 and session[14] == "4"


def test_the_distinct_id_is_the_session_id_and_posthog_keeps_no_profile(
    env, home, project, collector
):
    run_host(host_code(), env, cwd=project)
    (event,) = collector.wait_for_events(1)
    assert wait_for_senders(home) == []

    assert event["distinct_id"] == event["properties"]["session_id"]
    assert event["properties"]["$process_person_profile"] is False
    assert event["properties"]["$geoip_disable"] is True


def test_no_host_user_or_home_is_sent(env, home, project, collector):
    run_host(host_code("run", [str(home), getpass.getuser()]), env, cwd=project)
    (event,) = collector.wait_for_events(1)
    assert wait_for_senders(home) == []

    sent = json.dumps(event)
    for private in (socket.gethostname(), getpass.getuser(), str(home), str(project)):
        assert private not in sent, private


def test_telemetry_keeps_no_identifier_on_disk(env, home, project, collector):
    run_host(host_code(), env, cwd=project)
    (event,) = collector.wait_for_events(1)
    assert wait_for_senders(home) == []

    names = set(files_under(home))
    assert names <= {
        ".visivo",
        ".visivo/telemetry.db",
        ".visivo/telemetry.db-wal",
        ".visivo/telemetry.db-shm",
        ".visivo/telemetry.lock",
        ".visivo/telemetry.wake",
    }, names
    wake = home / ".visivo" / "telemetry.wake"
    assert not wake.exists() or stat.S_ISFIFO(wake.lstat().st_mode)  # a FIFO holds nothing
    assert spool_rows(home) == []
    state = json.dumps(spool_state(home))
    assert event["properties"]["session_id"] not in state
    assert event["distinct_id"] not in state


def test_nothing_at_all_is_created_when_telemetry_is_off(home, project):
    for opt_out in ({"VISIVO_TELEMETRY_DISABLED": "1"}, {"DO_NOT_TRACK": "1"}):
        result, _ = run_host(TWO_COMMANDS, clean_env(home, **opt_out), cwd=project)

        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert files_under(home) == [] and files_under(project) == []


def test_the_sender_never_sends_back_a_cookie(env, home, project, collector):
    """The receiver sets a sticky-session cookie on every answer (as a load balancer may);
    returning it would link batches from different sessions, so the sender keeps none."""
    seed_spool(home, 250)
    run_host(host_code(), env, cwd=project)
    collector.wait_for_events(251)
    assert wait_for_senders(home) == []

    requests = collector.requests()
    assert len(requests) >= 3, "one sender should have drained several batches"
    assert [r["status"] for r in requests] == [200] * len(requests)
    assert [r["cookie"] for r in requests] == [None] * len(requests)
