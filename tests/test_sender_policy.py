"""The drain's retry, backoff and split policy, driven through a scripted fake transport.

The only place a fake stands in for the network: the spool is a real SQLite file, the drain is
the real one; the transport answers from a script so each rule is checked exactly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from helpers import spool_path
from reliability_support import seed_spool

from visivo_telemetry import _spool as spool
from visivo_telemetry._sender import drain
from visivo_telemetry._sender.drain import Drain, Limits
from visivo_telemetry._sender.transport import Response, TransportError

Answer = Callable[[list[dict]], Response]


class ScriptedTransport:
    """Answers each POST with `answer(batch)`; keeps every batch it was given."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.batches: list[list[dict]] = []

    def post(self, url: str, body: bytes) -> Response:
        batch = json.loads(body)["batch"]
        self.batches.append(batch)
        return self.answer(batch)

    def close(self) -> None:
        """Nothing to release."""


def always(status: int, retry_after: str | None = None) -> Answer:
    return lambda batch: Response(status, retry_after)


def refuse(batch: list[dict]) -> Response:
    raise TransportError("ConnectError")


@pytest.fixture
def conn(home: Path) -> Iterator[sqlite3.Connection]:
    """A real spool in the test's HOME."""
    connection = spool.connect(str(spool_path(home)))
    yield connection
    connection.close()


def drain_with(conn: sqlite3.Connection, home: Path, answer: Answer, **kw) -> tuple:
    transport = ScriptedTransport(answer)
    outcome = Drain(conn, transport, respect_backoff=False, **kw).run()
    return outcome, transport


def state(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM state"))


def waiting(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return list(conn.execute("SELECT uuid, attempts FROM events ORDER BY id"))


def test_a_2xx_deletes_exactly_what_was_sent_in_batches_of_100(home, conn):
    uuids = seed_spool(home, 250)
    outcome, transport = drain_with(conn, home, always(200))
    assert [len(b) for b in transport.batches] == [100, 100, 50]
    assert [e["uuid"] for b in transport.batches for e in b] == uuids
    assert outcome.sent == 250 and outcome.stopped_because == "empty"
    assert waiting(conn) == []
    assert state(conn)["last_success_at"]


@pytest.mark.parametrize("answer", [always(500), always(503), always(429), refuse])
def test_a_retryable_failure_keeps_every_row_and_backs_off(home, conn, answer):
    seed_spool(home, 150)
    before = time.time()
    outcome, transport = drain_with(conn, home, answer)
    assert len(transport.batches) == 1, "the sender stops at the first failure"
    assert outcome.stopped_because == "failed" and outcome.sent == 0
    rows = waiting(conn)
    assert len(rows) == 150
    assert [a for _, a in rows] == [1] * 100 + [0] * 50
    assert (
        conn.execute("SELECT COUNT(*) FROM events WHERE leased_until IS NOT NULL").fetchone()[0]
        == 0
    )
    next_at = float(state(conn)["next_attempt_at"])
    assert before + 1.0 <= next_at <= time.time() + 2.0
    assert not spool.backoff_allows(conn)


def test_backoff_grows_exponentially_with_jitter_up_to_an_hour():
    for failures in range(1, 30):
        ceiling = min(3600.0, 2.0 * 2 ** (failures - 1))
        delays = [drain.backoff_delay(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        if failures <= 10:
            assert len(set(delays)) > 1, "no jitter"
    assert drain.backoff_delay(1) <= 2.0
    assert drain.backoff_delay(40) <= 3600.0


def test_consecutive_failures_are_counted_and_a_success_resets_them(home, conn):
    seed_spool(home, 3)
    for expected in (1, 2, 3):
        drain_with(conn, home, always(503))
        assert state(conn)["failures"] == str(expected)
    drain_with(conn, home, always(200))
    assert state(conn)["failures"] == "0" and state(conn)["next_attempt_at"] is None
    assert spool.backoff_allows(conn)


@pytest.mark.parametrize(
    ("from_now_s", "allows"),
    [(3600.0, False), (86_000.0, False), (2 * 86_400.0, True), (1e12, True), (-1.0, True)],
)
def test_a_next_attempt_beyond_a_day_never_holds_delivery_back(conn, from_now_s, allows):
    """No failure asks to wait more than a day (`Retry-After` is capped there): a later time is
    a clock that jumped or an edited spool, and must not stop automatic delivery for good."""
    spool.set_state(conn, spool.NEXT_ATTEMPT_AT, f"{time.time() + from_now_s:.3f}")
    assert spool.backoff_allows(conn) is allows


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(home, conn, status):
    seed_spool(home, 2)
    before = time.time()
    drain_with(conn, home, always(status, "120"))
    next_at = float(state(conn)["next_attempt_at"])
    assert before + 119 <= next_at <= time.time() + 121
    assert state(conn)["last_error"] == f"http_{status}"


def test_retry_after_as_an_http_date_is_honoured(home, conn):
    seed_spool(home, 1)
    drain_with(conn, home, always(429, formatdate(time.time() + 600, usegmt=True)))
    assert 590 <= float(state(conn)["next_attempt_at"]) - time.time() <= 601


def test_a_garbage_retry_after_falls_back_to_exponential_backoff(home, conn):
    seed_spool(home, 1)
    drain_with(conn, home, always(503, "soon, maybe"))
    assert 0 < float(state(conn)["next_attempt_at"]) - time.time() <= 2.0


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_waits_an_hour_and_keeps_the_events(home, conn, status):
    seed_spool(home, 5)
    drain_with(conn, home, always(status))
    assert len(waiting(conn)) == 5
    assert 3590 <= float(state(conn)["next_attempt_at"]) - time.time() <= 3601


def test_a_413_splits_the_batch_until_it_fits(home, conn):
    uuids = seed_spool(home, 100)

    def at_most_7(batch: list[dict]) -> Response:
        return Response(413 if len(batch) > 7 else 200)

    outcome, transport = drain_with(conn, home, at_most_7)
    assert outcome.sent == 100 and outcome.dropped == 0
    assert waiting(conn) == []
    accepted = [batch for batch in transport.batches if len(batch) <= 7]
    delivered = [e["uuid"] for batch in accepted for e in batch]
    assert sorted(delivered) == sorted(uuids), "each event accepted exactly once"
    assert max(len(batch) for batch in accepted) <= 7


def test_one_event_too_large_even_alone_is_dropped_and_counted(home, conn):
    uuids = seed_spool(home, 20)
    big = uuids[5]

    def too_large(batch: list[dict]) -> Response:
        return Response(413 if any(e["uuid"] == big for e in batch) else 200)

    outcome, _ = drain_with(conn, home, too_large)
    assert outcome.sent == 19 and outcome.dropped == 1
    assert state(conn)["dropped_too_large"] == "1"


def test_a_400_isolates_and_drops_only_the_offending_events(home, conn):
    uuids = seed_spool(home, 100)
    bad = {uuids[3], uuids[77]}
    sent: list[str] = []

    def reject_bad(batch: list[dict]) -> Response:
        if any(e["uuid"] in bad for e in batch):
            return Response(400)
        sent.extend(e["uuid"] for e in batch)
        return Response(200)

    outcome, transport = drain_with(conn, home, reject_bad)
    assert sorted(sent) == sorted(set(uuids) - bad)
    assert outcome.dropped == 2 and state(conn)["dropped_rejected"] == "2"
    assert waiting(conn) == []
    assert len(transport.batches) <= drain.MAX_REQUESTS_PER_BATCH


def test_a_receiver_that_rejects_everything_never_empties_the_queue(home, conn):
    seed_spool(home, 250)
    outcome, transport = drain_with(conn, home, always(400))
    assert outcome.dropped == 0 and outcome.stopped_because == "failed"
    assert len(waiting(conn)) == 250
    assert len(transport.batches) <= drain.MAX_REQUESTS_PER_BATCH
    assert state(conn)["last_error"] == "http_400"
    assert "dropped_rejected" not in state(conn)


def test_a_single_event_rejected_alone_is_retried_not_dropped(home, conn):
    seed_spool(home, 1)
    outcome, _ = drain_with(conn, home, always(400))
    assert outcome.dropped == 0 and waiting(conn)[0][1] == 1


def test_a_failure_in_the_middle_of_a_split_keeps_what_was_not_sent(home, conn):
    uuids = seed_spool(home, 100)
    calls = iter(range(1000))

    def flaky(batch: list[dict]) -> Response:
        n = next(calls)
        if n == 0:
            return Response(413)
        if n == 1:
            return Response(200)
        raise TransportError("ReadTimeout")

    outcome, _ = drain_with(conn, home, flaky)
    assert outcome.sent == 50
    kept = [u for u, _ in waiting(conn)]
    assert kept == uuids[50:]
    assert (
        conn.execute("SELECT COUNT(*) FROM events WHERE leased_until IS NOT NULL").fetchone()[0]
        == 0
    )


@pytest.mark.parametrize("answer", [always(503), always(500), refuse])
def test_a_receiver_that_refuses_everything_never_empties_the_spool(home, conn, answer):
    """The README's promise: failures alone drop nothing; only the age and row caps bound it."""
    uuids = seed_spool(home, 3)
    conn.execute("UPDATE events SET attempts = 100000")
    for _ in range(5):
        outcome, _ = drain_with(conn, home, answer)
        assert outcome.stopped_because == "failed" and outcome.dropped == 0
    assert [u for u, _ in waiting(conn)] == uuids
    assert all(attempts == 100005 for _, attempts in waiting(conn))
    assert not any(spool.counters(state(conn)).values())
    outcome, transport = drain_with(conn, home, always(200))
    assert outcome.sent == 3 and [e["uuid"] for e in transport.batches[0]] == uuids


def test_leases_of_a_dead_sender_are_void_for_the_lock_holder(home, conn):
    seed_spool(home, 10)
    conn.execute("UPDATE events SET leased_until = ?", (time.time() + 3600,))
    outcome, _ = drain_with(conn, home, always(200))
    assert outcome.sent == 10


def test_invalid_rows_are_dropped_before_sending_and_counted(home, conn):
    seed_spool(home, 3)
    conn.execute("""UPDATE events SET properties = '{"hostname": "mine"}' WHERE id = 2""")
    outcome, transport = drain_with(conn, home, always(200))
    assert outcome.sent == 2 and state(conn)["dropped_invalid"] == "1"
    assert all("hostname" not in json.dumps(b) for b in transport.batches)


def test_the_row_and_age_caps_drop_the_oldest_first(home, conn):
    old = seed_spool(home, 5, age_s=31 * 86_400)
    kept = seed_spool(home, 20)
    dropped = drain.enforce_limits(conn, Limits(max_rows=15))
    assert dropped == 10
    assert [u for u, _ in waiting(conn)] == kept[5:]
    assert state(conn)["dropped_age"] == "5" and state(conn)["dropped_rows"] == "5"
    assert not set(old) & {u for u, _ in waiting(conn)}


def test_isolating_many_bad_events_is_bounded_and_keeps_the_rest(home, conn):
    uuids = seed_spool(home, 100)
    bad = set(uuids[::3])

    def reject_bad(batch: list[dict]) -> Response:
        return Response(400 if any(e["uuid"] in bad for e in batch) else 200)

    outcome, transport = drain_with(conn, home, reject_bad)
    assert len(transport.batches) == drain.MAX_REQUESTS_PER_BATCH
    assert outcome.stopped_because == "failed" and outcome.sent > 0
    assert state(conn)["last_error"] == "split-budget"
    assert outcome.sent + outcome.dropped + len(waiting(conn)) == 100
    assert outcome.dropped == int(state(conn)["dropped_rejected"])
