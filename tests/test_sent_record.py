"""The local record of what was sent: exactly what the receiver got, for 30 days, bounded, and
gone with every opt-out (`visivo-telemetry show --sent`)."""

from __future__ import annotations

import json
import sqlite3
import time

from helpers import (
    clean_env,
    down_receiver,
    host_code,
    run_host,
    spool_path,
    vt,
    wait_for_senders_to_exit,
)

from visivo_telemetry import _spool as spool
from visivo_telemetry._events import iso_utc


def spool_three(home, project, receiver=None) -> None:
    """Three events that wait: their receiver (`receiver`, or the dead default) is down."""
    env = clean_env(home, **({"VISIVO_POSTHOG_HOST": receiver.url} if receiver else {}))
    for command in ("run", "compile", "serve"):
        result, _ = run_host(host_code(command), env, cwd=project)
        assert result.returncode == 0
    assert wait_for_senders_to_exit(home) == []


def test_show_sent_prints_exactly_what_the_receiver_got(home, project, tmp_path):
    collector = down_receiver(tmp_path / "r.db")
    spool_three(home, project, collector)
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
    assert vt("show", "--sent", env=env).stdout == "", "nothing was sent yet"

    with collector:
        check_what_was_sent(collector, home, project, env)


def check_what_was_sent(collector, home, project, env) -> None:
    assert vt("flush", env=env).returncode == 0
    result, _ = run_host(host_code("test"), env, cwd=project)  # one more, by a detached sender
    assert result.returncode == 0 and wait_for_senders_to_exit(home) == []

    got = [request["text"] for request in collector.received() if request["status"] == 200]
    assert len(got) == 2
    raw = vt("show", "--sent", "--raw", env=env)
    assert raw.returncode == 0 and raw.stdout.splitlines() == got

    listed = json.loads(vt("show", "--sent", "--json", env=env).stdout)
    assert [entry["body"] for entry in listed] == [json.loads(text) for text in got]
    assert {entry["url"] for entry in listed} == {collector.url + "/batch/"}
    human = vt("show", "--sent", "--limit", "1", env=env).stdout
    assert human.startswith("# sent ") and f"to {collector.url}/batch/: 1 event\n" in human


def test_what_failed_or_still_waits_is_not_in_the_record(home, project):
    spool_three(home, project)
    env = clean_env(home)
    assert vt("flush", env=env).returncode == 1
    assert json.loads(vt("show", "--sent", "--json", env=env).stdout) == []


def test_every_opt_out_deletes_the_record(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
    result, _ = run_host(host_code(), env, cwd=project)
    assert result.returncode == 0 and wait_for_senders_to_exit(home) == []
    assert len(json.loads(vt("show", "--sent", "--json", env=env).stdout)) == 1

    assert vt("disable", env=env).returncode == 0
    assert not spool_path(home).exists()
    shown = vt("show", "--sent", env=env)
    assert shown.stdout == "" and "nothing was sent" in shown.stderr
    assert json.loads(vt("show", "--sent", "--json", env=env).stdout) == []


def record_of(conn) -> list[tuple[str, str, str]]:
    return conn.execute("SELECT sent_at, url, body FROM sent ORDER BY id").fetchall()


def test_the_record_keeps_30_days_and_its_caps_dropping_the_oldest(tmp_path):
    conn = spool.connect(str(tmp_path / "telemetry.db"))
    old = iso_utc(time.time() - 31 * 86_400)
    conn.execute("INSERT INTO sent (sent_at, url, body) VALUES (?, 'u', 'old')", (old,))
    spool.delivered(conn, [], "https://x/batch/", b'{"n": 0}')
    assert [body for *_, body in record_of(conn)] == ['{"n": 0}'], "31 days old: dropped"

    for n in range(1, spool.SENT_MAX_BATCHES + 5):
        spool.delivered(conn, [], "https://x/batch/", json.dumps({"n": n}).encode())
    bodies = [json.loads(body)["n"] for *_, body in record_of(conn)]
    assert len(bodies) == spool.SENT_MAX_BATCHES
    assert bodies[-1] == spool.SENT_MAX_BATCHES + 4 and bodies == sorted(bodies)

    big = b'{"pad": "' + b"x" * (spool.SENT_MAX_BYTES // 3) + b'"}'
    for _ in range(4):
        spool.delivered(conn, [], "https://x/batch/", big)
    kept = record_of(conn)
    assert sum(len(body.encode()) for *_, body in kept) <= spool.SENT_MAX_BYTES
    assert [body.encode() for *_, body in kept] == [big, big], "the newest kept, whole"
    conn.close()


def test_a_record_someone_edited_is_shown_not_crashed_on(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
    result, _ = run_host(host_code(), env, cwd=project)
    assert result.returncode == 0 and wait_for_senders_to_exit(home) == []
    conn = sqlite3.connect(spool_path(home))
    conn.execute("INSERT INTO sent (sent_at, url, body) VALUES ('x', 'y', 'not json {')")
    conn.commit()
    conn.close()
    shown = vt("show", "--sent", env=env)
    assert shown.returncode == 0 and '"not json {"' in shown.stdout
    assert vt("show", "--sent", "--json", env=env).returncode == 0
