"""Local stand-in for PostHog's batch ingestion API (``POST /batch/``).

Used by the tests, the demo and the benchmark so that nothing ever leaves the machine.
It listens on loopback only, stores every event it accepts in a SQLite file (so tests can
inspect exactly what arrived, including duplicate deliveries), and can be switched into
fault modes to exercise the client's retry and spooling logic:

    ok                       normal behaviour
    fail:N:STATUS[:RETRY]    next N batches answered STATUS (optional Retry-After), then ok
    blackhole                read the request, never answer
    slow:SECONDS             store, then wait SECONDS before answering 200
    reset:N                  next N batches: read the body, then reset the TCP connection
    max-batch:K              batches with more than K events get 413 (persistent)
    reject-command:NAME      batches with an event whose properties.command == NAME get 400

Every answer sets a sticky-session cookie, as a load balancer in front of PostHog may; each
request's ``Cookie`` header is logged, so tests can prove the sender never sends one back.

Control endpoints: ``POST /_control/mode`` with ``{"mode": "..."}`` and ``GET /_control/stats``.

Run it as a script (see ``--help``) or, from Python, through the :class:`Collector` helper,
which starts it in a subprocess. The helper uses only the standard library; ``sqlite_utils``
is imported lazily by the server side.
"""

import argparse
import gzip
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import socketserver
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BATCH_PATHS = frozenset({"/batch", "/batch/"})
MODE_PATH = "/_control/mode"
STATS_PATH = "/_control/stats"
STICKY_COOKIE = "collector_sticky"
EVENT_STRING_FIELDS = ("event", "uuid", "timestamp", "distinct_id")
HOLD_POLL_SECONDS = 0.2  # how often a blackholed request checks for client/server going away


def utc_now() -> str:
    """ISO timestamp with fixed precision, so lexical order equals time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- fault modes


@dataclass(frozen=True)
class Mode:
    """A parsed fault mode; ``count`` is what is left of a counted-down mode."""

    kind: str = "ok"
    count: int = 0
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    limit: int = 0
    command: str = ""

    def __str__(self) -> str:
        if self.kind == "fail":
            suffix = f":{self.retry_after}" if self.retry_after is not None else ""
            return f"fail:{self.count}:{self.status}{suffix}"
        if self.kind == "slow":
            return f"slow:{self.seconds:g}"
        if self.kind == "reset":
            return f"reset:{self.count}"
        if self.kind == "max-batch":
            return f"max-batch:{self.limit}"
        if self.kind == "reject-command":
            return f"reject-command:{self.command}"
        return self.kind


def _non_negative_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def parse_mode(text: str) -> Mode:
    """Parse a mode string; raises ValueError with a readable message when malformed."""
    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind in ("ok", "blackhole") and not parts:
        return Mode(kind=kind)
    if kind == "fail" and len(parts) in (2, 3):
        count = _non_negative_int(parts[0], "fail count")
        status = _non_negative_int(parts[1], "fail status")
        if not 100 <= status <= 599:
            raise ValueError(f"fail status must be an HTTP status code, got {status}")
        retry_after = parts[2] if len(parts) == 3 else None
        if retry_after is not None and not retry_after.strip():
            raise ValueError("Retry-After value must not be empty")
        return Mode(kind="fail", count=count, status=status, retry_after=retry_after)
    if kind == "slow" and len(parts) == 1:
        try:
            seconds = float(parts[0])
        except ValueError:
            raise ValueError(f"slow seconds must be a number, got {parts[0]!r}") from None
        if not seconds >= 0:
            raise ValueError(f"slow seconds must be >= 0, got {parts[0]!r}")
        return Mode(kind="slow", seconds=seconds)
    if kind == "reset" and len(parts) == 1:
        return Mode(kind="reset", count=_non_negative_int(parts[0], "reset count"))
    if kind == "max-batch" and len(parts) == 1:
        return Mode(kind="max-batch", limit=_non_negative_int(parts[0], "max-batch size"))
    if kind == "reject-command" and rest:
        return Mode(kind="reject-command", command=rest)  # the name may itself contain ':'
    raise ValueError(f"unknown or malformed mode {text!r}")


class ModeSwitch:
    """Current fault mode, shared by all handler threads; counted modes tick down atomically."""

    def __init__(self, mode: Mode) -> None:
        self._lock = threading.Lock()
        self._mode = self._settle(mode)

    @staticmethod
    def _settle(mode: Mode) -> Mode:
        """A counted-down mode with nothing left is plain ``ok``."""
        if mode.kind in ("fail", "reset") and mode.count <= 0:
            return Mode()
        return mode

    def set(self, mode: Mode) -> None:
        with self._lock:
            self._mode = self._settle(mode)

    def current(self) -> str:
        with self._lock:
            return str(self._mode)

    def take(self) -> tuple[Mode, str]:
        """Return the mode that applies to one batch request (and its label), consuming it."""
        with self._lock:
            mode = self._mode
            if mode.kind in ("fail", "reset"):
                self._mode = self._settle(replace(mode, count=mode.count - 1))
            return mode, str(mode)


# --------------------------------------------------------------------------- validation


class BadRequest(Exception):
    """The request body cannot be accepted; the message goes into the 400 answer."""


def decode_body(raw: bytes, content_encoding: str | None) -> Any:
    """Undo optional gzip and parse JSON."""
    if (content_encoding or "").strip().lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def validate_batch(payload: Any) -> None:
    """Check the PostHog batch shape the client library is expected to send."""
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    api_key = payload.get("api_key")
    if not isinstance(api_key, str) or not api_key:
        raise BadRequest("api_key must be a non-empty string")
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise BadRequest("batch must be a list")
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise BadRequest(f"batch[{index}] must be an object")
        for field in EVENT_STRING_FIELDS:
            if not isinstance(item.get(field), str):
                raise BadRequest(f"batch[{index}].{field} must be a string")
        if not isinstance(item.get("properties"), dict):
            raise BadRequest(f"batch[{index}].properties must be an object")


def count_events(payload: Any) -> int:
    """Number of items in the batch, even if the payload is otherwise invalid."""
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        return len(payload["batch"])
    return 0


def has_command(payload: dict[str, Any], command: str) -> bool:
    return any(item["properties"].get("command") == command for item in payload["batch"])


# --------------------------------------------------------------------------- store


class Store:
    """SQLite store shared by all handler threads; every access is serialized by one lock."""

    def __init__(self, path: str | Path) -> None:
        import sqlite_utils  # lazy: the test-side helper must stay cheap to import

        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        self._db = sqlite_utils.Database(self._conn)
        self._db.enable_wal()  # lets tests read while the server writes
        self._conn.execute("PRAGMA synchronous=NORMAL")  # a test receiver need not fsync
        self._db["events"].create(
            {
                "uuid": str,
                "event": str,
                "timestamp": str,
                "distinct_id": str,
                "properties": str,
                "api_key": str,
                "sent_at": str,
                "received_at": str,
                "times_received": int,
            },
            pk="uuid",
            if_not_exists=True,
        )
        self._db["requests"].create(
            {
                "id": int,
                "received_at": str,
                "path": str,
                "status": int,
                "n_events": int,
                "body_bytes": int,
                "mode": str,
                "cookie": str,
            },
            pk="id",
            if_not_exists=True,
        )
        self._conn.commit()
        self._closed = False

    def add_events(self, payload: dict[str, Any], received_at: str) -> None:
        """Store a validated batch; a uuid seen before only bumps ``times_received``."""
        sql = (
            "INSERT INTO events (uuid, event, [timestamp], distinct_id, properties, api_key,"
            " sent_at, received_at, times_received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
            " ON CONFLICT(uuid) DO UPDATE SET times_received = times_received + 1"
        )
        sent_at = payload.get("sent_at")
        rows = [
            (
                item["uuid"],
                item["event"],
                item["timestamp"],
                item["distinct_id"],
                json.dumps(item["properties"]),
                payload["api_key"],
                sent_at if isinstance(sent_at, str) else None,
                received_at,
            )
            for item in payload["batch"]
        ]
        with self._lock:
            if self._closed:
                return
            with self._conn:
                self._conn.executemany(sql, rows)

    def record_request(self, row: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            with self._conn:
                self._db["requests"].insert(row)

    def counts(self) -> dict[str, int]:
        """Distinct events, extra (duplicate) receipts and batch requests seen so far."""
        with self._lock:
            if self._closed:
                return {"events": 0, "duplicates": 0, "requests": 0}
            events, duplicates = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(times_received - 1), 0) FROM events"
            ).fetchone()
            (requests,) = self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        return {"events": events, "duplicates": duplicates, "requests": requests}

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


# --------------------------------------------------------------------------- HTTP server


class CollectorServer(ThreadingHTTPServer):
    """Threaded HTTP server carrying the shared store, mode and shutdown flag."""

    allow_reuse_address = True  # tests restart a collector on the same port
    daemon_threads = True  # held (blackholed) connections must never block exit

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        modes: ModeSwitch,
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.modes = modes
        self.stopping = stopping  # set on shutdown: ends blackhole holds and slow sleeps
        super().__init__(address, CollectorHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the host, which can be slow."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, resets) are expected here; stay quiet about them."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def state(self) -> dict[str, Any]:
        return {**self.store.counts(), "mode": self.modes.current()}


class CollectorServer6(CollectorServer):
    address_family = socket.AF_INET6


class CollectorHandler(BaseHTTPRequestHandler):
    """Routes /batch and the /_control endpoints; HTTP/1.1 keep-alive throughout."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: CollectorServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: per-request lines would drown test and benchmark output."""

    # ---- routing

    def do_GET(self) -> None:
        if self._route() == STATS_PATH:
            self._send_json(200, self.server.state())
        else:
            self._send_json(404, {"error": f"no such resource: {self._route()}"})

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except BadRequest as exc:
            self.close_connection = True  # framing is unknown, so the connection is unusable
            self._send_json(400, {"error": str(exc)})
            return
        route = self._route()
        if route in BATCH_PATHS:
            self._handle_batch(route, body)
        elif route == MODE_PATH:
            self._handle_set_mode(body)
        else:
            self._send_json(404, {"error": f"no such resource: {route}"})

    def _route(self) -> str:
        return urlsplit(self.path).path

    # ---- endpoints

    def _handle_set_mode(self, body: bytes) -> None:
        try:
            payload = decode_body(body, self.headers.get("Content-Encoding"))
            if not isinstance(payload, dict) or not isinstance(payload.get("mode"), str):
                raise BadRequest('body must be {"mode": "MODE"}')
            mode = parse_mode(payload["mode"])
        except (BadRequest, ValueError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self.server.modes.set(mode)
        self._send_json(200, self.server.state())

    def _handle_batch(self, route: str, body: bytes) -> None:
        received_at = utc_now()
        payload: Any = None
        error: str | None = None
        try:
            payload = decode_body(body, self.headers.get("Content-Encoding"))
            validate_batch(payload)
        except BadRequest as exc:
            error = str(exc)
        mode, mode_label = self.server.modes.take()

        def log(status: int | None) -> None:
            self.server.store.record_request(
                {
                    "received_at": received_at,
                    "path": route,
                    "status": status,
                    "n_events": count_events(payload),
                    "body_bytes": len(body),
                    "mode": mode_label,
                    "cookie": self.headers.get("Cookie"),
                }
            )

        if mode.kind == "blackhole":
            log(None)
            self._hold_open()
        elif mode.kind == "reset":
            log(None)
            self._reset_connection()
        elif mode.kind == "fail":
            log(mode.status)
            extra = {"Retry-After": mode.retry_after} if mode.retry_after is not None else {}
            self._send_json(mode.status, {"error": f"injected failure ({mode_label})"}, extra)
        elif error is not None:
            log(400)
            self._send_json(400, {"error": error})
        elif mode.kind == "max-batch" and count_events(payload) > mode.limit:
            log(413)
            self._send_json(413, {"error": f"batch has more than {mode.limit} events"})
        elif mode.kind == "reject-command" and has_command(payload, mode.command):
            log(400)
            self._send_json(400, {"error": f"command {mode.command!r} rejected"})
        else:
            self.server.store.add_events(payload, received_at)
            log(200)
            if mode.kind == "slow":
                self.server.stopping.wait(mode.seconds)
            self._send_json(200, {"status": 1})

    # ---- body and connection handling

    def _read_body(self) -> bytes:
        """Read exactly one request body (Content-Length or chunked) so keep-alive works."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_header)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length_header!r}") from None
        if length < 0:
            raise BadRequest(f"bad Content-Length {length_header!r}")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest("malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # skip trailers
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # CRLF after each chunk

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            # What a load balancer's sticky session does; a client must never send it back.
            self.send_header("Set-Cookie", f"{STICKY_COOKIE}={uuid.uuid4().hex}; Path=/")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (e.g. timed out during slow mode)
            self.close_connection = True

    def _hold_open(self) -> None:
        """Blackhole: keep the socket open without answering until either side goes away."""
        self.close_connection = True
        while not self.server.stopping.wait(HOLD_POLL_SECONDS):
            if self._peer_closed():
                return

    def _peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _reset_connection(self) -> None:
        """Abort with RST instead of FIN, so the client sees 'connection reset by peer'."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop makefile()'s reference so close() really closes the fd now
        self.connection.close()


# --------------------------------------------------------------------------- command line


def loopback_host(host: str) -> str:
    """Return the address to bind; refuse anything that is not a loopback address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"--host must be a loopback IP address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"--host must be a loopback address, got {host!r}")
    return str(address)


def write_port_file(path: str | Path, port: int) -> None:
    """Atomic write, so a poller never reads a half-written port number."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(f"{port}\n")
    os.replace(temp, target)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 = any free port)")
    parser.add_argument("--db", required=True, help="SQLite file to store events in")
    parser.add_argument("--port-file", help="write the bound port number to this file")
    parser.add_argument("--mode", default="ok", help="initial fault mode (default: ok)")
    parser.add_argument("--quiet", action="store_true", help="do not print the listening line")
    args = parser.parse_args(argv)
    try:
        args.host = loopback_host(args.host)
        args.mode = parse_mode(args.mode)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    store = Store(args.db)
    server_class = CollectorServer6 if ":" in args.host else CollectorServer
    try:
        server = server_class((args.host, args.port), store, ModeSwitch(args.mode), stopping)
    except OSError as exc:
        store.close()
        print(f"collector: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()

    port = server.server_port
    if args.port_file:
        write_port_file(args.port_file, port)
    if not args.quiet:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"collector listening on http://{host}:{port}", flush=True)

    while not stopping.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    store.close()
    return 0


# --------------------------------------------------------------------------- test helper


class Collector:
    """Run the collector in a subprocess; context manager.

    Restarting a stopped instance reuses the port it had, which is how tests simulate
    "collector down, then back". Only the standard library is used on this side.
    """

    def __init__(self, db_path: str | Path, mode: str = "ok", port: int = 0) -> None:
        self.db_path = Path(db_path)
        self.mode = mode
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        # Never route control calls through an HTTP proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Collector":
        """Launch the server and wait (at most 10 s) until it has bound its port."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("collector already running")
        self._tmpdir = tempfile.mkdtemp(prefix="collector-")
        port_file = Path(self._tmpdir) / "port"
        stderr_path = Path(self._tmpdir) / "stderr.log"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--db", str(self.db_path),
            "--port", str(self.port),
            "--port-file", str(port_file),
            "--mode", self.mode,
            "--quiet",
        ]  # fmt: skip
        with open(stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 10.0
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                error = stderr_path.read_text(errors="replace").strip()
                self.stop()
                raise RuntimeError(f"collector failed to start: {error or 'timed out'}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- control endpoints

    def set_mode(self, mode: str) -> None:
        self._control("POST", MODE_PATH, {"mode": mode})

    def stats(self) -> dict[str, Any]:
        return self._control("GET", STATS_PATH)

    def _control(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=5.0) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"{method} {path} failed with {exc.code}: {detail}") from None

    # ---- direct reads of the SQLite file

    def events(self) -> list[dict[str, Any]]:
        """Stored events in arrival order, with ``properties`` parsed back into a dict."""
        rows = self._query("SELECT * FROM events ORDER BY received_at, rowid")
        for row in rows:
            row["properties"] = json.loads(row["properties"])
        return rows

    def requests(self) -> list[dict[str, Any]]:
        """One row per batch POST received, oldest first."""
        return self._query("SELECT * FROM requests ORDER BY id")

    def wait_for_events(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll until at least n distinct events are stored (or timeout); return events()."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self._query("SELECT COUNT(*) AS n FROM events")
            if rows and rows[0]["n"] >= n:
                break
            time.sleep(0.05)
        return self.events()

    def _query(self, sql: str) -> list[dict[str, Any]]:
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(str(self.db_path), timeout=5.0)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
