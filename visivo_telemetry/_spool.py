"""The SQLite spool under `~/.visivo`: where events wait until the sender delivers them.

Standard-library `sqlite3` only, so appending costs a host a fraction of a millisecond. The
file is private (directory 0700, file 0600, never through a symlink), in WAL mode so hosts keep
appending while the sender drains, and it moves itself aside when corrupt instead of failing.
"""

from __future__ import annotations

import os
import stat
import time

from ._events import Event, Row, iso_utc, window_properties
from ._files import folder_refusal
from ._tuning import LONGEST_WAIT_S, SPAWN_GRACE_S

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from types import TracebackType

SCHEMA_VERSION = 3
"""1: `events` and `state`. 2: adds `request_windows` (coalesced API requests). 3: adds `sent`
(what was delivered, exactly as sent, for `show --sent`), and each event's destination: the
`api_key` and `host` its recorder's settings named (NULL: recorded by an older version)."""
DESTINATION_COLUMNS = ("api_key", "host")
BUSY_TIMEOUT_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    uuid TEXT UNIQUE NOT NULL,
    event TEXT NOT NULL,
    created_at TEXT NOT NULL,
    properties TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL,
    api_key TEXT,
    host TEXT
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS request_windows (
    id INTEGER PRIMARY KEY,
    window_key TEXT UNIQUE NOT NULL,
    uuid TEXT UNIQUE NOT NULL,
    created_at TEXT NOT NULL,
    properties TEXT NOT NULL,
    request_count INTEGER NOT NULL,
    duration_ms_total REAL NOT NULL,
    sendable_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL,
    api_key TEXT,
    host TEXT
);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    sent_at TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL
);
"""
"""Every change is additive (`CREATE TABLE IF NOT EXISTS`, new columns with defaults), so running
it again is harmless: version 1 of this library rewrites `user_version` to 1 whenever it differs,
and the next newer process simply runs this again. A table only a newer version writes is one an
older sender never reads: `api_request` events carry `request_count`, which version 1's sender
would refuse and drop, so they wait in `request_windows`, never in `events`."""


SIDE_FILES = ("-wal", "-shm", "-journal")

ROW_COLUMNS = "id, uuid, event, created_at, properties"
"""The columns of `events.Row`, in its order."""

# Keys of the `state` table: what senders persist, and what hosts and `status` read.
NEXT_ATTEMPT_AT = "next_attempt_at"
FAILURES = "failures"
LAST_SUCCESS_AT = "last_success_at"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"
LAST_ERROR_DETAIL = "last_error_detail"
"""The last failure's cause in one line (never a credential), beside its kind in `last_error`."""
SENDER_SPAWNED_AT = "sender_spawned_at"
SENDER_STARTED_AT = "sender_started_at"
LET_GO_ASKED_AT = "let_go_asked_at"
"""Stamped by `flush` and `purge` when a sender holds the lock: a lingering one lets go."""
APP_KEY_STATE = "app_api_key"
APP_HOST_STATE = "app_host"
SET_ASIDE = "spools_set_aside"
"""How many damaged or foreign spools were moved aside and replaced by this one."""

DROP_REASONS = ("age", "attempts", "rows", "invalid", "rejected", "too_large")
"""Why the sender dropped events; each has a counter `dropped_<reason>` in `state`.
`attempts` is only ever counted by 0.2.0 and older, which dropped an event after 100 failures."""


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


OUR_TABLES = frozenset({"events", "state", "request_windows", "sent"})
"""Every table this version makes; their only indexes are SQLite's own (`sqlite_autoindex_*`,
for the UNIQUE and PRIMARY KEY columns). No version of this library makes a trigger or a view."""


def _refuse_foreign_objects(conn: sqlite3.Connection) -> None:
    """Raise for a spool holding what no version of ours makes: a trigger planted on `state`
    could rewrite where events go, a view could stand in for a table. Such a file is treated
    as damaged (`is_corruption`): moved aside, never used. A spool of our format or older
    must hold only our tables; a newer one may hold tables and indexes we do not know yet."""
    import sqlite3

    newer = conn.execute("PRAGMA user_version").fetchone()[0] > SCHEMA_VERSION
    for kind, name, table in conn.execute("SELECT type, name, tbl_name FROM sqlite_master"):
        ours = table in OUR_TABLES and (
            (kind == "table" and name == table)
            or (kind == "index" and name.startswith("sqlite_autoindex_"))
        )
        if kind in ("trigger", "view") or not (ours or newer):
            raise sqlite3.DatabaseError(f"not a database of ours: it holds {kind} {name!r}")


def _text(data: bytes) -> str | bytes:
    """A text value as `str`, or its bytes when they are not UTF-8 (a damaged or planted row):
    refused as any damaged row is (`wire_json`, `number`), never an error that stops a drain."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def number(value: object) -> float:
    """A number from the `state` table, whatever was written there: 0 when it is none."""
    try:
        found = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return found if found == found and abs(found) != float("inf") else 0.0


def _prepare(conn: sqlite3.Connection) -> None:
    """Refuse what is not ours; create or upgrade the tables; never downgrade a spool a newer
    version wrote."""
    conn.text_factory = _text
    conn.execute("PRAGMA trusted_schema=OFF")
    _refuse_foreign_objects(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("PRAGMA journal_mode=WAL")
    with Transaction(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table in TABLES:  # an older spool's tables gain today's columns
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in DESTINATION_COLUMNS:
                    if column not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


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
        except sqlite3.DatabaseError as error:
            conn.close()
            if attempt == 2 or not is_corruption(error):
                raise
            move_aside(path)
            continue
        if attempt == 2:
            add_to_counter(conn, SET_ASIDE, 1)
        return conn
    raise AssertionError("unreachable")


def open_existing(path: str) -> sqlite3.Connection | None:
    """The spool if it exists, never creating it (for readers: `status`, the sender's re-check)."""
    import sqlite3

    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
    )  # autocommit, as `connect`: a write outside `Transaction` is never silently rolled back
    try:
        _prepare(conn)  # a spool an older version made gains today's tables
    except BaseException:
        conn.close()
        raise
    return conn


def is_corruption(error: sqlite3.DatabaseError) -> bool:
    """Whether the file is damaged (never a full disk, a lock or a permission): SQLite says so,
    or it holds objects we never make (`_refuse_foreign_objects`)."""
    message = str(error).lower()
    return "not a database" in message or "malformed" in message or "corrupt" in message


Destination = tuple["str | None", "str | None"]
"""Where an event goes, as its recorder's settings said: (API key, host)."""


def append(conn: sqlite3.Connection, event: Event, destination: Destination) -> None:
    """Add one event bound for `destination`; it is durable in the WAL when this returns."""
    conn.execute(
        "INSERT INTO events (uuid, event, created_at, properties, api_key, host) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (*event, *destination),
    )


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


WINDOWS = "request_windows"
_WINDOW_COLUMNS = "id, uuid, created_at, properties, request_count, duration_ms_total"


def _window_rows(found: list[tuple[object, ...]]) -> list[Row]:
    """`request_windows` rows as events: their properties completed with the count and mean."""
    return [
        Row(id_, uuid, "api_request", created, window_properties(props, count, total), WINDOWS)
        for id_, uuid, created, props, count, total in found
    ]


def claim(
    conn: sqlite3.Connection, size: int, lease_s: float, now: float
) -> tuple[Destination, list[Row]]:
    """Lease the oldest unleased events, then closed request windows, in one transaction: those
    bound for the destination of the oldest, so that a batch goes to one place."""
    with Transaction(conn):
        found = conn.execute(
            f"SELECT {ROW_COLUMNS}, api_key, host FROM events "
            "WHERE leased_until IS NULL OR leased_until < ? ORDER BY id LIMIT ?",
            (now, size),
        ).fetchall()
        destination = tuple(found[0][-2:]) if found else None
        rows = [Row(*r[:-2]) for r in found if tuple(r[-2:]) == destination]
        if len(rows) < size:
            windows = conn.execute(
                f"SELECT {_WINDOW_COLUMNS}, api_key, host FROM {WINDOWS} WHERE sendable_at <= ? "
                "AND (leased_until IS NULL OR leased_until < ?) ORDER BY id LIMIT ?",
                (now, now, size - len(rows)),
            ).fetchall()
            if destination is None and windows:
                destination = tuple(windows[0][-2:])
            rows += _window_rows([w[:-2] for w in windows if tuple(w[-2:]) == destination])
        for table, ids in _by_table(rows):
            conn.execute(
                f"UPDATE {table} SET leased_until = ? WHERE id IN ({_placeholders(len(ids))})",
                (now + lease_s, *ids),
            )
            if table == WINDOWS:
                # Taken: counts added from now on start a row of their own, never one in flight.
                conn.execute(
                    f"UPDATE {WINDOWS} SET window_key = window_key || ' taken ' || id "
                    f"WHERE id IN ({_placeholders(len(ids))}) AND window_key NOT LIKE '% taken %'",
                    ids,
                )
    return (destination or (None, None)), rows


def _by_table(rows: list[Row]) -> list[tuple[str, list[int]]]:
    """Row ids grouped by the table that holds them."""
    groups: dict[str, list[int]] = {}
    for row in rows:
        groups.setdefault(row.table, []).append(row.id)
    return list(groups.items())


def _in_time_order(row: Row) -> tuple[str, str, int]:
    """A damaged row (its time not text) sorts first, and never stops the sort."""
    created_at = row.created_at if isinstance(row.created_at, str) else ""
    return created_at, row.table, row.id if isinstance(row.id, int) else 0


def newest(conn: sqlite3.Connection, limit: int | None = None) -> list[Row]:
    """Every pending event (open request windows too, with their counts so far), oldest first;
    only the `limit` newest when given (for `show`)."""
    rows = [Row(*row) for row in conn.execute(f"SELECT {ROW_COLUMNS} FROM events")]
    rows += _window_rows(conn.execute(f"SELECT {_WINDOW_COLUMNS} FROM {WINDOWS}").fetchall())
    rows.sort(key=_in_time_order)
    return rows[-limit:] if limit else rows


def pending_keys(conn: sqlite3.Connection) -> set[object]:
    """The API keys pending events carry (None for events an older version recorded)."""
    found: set[object] = set()
    for table in TABLES:
        found.update(key for (key,) in conn.execute(f"SELECT DISTINCT api_key FROM {table}"))
    return found


def delete(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Remove delivered (or dropped) events."""
    for table, ids in _by_table(rows):
        conn.execute(f"DELETE FROM {table} WHERE id IN ({_placeholders(len(ids))})", ids)


SENT_MAX_AGE_DAYS = 30
SENT_MAX_BATCHES = 1000
SENT_MAX_BYTES = 4 * 1024 * 1024
"""The record of what was sent keeps 30 days, and at most this many batches and bytes of JSON
(a request holds at most 100 events of 8 KiB); the oldest go first."""


def delivered(conn: sqlite3.Connection, rows: list[Row], url: str, body: bytes) -> None:
    """Events the receiver took (a 2xx for `body`): removed, and the request they left in is
    kept, exactly as sent, in the record `show --sent` lists; together or not at all."""
    now = time.time()
    with Transaction(conn):
        delete(conn, rows)
        conn.execute(
            "INSERT INTO sent (sent_at, url, body) VALUES (?, ?, ?)",
            (iso_utc(now), url, body.decode("utf-8", "replace")),
        )
        conn.execute(
            "DELETE FROM sent WHERE sent_at < ? OR id <= "
            "(SELECT id FROM sent ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (iso_utc(now - SENT_MAX_AGE_DAYS * 86_400), SENT_MAX_BATCHES),
        )
        conn.execute(
            "DELETE FROM sent WHERE id IN (SELECT id FROM (SELECT id, "
            "SUM(LENGTH(CAST(body AS BLOB))) OVER (ORDER BY id DESC) AS newer FROM sent) "
            "WHERE newer > ?)",
            (SENT_MAX_BYTES,),
        )


def sent(conn: sqlite3.Connection, limit: int | None = None) -> list[tuple[str, str, str]]:
    """What was delivered, oldest first (only the `limit` newest when given): each request's
    time, URL and body."""
    rows = conn.execute(
        "SELECT sent_at, url, body FROM sent ORDER BY id DESC LIMIT ?", (limit or -1,)
    ).fetchall()
    return [tuple(row) for row in reversed(rows)]


def drop(conn: sqlite3.Connection, rows: list[Row], reason: str) -> int:
    """Remove events that will never be sent, counted under `reason`; how many."""
    if rows:
        delete(conn, rows)
        add_to_counter(conn, counter_key(reason), len(rows))
    return len(rows)


def release(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Give back events that failed to send: one more attempt counted, lease released."""
    for table, ids in _by_table(rows):
        conn.execute(
            f"UPDATE {table} SET attempts = attempts + 1, leased_until = NULL "
            f"WHERE id IN ({_placeholders(len(ids))})",
            ids,
        )


def add_request_counts(conn: sqlite3.Connection, windows: list[tuple[object, ...]]) -> None:
    """Add counts to request windows, in one transaction; durable when this returns.

    Each is `(window_key, uuid, created_at, properties, count, duration_ms_total, sendable_at,
    api_key, host)`.
    Counts are added, never set, so a window a sender already took (its process stalled past
    the window's end) starts a new row with the rest: every request is counted exactly once.
    """
    with Transaction(conn):
        conn.executemany(
            f"INSERT INTO {WINDOWS} (window_key, uuid, created_at, properties, request_count, "
            "duration_ms_total, sendable_at, api_key, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(window_key) DO UPDATE SET "
            "request_count = request_count + excluded.request_count, "
            "duration_ms_total = duration_ms_total + excluded.duration_ms_total, "
            "sendable_at = MIN(sendable_at, excluded.sendable_at)",
            windows,
        )


def close_windows(conn: sqlite3.Connection, session_id: str, now: float) -> None:
    """Make a process's windows sendable now: it is exiting, no count will be added to them."""
    conn.execute(
        f"UPDATE {WINDOWS} SET sendable_at = MIN(sendable_at, ?) "
        "WHERE substr(window_key, 1, ?) = ?",
        (now, len(session_id), session_id),
    )


TABLES = ("events", WINDOWS)
"""The tables that hold events waiting to be sent."""


def void_leases(conn: sqlite3.Connection) -> None:
    """Release every lease: only the lock holder drains, so any lease belongs to a dead sender."""
    for table in TABLES:
        conn.execute(f"UPDATE {table} SET leased_until = NULL WHERE leased_until IS NOT NULL")


def drop_over_limits(conn: sqlite3.Connection, older_than: str, max_rows: int) -> int:
    """Drop events created before `older_than` or beyond the newest `max_rows` (of each table);
    each counted under its reason. Returns the total."""
    dropped = 0
    with Transaction(conn):
        for table in TABLES:
            for reason, sql, params in (
                ("age", f"DELETE FROM {table} WHERE created_at < ?", (older_than,)),
                (
                    "rows",
                    f"DELETE FROM {table} WHERE id <= "
                    f"(SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (max_rows,),
                ),
            ):
                count = conn.execute(sql, params).rowcount
                add_to_counter(conn, counter_key(reason), count)
                dropped += count
    return dropped


def summary(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """How many events wait (each request window is one), and when the oldest was created."""
    total, oldest = 0, None
    for table in TABLES:
        count, first = conn.execute(f"SELECT COUNT(*), MIN(created_at) FROM {table}").fetchone()
        total += count
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return total, oldest


def all_state(conn: sqlite3.Connection) -> dict[str, str | None]:
    """The whole `state` table (for `status`), every value text (or None) whatever was
    written there."""
    return {
        _as_text(key): None if value is None else _as_text(value)
        for key, value in conn.execute("SELECT key, value FROM state")
    }


def _as_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def counters(state: dict[str, str]) -> dict[str, int]:
    """Dropped events by reason, from `all_state`."""
    return {reason: int(number(state.get(counter_key(reason)))) for reason in DROP_REASONS}


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
        set_state(conn, key, int(number(current)) + amount)


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
    detail: str = "",
) -> None:
    """Give `rows` back, count the failure in a row, and persist when to try again.

    `delay_after(failures)` is the sender's backoff policy, asked inside the transaction so
    that two failures never count the same number.
    """
    with Transaction(conn):
        failures = int(number(get_state(conn, FAILURES))) + 1
        release(conn, rows)
        delay = delay_after(failures)
        set_state(conn, FAILURES, failures)
        set_state(conn, LAST_ERROR, error)
        set_state(conn, LAST_ERROR_AT, now_iso)
        set_state(conn, LAST_ERROR_DETAIL, detail or None)
        set_state(conn, NEXT_ATTEMPT_AT, f"{time.time() + delay:.3f}")


def backoff_allows(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """False while a failed send's persisted backoff has not yet expired; a next attempt set
    beyond the longest wait there is (`LONGEST_WAIT_S`) is no backoff at all."""
    now = time.time() if now is None else now
    next_attempt = number(get_state(conn, NEXT_ATTEMPT_AT))
    return next_attempt <= now or next_attempt > now + LONGEST_WAIT_S


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


def _stamp(conn: sqlite3.Connection, key: str) -> float | None:
    try:
        return float(get_state(conn, key) or "")
    except ValueError:
        return None


def stamp(conn: sqlite3.Connection, key: str, when: float | None) -> None:
    """Persist a moment (`SENDER_SPAWNED_AT`, `SENDER_STARTED_AT`, `LET_GO_ASKED_AT`), or
    clear it with None."""
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
    """Whether any event is waiting, sendable and not held by a live sender's lease."""
    now = time.time() if now is None else now
    row = (
        conn.execute(
            "SELECT 1 FROM events WHERE leased_until IS NULL OR leased_until < ? LIMIT 1", (now,)
        ).fetchone()
        or conn.execute(
            f"SELECT 1 FROM {WINDOWS} WHERE sendable_at <= ? "
            "AND (leased_until IS NULL OR leased_until < ?) LIMIT 1",
            (now, now),
        ).fetchone()
    )
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
    """Remove the spool, its WAL files and every copy set aside as `<path>.corrupt-*` (those
    still hold events); True when something was removed. Never raises.

    Nothing is deleted in a folder that is not the user's (`folder_refusal`): never through
    a link to another user's folder. A link inside the folder is removed, never followed."""
    removed = False
    if folder_refusal(os.path.dirname(path), repair=False) is not None:
        return removed
    for suffix in ("", *SIDE_FILES):
        try:
            os.remove(path + suffix)
            removed = True
        except OSError:
            pass
    folder, name = os.path.split(path)
    prefix = name + ".corrupt-"
    try:
        names = os.listdir(folder or ".")
    except OSError:
        names = []
    for other in names:  # plain prefix match: no glob (it imports re) on the host's path
        if other.startswith(prefix):
            try:
                os.remove(os.path.join(folder, other))
                removed = True
            except OSError:
                pass
    return removed
