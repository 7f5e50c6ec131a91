"""The SQLite spool under `~/.visivo`: where events wait until the sender delivers them.

Standard-library `sqlite3` only, so appending costs a host a fraction of a millisecond. The
file is private (directory 0700, file 0600, never through a symlink), in WAL mode so hosts keep
appending while the sender drains, and it moves itself aside when corrupt instead of failing.
"""

from __future__ import annotations

import os
import stat
import time

from .events import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

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


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    """One value of the sender's persisted state (backoff, last success, counters)."""
    row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_state(conn: sqlite3.Connection, key: str, value: object) -> None:
    """Persist one value of the sender's state."""
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


def backoff_allows(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """False while a failed send's persisted backoff has not yet expired."""
    value = get_state(conn, "next_attempt_at")
    if value is None:
        return True
    try:
        return float(value) <= (time.time() if now is None else now)
    except ValueError:
        return True


APP_KEY_STATE = "app_api_key"
APP_HOST_STATE = "app_host"


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


def sender_starting(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether a sender started moments ago has yet to take the lock; it will drain our rows.

    A sender needs a few hundred milliseconds to import what it needs before it can take the
    lock, and commands run back to back would otherwise each start one of their own. Hosts
    stamp `sender_spawned_at` before starting one; every sender stamps `sender_started_at`
    just before it tries the lock (won or lost: either way the lock holder drains).
    """
    spawned = _stamp(conn, "sender_spawned_at")
    if spawned is None:
        return False
    started = _stamp(conn, "sender_started_at")
    age = (time.time() if now is None else now) - spawned
    return 0 <= age < SPAWN_GRACE_S and (started is None or started < spawned)


def has_unleased(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether any event is waiting and not held by a live sender's lease."""
    now = time.time() if now is None else now
    row = conn.execute(
        "SELECT 1 FROM events WHERE leased_until IS NULL OR leased_until < ? LIMIT 1", (now,)
    ).fetchone()
    return row is not None


def purge(path: str) -> bool:
    """Remove the spool, its WAL files and every copy set aside as `<path>.corrupt-*` (those
    still hold events); True when something was removed. Never raises."""
    removed = False
    for suffix in ("", *SIDE_FILES):
        try:
            os.remove(path + suffix)
            removed = True
        except FileNotFoundError:
            pass
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
