"""Drain the spool: claim a batch, validate it, POST it, delete it only after a 2xx.

The caller holds the sender lock, so no other drainer is alive: leases left behind by a killed
sender are void at once. Failures keep the rows, count an attempt, and persist a backoff in the
spool so an offline laptop does not retry on every command.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from visivo_telemetry import config, schema, spool
from visivo_telemetry.events import dumps, iso_utc, wire_item

from .transport import Response, Transport, TransportError

BATCH_SIZE = 100
LEASE_S = 120.0
MAX_ROWS = 10_000
MAX_AGE_DAYS = 30
MAX_ATTEMPTS = 100
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 3600.0
RETRY_AFTER_MAX_S = 86_400.0
AUTH_BACKOFF_S = 3600.0
MAX_REQUESTS_PER_BATCH = 32
"""Requests one claimed batch may cost while bisecting a 400/413 (one bad event in 100: ~14)."""
SPLIT_STATUSES = {413: "dropped_too_large", 400: "dropped_rejected"}
"""Answers that mean "something in this batch": split it; one event rejected alone is dropped."""
CHECKPOINT_BUSY_MS = 50
"""How long the final WAL checkpoint may hold hosts' writes back while it waits for readers."""


class Row(NamedTuple):
    id: int
    uuid: str
    event: str
    created_at: str
    properties: str


class Outcome(NamedTuple):
    """What one drain did, for `flush` to report and tests to check."""

    sent: int
    failed: int
    dropped: int
    stopped_because: str


Failure = tuple[str, "float | None"]
"""Why a send failed (`http_503`, `ConnectTimeout`…) and any `Retry-After`, in seconds."""


class Split:
    """One claimed batch being delivered, bisected on 400/413 to isolate the events at fault."""

    def __init__(self, part: list[tuple[Row, str]]) -> None:
        self.pending = [part]
        self.accepted = 0
        self.rejected: list[tuple[Row, int]] = []
        self.requests = 0


class Limits(NamedTuple):
    """Bounds on the spool; oldest events are dropped first."""

    max_rows: int = MAX_ROWS
    max_age_days: float = MAX_AGE_DAYS
    max_attempts: int = MAX_ATTEMPTS


DEFAULT_LIMITS = Limits()


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def void_leases(conn: sqlite3.Connection) -> None:
    """Release every lease: only the lock holder drains, so any lease belongs to a dead sender."""
    conn.execute("UPDATE events SET leased_until = NULL WHERE leased_until IS NOT NULL")


def enforce_limits(conn: sqlite3.Connection, limits: Limits, now: float | None = None) -> int:
    """Drop events over the age, attempts and row caps; counted in state. Returns the total."""
    now = time.time() if now is None else now
    cutoff = iso_utc(now - limits.max_age_days * 86_400)
    dropped = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for counter, sql, params in (
            ("dropped_age", "DELETE FROM events WHERE created_at < ?", (cutoff,)),
            ("dropped_attempts", "DELETE FROM events WHERE attempts >= ?", (limits.max_attempts,)),
            (
                "dropped_rows",
                "DELETE FROM events WHERE id <= "
                "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (limits.max_rows,),
            ),
        ):
            count = conn.execute(sql, params).rowcount
            spool.add_to_counter(conn, counter, count)
            dropped += count
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return dropped


def claim(conn: sqlite3.Connection, size: int = BATCH_SIZE, now: float | None = None) -> list[Row]:
    """Lease the oldest unleased events, in one write transaction."""
    now = time.time() if now is None else now
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = [
            Row(*r)
            for r in conn.execute(
                "SELECT id, uuid, event, created_at, properties FROM events "
                "WHERE leased_until IS NULL OR leased_until < ? ORDER BY id LIMIT ?",
                (now, size),
            )
        ]
        if rows:
            conn.execute(
                f"UPDATE events SET leased_until = ? WHERE id IN ({_placeholders(len(rows))})",
                (now + LEASE_S, *(r.id for r in rows)),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return rows


def wire_json(row: Row) -> str | None:
    """The batch item for a row, validated against the allowlist; None if invalid.

    PostHog's fixed controls are filled in when a row lacks them (a spool written by an
    earlier version of this library); a row holding any other value for one is refused.
    """
    if not schema.is_uuid(row.uuid) or not schema.is_timestamp(row.created_at):
        return None
    if len(row.properties) > schema.MAX_PROPERTIES_BYTES:
        return None
    try:
        properties = json.loads(row.properties)
    except ValueError:
        return None
    if not isinstance(properties, dict):
        return None
    for key, value in schema.POSTHOG_FIELDS.items():
        properties.setdefault(key, value)
    if not schema.is_valid(row.event, properties):
        return None
    # Re-encoded, never spliced: what leaves is exactly what was validated, even for a
    # tampered row whose text holds duplicate keys that json.loads would have hidden.
    return dumps(wire_item(row.event, row.uuid, row.created_at, properties))


HISTORICAL_AGE_S = 48 * 3600
"""Events all older than this go to PostHog's historical pipeline (`historical_migration`)."""


def is_backlog(rows: list[Row], now: float | None = None) -> bool:
    """Whether every event of a batch is over 48 hours old: a laptop that was offline."""
    cutoff = iso_utc((time.time() if now is None else now) - HISTORICAL_AGE_S)
    return bool(rows) and all(row.created_at < cutoff for row in rows)


def batch_body(api_key: str, items: list[str], historical: bool = False) -> bytes:
    """The PostHog `/batch/` body; `sent_at` lets PostHog correct this machine's clock skew."""
    head = {"api_key": api_key, "sent_at": iso_utc()}
    if historical:
        head["historical_migration"] = True
    return f'{dumps(head)[:-1]},"batch":[{",".join(items)}]}}'.encode()


def part_body(api_key: str, part: list[tuple[Row, str]]) -> bytes:
    """The body for one claimed batch (or one half of it while bisecting)."""
    rows = [row for row, _ in part]
    return batch_body(api_key, [item for _, item in part], is_backlog(rows))


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
    return f"http_{answer.status}", retry_after


def checkpoint(conn: sqlite3.Connection) -> None:
    """Fold the WAL back into the database and truncate it, without holding writers for long."""
    conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(spool.BUSY_TIMEOUT_S * 1000)}")


class Drain:
    """One drain of the spool by the lock holder."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        transport: Transport,
        db_path: str,
        *,
        respect_backoff: bool = True,
        deadline: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        progress: Callable[[int, int], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.conn = conn
        self.transport = transport
        self.db_path = db_path
        self.respect_backoff = respect_backoff
        self.deadline = deadline
        self.limits = limits
        self.progress = progress
        self.env = env
        self.sent = self.failed = self.dropped = 0
        self._poster: ThreadPoolExecutor | None = None
        self._backoff_cleared = False

    def _outcome(self, reason: str) -> Outcome:
        return Outcome(self.sent, self.failed, self.dropped, reason)

    def run(self) -> Outcome:
        """Drain until empty, a failure, the deadline, or an opt-out (which purges)."""
        spool.set_state(self.conn, "sender_started_at", f"{time.time():.6f}")
        void_leases(self.conn)
        self.dropped += enforce_limits(self.conn, self.limits)
        try:
            reason = self._loop()
        finally:
            if self._poster is not None:
                self._poster.shutdown(wait=True)
        if reason != "opted-out":
            void_leases(self.conn)
            checkpoint(self.conn)
        return self._outcome(reason)

    def _loop(self) -> str:
        """Claim and send batch after batch; the reason it stopped."""
        ahead: list[tuple[Row, str]] | None = None
        while True:
            decision = config.decide(None, self.env)
            if not decision.enabled:
                self.conn.close()
                spool.purge(self.db_path)
                return "opted-out"
            settings = config.settings(self.env, *spool.destination(self.conn))
            if settings.key_error:
                spool.set_state(self.conn, "last_error", "no-api-key")
                return "no-api-key"
            if settings.host_error:
                spool.set_state(self.conn, "last_error", "refused-host")
                return "refused-host"
            if self.respect_backoff and not spool.backoff_allows(self.conn):
                return "backoff"
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return "deadline"
            valid = self._claim_valid() if ahead is None else ahead
            if valid is None:
                return "empty"
            if not valid:
                ahead = None
                continue
            answer = self._post_in_background(settings, valid)
            ahead = self._claim_valid()
            if not self._deliver(valid, settings, answer):
                return "failed"
            if self.progress is not None:
                self.progress(self.sent, self.failed)

    def _claim_valid(self) -> list[tuple[Row, str]] | None:
        """The next batch, validated (invalid rows dropped); None when the spool is empty."""
        rows = claim(self.conn)
        return self._validated(rows) if rows else None

    def _post_in_background(
        self, settings: config.Settings, part: list[tuple[Row, str]]
    ) -> Callable[[], Response]:
        """Start POSTing a whole batch; the next batch is validated while the receiver works."""
        if self._poster is None:
            self._poster = ThreadPoolExecutor(max_workers=1)
        body = part_body(settings.api_key, part)
        return self._poster.submit(self.transport.post, settings.batch_url, body).result

    def _deliver(
        self,
        valid: list[tuple[Row, str]],
        settings: config.Settings,
        answer: Callable[[], Response] | None = None,
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
        """The rows that pass the allowlist again, with their wire JSON; the rest are dropped."""
        valid: list[tuple[Row, str]] = []
        invalid: list[Row] = []
        for row in rows:
            item = wire_json(row)
            if item is None:
                invalid.append(row)
            else:
                valid.append((row, item))
        self._drop(invalid, "dropped_invalid")
        return valid

    def _post(
        self,
        part: list[tuple[Row, str]],
        settings: config.Settings,
        split: Split,
        answer_of_started_post: Callable[[], Response] | None = None,
    ) -> Failure | None:
        """POST one part: delete it on 2xx, bisect it on 400/413; the failure otherwise."""
        split.requests += 1
        try:
            if answer_of_started_post is not None:
                answer = answer_of_started_post()
            else:
                answer = self.transport.post(settings.batch_url, part_body(settings.api_key, part))
        except TransportError as error:
            return str(error) or "TransportError", None
        rows = [row for row, _ in part]
        if 200 <= answer.status < 300:
            self._delete(rows)
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
            for status, counter in SPLIT_STATUSES.items():
                self._drop([row for row, why in split.rejected if why == status], counter)
            kept = []
        elif kept and failure is None:
            failure = (f"http_{split.rejected[0][1]}", None)
        if failure is None and split.pending:
            failure = ("split-budget", None)
        if failure is None:
            return True
        self._fail([row for row, _ in failed_part] + kept, *failure)
        return False

    def _record_success(self) -> None:
        """Clear the backoff at the first success of a drain; later ones only move the clock."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            spool.set_state(self.conn, "last_success_at", iso_utc())
            if not self._backoff_cleared:
                spool.set_state(self.conn, "failures", 0)
                spool.set_state(self.conn, "next_attempt_at", None)
                self._backoff_cleared = True
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _delete(self, rows: list[Row]) -> None:
        self.conn.execute(
            f"DELETE FROM events WHERE id IN ({_placeholders(len(rows))})", [r.id for r in rows]
        )

    def _drop(self, rows: list[Row], counter: str) -> None:
        if rows:
            self._delete(rows)
            spool.add_to_counter(self.conn, counter, len(rows))
            self.dropped += len(rows)

    def _fail(self, rows: list[Row], error: str, retry_after: float | None) -> None:
        """Keep the rows for later, count the attempt, persist when to try again."""
        self.failed += len(rows)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            failures = int(spool.get_state(self.conn, "failures") or 0) + 1
            self.conn.execute(
                "UPDATE events SET attempts = attempts + 1, leased_until = NULL "
                f"WHERE id IN ({_placeholders(len(rows))})",
                [r.id for r in rows],
            )
            delay = backoff_delay(failures, retry_after)
            spool.set_state(self.conn, "failures", failures)
            spool.set_state(self.conn, "last_error", error)
            spool.set_state(self.conn, "last_error_at", iso_utc())
            spool.set_state(self.conn, "next_attempt_at", f"{time.time() + delay:.3f}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
