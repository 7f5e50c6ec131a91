"""Build events: common metadata, a per-process session id, and allowlist validation.

Built from `os.uname()`, `os.urandom` and `time` rather than `platform`, `uuid` and `datetime`,
whose imports alone would cost a short CLI run several milliseconds.
"""

from __future__ import annotations

import os
import sys
import time

from . import schema
from ._version import __version__ as LIB_VERSION
from .record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ARCHITECTURES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


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


def _platform() -> tuple[str, str, str]:
    if sys.platform.startswith("win"):
        version = sys.getwindowsversion()  # type: ignore[attr-defined]
        machine = os.environ.get("PROCESSOR_ARCHITECTURE", "unknown")
        return "windows", f"{version.major}.{version.minor}.{version.build}", machine
    name = {"darwin": "darwin", "linux": "linux"}.get(sys.platform, "other")
    uname = os.uname()
    release = uname.release.split("-", 1)[0] if name == "linux" else uname.release
    return name, release, uname.machine


def _clean(text: str, limit: int) -> str:
    kept = "".join(c for c in text if c.isascii() and c.isprintable())[:limit]
    return kept or "unknown"


_metadata: dict[str, str] | None = None


def metadata(visivo_version: str) -> dict[str, Any]:
    """The properties every event carries, computed once per process."""
    global _metadata
    if _metadata is None:
        name, release, machine = _platform()
        _metadata = {
            "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
            "platform": name,
            "platform_version": _clean(release, 64),
            "architecture": _clean(_ARCHITECTURES.get(machine.lower(), machine), 32),
        }
    return {
        "visivo_version": _clean(str(visivo_version), 64),
        **_metadata,
        "session_id": _session_id,
        **schema.POSTHOG_FIELDS,
        schema.LIB_VERSION_KEY: LIB_VERSION,
    }


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


def build(event: str, visivo_version: str, properties: dict[str, Any]) -> Event | None:
    """An event with metadata added, or None when it would break the allowlist or size cap."""
    props = {**metadata(visivo_version), **properties}
    if not schema.is_valid(event, props):
        return None
    encoded = dumps(props)
    if len(encoded) > schema.MAX_PROPERTIES_BYTES:
        return None
    now = time.time()
    return Event(new_uuid7(now), event, iso_utc(now), encoded)


def cli_command_properties(
    command: str,
    command_args: list[str],
    duration_ms: float,
    error_type: str | None,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """`cli_command` properties; metrics outside the allowlist, or ill-typed, are left out."""
    props: dict[str, Any] = {
        "command": _clean(command, schema.MAX_TEXT),
        "command_args": command_args,
        "duration_ms": round(max(duration_ms, 0.0), 3),
        "success": error_type is None,
        "error_type": None if error_type is None else _clean(error_type, schema.MAX_TEXT),
    }
    for key in ("job_count", "object_counts"):
        if key in metrics and schema.check_property(key, metrics[key]):
            props[key] = metrics[key]
    return props


def api_request_properties(
    method: str, endpoint: str, status_code: int, duration_ms: float
) -> dict[str, Any]:
    """`api_request` properties; an unknown method is recorded as `OTHER`."""
    method = str(method).upper()
    return {
        "endpoint": endpoint,
        "method": method if method in schema.HTTP_METHODS else "OTHER",
        "status_code": int(status_code),
        "duration_ms": round(max(float(duration_ms), 0.0), 3),
    }
