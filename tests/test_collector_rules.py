"""The test receiver is as strict as PostHog's capture service, so passing tests mean PostHog
would take what the sender sends.

Each expectation comes from PostHog's own source (github.com/PostHog/posthog): the capture
service in ``rust/capture/src`` and the ingestion step in ``nodejs/src/utils/event.ts``; the
uuid and timestamp format checks are the project's own, stricter than capture. Every refusal
is checked twice: the status, and that nothing of the refused request was stored.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Collector

TOKEN = "phc_rules_test_token"
SOURCE_ADDRESS = "127.0.0.1"  # the collector listens on loopback, so requests come from here
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector for the module (starting one costs ~0.4 s); tests compare before/after."""
    with Collector(tmp_path_factory.mktemp("rules") / "received.db") as running:
        yield running


def item(**overrides: Any) -> dict[str, Any]:
    """A batch item exactly as our sender writes one, with `overrides` applied.

    A value of ``...`` removes that field.
    """
    event = {
        "event": "cli_command",
        "uuid": str(uuid.uuid4()),
        "timestamp": "2026-11-28T10:00:00.123Z",
        "distinct_id": str(uuid.uuid4()),
        "properties": {"command": "run", "$ip": "0.0.0.0"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def batch(*items: dict[str, Any], **top: Any) -> dict[str, Any]:
    body = {"api_key": TOKEN, "sent_at": "2026-11-28T10:00:01.000Z", "batch": list(items)}
    body.update(top)
    return {k: v for k, v in body.items() if v is not ...}


def post(
    receiver: Collector,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    path: str = "/batch/",
) -> tuple[int, dict[str, Any]]:
    """POST a raw body over real HTTP; (status, parsed answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        receiver.url + path,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with OPENER.open(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored(receiver: Collector, *uuids: str) -> list[dict[str, Any]]:
    wanted = {u.lower() for u in uuids}
    return [e for e in receiver.events() if e["uuid"] in wanted]


def last_request(receiver: Collector) -> dict[str, Any]:
    return receiver.requests()[-1]


def assert_refused(
    receiver: Collector,
    body: dict[str, Any] | bytes,
    status: int,
    headers: dict[str, str] | None = None,
    path: str = "/batch/",
) -> None:
    """The request gets `status`, is logged with it, and not one event of it is stored."""
    before = len(receiver.events())
    got, answer = post(receiver, body, headers, path)
    assert (got, last_request(receiver)["status"]) == (status, status), answer
    assert len(receiver.events()) == before, "a refused request stored events"


def assert_accepted(receiver: Collector, body: dict[str, Any] | bytes, **kw: Any) -> None:
    got, answer = post(receiver, body, **kw)
    assert (got, answer) == (200, {"status": 1})
    assert last_request(receiver)["status"] == 200


# --------------------------------------------------------------------------- body encoding
# capture: utils.rs extract_compression, payload/decompression.rs decompress_payload


def test_a_plain_json_batch_is_accepted_and_stored(receiver):
    event = item()
    assert_accepted(receiver, batch(event))
    [row] = stored(receiver, event["uuid"])
    assert (row["event"], row["timestamp"], row["api_key"]) == (
        "cli_command",
        event["timestamp"],
        TOKEN,
    )
    assert row["distinct_id"] == event["distinct_id"]
    assert row["properties"] == event["properties"]


def test_a_gzipped_batch_is_accepted(receiver):
    event = item()
    raw = json.dumps(batch(event)).encode()
    assert_accepted(receiver, gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert len(stored(receiver, event["uuid"])) == 1
    logged = last_request(receiver)
    assert logged["content_encoding"] == "gzip"
    assert logged["json_bytes"] == len(raw)
    assert logged["body_bytes"] == len(gzip.compress(raw)) != len(raw), "bytes on the wire"


def test_a_gzipped_body_is_recognised_by_its_magic_bytes_even_without_the_header(receiver):
    """Capture sniffs the gzip magic bytes rather than trusting headers."""
    event = item()
    assert_accepted(receiver, gzip.compress(json.dumps(batch(event)).encode()))
    assert len(stored(receiver, event["uuid"])) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps(batch(item())).encode(), id="plain-json-claiming-gzip"),
        pytest.param(gzip.compress(json.dumps(batch(item())).encode())[:-9], id="truncated"),
        pytest.param(b"\x1f\x8b\x08 this is not deflate data", id="corrupt"),
    ],
)
def test_a_body_that_does_not_gunzip_is_rejected_with_400(receiver, body):
    assert_refused(receiver, body, 400, headers={"Content-Encoding": "gzip"})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"this is not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(json.dumps(batch(item())).encode()[:-1], id="cut-short"),
        pytest.param(json.dumps(batch(item())).encode("utf-16"), id="utf-16"),
        pytest.param(
            json.dumps(batch(item(properties={"x": "LATIN1"})))
            .encode()
            .replace(b"LATIN1", b"\xe9"),
            id="latin-1-byte-in-a-string",
        ),
        pytest.param(json.dumps(batch(item(properties={"x": float("nan")}))).encode(), id="NaN"),
        pytest.param(gzip.compress(b"\xff\xfe not utf-8"), id="gzipped-non-utf8"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_rejected_with_400(receiver, body):
    assert_refused(receiver, body, 400)


def test_the_compression_query_parameter_means_gzip_too(receiver):
    """posthog-js says `?compression=gzip-js`; capture then gunzips whatever the body is."""
    event = item()
    raw = json.dumps(batch(event)).encode()
    assert_refused(receiver, raw, 400, path="/batch/?compression=gzip-js")
    assert_accepted(receiver, gzip.compress(raw), path="/batch/?compression=gzip-js")
    assert len(stored(receiver, event["uuid"])) == 1


def test_an_unknown_content_encoding_is_ignored_and_the_body_read_as_json(receiver):
    event = item()
    assert_accepted(receiver, batch(event), headers={"Content-Encoding": "identity"})
    assert len(stored(receiver, event["uuid"])) == 1


def test_a_lone_surrogate_escape_is_stored_as_the_replacement_character(receiver):
    """capture: passes/invalid_surrogates.rs turns unpaired \\uD800-style escapes into U+FFFD."""
    event = item()
    body = json.dumps(batch(event)).replace('"command": "run"', '"command": "r\\ud800n"')
    assert_accepted(receiver, body.encode())
    assert stored(receiver, event["uuid"])[0]["properties"]["command"] == "r\ufffdn"


# --------------------------------------------------------------------------- the project token
# capture: token.rs validate_token; api.rs maps TokenValidationError to 401


def test_a_personal_api_key_is_refused_with_401(receiver):
    assert_refused(receiver, batch(item(), api_key="phx_personal_key_not_a_project_token"), 401)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(" \n\t", id="only-whitespace"),
        pytest.param("phc_" + "x" * 61, id="65-bytes"),
        pytest.param("phc_clé", id="not-ascii"),
        pytest.param("phc_with\0nul", id="nul-byte"),
        pytest.param("phx_abc", id="personal-key"),
    ],
)
def test_a_malformed_token_refuses_the_whole_request_with_401(receiver, token):
    assert_refused(receiver, batch(item(), item(), api_key=token), 401)


def test_a_64_byte_token_is_still_accepted(receiver):
    token = "phc_" + "x" * 60
    event = item()
    assert_accepted(receiver, batch(event, api_key=token))
    assert stored(receiver, event["uuid"])[0]["api_key"] == token


def test_a_token_with_surrounding_whitespace_is_accepted_trimmed(receiver):
    event = item()
    assert_accepted(receiver, batch(event, api_key=f"  {TOKEN}\n"))
    assert stored(receiver, event["uuid"])[0]["api_key"] == TOKEN


def test_token_is_accepted_in_place_of_api_key(receiver):
    """capture: v0_request.rs BatchedRequest reads `token`, with `api_key` as its alias."""
    event = item()
    assert_accepted(receiver, batch(event, api_key=..., token=TOKEN))
    assert stored(receiver, event["uuid"])[0]["api_key"] == TOKEN


def test_a_per_event_token_does_not_override_the_batch_token(receiver):
    """capture: utils.rs extract_and_verify_token gives a batch's own token precedence."""
    event = item(api_key="phx_ignored_for_batches")
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["api_key"] == TOKEN


@pytest.mark.parametrize(
    "top",
    [
        pytest.param({"api_key": ...}, id="no-api-key"),
        pytest.param({"api_key": None}, id="null-api-key"),
        pytest.param({"api_key": 12345}, id="number-api-key"),
        pytest.param({"token": TOKEN}, id="api-key-and-token-both"),
        pytest.param({"batch": ...}, id="no-batch"),
        pytest.param({"batch": {"event": "x"}}, id="batch-not-a-list"),
        pytest.param({"sent_at": 1764324001}, id="sent-at-not-a-string"),
    ],
)
def test_a_body_capture_cannot_parse_as_a_batch_is_rejected_with_400(receiver, top):
    """serde refuses these before the token is looked at, so 400, not 401."""
    assert_refused(receiver, batch(item(), **top), 400)


def test_a_repeated_api_key_is_rejected_with_400(receiver):
    """serde refuses a struct field given twice, where json.loads would keep the last."""
    text = json.dumps(batch(item()))
    body = text.replace('"api_key":', '"api_key": "phc_first", "api_key":', 1).encode()
    assert_refused(receiver, body, 400)


def test_a_per_event_token_that_is_not_a_string_is_rejected_with_400(receiver):
    """RawEvent's token (alias `api_key`, `$token`) is an optional string."""
    assert_refused(receiver, batch(item(), item(api_key=12345)), 400)


def test_an_unparseable_item_is_400_even_when_the_token_is_also_bad(receiver):
    """Capture parses the whole body (uuids included) before it validates the token."""
    assert_refused(receiver, batch(item(uuid="nope"), api_key="phx_personal"), 400)


def test_a_bad_token_is_401_even_when_an_event_also_lacks_a_name(receiver):
    """Capture validates the token before it checks event names and distinct ids."""
    assert_refused(receiver, batch(item(event=""), api_key="phx_personal"), 401)


# --------------------------------------------------------------------------- batch items
# capture: common/types event.rs RawEvent; events/analytics.rs process_single_event


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(..., id="missing"),
        pytest.param("", id="empty"),
        pytest.param(None, id="null"),
        pytest.param(42, id="number"),
    ],
)
def test_one_event_without_a_name_rejects_the_whole_request(receiver, name):
    assert_refused(receiver, batch(item(), item(event=name)), 400)


@pytest.mark.parametrize(
    "distinct_id",
    [pytest.param(..., id="missing"), pytest.param(None, id="null"), pytest.param("", id="empty")],
)
def test_an_event_without_a_distinct_id_rejects_the_whole_request(receiver, distinct_id):
    assert_refused(receiver, batch(item(), item(distinct_id=distinct_id)), 400)


def test_a_distinct_id_can_come_from_the_properties(receiver):
    event = item(distinct_id=..., properties={"distinct_id": "from-properties", "$ip": "0.0.0.0"})
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["distinct_id"] == "from-properties"


def test_a_distinct_id_can_be_sent_as_dollar_distinct_id(receiver):
    event = item(distinct_id=..., **{"$distinct_id": "dollar-id"})
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["distinct_id"] == "dollar-id"


def test_a_nul_in_a_distinct_id_is_stored_as_the_replacement_character(receiver):
    event = item(distinct_id="a\0b")
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["distinct_id"] == "a\ufffdb"


def test_a_non_string_distinct_id_is_stored_as_its_json_text(receiver):
    events = [item(distinct_id=23), item(distinct_id={"string": "a", "number": 3})]
    assert_accepted(receiver, batch(*events))
    rows = stored(receiver, *(e["uuid"] for e in events))
    got = {row["uuid"]: row["distinct_id"] for row in rows}
    assert got == {events[0]["uuid"]: "23", events[1]["uuid"]: '{"number":3,"string":"a"}'}


def test_a_distinct_id_longer_than_200_characters_is_cut_to_200(receiver):
    event = item(distinct_id="d" * 222)
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["distinct_id"] == "d" * 200


@pytest.mark.parametrize(
    "bad_uuid",
    [
        pytest.param("0192f0c1-7b2e7-7a1b-8c3d-4e5f6a7b8c9d", id="36-chars-dashes-misplaced"),
        pytest.param("0192f0c17b2e-7a1b-8c3d-4e5f-6a7b8c9d0e1f", id="36-chars-dashes-shifted"),
        pytest.param("{0192f0c1-7b2e-7a1b-8c3d-4e5f6a7b8c9d}", id="braces"),
        pytest.param("0192f0c17b2e7a1b8c3d4e5f6a7b8c9d", id="no-dashes"),
        pytest.param("urn:uuid:0192f0c1-7b2e-7a1b-8c3d-4e5f6a7b8c9d", id="urn"),
        pytest.param("0192f0c1-7b2e-7a1b-8c3d-4e5f6a7b8c9g", id="not-hex"),
        pytest.param("0192f0c1-7b2e-7a1b-8c3d-4e5f6a7b8c9d\n", id="trailing-newline"),
        pytest.param("", id="empty"),
        pytest.param(1234, id="number"),
    ],
)
def test_a_malformed_uuid_rejects_the_whole_request(receiver, bad_uuid):
    assert_refused(receiver, batch(item(), item(uuid=bad_uuid)), 400)


def test_an_uppercase_uuid_is_accepted_and_stored_in_canonical_lowercase(receiver):
    """capture parses uuids case-insensitively and passes them on lowercase."""
    event_uuid = str(uuid.uuid4())
    assert_accepted(receiver, batch(item(uuid=event_uuid.upper())))
    assert [row["uuid"] for row in stored(receiver, event_uuid)] == [event_uuid]


def test_an_event_without_a_uuid_is_given_a_uuid7_like_capture(receiver):
    """capture: events/analytics.rs fills a missing uuid with utils.rs uuid_v7."""
    before = {row["uuid"] for row in receiver.events()}
    assert_accepted(receiver, batch(item(uuid=...)))
    [new] = [row for row in receiver.events() if row["uuid"] not in before]
    assert uuid.UUID(new["uuid"]).version == 7


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param("yesterday", id="words"),
        pytest.param("2026-11-28", id="date-only"),
        pytest.param("2026-13-01T10:00:00Z", id="month-13"),
        pytest.param("2026-02-30T10:00:00Z", id="february-30"),
        pytest.param("2026-11-28T25:00:00Z", id="hour-25"),
        pytest.param("28/11/2026 10:00", id="not-iso"),
        pytest.param(1764324000, id="number"),
    ],
)
def test_a_malformed_timestamp_rejects_the_whole_request(receiver, timestamp):
    assert_refused(receiver, batch(item(), item(timestamp=timestamp)), 400)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-28T10:00:00.123Z",
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:00.123456+02:00",
        "2026-11-28T10:00:00",
        "2026-11-28 10:00:00.123Z",
    ],
)
def test_an_iso_8601_timestamp_is_accepted(receiver, timestamp):
    event = item(timestamp=timestamp)
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["timestamp"] == timestamp


def test_an_event_without_a_timestamp_is_accepted(receiver):
    event = item(timestamp=...)
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["timestamp"] is None


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param(..., id="missing"),
        pytest.param(None, id="null"),
        pytest.param(["command", "run"], id="list"),
        pytest.param("command=run", id="string"),
    ],
)
def test_properties_that_are_not_an_object_reject_the_whole_request(receiver, properties):
    assert_refused(receiver, batch(item(), item(properties=properties)), 400)


def test_a_batch_item_that_is_not_an_object_rejects_the_whole_request(receiver):
    assert_refused(receiver, batch(item(), ["cli_command"]), 400)


def test_the_rules_hold_on_batch_without_the_trailing_slash(receiver):
    """capture routes both /batch and /batch/ to the same handler (router.rs)."""
    assert_refused(receiver, batch(item(), item(uuid="nope")), 400, path="/batch")
    assert_refused(receiver, batch(item(), api_key="phx_personal"), 401, path="/batch")
    event = item()
    assert_accepted(receiver, batch(event), path="/batch")
    assert len(stored(receiver, event["uuid"])) == 1


# --------------------------------------------------------------------------- historical_migration
# capture: v0_request.rs BatchedRequest.historical_migration (Option<bool>)


@pytest.mark.parametrize(("flag", "recorded"), [(True, 1), (False, 0), (..., None)])
def test_historical_migration_is_accepted_and_recorded(receiver, flag, recorded):
    event = item()
    assert_accepted(receiver, batch(event, historical_migration=flag))
    assert last_request(receiver)["historical_migration"] == recorded
    assert stored(receiver, event["uuid"])[0]["historical_migration"] == recorded


@pytest.mark.parametrize("flag", ["true", 1])
def test_a_historical_migration_that_is_not_a_boolean_is_rejected_with_400(receiver, flag):
    assert_refused(receiver, batch(item(), historical_migration=flag), 400)


# --------------------------------------------------------------------------- $ip
# ingestion: nodejs/src/utils/event.ts sanitizeEvent: `if (!properties['$ip'] && event.ip)`


def test_an_event_without_ip_gets_the_source_address_like_posthog(receiver):
    event = item(properties={"command": "run"})
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["properties"] == {
        "command": "run",
        "$ip": SOURCE_ADDRESS,
    }


@pytest.mark.parametrize("falsy", ["", None, 0, False], ids=repr)
def test_a_falsy_ip_is_replaced_by_the_source_address_like_posthog(receiver, falsy):
    event = item(properties={"command": "run", "$ip": falsy})
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["properties"]["$ip"] == SOURCE_ADDRESS


def test_the_senders_placeholder_ip_is_what_posthog_keeps(receiver):
    event = item(properties={"command": "run", "$ip": "0.0.0.0"})
    assert_accepted(receiver, batch(event))
    assert stored(receiver, event["uuid"])[0]["properties"]["$ip"] == "0.0.0.0"


# --------------------------------------------------------------------------- request log


def test_every_batch_request_is_logged_with_its_encoding_agent_and_sizes(receiver):
    raw = json.dumps(batch(item(), item(), historical_migration=True)).encode()
    assert_accepted(receiver, raw, headers={"User-Agent": "rules-test/1.0"})
    logged = last_request(receiver)
    assert logged["user_agent"] == "rules-test/1.0"
    assert logged["content_encoding"] is None
    assert logged["historical_migration"] == 1
    assert logged["n_events"] == 2
    assert logged["body_bytes"] == logged["json_bytes"] == len(raw)

    assert_refused(receiver, b"\x1f\x8b\x08 broken", 400, headers={"Content-Encoding": "gzip"})
    logged = last_request(receiver)
    assert (logged["content_encoding"], logged["json_bytes"]) == ("gzip", None)


# --------------------------------------------------------------------------- kept behaviour


def test_an_injected_failure_answers_before_the_body_is_judged(receiver):
    receiver.set_mode("fail:1:503")
    try:
        assert_refused(receiver, batch(item(), api_key="phx_personal"), 503)
    finally:
        receiver.set_mode("ok")


def test_a_redelivered_event_is_counted_not_stored_twice(receiver):
    """Real capture stores every delivery; this store counts them so tests can see duplicates."""
    event = item()
    assert_accepted(receiver, batch(event))
    assert_accepted(receiver, batch(event))
    assert [row["times_received"] for row in stored(receiver, event["uuid"])] == [2]


def test_a_store_written_before_these_columns_gets_them(tmp_path: Path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE events (uuid TEXT PRIMARY KEY, event TEXT, [timestamp] TEXT,"
        " distinct_id TEXT, properties TEXT, api_key TEXT, sent_at TEXT, received_at TEXT,"
        " times_received INTEGER)"
    )
    conn.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, received_at TEXT, path TEXT,"
        " status INTEGER, n_events INTEGER, body_bytes INTEGER, mode TEXT, cookie TEXT)"
    )
    conn.commit()
    conn.close()
    with Collector(db) as old:
        event = item()
        assert_accepted(old, batch(event, historical_migration=False))
        assert stored(old, event["uuid"])[0]["historical_migration"] == 0
        assert last_request(old)["json_bytes"] > 0
