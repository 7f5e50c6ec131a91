"""What may leave the machine, written out from the documented wire and never from the code
that builds it: the README's table (`privacy_support`), DESIGN.md's batch body and headers,
and PostHog's `/batch/` format. `assert_exactly_what_left` checks every request the receiver
logged, whole (target, every header, every key of the body, of each item, of its properties).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

from helpers import TEST_API_KEY, Collector
from privacy_support import (
    DOCUMENTED_API_KEYS,
    DOCUMENTED_CLI_KEYS,
    DOCUMENTED_CLI_OPTIONAL_KEYS,
)

LIB_VERSION = version("visivo-telemetry")

BATCH_TARGET = "/batch/"
"""`{host}/batch/`, no query string (nothing rides in the URL)."""

BODY_KEYS = frozenset({"api_key", "sent_at", "batch"})
BODY_OPTIONAL_KEYS = frozenset({"historical_migration"})
"""DESIGN.md: `{"api_key": KEY, "sent_at": NOW, "batch": [...]}`, plus `historical_migration:
true` for a batch whose events are all older than 48 hours."""

ITEM_KEYS = frozenset({"event", "uuid", "timestamp", "distinct_id", "properties"})

REQUIRED_PROPERTIES = {
    "cli_command": frozenset(DOCUMENTED_CLI_KEYS),
    "api_request": frozenset(DOCUMENTED_API_KEYS),
}
OPTIONAL_PROPERTIES = {
    "cli_command": frozenset(DOCUMENTED_CLI_OPTIONAL_KEYS),
    "api_request": frozenset(),
}

FIXED_PROPERTIES = {
    "$process_person_profile": False,
    "$geoip_disable": True,
    "$ip": "0.0.0.0",
    "$lib": "visivo-telemetry",
    "$lib_version": LIB_VERSION,
}
"""The README's fixed values, the same in every event."""

HEADERS = {
    # ours (DESIGN.md, README "On the wire")
    "content-type": "application/json",
    "content-encoding": "gzip",
    "user-agent": f"visivo-telemetry/{LIB_VERSION}",
    # what any HTTP/1.1 client sends; checked in `_check_headers`
    "host": None,
    "content-length": None,
    "accept": "*/*",
    "accept-encoding": None,
    "connection": "keep-alive",
}
"""Every header name a batch request may carry, each exactly once; no cookie, no
authorization, no proxy or forwarding header."""

CONTENT_CODINGS = frozenset({"gzip", "deflate", "br", "zstd", "identity"})


def strict_json(text: str) -> Any:
    """JSON whose objects may not repeat a key (json.loads would silently keep the last)."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        assert not repeated, f"a key is repeated in what left: {repeated}"
        return dict(pairs)

    return json.loads(text, object_pairs_hook=no_repeats)


def _is_uuid(value: object, version_digit: str | None = None) -> bool:
    if not isinstance(value, str) or [len(g) for g in value.split("-")] != [8, 4, 4, 4, 12]:
        return False
    if not set(value.replace("-", "")) <= set("0123456789abcdef"):
        return False
    return version_digit is None or (value[14] == version_digit and value[19] in "89ab")


def _is_utc_millis(value: object) -> bool:
    """`2026-11-28T10:00:00.123Z`, as DESIGN.md's timestamps are written."""
    if not isinstance(value, str) or len(value) != 24:
        return False
    shape = "dddd-dd-ddTdd:dd:dd.dddZ"
    return all(
        (c in "0123456789" if s == "d" else c == s) for c, s in zip(value, shape, strict=True)
    )


def _check_headers(headers: list[tuple[str, str]], wire: bytes, port: int) -> None:
    names = [name.lower() for name, _ in headers]
    assert sorted(names) == sorted(HEADERS), f"headers sent: {names}"
    values = {name.lower(): value for name, value in headers}
    for name, expected in HEADERS.items():
        if expected is not None:
            assert values[name] == expected, (name, values[name])
    assert values["host"] == f"127.0.0.1:{port}"
    assert values["content-length"] == str(len(wire))
    codings = {part.strip() for part in values["accept-encoding"].split(",")}
    assert codings <= CONTENT_CODINGS, values["accept-encoding"]


def check_properties(event: str, properties: dict[str, Any]) -> None:
    """Exactly the documented keys of `event` (optional metrics aside), fixed values fixed."""
    keys = set(properties)
    required, optional = REQUIRED_PROPERTIES[event], OPTIONAL_PROPERTIES[event]
    assert required <= keys <= required | optional, sorted(keys ^ required)
    for key, value in FIXED_PROPERTIES.items():
        assert properties[key] == value and type(properties[key]) is type(value), key
    assert _is_uuid(properties["session_id"], "4"), properties["session_id"]


def check_item(item: dict[str, Any]) -> None:
    """One batch item: exactly PostHog's five keys, ids strict, distinct id the session id."""
    assert set(item) == ITEM_KEYS, sorted(set(item) ^ ITEM_KEYS)
    assert item["event"] in REQUIRED_PROPERTIES, item["event"]
    assert _is_uuid(item["uuid"], "7"), item["uuid"]
    assert _is_utc_millis(item["timestamp"]), item["timestamp"]
    assert isinstance(item["properties"], dict)
    assert item["distinct_id"] == item["properties"]["session_id"]
    check_properties(item["event"], item["properties"])


def check_body(body: dict[str, Any], api_key: str) -> None:
    """The `/batch/` body: exactly the documented top-level keys and their values' shapes."""
    keys = set(body)
    assert BODY_KEYS <= keys <= BODY_KEYS | BODY_OPTIONAL_KEYS, sorted(keys ^ BODY_KEYS)
    assert body["api_key"] == api_key
    assert _is_utc_millis(body["sent_at"]), body["sent_at"]
    if "historical_migration" in body:
        assert body["historical_migration"] is True
    assert isinstance(body["batch"], list) and body["batch"]
    for item in body["batch"]:
        check_item(item)


def assert_exactly_what_left(
    collector: Collector, api_key: str = TEST_API_KEY
) -> list[dict[str, Any]]:
    """Check every request `collector` received, whole; the bodies, oldest first."""
    received = collector.received()
    assert received, "nothing arrived"
    bodies = []
    for request in received:
        assert request["target"] == BATCH_TARGET, request["target"]
        _check_headers(request["headers"], request["wire"], collector.port)
        assert request["text"] is not None, "the body is gzip-compressed UTF-8"
        body = strict_json(request["text"])
        check_body(body, api_key)
        bodies.append(body)
    return bodies


def items_that_left(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every batch item of `bodies`, in order."""
    return [item for body in bodies for item in body["batch"]]
