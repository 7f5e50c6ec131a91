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


def safe_name(key: object) -> str:
    """A metric's name for a debug line: itself when it is a known metric, else `<other>`."""
    return key if key in ("job_count", "object_counts") else "<other>"


SAFE_ERROR_TYPE = "Exception"
"""What an `error_type` that is not one ascii identifier (`db.internal`, `Ошибка`) becomes."""


def _error_type(name: object) -> str:
    return name if schema.is_class_name(name) else SAFE_ERROR_TYPE


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
        "error_type": None if error_type is None else _error_type(error_type),
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
