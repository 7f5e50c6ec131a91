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

Fault modes come first: ``fail``, ``blackhole`` and ``reset`` act before the body is judged.

What it accepts is what PostHog's capture service accepts (github.com/PostHog/posthog,
``rust/capture/src``; each rule below names its source file), plus two checks the project
asked for on top (canonical uuids, ISO 8601 timestamps):

- the body may be gzipped (``Content-Encoding: gzip``, or just gzip magic bytes); a body that
  will not decompress, is not UTF-8 or is not JSON of the batch shape gets 400;
- the project token (``api_key``, alias ``token``) must pass capture's shape check, else 401
  for the whole request (empty, over 64 bytes, non-ASCII, a ``phx_`` personal key, NUL);
- every item needs a non-empty ``event`` and a distinct id, and a ``uuid`` / ``timestamp``
  when present must be well formed; one bad item gets 400 and nothing of that request is kept;
- ``historical_migration`` (a boolean) is accepted and recorded with the request and events;
- like PostHog, an event whose ``properties.$ip`` is absent or falsy is stored with the
  request's source address as ``$ip``; a ``$ip`` that was sent is kept as is.

Two deliberate differences from PostHog: real capture does not de-duplicate (every delivery
is an event), whereas this store keeps one row per uuid and counts receipts in
``times_received`` so tests can count duplicate deliveries; and there are no quotas (capture
answers 200 for a project over its quota and drops the events, so a client cannot tell).

Every answer sets a sticky-session cookie, as a load balancer in front of PostHog may; each
request's ``Cookie`` header is logged, so tests can prove the sender never sends one back.
The ``requests`` table also logs ``Content-Encoding``, ``User-Agent``, ``historical_migration``
and both sizes: ``body_bytes`` on the wire and ``json_bytes`` after decompression. It keeps the
whole request too, so tests can assert exactly what left a machine: ``target`` (path and
query), ``headers`` (every header, in order, as a JSON list of ``[name, value]``) and ``body``
(the bytes as received);
:meth:`Collector.received` gives them back decompressed.

With ``--certfile`` and ``--keyfile`` it speaks HTTPS (the handshake runs in the connection's
own thread, so a client that stalls it holds up nobody else), as PostHog's capture does.

Control endpoints: ``POST /_control/mode`` with ``{"mode": "..."}`` and ``GET /_control/stats``.

Run it as a script (see ``--help``) or, from Python, through the :class:`Collector` helper,
which starts it in a subprocess. The helper uses only the standard library; ``sqlite_utils``
is imported lazily by the server side.
"""

import argparse
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BATCH_PATHS = frozenset({"/batch", "/batch/"})
MODE_PATH = "/_control/mode"
STATS_PATH = "/_control/stats"
STICKY_COOKIE = "collector_sticky"
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
#
# What PostHog's capture service (github.com/PostHog/posthog, ``rust/capture/src``) accepts on
# ``/batch/``, checked in capture's order: decode the body (400), parse its shape with serde
# (400), validate the token (401), then check each event (400). One bad item fails the whole
# request, as ``process_events`` collects with ``?`` and nothing reaches the sink.


class Rejected(Exception):
    """The request cannot be accepted; ``status`` and the message go into the answer."""

    status = 400


class BadRequest(Rejected):
    """400: capture's RequestDecodingError, RequestParsingError, MissingEventName,
    MissingDistinctId (capture: api.rs maps them to BAD_REQUEST)."""


class Unauthorized(Rejected):
    """401: capture's TokenValidationError (capture: api.rs maps it to UNAUTHORIZED)."""

    status = 401


GZIP_MAGIC = b"\x1f\x8b\x08"  # capture: common_compression has_gzip_magic_header
GZIP_HINTS = frozenset({"gzip", "gzip-js"})  # capture: utils.rs extract_compression
TOKEN_FIELD = ("token", "api_key")  # capture: v0_request.rs BatchedRequest, alias "api_key"
EVENT_TOKEN_FIELD = ("token", "$token", "api_key")  # capture: common/types event.rs RawEvent
DISTINCT_ID_FIELD = ("distinct_id", "$distinct_id")  # capture: common/types event.rs RawEvent
TOKEN_MAX_BYTES = 64  # capture: token.rs validate_token
PERSONAL_API_KEY_PREFIX = "phx_"  # capture: token.rs validate_token
DISTINCT_ID_MAX_BYTES = 200  # capture: common/types event.rs extract_distinct_id
# Rust's str::trim strips Unicode White_Space, a slightly different set from str.strip()'s.
RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
UUID_CANONICAL = re.compile(
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
DATETIME_ISO = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt ]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:[.,][0-9]+)?)?"
    r"(?:[Zz]|[+-](?P<tz_hour>[0-9]{2})(?::?(?P<tz_minute>[0-9]{2}))?)?"
)
SURROGATES = re.compile("[\ud800-\udfff]")
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Item:
    """One accepted batch item, as capture hands it on: uuid filled in, distinct id a string."""

    uuid: str
    event: str
    timestamp: str | None
    distinct_id: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """An accepted ``/batch/`` body."""

    token: str
    historical_migration: bool | None
    sent_at: str | None
    items: list[Item]


def compression_param(path: str) -> str | None:
    """The ``?compression=`` hint of the request URL, if any (capture: v0_request.rs EventQuery)."""
    values = parse_qs(urlsplit(path).query).get("compression")
    return values[-1] if values else None


def decompress(body: bytes, content_encoding: str | None, hint: str | None = None) -> bytes:
    """Undo gzip when capture would: a ``compression`` query hint, a ``Content-Encoding`` of
    exactly ``gzip``/``gzip-js``, or a body starting with the gzip magic bytes; anything else is
    taken as plain text, whatever the header says.

    capture: utils.rs extract_compression, payload/decompression.rs decompress_payload and
    decompress_gzip_to_bytes (flate2's GzDecoder: first gzip member only, CRC checked).
    """
    gzipped = (
        (hint is not None and hint.lower() in GZIP_HINTS)
        or content_encoding in GZIP_HINTS
        or body.startswith(GZIP_MAGIC)
    )
    if not gzipped:
        return body
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decoder.decompress(body)
    except zlib.error as exc:
        raise BadRequest(f"failed to decode request: invalid GZIP data ({exc})") from None
    if not decoder.eof:
        raise BadRequest("failed to decode request: invalid GZIP data (truncated)")
    return data


class _RepeatedKeys(dict):
    """A JSON object whose text repeated a key: json.loads keeps the last, serde refuses it."""

    repeated: frozenset[str] = frozenset()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    flagged = _RepeatedKeys(obj)
    flagged.repeated = frozenset(k for k, _ in pairs if k in seen or seen.add(k))
    return flagged


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # serde_json refuses NaN and Infinity


def _replace_surrogates(value: Any) -> Any:
    """Lone UTF-16 surrogates (from ``\\ud800`` escapes) become U+FFFD, as capture's
    passes/invalid_surrogates.rs does before parsing."""
    if isinstance(value, str):
        return SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        fixed = {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
        if isinstance(value, _RepeatedKeys):
            fixed = _RepeatedKeys(fixed)
            fixed.repeated = value.repeated
        return fixed
    return value


def parse_json(data: bytes) -> Any:
    """Strict UTF-8 JSON, as serde_json reads it (capture: payload/decompression.rs
    ``String::from_utf8``, then v0_request.rs ``serde_json::from_str``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("failed to decode request: invalid UTF8 in request payload") from None
    try:
        payload = json.loads(text, object_pairs_hook=_json_object, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"failed to parse request: {exc}") from None
    if SURROGATE_ESCAPE.search(text):  # may over-match (an escaped backslash): harmless
        payload = _replace_surrogates(payload)
    return payload


def decode_body(raw: bytes, content_encoding: str | None) -> Any:
    """Undo optional gzip and parse JSON (used by the control endpoint too)."""
    return parse_json(decompress(raw, content_encoding))


def _field(obj: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    """A struct field serde knows under several names; given twice, serde refuses the body.

    Returns None when absent or null (serde's ``Option``).
    """
    present = [name for name in names if name in obj]
    if len(present) > 1 or any(name in getattr(obj, "repeated", ()) for name in present):
        raise BadRequest(f"failed to parse request: duplicate field `{names[0]}` in {where}")
    return obj[present[0]] if present else None


def _optional(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = _field(obj, (name,), where)
    if value is not None and not isinstance(value, kind):
        raise BadRequest(f"failed to parse request: {where}.{name} must be a {kind.__name__}")
    return value


def validate_token(token: str) -> str:
    """The token's shape, trimmed; it may still name no project (capture: token.rs
    validate_token; checked in this order). Any failure is a 401 for the whole request."""
    token = token.strip(RUST_WHITESPACE)
    if not token:
        reason = "empty"
    elif len(token.encode("utf-8", "surrogatepass")) > TOKEN_MAX_BYTES:
        reason = "too_long"
    elif not token.isascii():
        reason = "not_ascii"
    elif token.startswith(PERSONAL_API_KEY_PREFIX):
        reason = "personal_api_key"
    elif "\0" in token:
        reason = "null_byte"
    else:
        return token
    raise Unauthorized(f"API key is not valid: {reason}")


def extract_distinct_id(raw: dict[str, Any], properties: dict[str, Any]) -> str | None:
    """capture: common/types event.rs RawEvent::extract_distinct_id.

    Top-level ``distinct_id`` (or ``$distinct_id``), else ``properties.distinct_id``; a
    non-string is stringified as compact JSON; NUL becomes U+FFFD; empty means missing; longer
    than 200 bytes is cut to 200 characters.
    """
    value = _field(raw, DISTINCT_ID_FIELD, "event")
    if value is None:
        value = properties.get("distinct_id")
        if value is None:
            return None
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    value = value.replace("\0", "\ufffd")
    if len(value.encode("utf-8", "surrogatepass")) > DISTINCT_ID_MAX_BYTES:
        value = value[:DISTINCT_ID_MAX_BYTES]
    return value or None


def is_iso_datetime(text: str) -> bool:
    """An ISO 8601 / RFC 3339 date and time (``2026-01-31T12:00:00.123Z``, offset optional)."""
    match = DATETIME_ISO.fullmatch(text)
    if match is None:
        return False
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    try:
        datetime(
            parts["year"], parts["month"], parts["day"], parts["hour"], parts["minute"],
            min(parts.get("second", 0), 59),  # RFC 3339 allows a leap second
        )  # fmt: skip
    except ValueError:
        return False
    return parts.get("tz_hour", 0) < 24 and parts.get("tz_minute", 0) < 60


def new_uuid7() -> str:
    """What capture gives an event sent without a uuid (capture: utils.rs uuid_v7)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def validate_batch(payload: Any) -> Batch:
    """Accept a ``/batch/`` body as capture would, or raise BadRequest (400) / Unauthorized (401).

    Stages, in capture's order (capture: payload/analytics.rs handle_event_payload, then
    events/analytics.rs process_events):

    1. serde shape (v0_request.rs BatchedRequest, common/types event.rs RawEvent) -> 400:
       an object with a string ``api_key`` (or ``token``, its alias; both at once, or a key
       repeated, is a parse error), ``batch`` a list of objects, optional bool
       ``historical_migration``, optional string ``sent_at``; per item a string ``event``,
       optional string ``timestamp``, optional string per-event token (ignored for batches:
       utils.rs extract_and_verify_token gives the batch token precedence), and ``uuid``.
       Stricter than capture on request of the project: ``uuid``, when present, must be the
       canonical 8-4-4-4-12 hex form (capture's Uuid::parse_str also takes braces, urn: and
       32 bare hex digits, and reads "" as absent); ``properties`` must be an object (capture
       defaults a missing one to {}).
    2. token shape (token.rs validate_token) -> 401.
    3. per event (events/analytics.rs process_single_event) -> 400: a non-empty event name,
       a distinct id (extract_distinct_id). Stricter than capture on request of the project:
       ``timestamp``, when present, must be an ISO 8601 / RFC 3339 datetime (capture passes it
       on and ingestion falls back to "now": common/types timestamp.rs parse_event_timestamp).
    """
    if not isinstance(payload, dict):
        raise BadRequest("failed to parse request: body must be a JSON object with a batch")
    token = _field(payload, TOKEN_FIELD, "body")
    if not isinstance(token, str):
        raise BadRequest("failed to parse request: api_key must be a string")
    historical_migration = _optional(payload, "historical_migration", bool, "body")
    sent_at = _optional(payload, "sent_at", str, "body")
    raw_items = _field(payload, ("batch",), "body")
    if not isinstance(raw_items, list):
        raise BadRequest("failed to parse request: batch must be a list")
    for index, raw in enumerate(raw_items):
        where = f"batch[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"failed to parse request: {where} must be an object")
        if not isinstance(_field(raw, ("event",), where), str):
            raise BadRequest(f"failed to parse request: {where}.event must be a string")
        event_token = _field(raw, EVENT_TOKEN_FIELD, where)
        if event_token is not None and not isinstance(event_token, str):
            raise BadRequest(f"failed to parse request: {where}.api_key must be a string")
        _field(raw, DISTINCT_ID_FIELD, where)
        _optional(raw, "timestamp", str, where)
        event_uuid = _optional(raw, "uuid", str, where)
        if event_uuid is not None and not UUID_CANONICAL.fullmatch(event_uuid):
            raise BadRequest(f"failed to parse request: {where}.uuid is not a canonical uuid")
        if not isinstance(_field(raw, ("properties",), where), dict):
            raise BadRequest(f"failed to parse request: {where}.properties must be an object")

    token = validate_token(token)

    items = []
    for index, raw in enumerate(raw_items):
        where = f"batch[{index}]"
        if not raw["event"]:
            raise BadRequest(f"event submitted with an empty event name ({where})")
        properties = raw["properties"]
        distinct_id = extract_distinct_id(raw, properties)
        if distinct_id is None:
            raise BadRequest(f"event submitted without a distinct_id ({where})")
        timestamp = raw.get("timestamp")
        if timestamp is not None and not is_iso_datetime(timestamp):
            raise BadRequest(f"{where}.timestamp is not an ISO 8601 datetime")
        event_uuid = raw.get("uuid")
        items.append(
            Item(
                uuid=event_uuid.lower() if event_uuid is not None else new_uuid7(),
                event=raw["event"],
                timestamp=timestamp,
                distinct_id=distinct_id,
                properties=properties,
            )
        )
    return Batch(token, historical_migration, sent_at, items)


def historical_flag(payload: Any) -> int | None:
    """``historical_migration`` of a body as 0/1, or None when absent, null or not a bool."""
    value = payload.get("historical_migration") if isinstance(payload, dict) else None
    return int(value) if isinstance(value, bool) else None


def is_falsy_in_javascript(value: Any) -> bool:
    """How ingestion's ``!properties['$ip']`` reads a JSON value: arrays and objects are truthy."""
    if value is None or isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value == 0 or value != value
    if isinstance(value, str):
        return not value
    return False


def with_source_ip(properties: dict[str, Any], client_ip: str) -> dict[str, Any]:
    """The properties PostHog stores: ``$ip`` becomes the request's source address whenever
    the event's own ``$ip`` is absent or falsy (ingestion: nodejs/src/utils/event.ts
    sanitizeEvent, fed by capture's client IP, events/analytics.rs ``ip: resolved_ip``)."""
    if not is_falsy_in_javascript(properties.get("$ip")):
        return properties
    return {**properties, "$ip": client_ip}


def count_events(payload: Any) -> int:
    """Number of items in the batch, even if the payload is otherwise invalid."""
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        return len(payload["batch"])
    return 0


def has_command(batch: Batch, command: str) -> bool:
    return any(item.properties.get("command") == command for item in batch.items)


# --------------------------------------------------------------------------- store


class Store:
    """SQLite store shared by all handler threads; every access is serialized by one lock.

    Unlike PostHog (which stores every delivery), ``events`` keeps one row per uuid and counts
    deliveries in ``times_received``, so tests can see duplicates without wading through them.
    """

    EVENT_COLUMNS: dict[str, type] = {
        "uuid": str,
        "event": str,
        "timestamp": str,
        "distinct_id": str,
        "properties": str,
        "api_key": str,
        "sent_at": str,
        "received_at": str,
        "times_received": int,
        "historical_migration": int,  # 0/1/NULL, of the request that first delivered it
    }
    REQUEST_COLUMNS: dict[str, type] = {
        "id": int,
        "received_at": str,
        "path": str,
        "status": int,
        "n_events": int,
        "body_bytes": int,  # on the wire (compressed size when gzipped)
        "json_bytes": int,  # after decompression; NULL when the body would not decompress
        "mode": str,
        "cookie": str,
        "content_encoding": str,
        "user_agent": str,
        "historical_migration": int,  # 0/1/NULL
        "target": str,  # the request target as sent: path and any query string
        "headers": str,  # every header as received: a JSON list of [name, value], in order
        "body": bytes,  # the whole body exactly as it came off the wire (gzipped if it was)
    }

    def __init__(self, path: str | Path) -> None:
        import sqlite_utils  # lazy: the test-side helper must stay cheap to import

        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        self._db = sqlite_utils.Database(self._conn)
        self._db.enable_wal()  # lets tests read while the server writes
        self._conn.execute("PRAGMA synchronous=NORMAL")  # a test receiver need not fsync
        for name, columns, pk in (
            ("events", self.EVENT_COLUMNS, "uuid"),
            ("requests", self.REQUEST_COLUMNS, "id"),
        ):
            table = self._db[name]
            table.create(columns, pk=pk, if_not_exists=True)
            existing = table.columns_dict  # a file written by an older collector: add columns
            for column, kind in columns.items():
                if column not in existing:
                    table.add_column(column, kind)
        self._conn.commit()
        self._closed = False

    def add_events(self, batch: Batch, received_at: str, client_ip: str) -> None:
        """Store an accepted batch; a uuid seen before only bumps ``times_received``."""
        sql = (
            "INSERT INTO events (uuid, event, [timestamp], distinct_id, properties, api_key,"
            " sent_at, received_at, times_received, historical_migration)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT(uuid) DO UPDATE SET times_received = times_received + 1"
        )
        flag = None if batch.historical_migration is None else int(batch.historical_migration)
        rows = [
            (
                item.uuid,
                item.event,
                item.timestamp,
                item.distinct_id,
                json.dumps(with_source_ip(item.properties, client_ip)),
                batch.token,
                batch.sent_at,
                received_at,
                flag,
            )
            for item in batch.items
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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        self.modes = modes
        self.stopping = stopping  # set on shutdown: ends blackhole holds and slow sleeps
        self.tls = tls
        super().__init__(address, CollectorHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection, after its TLS handshake when serving HTTPS."""
        if self.tls is not None:
            request.settimeout(10.0)
            request = self.tls.wrap_socket(request, server_side=True)
            request.settimeout(None)
        super().finish_request(request, client_address)

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
        content_encoding = self.headers.get("Content-Encoding")
        data: bytes | None = None
        payload: Any = None
        batch: Batch | None = None
        error: Rejected | None = None
        try:
            data = decompress(body, content_encoding, compression_param(self.path))
            payload = parse_json(data)
            batch = validate_batch(payload)
        except Rejected as exc:
            error = exc
        mode, mode_label = self.server.modes.take()

        def log(status: int | None) -> None:
            self.server.store.record_request(
                {
                    "received_at": received_at,
                    "path": route,
                    "status": status,
                    "n_events": count_events(payload),
                    "body_bytes": len(body),
                    "json_bytes": None if data is None else len(data),
                    "mode": mode_label,
                    "cookie": self.headers.get("Cookie"),
                    "content_encoding": content_encoding,
                    "user_agent": self.headers.get("User-Agent"),
                    "historical_migration": historical_flag(payload),
                    "target": self.path,
                    "headers": json.dumps(self.headers.items()),
                    "body": body,
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
        elif error is not None or batch is None:
            log(error.status if error is not None else 500)
            self._send_json(error.status if error is not None else 500, {"error": str(error)})
        elif mode.kind == "max-batch" and len(batch.items) > mode.limit:
            log(413)
            self._send_json(413, {"error": f"batch has more than {mode.limit} events"})
        elif mode.kind == "reject-command" and has_command(batch, mode.command):
            log(400)
            self._send_json(400, {"error": f"command {mode.command!r} rejected"})
        else:
            # Over quota, capture answers 200 and drops the events; no quotas here.
            self.server.store.add_events(batch, received_at, str(self.client_address[0]))
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
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the private key of --certfile (PEM)")
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

    tls = None
    if args.certfile:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.certfile, args.keyfile)
    store = Store(args.db)
    server_class = CollectorServer6 if ":" in args.host else CollectorServer
    try:
        server = server_class((args.host, args.port), store, ModeSwitch(args.mode), stopping, tls)
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
        scheme = "https" if tls else "http"
        print(f"collector listening on {scheme}://{host}:{port}", flush=True)

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

    def __init__(
        self,
        db_path: str | Path,
        mode: str = "ok",
        port: int = 0,
        host: str = "127.0.0.1",
        tls: tuple[str | Path, str | Path, str | Path] | None = None,
    ) -> None:
        """`tls`: (certificate chain, its key, the CA that issued it), PEM files, for HTTPS."""
        self.db_path = Path(db_path)
        self.mode = mode
        self.port = port
        self.host = host
        self.tls = tls
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        # Never route control calls through an HTTP proxy from the environment.
        handlers: list[Any] = [urllib.request.ProxyHandler({})]
        if tls is not None:
            control = ssl.create_default_context(cafile=str(tls[2]))
            control.check_hostname = False  # the certificate names the receiver, not this address
            handlers.append(urllib.request.HTTPSHandler(context=control))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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
            "--host", self.host,
            "--quiet",
        ]  # fmt: skip
        if self.tls is not None:
            command += ["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])]
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

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

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

    def received(self) -> list[dict[str, Any]]:
        """Every batch request exactly as it arrived, oldest first: ``status``, ``target``,
        ``headers`` (a list of ``(name, value)`` pairs, repeats and order kept), ``wire`` (the
        body's bytes) and ``text`` (the body, decompressed as capture would, decoded; None
        when that fails)."""
        requests = []
        for row in self.requests():
            body = row["body"] or b""
            try:
                hint = compression_param(row["target"] or "")
                text = decompress(body, row["content_encoding"], hint).decode("utf-8")
            except (Rejected, UnicodeDecodeError):
                text = None
            headers = [tuple(pair) for pair in json.loads(row["headers"] or "[]")]
            requests.append(
                {
                    "status": row["status"],
                    "target": row["target"],
                    "headers": headers,
                    "wire": body,
                    "text": text,
                }
            )
        return requests

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
