"""Drain the spool: claim a batch, validate it, POST it, delete it only after a 2xx.

The caller holds the sender lock, so no other drainer is alive: leases left behind by a killed
sender are void at once. Failures keep the rows, count an attempt, and persist a backoff in the
spool so an offline laptop does not retry on every command.
"""

from __future__ import annotations

import enum
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from visivo_telemetry import _destination as destination
from visivo_telemetry import _spool as spool
from visivo_telemetry._events import Row, from_newer_library, iso_utc, part_body, wire_json
from visivo_telemetry._precedence import decide
from visivo_telemetry._tuning import BACKOFF_MAX_S, BATCH_SIZE, LEASE_S, LONGEST_WAIT_S

from .transport import Response, Transport, TransportError

MAX_ROWS = 10_000
MAX_AGE_DAYS = 30
BACKOFF_BASE_S = 2.0
RETRY_AFTER_MAX_S = LONGEST_WAIT_S
AUTH_BACKOFF_S = 3600.0
MAX_REQUESTS_PER_BATCH = 32
"""Requests one claimed batch may cost while bisecting a 400/413 (one bad event in 100: ~14)."""
SPLIT_STATUSES = {413: "too_large", 400: "rejected"}
"""Answers that mean "something in this batch": split it; one event rejected alone is dropped
(counted under this drop reason)."""
DROPPED = {
    "invalid": "it fails the allowlist, cannot be read within the size and depth limits, or "
    "names no destination it may be sent to",
    "rejected": "the receiver rejected it alone (400)",
    "too_large": "the receiver found it too large alone (413)",
    "age": "older than the spool's age cap",
    "rows": "over the spool's row cap",
    "attempts": "too many failed attempts",
}
"""Why an event is dropped, per drop reason, in words (debug mode's `flush` prints them)."""
CHECKPOINT_BUSY_MS = 50
"""How long the final WAL checkpoint may hold hosts' writes back while it waits for readers."""


class Stop(str, enum.Enum):
    """Why a sender stopped; the value is what `last_error` and tests read."""

    EMPTY = "empty"
    BUSY = "busy"
    """Another sender holds the lock (it drains instead)."""
    OPTED_OUT = "opted-out"
    NO_API_KEY = "no-api-key"
    REFUSED_HOST = "refused-host"
    BACKOFF = "backoff"
    DEADLINE = "deadline"
    FAILED = "failed"
    CORRUPT = "corrupt"
    UNSAFE_LOCK = "unsafe-lock"
    """The lock file is a link, a folder or a device: never opened, nothing sent."""

    def __str__(self) -> str:
        return self.value


class Outcome(NamedTuple):
    """What one drain (or one sender's drains together) did, for `flush` and tests."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    stopped_because: Stop = Stop.EMPTY

    def then(self, later: Outcome) -> Outcome:
        """Both drains' counts, stopped for the later one's reason."""
        return Outcome(
            self.sent + later.sent,
            self.failed + later.failed,
            self.dropped + later.dropped,
            later.stopped_because,
        )


class Failure(NamedTuple):
    """Why a send failed (`http_503`, `timeout`…: a key of `_failures.HINTS`), any
    `Retry-After` in seconds, and the cause in one line for `status`."""

    error: str
    retry_after: float | None = None
    detail: str = ""


class Batch(NamedTuple):
    """Claimed events bound for one destination, with their wire JSON."""

    settings: destination.Settings | None
    valid: list[tuple[Row, str]]


Posted = tuple[bytes, Callable[[], Response]]
"""A POST under way: the body sent, and a call that waits for its answer."""


class Background:
    """One call on a thread of its own, its result (or exception) collected by `result()`.

    A thread, not `concurrent.futures`: importing that costs every sender about 5% of its CPU
    for one call at a time, and `threading` is loaded anyway."""

    def __init__(self, call: Callable[..., Response], *args: object) -> None:
        self._outcome: tuple[Response | None, BaseException | None] = (None, None)
        self._thread = threading.Thread(target=self._run, args=(call, args), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[..., Response], args: tuple[object, ...]) -> None:
        try:
            self._outcome = (call(*args), None)
        except BaseException as error:  # handed to whoever asks for the result
            self._outcome = (None, error)

    def join(self) -> None:
        self._thread.join()

    def result(self) -> Response:
        self._thread.join()
        answer, error = self._outcome
        if error is not None:
            raise error
        assert answer is not None
        return answer


class Split:
    """One claimed batch being delivered, bisected on 400/413 to isolate the events at fault."""

    def __init__(self, part: list[tuple[Row, str]]) -> None:
        self.pending = [part]
        self.accepted = 0
        self.rejected: list[tuple[Row, int]] = []
        self.requests = 0


class Limits(NamedTuple):
    """Bounds on the spool; oldest events are dropped first.

    No cap on failed attempts: a receiver that refuses everything keeps the events until the age
    or row cap, since a failure says nothing about the event (capture's 400s are isolated and
    dropped one by one, under `rejected`).
    """

    max_rows: int = MAX_ROWS
    max_age_days: float = MAX_AGE_DAYS


DEFAULT_LIMITS = Limits()


def enforce_limits(conn: sqlite3.Connection, limits: Limits, now: float | None = None) -> int:
    """Drop events over the age and row caps; counted in state. Returns the total."""
    now = time.time() if now is None else now
    cutoff = iso_utc(now - limits.max_age_days * 86_400)
    return spool.drop_over_limits(conn, cutoff, limits.max_rows)


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or HTTP-date), capped at a day."""
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - (
                time.time() if now is None else now
            )
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def backoff_delay(failures: int, retry_after: float | None = None) -> float:
    """Exponential from 1-2 s up to an hour, jittered over its upper half; `Retry-After` wins."""
    if retry_after is not None:
        return retry_after
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(max(failures - 1, 0), 20))
    return ceiling / 2 + random.random() * ceiling / 2


def failure_of(answer: Response) -> Failure:
    """A failed answer as (error, Retry-After seconds); 401/403 wait an hour unless told."""
    retry_after = retry_after_seconds(answer.retry_after)
    if answer.status in (401, 403) and retry_after is None:
        retry_after = AUTH_BACKOFF_S
    return Failure(f"http_{answer.status}", retry_after)


class Drain:
    """One drain of the spool by the lock holder."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        transport: Transport,
        *,
        respect_backoff: bool = True,
        deadline: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        progress: Callable[[int, int], None] | None = None,
        env: dict[str, str] | None = None,
        explain: Callable[[str], None] | None = None,
    ) -> None:
        """`explain(line)` is told which events are dropped and why (debug mode's `flush`)."""
        self.conn = conn
        self.transport = transport
        self.respect_backoff = respect_backoff
        self.deadline = deadline
        self.limits = limits
        self.progress = progress
        self.explain = explain
        self.env = env
        self.sent = self.failed = self.dropped = 0
        self._posting: Background | None = None
        self._backoff_cleared = False

    def run(self) -> Outcome:
        """Drain until empty, a failure, the deadline, or an opt-out.

        On `Stop.OPTED_OUT` the caller, who opened the connection, closes it and purges.
        """
        spool.void_leases(self.conn)
        self.dropped += enforce_limits(self.conn, self.limits)
        try:
            reason = self._loop()
        finally:
            if self._posting is not None:
                self._posting.join()
        if reason is not Stop.OPTED_OUT:
            spool.void_leases(self.conn)
            spool.checkpoint(self.conn, CHECKPOINT_BUSY_MS)
        return Outcome(self.sent, self.failed, self.dropped, reason)

    def _loop(self) -> Stop:
        """Claim and send batch after batch; the reason it stopped."""
        ahead: Batch | Stop | None = None
        while True:
            if not decide(None, self.env).enabled:
                return Stop.OPTED_OUT
            if self.respect_backoff and not spool.backoff_allows(self.conn):
                return Stop.BACKOFF
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return Stop.DEADLINE
            batch = self._claim_batch() if ahead is None else ahead
            ahead = None
            if batch is None or isinstance(batch, Stop):
                return batch or Stop.EMPTY
            if not batch.valid:
                continue
            answer = self._post_in_background(batch.settings, batch.valid)
            ahead = self._claim_batch()
            if not self._deliver(batch.valid, batch.settings, answer):
                return Stop.FAILED
            if self.progress is not None:
                self.progress(self.sent, self.failed)

    def _claim_batch(self) -> Batch | Stop | None:
        """The next batch, all bound for one destination, validated (invalid rows dropped);
        None when the spool is empty; a `Stop` when an older version's rows have nowhere to go.

        Each event goes where its recorder's settings said (`destination.recorded`); events an
        older version recorded carry none and go where the application and the user say now.
        """
        (api_key, host), rows = spool.claim(self.conn, BATCH_SIZE, LEASE_S, time.time())
        if not rows:
            return None
        if api_key is None and host is None:
            settings = destination.settings(self.env, *spool.destination(self.conn))
            for error, stop in (
                (settings.key_error, Stop.NO_API_KEY),
                (settings.host_error, Stop.REFUSED_HOST),
            ):
                if error:
                    spool.set_state(self.conn, spool.LAST_ERROR, stop.value)
                    return stop
            return Batch(settings, self._validated(rows))
        found = destination.recorded(api_key, host)
        if found is None:
            self._drop(rows, "invalid")
            return Batch(None, [])
        return Batch(found, self._validated(rows))

    def _post_in_background(
        self, settings: destination.Settings, part: list[tuple[Row, str]]
    ) -> Posted:
        """Start POSTing a whole batch; the next batch is validated while the receiver works."""
        body = part_body(settings.api_key, part)
        self._posting = Background(self.transport.post, settings.batch_url, body)
        return body, self._posting.result

    def _deliver(
        self,
        valid: list[tuple[Row, str]],
        settings: destination.Settings,
        answer: Posted | None = None,
    ) -> bool:
        """Conclude one batch whose POST may already be under way; False after a failure."""
        split = Split(valid)
        failure: Failure | None = None
        failed_part: list[tuple[Row, str]] = []
        while split.pending and failure is None and split.requests < MAX_REQUESTS_PER_BATCH:
            failed_part = split.pending.pop()
            failure = self._post(failed_part, settings, split, answer)
            answer = None
        return self._conclude(split, failed_part if failure else [], failure)

    def _validated(self, rows: list[Row]) -> list[tuple[Row, str]]:
        """The rows that pass the allowlist again, with their wire JSON; the rest are dropped,
        except those a newer version of this library wrote: they stay leased (so this drain
        does not claim them again) for a sender that knows their format."""
        valid: list[tuple[Row, str]] = []
        invalid: list[Row] = []
        for row in rows:
            item = wire_json(row)
            if item is not None:
                valid.append((row, item))
            elif not from_newer_library(row):
                invalid.append(row)
        self._drop(invalid, "invalid")
        return valid

    def _post(
        self,
        part: list[tuple[Row, str]],
        settings: destination.Settings,
        split: Split,
        started: Posted | None = None,
    ) -> Failure | None:
        """POST one part: delete it on 2xx (keeping what was sent), bisect it on 400/413; the
        failure otherwise."""
        split.requests += 1
        try:
            if started is not None:
                body, answer_of = started
                answer = answer_of()
            else:
                body = part_body(settings.api_key, part)
                answer = self.transport.post(settings.batch_url, body)
        except TransportError as error:
            return Failure(error.kind, None, error.detail)
        rows = [row for row, _ in part]
        if 200 <= answer.status < 300:
            spool.delivered(self.conn, rows, settings.batch_url, body)
            self.sent += len(rows)
            split.accepted += len(rows)
            return None
        if answer.status not in SPLIT_STATUSES:
            return failure_of(answer)
        if len(part) == 1:
            split.rejected.append((rows[0], answer.status))
        else:
            half = len(part) // 2
            split.pending += [part[half:], part[:half]]
        return None

    def _conclude(
        self, split: Split, failed_part: list[tuple[Row, str]], failure: Failure | None
    ) -> bool:
        """Drop events rejected alone only if the receiver took others; else keep and back off."""
        kept = [row for row, _ in split.rejected]
        if split.accepted:
            self._record_success()
            for status, reason in SPLIT_STATUSES.items():
                self._drop([row for row, why in split.rejected if why == status], reason)
            kept = []
        elif kept and failure is None:
            failure = Failure(f"http_{split.rejected[0][1]}")
        if failure is None and split.pending:
            failure = Failure("split-budget")
        if failure is None:
            return True
        self._fail([row for row, _ in failed_part] + kept, failure)
        return False

    def _record_success(self) -> None:
        """Clear the backoff at the first success of a drain; later ones only move the clock."""
        spool.record_success(self.conn, not self._backoff_cleared, iso_utc())
        self._backoff_cleared = True

    def _drop(self, rows: list[Row], reason: str) -> None:
        if self.explain is not None:
            for row in rows:
                uuid = row.uuid if isinstance(row.uuid, str) else "no readable uuid"
                self.explain(f"dropped {row.table} row {row.id} ({uuid[:36]}): {DROPPED[reason]}")
        self.dropped += spool.drop(self.conn, rows, reason)

    def _fail(self, rows: list[Row], failure: Failure) -> None:
        """Keep the rows for later, count the attempt, persist when to try again."""
        self.failed += len(rows)
        record_failure(self.conn, rows, failure)


def record_failure(conn: sqlite3.Connection, rows: list[Row], failure: Failure) -> None:
    """Give `rows` back and persist the failure and when to try again (the backoff policy)."""
    spool.record_failure(
        conn,
        rows,
        failure.error,
        iso_utc(),
        lambda failures: backoff_delay(failures, failure.retry_after),
        failure.detail,
    )
