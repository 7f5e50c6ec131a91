"""The SQLite spool under `~/.visivo`: where events wait until the sender delivers them.

Standard-library `sqlite3` only, so appending costs a host a fraction of a millisecond. The
file is private (directory 0700, file 0600, never through a symlink), in WAL mode so hosts keep
appending while the sender drains, and it moves itself aside when corrupt instead of failing.
"""

from __future__ import annotations

import os
import stat
import time

from .events import Event, Row

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from types import TracebackType

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    uuid TEXT UNIQUE NOT NULL,
    event TEXT NOT NULL,
    created_at TEXT NOT NULL,
    properties TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT
);
"""

SIDE_FILES = ("-wal", "-shm", "-journal")

ROW_COLUMNS = "id, uuid, event, created_at, properties"
"""The columns of `events.Row`, in its order."""

# Keys of the `state` table: what senders persist, and what hosts and `status` read.
NEXT_ATTEMPT_AT = "next_attempt_at"
FAILURES = "failures"
LAST_SUCCESS_AT = "last_success_at"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"
SENDER_SPAWNED_AT = "sender_spawned_at"
SENDER_STARTED_AT = "sender_started_at"
APP_KEY_STATE = "app_api_key"
APP_HOST_STATE = "app_host"

DROP_REASONS = ("age", "attempts", "rows", "invalid", "rejected", "too_large")
"""Why the sender dropped events; each has a counter `dropped_<reason>` in `state`."""


def counter_key(reason: str) -> str:
    """The `state` key counting events dropped for `reason` (one of `DROP_REASONS`)."""
    if reason not in DROP_REASONS:
        raise ValueError(reason)
    return f"dropped_{reason}"


class Transaction:
    """`with Transaction(conn):` one write transaction (`BEGIN IMMEDIATE`), undone on error.

    A small class rather than `contextlib.contextmanager`, whose import a cold host would pay.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is not None:
            self.conn.execute("ROLLBACK")
            return False
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return False


class UnsafeSpool(Exception):
    """The spool path is a symlink or not a regular file; we refuse to write through it."""


def _ensure_private_dir(directory: str) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)


def _ensure_private_file(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            os.close(os.open(path, flags, 0o600))
        except FileExistsError:
            info = os.lstat(path)
        else:
            return
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeSpool(path)


def move_aside(path: str) -> None:
    """Rename a corrupt spool to `telemetry.db.corrupt-<time>` and drop its WAL files."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    try:
        os.replace(path, f"{path}.corrupt-{stamp}")
    except OSError:
        pass
    for suffix in SIDE_FILES:
        try:
            os.remove(path + suffix)
        except OSError:
            pass


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA synchronous=NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")


def connect(path: str) -> sqlite3.Connection:
    """Open (creating privately if needed) the spool; a corrupt file is moved aside once."""
    import sqlite3  # here, not at the top: an opted-out host never pays for it

    _ensure_private_dir(os.path.dirname(path))
    for attempt in (1, 2):
        _ensure_private_file(path)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _prepare(conn)
            return conn
        except sqlite3.DatabaseError as error:
            conn.close()
            if attempt == 2 or not is_corruption(error):
                raise
            move_aside(path)
    raise AssertionError("unreachable")


def open_existing(path: str) -> sqlite3.Connection | None:
    """The spool if it exists, never creating it (for readers: `status`, the sender's re-check)."""
    import sqlite3

    if not os.path.exists(path):
        return None
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)


def is_corruption(error: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged (never a full disk, a lock or a permission)."""
    message = str(error).lower()
    return "not a database" in message or "malformed" in message or "corrupt" in message


def append(conn: sqlite3.Connection, event: Event) -> None:
    """Add one event; it is durable in the WAL when this returns."""
    conn.execute(
        "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
        event,
    )


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def claim(conn: sqlite3.Connection, size: int, lease_s: float, now: float) -> list[Row]:
    """Lease the oldest unleased events for `lease_s`, in one write transaction."""
    with Transaction(conn):
        rows = [
            Row(*r)
            for r in conn.execute(
                f"SELECT {ROW_COLUMNS} FROM events "
                "WHERE leased_until IS NULL OR leased_until < ? ORDER BY id LIMIT ?",
                (now, size),
            )
        ]
        if rows:
            conn.execute(
                f"UPDATE events SET leased_until = ? WHERE id IN ({_placeholders(len(rows))})",
                (now + lease_s, *(r.id for r in rows)),
            )
    return rows


def newest(conn: sqlite3.Connection, limit: int | None = None) -> list[Row]:
    """The pending events, oldest first; only the `limit` newest when given (for `show`)."""
    sql = f"SELECT {ROW_COLUMNS} FROM events ORDER BY id DESC"
    rows = conn.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
    return [Row(*row) for row in reversed(rows.fetchall())]


def delete(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Remove delivered (or dropped) events."""
    if rows:
        conn.execute(
            f"DELETE FROM events WHERE id IN ({_placeholders(len(rows))})", [r.id for r in rows]
        )


def drop(conn: sqlite3.Connection, rows: list[Row], reason: str) -> int:
    """Remove events that will never be sent, counted under `reason`; how many."""
    if rows:
        delete(conn, rows)
        add_to_counter(conn, counter_key(reason), len(rows))
    return len(rows)


def release(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Give back events that failed to send: one more attempt counted, lease released."""
    conn.execute(
        "UPDATE events SET attempts = attempts + 1, leased_until = NULL "
        f"WHERE id IN ({_placeholders(len(rows))})",
        [r.id for r in rows],
    )


def void_leases(conn: sqlite3.Connection) -> None:
    """Release every lease: only the lock holder drains, so any lease belongs to a dead sender."""
    conn.execute("UPDATE events SET leased_until = NULL WHERE leased_until IS NOT NULL")


def drop_over_limits(
    conn: sqlite3.Connection, older_than: str, max_attempts: int, max_rows: int
) -> int:
    """Drop events created before `older_than`, tried `max_attempts` times, or beyond the newest
    `max_rows`; each counted under its reason. Returns the total."""
    dropped = 0
    with Transaction(conn):
        for reason, sql, params in (
            ("age", "DELETE FROM events WHERE created_at < ?", (older_than,)),
            ("attempts", "DELETE FROM events WHERE attempts >= ?", (max_attempts,)),
            (
                "rows",
                "DELETE FROM events WHERE id <= "
                "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (max_rows,),
            ),
        ):
            count = conn.execute(sql, params).rowcount
            add_to_counter(conn, counter_key(reason), count)
            dropped += count
    return dropped


def summary(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """How many events wait, and when the oldest was created."""
    count, oldest = conn.execute("SELECT COUNT(*), MIN(created_at) FROM events").fetchone()
    return count, oldest


def all_state(conn: sqlite3.Connection) -> dict[str, str]:
    """The whole `state` table (for `status`)."""
    return dict(conn.execute("SELECT key, value FROM state").fetchall())


def counters(state: dict[str, str]) -> dict[str, int]:
    """Dropped events by reason, from `all_state`."""
    return {reason: int(state.get(counter_key(reason)) or 0) for reason in DROP_REASONS}


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    """One value of the persisted state (backoff, last success, counters)."""
    row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_state(conn: sqlite3.Connection, key: str, value: object) -> None:
    """Persist one value of the state."""
    conn.execute(
        "INSERT INTO state (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, None if value is None else str(value)),
    )


def add_to_counter(conn: sqlite3.Connection, key: str, amount: int) -> None:
    """Add to a persisted counter, e.g. how many events were dropped by a cap."""
    if amount:
        current = get_state(conn, key)
        set_state(conn, key, int(current or 0) + amount)


def record_success(conn: sqlite3.Connection, clear_backoff: bool, now_iso: str) -> None:
    """Note a delivery; the first of a drain also clears the backoff."""
    with Transaction(conn):
        set_state(conn, LAST_SUCCESS_AT, now_iso)
        if clear_backoff:
            set_state(conn, FAILURES, 0)
            set_state(conn, NEXT_ATTEMPT_AT, None)


def record_failure(
    conn: sqlite3.Connection,
    rows: list[Row],
    error: str,
    now_iso: str,
    delay_after: Callable[[int], float],
) -> None:
    """Give `rows` back, count the failure in a row, and persist when to try again.

    `delay_after(failures)` is the sender's backoff policy, asked inside the transaction so
    that two failures never count the same number.
    """
    with Transaction(conn):
        failures = int(get_state(conn, FAILURES) or 0) + 1
        release(conn, rows)
        delay = delay_after(failures)
        set_state(conn, FAILURES, failures)
        set_state(conn, LAST_ERROR, error)
        set_state(conn, LAST_ERROR_AT, now_iso)
        set_state(conn, NEXT_ATTEMPT_AT, f"{time.time() + delay:.3f}")


def backoff_allows(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """False while a failed send's persisted backoff has not yet expired."""
    value = get_state(conn, NEXT_ATTEMPT_AT)
    if value is None:
        return True
    try:
        return float(value) <= (time.time() if now is None else now)
    except ValueError:
        return True


def destination(conn: sqlite3.Connection) -> tuple[str | None, str | None]:
    """The PostHog key and host of the application that last recorded here (None if unknown).

    A sender may be started by a process that never saw the application's code (`flush`,
    another host); it sends where the application that recorded the events said.
    """
    found = dict(
        conn.execute(
            "SELECT key, value FROM state WHERE key IN (?, ?)", (APP_KEY_STATE, APP_HOST_STATE)
        ).fetchall()
    )
    return found.get(APP_KEY_STATE), found.get(APP_HOST_STATE)


def remember_destination(conn: sqlite3.Connection, api_key: str | None, host: str | None) -> None:
    """Store the application's key and host for later senders; writes only when they change."""
    if api_key and destination(conn) != (api_key, host):
        set_state(conn, APP_KEY_STATE, api_key)
        set_state(conn, APP_HOST_STATE, host)


SPAWN_GRACE_S = 3.0
"""How long hosts trust a sender that was just started to take the lock and drain their rows."""


def _stamp(conn: sqlite3.Connection, key: str) -> float | None:
    try:
        return float(get_state(conn, key) or "")
    except ValueError:
        return None


def stamp(conn: sqlite3.Connection, key: str, when: float | None) -> None:
    """Persist a moment (`SENDER_SPAWNED_AT`, `SENDER_STARTED_AT`), or clear it with None."""
    set_state(conn, key, None if when is None else f"{when:.6f}")


def sender_starting(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether a sender started moments ago has yet to take the lock; it will drain our rows.

    A sender needs a few hundred milliseconds to import what it needs before it can take the
    lock, and commands run back to back would otherwise each start one of their own. Hosts
    stamp `sender_spawned_at` before starting one; every sender stamps `sender_started_at`
    just before it tries the lock (won or lost: either way the lock holder drains).
    """
    spawned = _stamp(conn, SENDER_SPAWNED_AT)
    if spawned is None:
        return False
    started = _stamp(conn, SENDER_STARTED_AT)
    age = (time.time() if now is None else now) - spawned
    return 0 <= age < SPAWN_GRACE_S and (started is None or started < spawned)


def has_unleased(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether any event is waiting and not held by a live sender's lease."""
    now = time.time() if now is None else now
    row = conn.execute(
        "SELECT 1 FROM events WHERE leased_until IS NULL OR leased_until < ? LIMIT 1", (now,)
    ).fetchone()
    return row is not None


def checkpoint(conn: sqlite3.Connection, busy_ms: int) -> None:
    """Fold the WAL back into the database and truncate it, holding writers back at most
    `busy_ms` while it waits for readers."""
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def purge(path: str) -> bool:
    """Remove the spool and its WAL files; True when something was removed. Never raises."""
    removed = False
    for suffix in ("", *SIDE_FILES):
        try:
            os.remove(path + suffix)
            removed = True
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return removed
