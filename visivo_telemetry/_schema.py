"""The allowlist: every event name and property key that may ever leave the machine.

This module is the single source of truth. The event builder validates against it, the sender
validates again before sending, debug output and the README's "what we collect" table are made
from it. A key that is not listed here is never sent, and a value must have the shape the
sanitizer gives it (flag names and placeholders only), so a row that slipped past the builder
is still refused by the sender.
"""

from __future__ import annotations

from ._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_PROPERTIES_BYTES = 8192
"""Cap on one event's serialized properties; larger events are never spooled or sent."""

MAX_TEXT = 128
MAX_ARGS = 64
MAX_ENDPOINT = 256
MAX_OBJECT_TYPES = 32
MAX_FLAG_NAME = 48
MAX_CLUSTER = 8
MAX_REQUEST_COUNT = 10**9

LIB_NAME = "visivo-telemetry"

REDACTED = "<redacted>"
PATH = "<path>"
VALUE = "<value>"
PLACEHOLDERS = frozenset({REDACTED, PATH, VALUE})
"""What every argument value becomes; nothing else a user typed is ever sent."""

ENDPOINT_PLACEHOLDERS = frozenset({"{id}", "{uuid}", "{hash}", "{token}", "{value}"})

LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = frozenset("0123456789")
NAME_CHARS = LETTERS | DIGITS | frozenset("-_")
VERSION_CHARS = NAME_CHARS | frozenset(".+")
COMMAND_CHARS = NAME_CHARS | frozenset(" .:")
ROUTE_WORD_CHARS = NAME_CHARS | frozenset(".")
"""What a fixed word of a route is made of (`api`, `model-jobs`, `hot-reload.js`)."""
_LOWER_HEX = frozenset("0123456789abcdef")


class Field(Record):
    """One allowed property: its JSON type, whether it must be present, and what it means."""

    _fields = ("kind", "required", "meaning")


COMMON_FIELDS: dict[str, Field] = {
    "visivo_version": Field("string", True, "Visivo version, as the host reports it"),
    "python_version": Field("string", True, "Python version, e.g. `3.11.7`"),
    "platform": Field("string", True, "`darwin`, `linux` or `windows`, else `other`"),
    "platform_version": Field("string", True, "OS release, e.g. `6.1.0` (no hostname)"),
    "architecture": Field(
        "string", True, "`x86_64`, `arm64`, `x86`, `arm`, … from a known set, else `other`"
    ),
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
        "error_type": Field("string or null", True, "exception class name only, never the message"),
        "job_count": Field("int", False, "number of jobs (`run` only)"),
        "object_counts": Field("dict[string,int]", False, "`{type: count}` (`compile` only)"),
    },
    "api_request": {
        "endpoint": Field("string", True, "route template, ids replaced, no query string"),
        "method": Field("string", True, "HTTP method"),
        "status_code": Field("int", True, "HTTP status"),
        "duration_ms": Field(
            "number", True, "time to answer the request; the mean when `request_count` > 1"
        ),
        "request_count": Field(
            "int",
            True,
            "identical requests (same endpoint, method and status) in one 60 s window of one "
            "process, counted as this one event",
        ),
    },
}

UNSPECIFIED_IP = "0.0.0.0"

POSTHOG_FIELDS: dict[str, Any] = {
    "$process_person_profile": False,
    "$geoip_disable": True,
    "$ip": UNSPECIFIED_IP,
    "$lib": LIB_NAME,
}
"""Fixed PostHog control properties: no person profile, no GeoIP lookup, no IP address stored.

PostHog stores the request's source address as `$ip` whenever an event's own `$ip` is absent
or empty (`$geoip_disable` only skips the location lookup), so every event names the
unspecified address instead."""

LIB_VERSION_KEY = "$lib_version"

CONTROL_FIELDS: dict[str, Field] = {
    "$process_person_profile": Field("`false`", True, "PostHog makes no person profile"),
    "$geoip_disable": Field("`true`", True, "PostHog does not locate the sender's IP address"),
    "$ip": Field(
        f"`{UNSPECIFIED_IP}`",
        True,
        "the unspecified address, stored by PostHog in place of the connection's source address",
    ),
    "$lib": Field(f"`{LIB_NAME}`", True, "which library sent the event"),
    LIB_VERSION_KEY: Field("string", True, "version of this library"),
}
"""How the README describes PostHog's controls, which every event carries."""

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "OTHER"}
)


def allowed_keys(event: str) -> frozenset[str]:
    """Every property key an event of this kind may carry (including PostHog's controls)."""
    return frozenset((*COMMON_FIELDS, *EVENT_FIELDS[event], *POSTHOG_FIELDS, LIB_VERSION_KEY))


def required_keys(event: str) -> frozenset[str]:
    """The property keys every event of this kind must carry."""
    fields = (*COMMON_FIELDS.items(), *EVENT_FIELDS[event].items())
    return frozenset((*(k for k, f in fields if f.required), *POSTHOG_FIELDS, LIB_VERSION_KEY))


_KEYS = {event: (required_keys(event), allowed_keys(event)) for event in EVENT_FIELDS}


def is_flag_name(token: str) -> bool:
    """`--` and a plausible option name: a letter, then letters, digits, `-`, `_`."""
    body = token[2:]
    return (
        token.startswith("--")
        and 0 < len(body) <= MAX_FLAG_NAME
        and body[0] in LETTERS
        and NAME_CHARS.issuperset(body)
    )


def is_short_cluster(token: str) -> bool:
    """`-v`, `-vvv`: one letter, possibly repeated (a count, not a value)."""
    return (
        2 <= len(token) <= MAX_CLUSTER
        and token[0] == "-"
        and token[1] in LETTERS
        and token[2:] == token[1] * (len(token) - 2)
    )


def is_option_name(token: str) -> bool:
    """A long name (`--threads`) or a declared multi-letter short one (`-df`, `-th`)."""
    body = token[1:]
    return is_flag_name(token) or (
        token[:1] == "-"
        and 0 < len(body) <= MAX_FLAG_NAME
        and body[0] in LETTERS
        and NAME_CHARS.issuperset(body)
    )


def is_clean_arg(arg: object) -> bool:
    """An argument as the sanitizer emits it: a flag name, a placeholder, or both joined."""
    if not isinstance(arg, str):
        return False
    if arg in PLACEHOLDERS or arg == "--" or is_option_name(arg) or is_short_cluster(arg):
        return True
    name, has_value, value = arg.partition("=")
    if has_value:
        return is_option_name(name) and value in PLACEHOLDERS
    return len(arg) > 2 and arg[0] == "-" and arg[1] in LETTERS and arg[2:] in PLACEHOLDERS


def is_clean_segment(segment: str) -> bool:
    """A URL path segment as the sanitizer or a route template gives it: a route word, a
    placeholder, or `{name}` naming a route's variables (`{project_id}`, `{a-b}`).

    Only shape can be checked here (the host's route words are not known to the sender): any
    other punctuation, `<…>`, or `:`, `=`, quotes or spaces inside braces is user text.
    """
    if ROUTE_WORD_CHARS.issuperset(segment) or segment in ENDPOINT_PLACEHOLDERS:
        return True
    if segment[:1] + segment[-1:] != "{}":
        return False
    names = segment[1:-1].split("-")
    return all(name.isascii() and name.isidentifier() for name in names)


def is_clean_endpoint(value: object) -> bool:
    """A path as the sanitizer or a route table gives it: no query, fragment or odd bytes."""
    return (
        _is_text(value, MAX_ENDPOINT)
        and value.startswith("/")
        and all(is_clean_segment(s) for s in value.split("/"))
    )


def _is_text(value: object, limit: int = MAX_TEXT) -> bool:
    if not isinstance(value, str) or not value or len(value) > limit:
        return False
    return value.isprintable() and value.isascii()


def _is_word(value: object, chars: frozenset[str], limit: int) -> bool:
    return _is_text(value, limit) and chars.issuperset(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and 0 <= value < 1e12


def is_uuid(value: object) -> bool:
    """A canonical 8-4-4-4-12 lowercase hex uuid: capture rejects a whole request for one
    that is not, and we only ever make lowercase ones."""
    return (
        isinstance(value, str)
        and len(value) == 36
        and [len(part) for part in value.split("-")] == [8, 4, 4, 4, 12]
        and _LOWER_HEX.issuperset(value.replace("-", ""))
    )


def _is_uuid4(value: object) -> bool:
    return is_uuid(value) and value[14] == "4"


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]


def is_timestamp(value: object) -> bool:
    """An ISO 8601 UTC time as the spool stores it: `2026-11-28T10:00:00.123Z`."""
    if not isinstance(value, str) or len(value) != 24:
        return False
    digits = value[:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16] + value[17:19]
    digits += value[20:23]
    return (
        value[4] + value[7] + value[10] + value[13] + value[16] + value[19] + value[23] == "--T::.Z"
        and digits.isascii()
        and digits.isdigit()
        and "01" <= value[5:7] <= "12"
        and 1 <= int(value[8:10]) <= _days_in_month(int(value[:4]), int(value[5:7]))
        and value[11:13] <= "23"
        and value[14:16] <= "59"
        and value[17:19] <= "60"
    )


MAX_ERROR_TYPE = 64
MAX_COUNT = 1_000_000
"""Upper bound of `job_count` and of each `object_counts` value (a project far larger than any)."""
MAX_METRIC_KEY = 32
_METRIC_KEY_HEAD = frozenset("abcdefghijklmnopqrstuvwxyz")
_METRIC_KEY_CHARS = _METRIC_KEY_HEAD | frozenset("0123456789_")


def is_class_name(value: object) -> bool:
    """One ascii Python identifier (what a `class` statement makes), at most 64 characters."""
    return (
        _is_text(value)
        and 0 < len(value) <= MAX_ERROR_TYPE
        and value.isascii()
        and value.isidentifier()
    )


_is_class_name = is_class_name


def is_metric_key(value: object) -> bool:
    """An object-type word: `[a-z][a-z0-9_]{0,31}`."""
    return (
        _is_text(value)
        and 0 < len(value) <= MAX_METRIC_KEY
        and value[0] in _METRIC_KEY_HEAD
        and all(c in _METRIC_KEY_CHARS for c in value)
    )


def is_count(value: object) -> bool:
    return _is_int(value) and 0 <= value <= MAX_COUNT


def _valid_args(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_ARGS
        and all(_is_text(arg) and is_clean_arg(arg) for arg in value)
    )


def _valid_object_counts(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_OBJECT_TYPES
        and all(is_metric_key(k) and is_count(v) for k, v in value.items())
    )


_CHECKS = {
    "visivo_version": lambda v: _is_word(v, VERSION_CHARS, 64),
    "python_version": lambda v: _is_word(v, VERSION_CHARS, 32),
    "platform": lambda v: v in ("darwin", "linux", "windows", "other"),
    "platform_version": lambda v: _is_word(v, VERSION_CHARS, 64),
    "architecture": lambda v: _is_word(v, VERSION_CHARS, 32),
    "session_id": _is_uuid4,
    "command": lambda v: _is_word(v, COMMAND_CHARS, MAX_TEXT),
    "command_args": _valid_args,
    "duration_ms": _is_number,
    "success": lambda v: isinstance(v, bool),
    "error_type": lambda v: v is None or _is_class_name(v),
    "job_count": lambda v: is_count(v),
    "object_counts": _valid_object_counts,
    "endpoint": is_clean_endpoint,
    "method": lambda v: v in HTTP_METHODS,
    "status_code": lambda v: _is_int(v) and 100 <= v <= 599,
    "request_count": lambda v: _is_int(v) and 1 <= v <= MAX_REQUEST_COUNT,
    LIB_VERSION_KEY: lambda v: _is_word(v, VERSION_CHARS, 32),
}


_VERDICTS: dict[tuple[str, object], bool] = {}
"""Verdicts on text values, which repeat across events (metadata, flags): a sender draining
thousands of events checks each distinct value once. Bounded; cleared when full."""
_MAX_VERDICTS = 4096


def check_property(key: str, value: object) -> bool:
    """True when `value` is an allowed value for property `key` (PostHog controls included)."""
    if type(value) is str:
        memo_key: tuple[str, object] = (key, value)
    elif type(value) is list and all(type(item) is str for item in value):
        memo_key = (key, tuple(value))
    else:
        return _check_property(key, value)
    verdict = _VERDICTS.get(memo_key)
    if verdict is None:
        if len(_VERDICTS) >= _MAX_VERDICTS:
            _VERDICTS.clear()
        verdict = _VERDICTS[memo_key] = _check_property(key, value)
    return verdict


def _check_property(key: str, value: object) -> bool:
    if key in POSTHOG_FIELDS:
        expected = POSTHOG_FIELDS[key]
        return type(value) is type(expected) and value == expected
    check = _CHECKS.get(key)
    return check is not None and bool(check(value))


def is_valid(event: str, properties: object) -> bool:
    """True when an event carries exactly allowed keys, every required one, each well-typed."""
    if event not in EVENT_FIELDS or not isinstance(properties, dict):
        return False
    required, allowed = _KEYS[event]
    keys = properties.keys()
    if not required <= keys <= allowed:
        return False
    return all(check_property(k, v) for k, v in properties.items())


def why_invalid(event: str, properties: dict[str, Any]) -> str:
    """Which keys make an event invalid, for debug mode (`is_valid` is the fast check)."""
    if event not in EVENT_FIELDS:
        return f"unknown event {event!r}"
    required, allowed = _KEYS[event]
    problems = [f"{key} missing" for key in sorted(required - properties.keys())]
    problems += [f"{key} not allowed" for key in sorted(properties.keys() - allowed)]
    problems += [
        f"{key} refused"
        for key, value in properties.items()
        if key in allowed and not check_property(key, value)
    ]
    return ", ".join(problems) or "invalid"


def markdown_table() -> str:
    """The README's "what we collect" table, generated so docs cannot drift from the code."""
    rows = ["| event | property | type | meaning |", "|---|---|---|---|"]
    for key, field in COMMON_FIELDS.items():
        rows.append(f"| every event | `{key}` | {field.kind} | {field.meaning} |")
    for event, fields in EVENT_FIELDS.items():
        for key, field in fields.items():
            optional = "" if field.required else " (optional)"
            rows.append(f"| `{event}` | `{key}` | {field.kind}{optional} | {field.meaning} |")
    for key, field in CONTROL_FIELDS.items():
        rows.append(f"| every event | `{key}` | {field.kind} | {field.meaning} |")
    return "\n".join(rows)
