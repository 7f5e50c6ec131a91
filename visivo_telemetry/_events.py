"""Build events: common metadata, a per-process session id, and allowlist validation.

Built from `os.uname()`, `os.urandom` and `time` rather than `platform`, `uuid` and `datetime`,
whose imports alone would cost a short CLI run several milliseconds.
"""

from __future__ import annotations

import os
import sys
import time

from . import _schema as schema
from ._record import Record
from ._version import __version__ as LIB_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ARCHITECTURES = {
    # 64-bit x86: Linux/macOS `x86_64`, Windows `AMD64` (`EM64T` on old Windows), BSD `amd64`
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "em64t": "x86_64",
    # 64-bit ARM: Linux `aarch64`, macOS and Windows `arm64`
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm64e": "arm64",
    "aarch64_be": "arm64",
    # 32-bit x86: Windows `x86`, Linux `i686`…
    "x86": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    # 32-bit ARM: Windows `ARM`, Linux `armv7l`…
    "arm": "arm",
    "armv6l": "arm",
    "armv7": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "ia64": "ia64",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loongarch64",
}
"""Every machine name `_platform` may meet (lower-cased) → the one value sent; any other is sent
as `other`. The values map to themselves, so a second lookup changes nothing."""


def new_uuid4() -> str:
    """A random RFC 4122 version-4 uuid, without importing `uuid`."""
    return _as_uuid(bytearray(os.urandom(16)), version=4)


def _as_uuid(raw: bytearray, version: int) -> str:
    """16 bytes as an RFC uuid string, with the version and variant bits set."""
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_uuid7(when: float | None = None) -> str:
    """A time-ordered RFC 9562 version-7 uuid for an event.

    Its leading milliseconds are the event's own timestamp (sent anyway), and they keep the
    spool's uuid index append-only: the sender's deletes touch a few index pages per batch
    instead of one per event.
    """
    millis = int((time.time() if when is None else when) * 1000)
    return _as_uuid(bytearray(millis.to_bytes(6, "big") + os.urandom(10)), version=7)


def iso_utc(when: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. `2026-11-28T10:00:00.123Z`."""
    when = time.time() if when is None else when
    whole = int(when)
    millis = int((when - whole) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{millis:03d}Z"


_session_id = new_uuid4()


def _renew_session() -> None:
    global _session_id
    _session_id = new_uuid4()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_session)


def session_id() -> str:
    """This process's session id: made at start (and in each forked child), never stored."""
    return _session_id


def _platform(
    system: str | None = None,
    uname: Any = None,
    environ: Any = None,
    windows_version: Any = None,
) -> tuple[str, str, str]:
    """`(platform, platform_version, architecture)`, each from a fixed set or a bare number.

    The inputs default to this process's own (`sys.platform`, `os.uname()`, `os.environ`,
    `sys.getwindowsversion()`); tests pass other systems'. Nothing is passed through as found:
    the architecture is looked up in `_ARCHITECTURES` (else `other`) and the version is the
    leading `digits.digits…` of the release (`6.1.0-18-amd64` → `6.1.0`), so neither a custom
    kernel name nor an environment variable can carry a hostname out.

    - Windows: `major.minor.build` of `sys.getwindowsversion()` (`10.0.22631`); the machine's
      architecture from `PROCESSOR_ARCHITEW6432` (set in a 32-bit process on 64-bit Windows)
      or else `PROCESSOR_ARCHITECTURE` (`AMD64`, `x86`, `ARM64`, `IA64`, `EM64T`…), as
      `platform.machine()` does; an x64 Python emulated on ARM64 Windows reports `AMD64`.
    - macOS: `os.uname()`, whose release is Darwin's (`23.4.0` is macOS 14.4) and whose
      machine is `arm64` or `x86_64` (also `x86_64` for a Python running under Rosetta).
    - Linux and the rest: `os.uname()`.
    """
    system = sys.platform if system is None else system
    if system == "win32":
        if windows_version is None:
            windows_version = sys.getwindowsversion()  # type: ignore[attr-defined]
        environ = os.environ if environ is None else environ
        machine = environ.get("PROCESSOR_ARCHITEW6432") or environ.get("PROCESSOR_ARCHITECTURE")
        major, minor, build = windows_version.major, windows_version.minor, windows_version.build
        release = f"{int(major)}.{int(minor)}.{int(build)}"
        name = "windows"
    else:
        name = {"darwin": "darwin", "linux": "linux"}.get(system, "other")
        if uname is None:
            uname = os.uname() if hasattr(os, "uname") else None
        machine = None if uname is None else uname.machine
        kept = []
        for char in "" if uname is None else str(uname.release):
            if "0" <= char <= "9" or (char == "." and kept and kept[-1] != "."):
                kept.append(char)
            else:
                break
        release = "".join(kept).rstrip(".") or "unknown"
    return name, release, _ARCHITECTURES.get(str(machine or "").lower(), "other")


def _clean(text: str, key: str) -> str:
    """The leading run of `text` that property `key`'s word rule accepts (`1.4.0 (dev)` →
    `1.4.0`), else `unknown`.

    A host's odd input degrades one field instead of costing the whole event.
    """
    rule = schema.RULES[key]
    chars, limit = rule.chars, rule.limit
    kept = []
    for char in str(text)[:limit]:
        if char not in chars:
            break
        kept.append(char)
    return "".join(kept) or "unknown"


_MAX_DURATION_MS = schema.MAX_NUMBER - 1


def _duration(milliseconds: float) -> float:
    """Milliseconds rounded to microseconds, within what the schema accepts (NaN → 0)."""
    value = float(milliseconds)
    if value != value:
        return 0.0
    return round(min(max(value, 0.0), _MAX_DURATION_MS), 3)


_metadata: dict[str, str] | None = None


def metadata(visivo_version: str) -> dict[str, Any]:
    """The properties every event carries, computed once per process."""
    global _metadata
    if _metadata is None:
        name, release, machine = _platform()
        _metadata = {
            "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
            "platform": name,
            "platform_version": _clean(release, "platform_version"),
            "architecture": _clean(machine, "architecture"),
        }
    return {
        "visivo_version": _clean(visivo_version, "visivo_version"),
        **_metadata,
        "session_id": _session_id,
        **schema.FIXED_VALUES,
        schema.LIB_VERSION_KEY: LIB_VERSION,
    }


class Row(Record):
    """One event as the spool holds it, as the sender claims and `show` reads it; `table` is
    where it waits (`events`, or `request_windows` for coalesced API requests)."""

    _fields = ("id", "uuid", "event", "created_at", "properties", "table")
    _defaults = ("events",)


MAX_DEPTH = 8
"""Deeper than any event we build (properties, then `object_counts` or `command_args`: 2).
A row nested deeper is damage or tampering, refused before `json` recurses into it."""


def parse_properties(text: object) -> dict[str, Any] | None:
    """A spooled row's properties as a dict; None for a row we refuse unread: over the size
    cap, nested deeper than `MAX_DEPTH`, not JSON, or not an object. Never raises, so one
    poison row can never stop a batch, a sender or `flush`."""
    if not isinstance(text, str) or len(text) > schema.MAX_PROPERTIES_BYTES:
        return None
    if text.count("[") + text.count("{") > MAX_DEPTH and _nesting(text) > MAX_DEPTH:
        return None
    import json

    try:
        properties = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return properties if isinstance(properties, dict) else None


def _nesting(text: str) -> int:
    """How deep brackets nest in `text`, counting those inside strings too (an over-count,
    which only ever refuses more); only read when the text holds many brackets."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def window_properties(base: str, request_count: int, duration_ms_total: float) -> str:
    """A request window's properties: its fixed ones plus the count and the mean duration."""
    properties = parse_properties(base)
    try:
        properties["request_count"] = request_count  # type: ignore[index]
        properties["duration_ms"] = _duration(duration_ms_total / request_count)  # type: ignore[index]
        return dumps(properties)
    except (TypeError, ValueError, ArithmeticError):
        return base  # refused by `wire_json`, as any damaged row is (NaN, a count of "many")


class Event(Record):
    """One event as it is spooled: (uuid, event, created_at, properties_json).

    `properties_json` is exactly what will be sent.
    """

    _fields = ("uuid", "event", "created_at", "properties_json")

    def wire(self) -> dict[str, Any]:
        """The PostHog batch item for this event."""
        import json

        properties = json.loads(self.properties_json)
        return wire_item(self.event, self.uuid, self.created_at, properties)


def wire_item(event: str, uuid: str, timestamp: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A PostHog batch item; `distinct_id` is the session id, so no person is ever identified."""
    return {
        "event": event,
        "uuid": uuid,
        "timestamp": timestamp,
        "distinct_id": properties.get("session_id"),
        "properties": properties,
    }


def wire_json(row: Row) -> str | None:
    """The batch item for a spooled row, validated against the allowlist; None if invalid.

    PostHog's fixed controls, and `request_count: 1` for an `api_request`, are filled in when a
    row lacks them (a spool written by an earlier version of this library); a row holding any
    other value for a control is refused.
    """
    if not schema.is_uuid(row.uuid) or not schema.is_timestamp(row.created_at):
        return None
    properties = parse_properties(row.properties)
    if properties is None:
        return None
    for key, value in schema.FIXED_VALUES.items():
        properties.setdefault(key, value)
    if row.event == "api_request":
        properties.setdefault("request_count", 1)  # one request, from a version before counts
    if not schema.is_valid(row.event, properties):
        return None
    # Re-encoded, never spliced: what leaves is exactly what was validated, even for a
    # tampered row whose text holds duplicate keys that json.loads would have hidden.
    try:
        return dumps(wire_item(row.event, row.uuid, row.created_at, properties))
    except (TypeError, ValueError):
        return None  # a value JSON cannot carry (NaN) that the schema let through


def _version_tuple(text: object) -> tuple[int, ...]:
    parts = []
    for part in str(text).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def from_newer_library(row: Row) -> bool:
    """Whether a row was written by a newer version of this library (its `$lib_version`).

    A row we cannot validate but a newer version wrote may hold what we do not know yet (a new
    field): we leave it for a sender of that version instead of dropping it.
    """
    properties = parse_properties(row.properties)
    if properties is None:
        return False
    return _version_tuple(properties.get(schema.LIB_VERSION_KEY)) > _version_tuple(LIB_VERSION)


HISTORICAL_AGE_S = 48 * 3600
"""Events all older than this go to PostHog's historical pipeline (`historical_migration`)."""


def is_backlog(rows: list[Row], now: float | None = None) -> bool:
    """Whether every event of a batch is over 48 hours old: a laptop that was offline."""
    cutoff = iso_utc((time.time() if now is None else now) - HISTORICAL_AGE_S)
    return bool(rows) and all(row.created_at < cutoff for row in rows)


def batch_body(api_key: str, items: list[str], historical: bool = False) -> bytes:
    """The PostHog `/batch/` body; `sent_at` lets PostHog correct this machine's clock skew."""
    head: dict[str, Any] = {"api_key": api_key, "sent_at": iso_utc()}
    if historical:
        head["historical_migration"] = True
    return f'{dumps(head)[:-1]},"batch":[{",".join(items)}]}}'.encode()


def part_body(api_key: str, part: list[tuple[Row, str]]) -> bytes:
    """The body for validated rows with their items (a claimed batch, or half of one)."""
    rows = [row for row, _ in part]
    return batch_body(api_key, [item for _, item in part], is_backlog(rows))


def dumps(value: Any) -> str:
    """Compact, deterministic JSON: the exact bytes that are spooled, printed and sent.

    Byte-for-byte `json.dumps(value, separators=(",", ":"), ensure_ascii=True,
    allow_nan=False)` for the types events hold. Where `json` is already loaded (the sender,
    most hosts) its C encoder does the work; otherwise a few lines of ours spare a cold CLI
    process the import of `json`, which pulls in `re`, `enum` and friends.
    """
    global _json_encoder
    if _json_encoder is None:
        if "json" not in sys.modules and _quote is not None:
            return _encode(value)
        import json

        _json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return _json_encoder.encode(value)


_json_encoder: Any = None


try:
    from _json import encode_basestring_ascii as _quote
except ImportError:
    _quote = None


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("out of range float values are not JSON compliant")
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("keys must be str")
            items.append(_quote(key) + ":" + _encode(item))
        return "{" + ",".join(items) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class NotRecorded(Exception):
    """An event the allowlist or the size cap refuses; the message says why (debug mode)."""


def build(event: str, visivo_version: str, properties: dict[str, Any]) -> Event:
    """An event with metadata added; `NotRecorded` when it would break the allowlist or cap."""
    props = {**metadata(visivo_version), **properties}
    if not schema.is_valid(event, props):
        raise NotRecorded(schema.why_invalid(event, props))
    encoded = dumps(props)
    if len(encoded) > schema.MAX_PROPERTIES_BYTES:
        raise NotRecorded(f"over {schema.MAX_PROPERTIES_BYTES} bytes")
    now = time.time()
    return Event(new_uuid7(now), event, iso_utc(now), encoded)


METRIC_COMMANDS = schema.METRIC_COMMANDS
"""The one command that carries each metric (`schema.PROPERTIES` declares it)."""


def safe_name(key: object) -> str:
    """A metric's name for a debug line: itself when it is a known metric, else `<other>`."""
    return key if key in METRIC_COMMANDS else "<other>"


SAFE_ERROR_TYPE = "Exception"
"""What an `error_type` that is not one ascii identifier (`db.internal`, `Ошибка`) becomes."""


def _error_type(name: object) -> str:
    """An exception class name as the schema accepts it (one ascii identifier), else fixed."""
    return name if schema.is_class_name(name) else SAFE_ERROR_TYPE


def cli_command_properties(
    command: str,
    command_args: list[str],
    duration_ms: float,
    error_type: str | None,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """`cli_command` properties; a metric outside the allowlist, ill-typed, or set on another
    command than the one its declaration names (`METRIC_COMMANDS`) is left out."""
    props: dict[str, Any] = {
        "command": _clean(command, "command"),
        "command_args": command_args,
        "duration_ms": _duration(duration_ms),
        "success": error_type is None,
        "error_type": None if error_type is None else _error_type(error_type),
    }
    for key, owner in METRIC_COMMANDS.items():
        if key in metrics and command == owner and schema.check_property(key, metrics[key]):
            props[key] = metrics[key]
    return props


def api_request_properties(
    method: str, endpoint: str, status_code: int, duration_ms: float, request_count: int = 1
) -> dict[str, Any]:
    """`api_request` properties (`duration_ms` the mean of `request_count` requests); an
    unknown method is recorded as `OTHER`."""
    method = str(method).upper()
    return {
        "endpoint": endpoint,
        "method": method if method in schema.HTTP_METHODS else "OTHER",
        "status_code": int(status_code),
        "duration_ms": _duration(duration_ms),
        "request_count": int(request_count),
    }
