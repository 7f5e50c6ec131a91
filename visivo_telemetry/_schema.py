"""The allowlist: every event name and property key that may ever leave the machine.

This module is the single source of truth: each property is declared once, in `PROPERTIES`,
and everything else is derived from that declaration — the allowed and required keys of each
event, the validation the event builder and (again, before sending) the sender apply, which
command carries each metric, PostHog's fixed controls, and the README's "what we collect"
table. A key that is not listed here is never sent, and a value must have the shape the
sanitizer gives it (flag names and placeholders only), so a row that slipped past the builder
is still refused by the sender.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Property = tuple[str, str, str, Callable[[object], bool], str, bool, str | None]
    """`(name, carried_by, type_, rule, meaning, required, command)`: see `_property`."""

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_NUMBER = 1e12
"""Numbers (durations) are below this: a trillion milliseconds is 31 years."""


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and 0 <= value < MAX_NUMBER


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


def is_metric_key(value: object) -> bool:
    """An object-type word: `[a-z][a-z0-9_]{0,31}`."""
    return (
        _is_text(value)
        and 0 < len(value) <= MAX_METRIC_KEY
        and value[0] in _METRIC_KEY_HEAD
        and all(c in _METRIC_KEY_CHARS for c in value)
    )


def is_count(value: object) -> bool:
    """A `job_count` or an `object_counts` value: an integer from 0 to `MAX_COUNT`."""
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


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_error_type(value: object) -> bool:
    return value is None or is_class_name(value)


def _is_status_code(value: object) -> bool:
    return _is_int(value) and 100 <= value <= 599


def _is_request_count(value: object) -> bool:
    return _is_int(value) and 1 <= value <= MAX_REQUEST_COUNT


def _word(chars: frozenset[str], limit: int) -> Callable[[object], bool]:
    """Rule: printable ascii text of at most `limit` characters, all of them from `chars`.

    The rule keeps both as attributes, so the event builder can trim a host's text to fit it.
    """

    def rule(value: object) -> bool:
        return _is_text(value, limit) and chars.issuperset(value)

    rule.chars, rule.limit = chars, limit  # type: ignore[attr-defined]
    return rule


def _one_of(choices: frozenset[str]) -> Callable[[object], bool]:
    """Rule: one of a fixed set of strings."""
    return lambda value: isinstance(value, str) and value in choices


def _exactly(expected: object) -> Callable[[object], bool]:
    """Rule: exactly this value, of exactly its type (`true` is not `1`); the rule keeps it
    as its `value`, which the event builder fills in."""

    def rule(value: object) -> bool:
        return type(value) is type(expected) and value == expected

    rule.value = expected  # type: ignore[attr-defined]
    return rule


def _property(
    name: str,
    carried_by: str,
    type_: str,
    rule: Callable[[object], bool],
    meaning: str,
    *,
    required: bool = True,
    command: str | None = None,
) -> Property:
    """One property an event may carry, declared once.

    `carried_by` is an event name or `EVERY_EVENT`; `type_` is written as the README's table
    shows it (`FIXED`: the one value every event carries, its rule's `value`); `rule(value)`
    says whether a value may be sent; `command`, for a metric, is the one command whose events
    carry it. A plain tuple: only this module reads it, and a record class would cost every
    host ~20 µs of import.
    """
    return (name, carried_by, type_, rule, meaning, required, command)


EVERY_EVENT = "every event"
FIXED = "fixed"
"""The type of a property that has one value (`_exactly`): the README's table shows it."""
CLI_COMMAND = "cli_command"
API_REQUEST = "api_request"

UNSPECIFIED_IP = "0.0.0.0"
LIB_VERSION_KEY = "$lib_version"

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "OTHER"}
)

_VERSION = _word(VERSION_CHARS, 64)
_SHORT_VERSION = _word(VERSION_CHARS, 32)


PROPERTIES: tuple[Property, ...] = (
    _property(
        "visivo_version", EVERY_EVENT, "string", _VERSION, "Visivo version, as the host reports it"
    ),
    _property(
        "python_version", EVERY_EVENT, "string", _SHORT_VERSION, "Python version, e.g. `3.11.7`"
    ),
    _property(
        "platform",
        EVERY_EVENT,
        "string",
        _one_of(frozenset({"darwin", "linux", "windows", "other"})),
        "`darwin`, `linux` or `windows`, else `other`",
    ),
    _property(
        "platform_version",
        EVERY_EVENT,
        "string",
        _VERSION,
        "OS release, e.g. `6.1.0` (no hostname)",
    ),
    _property(
        "architecture",
        EVERY_EVENT,
        "string",
        _SHORT_VERSION,
        "`x86_64`, `arm64`, `x86`, `arm`, … from a known set, else `other`",
    ),
    _property(
        "session_id",
        EVERY_EVENT,
        "string",
        _is_uuid4,
        "random uuid4 made at process start, never stored or reused",
    ),
    _property(
        "command",
        CLI_COMMAND,
        "string",
        _word(COMMAND_CHARS, MAX_TEXT),
        "command name from the CLI's own table, e.g. `run`",
    ),
    _property(
        "command_args",
        CLI_COMMAND,
        "list[string]",
        _valid_args,
        "flag names only; every value is `<value>`/`<path>`/`<redacted>`",
    ),
    _property("duration_ms", CLI_COMMAND, "number", _is_number, "wall time of the command"),
    _property("success", CLI_COMMAND, "bool", _is_bool, "whether the command succeeded"),
    _property(
        "error_type",
        CLI_COMMAND,
        "string or null",
        _is_error_type,
        "exception class name only, never the message",
    ),
    _property(
        "job_count", CLI_COMMAND, "int", is_count, "number of jobs", required=False, command="run"
    ),
    _property(
        "object_counts",
        CLI_COMMAND,
        "dict[string,int]",
        _valid_object_counts,
        "`{type: count}`",
        required=False,
        command="compile",
    ),
    _property(
        "endpoint",
        API_REQUEST,
        "string",
        is_clean_endpoint,
        "route template, ids replaced, no query string",
    ),
    _property("method", API_REQUEST, "string", _one_of(HTTP_METHODS), "HTTP method"),
    _property("status_code", API_REQUEST, "int", _is_status_code, "HTTP status"),
    _property(
        "duration_ms",
        API_REQUEST,
        "number",
        _is_number,
        "time to answer the request; the mean when `request_count` > 1",
    ),
    _property(
        "request_count",
        API_REQUEST,
        "int",
        _is_request_count,
        "identical requests (same endpoint, method and status) in one 60 s window of one "
        "process, counted as this one event",
    ),
    _property(
        "$process_person_profile",
        EVERY_EVENT,
        FIXED,
        _exactly(False),
        "PostHog makes no person profile",
    ),
    _property(
        "$geoip_disable",
        EVERY_EVENT,
        FIXED,
        _exactly(True),
        "PostHog does not locate the sender's IP address",
    ),
    _property(
        "$ip",
        EVERY_EVENT,
        FIXED,
        _exactly(UNSPECIFIED_IP),
        "the unspecified address, stored by PostHog in place of the connection's source address",
    ),
    _property("$lib", EVERY_EVENT, FIXED, _exactly(LIB_NAME), "which library sent the event"),
    _property(LIB_VERSION_KEY, EVERY_EVENT, "string", _SHORT_VERSION, "version of this library"),
)
"""Everything an event may carry. PostHog stores the request's source address as `$ip`
whenever an event's own `$ip` is absent or empty (`$geoip_disable` only skips the location
lookup), so every event names the unspecified address instead."""


def _derive(
    properties: tuple[Property, ...],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str], dict[str, Any]]:
    """Each key's rule, the fixed values, each metric's command, each event's keys.

    A key that two events carry (`duration_ms`) must have one rule: a value is checked by key.
    """
    rules: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    metrics: dict[str, str] = {}
    must: dict[str, list[str]] = {EVERY_EVENT: []}
    may: dict[str, list[str]] = {EVERY_EVENT: []}
    for name, carried_by, type_, rule, _, required, command in properties:
        if rules.setdefault(name, rule) is not rule:
            raise ValueError(f"{name} is declared with two rules")
        if type_ == FIXED:
            fixed[name] = rule.value
        if command is not None:
            metrics[name] = command
        if carried_by not in may:
            must[carried_by], may[carried_by] = [], []
        may[carried_by].append(name)
        if required:
            must[carried_by].append(name)
    every_must, every_may = must.pop(EVERY_EVENT), may.pop(EVERY_EVENT)
    keys = {e: (frozenset(every_must + must[e]), frozenset(every_may + may[e])) for e in may}
    return rules, fixed, metrics, keys


RULES, FIXED_VALUES, METRIC_COMMANDS, _KEYS = _derive(PROPERTIES)
"""`RULES[key](value)` says whether `value` may be sent as property `key`; `FIXED_VALUES`
are PostHog's controls that never vary (no person profile, no GeoIP lookup, no IP address);
`METRIC_COMMANDS` names the one command that carries each metric, as the privacy notice says
(Visivo's `run` compiles first, so it sets `object_counts` too: dropped, never sent with
`run`); `_KEYS[event]` is (the keys it must carry, the keys it may carry)."""

EVENTS = tuple(_KEYS)
"""Every event name that may be sent."""


def allowed_keys(event: str) -> frozenset[str]:
    """Every property key an event of this kind may carry (including PostHog's controls)."""
    return _KEYS[event][1]


def required_keys(event: str) -> frozenset[str]:
    """The property keys every event of this kind must carry."""
    return _KEYS[event][0]


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
    rule = RULES.get(key)
    return rule is not None and bool(rule(value))


def is_valid(event: str, properties: object) -> bool:
    """True when an event carries exactly allowed keys, every required one, each well-typed."""
    if event not in _KEYS or not isinstance(properties, dict):
        return False
    required, allowed = _KEYS[event]
    keys = properties.keys()
    if not required <= keys <= allowed:
        return False
    return all(check_property(k, v) for k, v in properties.items())


def why_invalid(event: str, properties: dict[str, Any]) -> str:
    """Which keys make an event invalid, for debug mode (`is_valid` is the fast check)."""
    if event not in _KEYS:
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
    for name, carried_by, type_, rule, meaning, required, command in PROPERTIES:
        event = EVERY_EVENT if carried_by == EVERY_EVENT else f"`{carried_by}`"
        if type_ == FIXED:
            value = rule.value
            type_ = f"`{str(value).lower() if isinstance(value, bool) else value}`"
        optional = "" if required else " (optional)"
        only = "" if command is None else f" (`{command}` only)"
        rows.append(f"| {event} | `{name}` | {type_}{optional} | {meaning}{only} |")
    return "\n".join(rows)
