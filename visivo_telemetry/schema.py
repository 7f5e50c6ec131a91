"""The allowlist: every event name and property key that may ever leave the machine.

This module is the single source of truth. The event builder validates against it, the sender
validates again before sending, debug output and the README's "what we collect" table are made
from it. A key that is not listed here is never sent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_PROPERTIES_BYTES = 8192
"""Cap on one event's serialized properties; larger events are never spooled or sent."""

MAX_TEXT = 128
MAX_ARGS = 64
MAX_ENDPOINT = 256
MAX_OBJECT_TYPES = 32

LIB_NAME = "visivo-telemetry"


class Field(NamedTuple):
    """One allowed property: its JSON type, whether it must be present, and what it means."""

    kind: str
    required: bool
    meaning: str


COMMON_FIELDS: dict[str, Field] = {
    "visivo_version": Field("string", True, "Visivo version, as the host reports it"),
    "python_version": Field("string", True, "Python version, e.g. `3.11.7`"),
    "platform": Field("string", True, "`darwin`, `linux` or `windows`"),
    "platform_version": Field("string", True, "OS release, e.g. `6.1.0` (no hostname)"),
    "architecture": Field("string", True, "`x86_64`, `arm64`, …"),
    "session_id": Field(
        "string", True, "random uuid4 made at process start, never stored or reused"
    ),
}

EVENT_FIELDS: dict[str, dict[str, Field]] = {
    "cli_command": {
        "command": Field("string", True, "command name from the CLI's own table, e.g. `run`"),
        "command_args": Field(
            "list[string]", True, "flag names only; every value is `<value>`/`<path>`/`<redacted>`"
        ),
        "duration_ms": Field("number", True, "wall time of the command"),
        "success": Field("bool", True, "whether the command succeeded"),
        "error_type": Field("string|null", True, "exception class name only, never the message"),
        "job_count": Field("int", False, "number of jobs (`run` only)"),
        "object_counts": Field("dict[string,int]", False, "`{type: count}` (`compile` only)"),
    },
    "api_request": {
        "endpoint": Field("string", True, "route template, ids replaced, no query string"),
        "method": Field("string", True, "HTTP method"),
        "status_code": Field("int", True, "HTTP status"),
        "duration_ms": Field("number", True, "time to answer the request"),
    },
}

POSTHOG_FIELDS: dict[str, Any] = {
    "$process_person_profile": False,
    "$geoip_disable": True,
    "$lib": LIB_NAME,
}
"""Fixed PostHog control properties: no person profile, no GeoIP lookup of the sender's IP."""

LIB_VERSION_KEY = "$lib_version"

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "OTHER"}
)


def allowed_keys(event: str) -> frozenset[str]:
    """Every property key an event of this kind may carry (including PostHog's controls)."""
    return frozenset((*COMMON_FIELDS, *EVENT_FIELDS[event], *POSTHOG_FIELDS, LIB_VERSION_KEY))


def _is_text(value: object, limit: int = MAX_TEXT) -> bool:
    if not isinstance(value, str) or not value or len(value) > limit:
        return False
    return value.isprintable() and value.isascii()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and 0 <= value < 1e12


def _valid_args(value: object) -> bool:
    return (
        isinstance(value, list) and len(value) <= MAX_ARGS and all(_is_text(arg) for arg in value)
    )


def _valid_object_counts(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_OBJECT_TYPES
        and all(_is_text(k, 64) and _is_int(v) and v >= 0 for k, v in value.items())
    )


_CHECKS = {
    "visivo_version": lambda v: _is_text(v, 64),
    "python_version": lambda v: _is_text(v, 32),
    "platform": lambda v: v in ("darwin", "linux", "windows", "other"),
    "platform_version": lambda v: _is_text(v, 64),
    "architecture": lambda v: _is_text(v, 32),
    "session_id": lambda v: _is_text(v, 36) and len(v) == 36,
    "command": _is_text,
    "command_args": _valid_args,
    "duration_ms": _is_number,
    "success": lambda v: isinstance(v, bool),
    "error_type": lambda v: v is None or _is_text(v),
    "job_count": lambda v: _is_int(v) and v >= 0,
    "object_counts": _valid_object_counts,
    "endpoint": lambda v: _is_text(v, MAX_ENDPOINT) and v.startswith("/"),
    "method": lambda v: v in HTTP_METHODS,
    "status_code": lambda v: _is_int(v) and 100 <= v <= 599,
    LIB_VERSION_KEY: lambda v: _is_text(v, 32),
}


def check_property(key: str, value: object) -> bool:
    """True when `value` is an allowed value for property `key` (PostHog controls included)."""
    if key in POSTHOG_FIELDS:
        return value is POSTHOG_FIELDS[key] or (
            type(value) is type(POSTHOG_FIELDS[key]) and value == POSTHOG_FIELDS[key]
        )
    check = _CHECKS.get(key)
    return check is not None and bool(check(value))


def is_valid(event: str, properties: object) -> bool:
    """True when an event carries exactly allowed keys, every required one, each well-typed."""
    if event not in EVENT_FIELDS or not isinstance(properties, dict):
        return False
    keys = set(properties)
    if not keys <= allowed_keys(event):
        return False
    required = {k for k, f in (*COMMON_FIELDS.items(), *EVENT_FIELDS[event].items()) if f.required}
    if not required | set(POSTHOG_FIELDS) | {LIB_VERSION_KEY} <= keys:
        return False
    return all(check_property(k, v) for k, v in properties.items())


def markdown_table() -> str:
    """The README's "what we collect" table, generated so docs cannot drift from the code."""
    rows = ["| event | property | type | meaning |", "|---|---|---|---|"]
    for key, field in COMMON_FIELDS.items():
        rows.append(f"| every event | `{key}` | {field.kind} | {field.meaning} |")
    for event, fields in EVENT_FIELDS.items():
        for key, field in fields.items():
            optional = "" if field.required else " (optional)"
            rows.append(f"| `{event}` | `{key}` | {field.kind}{optional} | {field.meaning} |")
    return "\n".join(rows)
