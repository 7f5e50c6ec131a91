"""Whatever is planted in a spool — random bytes, random JSON, tables, indexes, triggers, views,
rows of ours with odd values, odd state — valid events still arrive at the application's
receiver, nothing goes to a host the planted content names, and no process crashes.

A seeded random, one seed per example (a failure names its seed; `VISIVO_FUZZ_EXAMPLES` runs
more), each a real spool, real hosts, real `flush`, `status` and `show`, and two real
receivers: the application's, and one that only the planted content names. Outcomes are
asserted, never timings.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path

import pytest
from helpers import Collector, clean_env, host_code, run_host, spool_path, vt
from reliability_support import seed_spool

from visivo_telemetry import _events as events
from visivo_telemetry import _spool as spool

EXAMPLES = int(os.environ.get("VISIVO_FUZZ_EXAMPLES") or 16)

ALLOWLISTED = (
    "command",
    "command_args",
    "duration_ms",
    "success",
    "error_type",
    "job_count",
    "object_counts",
    "endpoint",
    "method",
    "status_code",
    "request_count",
    "visivo_version",
    "python_version",
    "platform",
    "platform_version",
    "architecture",
    "session_id",
    "$ip",
)
ODD_KEYS = ("distinct_id", "$set", "api_key", "host", "posthog_host", "$lib", "", "\x00", "é" * 3)
STATE_KEYS = (
    spool.APP_HOST_STATE,
    spool.APP_KEY_STATE,
    spool.NEXT_ATTEMPT_AT,
    spool.FAILURES,
    spool.LAST_SUCCESS_AT,
    spool.LAST_ERROR,
    spool.SENDER_SPAWNED_AT,
    spool.SENDER_STARTED_AT,
    spool.SET_ASIDE,
    *(spool.counter_key(reason) for reason in spool.DROP_REASONS),
)


def _storable(*values: object) -> tuple[object, ...]:
    """A lone surrogate cannot be bound as text: its bytes go in instead (invalid UTF-8)."""
    return tuple(
        v.encode("utf-8", "surrogatepass") if isinstance(v, str) and not v.isascii() else v
        for v in values
    )


class Planter:
    """Random content for one spool, every string that names a host naming `planted_url`."""

    def __init__(self, rng: random.Random, planted_url: str) -> None:
        self.rng = rng
        self.url = planted_url
        self.damaged = False
        """Bytes of the database itself were changed: its rows may be lost, never sent elsewhere."""

    def text(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                self.url,
                self.url + "/batch/",
                "https://" + self.url.split("://")[1],
                "<value>",
                "../../etc/passwd",
                "\x00\x01",
                "\ud800",
                "🙂" * rng.randint(1, 50),
                "x" * rng.choice([0, 1, 300, 9000]),
                "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 40))),
                "NaN",
                "2024-13-45T99:99:99Z",
            ]
        )

    def json_value(self, depth: int = 0) -> object:
        rng = self.rng
        kind = rng.choice(["scalar"] * 3 + (["list", "dict"] if depth < 5 else []))
        if kind == "list":
            return [self.json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        if kind == "dict":
            return {self.key(): self.json_value(depth + 1) for _ in range(rng.randint(0, 4))}
        return rng.choice(
            [
                self.text(),
                rng.randint(-(10**30), 10**30),
                rng.choice([0, -1, 1, 2**63, -(2**63) - 1]),
                rng.choice([0.5, -0.0, 1e308, float("nan"), float("inf")]),
                rng.choice([True, False, None]),
            ]
        )

    def key(self) -> str:
        return self.rng.choice(ALLOWLISTED + ODD_KEYS + (self.text(),))

    def properties(self, valid: dict[str, object]) -> object:
        """Odd properties: a valid event's with some values changed, a random object, or
        something that is not a JSON object at all."""
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            props = dict(valid)
            for _ in range(rng.randint(1, 3)):
                props[self.key()] = self.json_value()
            return json.dumps(props)
        if choice == 1:
            return json.dumps({self.key(): self.json_value() for _ in range(rng.randint(0, 12))})
        if choice == 2:
            return json.dumps(self.json_value())
        return rng.choice([self.text(), rng.randbytes(rng.randint(0, 64)), rng.randint(-5, 5)])

    def value(self) -> object:
        """Any SQLite value, whatever the column's declared type."""
        rng = self.rng
        return rng.choice(
            [
                self.text(),
                rng.randint(-(2**63), 2**63 - 1),
                rng.random() * 1e12,
                rng.randbytes(rng.randint(0, 16)),
                events.iso_utc(),
                events.new_uuid7(),
                None,
            ]
        )

    def rows(self, conn: sqlite3.Connection, valid: dict[str, object]) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 6)):
            conn.execute(
                "INSERT INTO events (uuid, event, created_at, properties, attempts, leased_until)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                _storable(
                    rng.choice([events.new_uuid7(), self.text() + str(rng.random())]),
                    rng.choice(["cli_command", "api_request", "$identify", "", self.text()]),
                    rng.choice([events.iso_utc(), "1970-01-01T00:00:00Z", "9999", self.text()]),
                    self.properties(valid),
                    rng.choice([0, 0, 7, -1, 2**62, "x"]),
                    rng.choice([None, None, 0.0, 1e18, "soon"]),
                ),
            )
        for _ in range(rng.randint(0, 3)):
            conn.execute(
                "INSERT INTO request_windows (window_key, uuid, created_at, properties, "
                "request_count, duration_ms_total, sendable_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _storable(
                    f"planted {rng.random()}",
                    events.new_uuid7(),
                    rng.choice([events.iso_utc(), self.text()]),
                    self.properties(valid),
                    rng.choice([1, 0, -3, 10**12, "many", 0.5]),
                    rng.choice([1.0, -1.0, 1e308, "slow"]),
                    rng.choice([0.0, 1e18, "later"]),
                ),
            )

    def state(self, conn: sqlite3.Connection) -> None:
        for _ in range(self.rng.randint(3, 10)):
            key = self.rng.choice((*STATE_KEYS, *STATE_KEYS, self.text()))
            conn.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                _storable(key, self.value()),
            )

    def objects(self, conn: sqlite3.Connection) -> None:
        rng = self.rng
        name = f'"planted {rng.randrange(10**6)} {rng.choice(["x", "é", "🙂", "a b"])}"'
        url = self.url.replace("'", "''")
        statement = rng.choice(
            [
                f"CREATE TABLE {name} (a, b TEXT, c BLOB)",
                f"CREATE INDEX {name} ON events (event, created_at)",
                f"CREATE INDEX {name} ON state (value)",
                f"CREATE VIEW {name} AS SELECT * FROM events",
                f"CREATE TRIGGER {name} AFTER INSERT ON events BEGIN "
                f"INSERT OR REPLACE INTO state VALUES ('{spool.APP_HOST_STATE}', '{url}'); END",
                f"CREATE TRIGGER {name} BEFORE DELETE ON events BEGIN "
                "SELECT RAISE(ABORT, 'kept'); END",
                f"CREATE TRIGGER {name} AFTER UPDATE ON state BEGIN "
                f"UPDATE state SET value = '{url}' WHERE key = '{spool.APP_HOST_STATE}'; END",
            ]
        )
        conn.execute(statement)
        if statement.startswith("CREATE TABLE"):
            conn.executemany(
                f"INSERT INTO {name} VALUES (?, ?, ?)",
                [
                    _storable(self.value(), self.text(), self.value())
                    for _ in range(rng.randint(0, 5))
                ],
            )
        if rng.random() < 0.3:
            conn.execute(f"PRAGMA user_version={rng.choice([0, 1, 3, 99, -1])}")

    def bytes_(self, home: Path) -> None:
        """Random bytes or random JSON where SQLite keeps the spool, its WAL or its index."""
        rng = self.rng
        db = spool_path(home)
        choice = rng.randrange(5)
        if choice == 0:
            data = bytearray(db.read_bytes())
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            db.write_bytes(bytes(data))
            self.damaged = True
        elif choice == 1:
            db.write_text(json.dumps(self.json_value()))
            self.damaged = True
        elif choice == 2:
            db.write_bytes(db.read_bytes()[: rng.randrange(os.path.getsize(db))])
            self.damaged = True
        else:
            side = db.with_name(db.name + ("-wal" if choice == 3 else "-shm"))
            side.write_bytes(rng.randbytes(rng.randint(1, 70_000)))


def _plant(home: Path, rng: random.Random, planter: Planter) -> list[str]:
    """Seed valid events, then plant two to four kinds of content; the kinds planted."""
    props = events.cli_command_properties("seed", ["--n"], 1.0, None, {})
    valid = json.loads(events.build("cli_command", "1.4.0", props).properties_json)
    kinds = rng.sample(["rows", "state", "objects", "bytes"], rng.randint(2, 4))
    kinds.sort(key=lambda kind: kind == "bytes")  # bytes last: SQL first needs a database
    conn = sqlite3.connect(spool_path(home), isolation_level=None)
    try:
        for kind in kinds:
            if kind != "bytes":
                conn.execute("BEGIN")
                if kind == "rows":
                    planter.rows(conn, valid)
                else:
                    getattr(planter, kind)(conn)
                conn.execute("COMMIT")
    finally:
        conn.close()
    if "bytes" in kinds:
        planter.bytes_(home)
    return kinds


@pytest.fixture(scope="module")
def without_telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str]:
    """The host's exit code, stdout and stderr with telemetry off: what every run must match."""
    home = tmp_path_factory.mktemp("off")
    env = clean_env(home, VISIVO_TELEMETRY_DISABLED="1")
    result, _ = run_host(host_code("fuzz", ["--first"]), env, cwd=home)
    return result.returncode, result.stdout, result.stderr


def _no_crash(result, command: str, may_refuse: bool = False) -> None:
    """No traceback; exit 0, or (`may_refuse`) 1 with one `Error:` line: `status` on a spool
    nobody has set aside yet ("cannot open …: file is not a database"), `flush` (below)."""
    assert "Traceback" not in result.stderr, f"{command}:\n{result.stderr}"
    if may_refuse and result.returncode == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), f"{command}: {lines}"
        return
    assert result.returncode == 0, f"{command} exited {result.returncode}: {result.stderr}"


@pytest.mark.parametrize("seed", range(EXAMPLES))
def test_planted_content_never_redirects_loses_valid_events_or_crashes(
    seed, home, project, collector, tmp_path, without_telemetry
):
    rng = random.Random(seed)
    with Collector(tmp_path / "planted.db") as planted:
        planter = Planter(rng, planted.url)
        seeded = seed_spool(home, 3)
        kinds = _plant(home, rng, planter)
        env = clean_env(home)
        del env["VISIVO_POSTHOG_HOST"]  # where events go: the application's host, in its code
        where = f"seed {seed}, planted {kinds}"
        for command in (("status", "--json"), ("status",)):  # the planted state, as planted
            _no_crash(vt(*command, env=env), f"{' '.join(command)} ({where})", may_refuse=True)

        outcomes = []
        for marker in ("--first", "--second"):
            code = host_code("fuzz", [marker], host=collector.url)
            result, _ = run_host(code, env, cwd=project)
            assert (result.returncode, result.stdout, result.stderr) == without_telemetry, where
            outcomes.append(vt("flush", env=env))
        for result in outcomes:
            _no_crash(result, f"flush ({where})", may_refuse=True)
        for command in (("status", "--json"), ("show",)):
            _no_crash(vt(*command, env=env), f"{' '.join(command)} ({where})")

        received = collector.events()
        markers = {
            tuple(e["properties"].get("command_args") or ())
            for e in received
            if e["properties"].get("command") == "fuzz"
        }
        assert ("--second",) in markers, where
        set_aside = list((home / ".visivo").glob("telemetry.db.corrupt-*"))
        if not planter.damaged:
            assert ("--first",) in markers, where
        if not planter.damaged and not set_aside:
            assert set(seeded) <= {e["uuid"] for e in received}, where
        assert planted.requests() == [], f"{where}: a planted host received a request"
