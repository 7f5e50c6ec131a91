"""Privacy notice: "API endpoints are route templates; in an unmatched or raw path a segment is
kept only when it is a route word, anything else (ids, names, any `{…}`/`<…>`) becomes a
placeholder; query strings and fragments are dropped."
"""

from __future__ import annotations

import signal
import string
import urllib.parse

import pytest
from endpoint_support import (
    DOCUMENTED_PLACEHOLDERS,
    PERSONAL_TEXT,
    VISIVO_WORDS,
    assert_kept_only_by_rule,
    template_lookalikes,
)
from helpers import flush, spool_rows, wait_for_senders_to_exit
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flask_integration import get, start_server

from visivo_telemetry import Telemetry, sanitize_endpoint
from visivo_telemetry._schema import MAX_ENDPOINT, is_clean_endpoint
from visivo_telemetry.integrations.flask import rule_template

CASES = {
    "numeric id": ("/api/projects/123", "/api/projects/{id}"),
    "several ids": ("/api/projects/1/charts/22/", "/api/projects/{id}/charts/{id}/"),
    "uuid": ("/api/runs/550e8400-e29b-41d4-a716-446655440000", "/api/runs/{uuid}"),
    "uppercase uuid": ("/api/runs/550E8400-E29B-41D4-A716-446655440000", "/api/runs/{uuid}"),
    "hex hash": ("/api/commit/9f86d081884c7d65", "/api/commit/{hash}"),
    "hash starting with digits": ("/api/files/12ab34cd", "/api/files/{hash}"),
    "hash of digits then letters": ("/api/files/20240101deadbeef", "/api/files/{hash}"),
    "long hex without digits": ("/api/files/deadbeefcafe", "/api/files/{hash}"),
    "short hex without digits is a word, not a route word": ("/api/deadbeef", "/api/{value}"),
    "git sha": ("/api/files/" + "a1" * 20, "/api/files/{hash}"),
    "ulid": ("/api/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/api/runs/{id}"),
    "base64 token with digits": ("/api/auth/dGhpcyBpcyBhIHNlY3JldA", "/api/auth/{id}"),
    "base64url token": ("/api/auth/ZmFyYmF_LWJheg-cXVa", "/api/auth/{token}"),
    "mixed-case token": ("/api/auth/AbCdEfGhIjKlMn", "/api/auth/{token}"),
    "very long token": ("/api/auth/" + "q" * 40, "/api/auth/{token}"),
    "id with letters": ("/api/models/item12345678", "/api/models/{id}"),
    "a name": ("/api/projects/sales-dashboard/", "/api/projects/{value}/"),
    "a user": ("/api/users/ada", "/api/{value}/{value}"),
    "query string dropped": ("/api/models?q=alice&token=abc", "/api/models"),
    "fragment dropped": ("/api/charts#alice", "/api/charts"),
    "both dropped": ("/api/1?x=1#y", "/api/{id}"),
    "full URL": ("http://alice-laptop:8000/api/projects/7?x=1", "/api/projects/{id}"),
    "email": ("/api/auth/alice@example.com", "/api/auth/{value}"),
    "file name": ("/api/files/customers.csv", "/api/files/{value}"),
    "percent-encoded": ("/api/models/my%20model", "/api/models/{value}"),
    "non-ASCII": ("/api/models/josé", "/api/models/{value}"),
    "matrix parameter": ("/api;jsessionid=XYZ/runs", "/{value}/runs"),
    "protocol-relative host": ("//evil.example/api", "//{value}/api"),
    "no leading slash": ("api/projects/5", "/api/projects/{id}"),
    "empty": ("", "/"),
    "route words stay": ("/api/projects/", "/api/projects/"),
    "a word of no Visivo route": ("/api/v1/health", "/api/{value}/{value}"),
    "a decoded variable": ("/api/projects/<int:project_id>/", "/api/projects/{value}/"),
    "a decoded brace": ("/api/{ada}/runs", "/api/{value}/runs"),
    "credentials in brackets": ("/api/<user:password>", "/api/{value}"),
    "an address in braces": ("/api/{ip=1.2.3.4}", "/api/{value}"),
    "our own placeholder": ("/api/projects/{id}", "/api/projects/{id}"),
    "bytes": (b"/api/projects/9?q=x", "/api/projects/{id}"),
    "not a string": (None, "/"),
}


@pytest.mark.parametrize("path, expected", CASES.values(), ids=CASES.keys())
def test_identifiers_and_queries_never_leave_the_machine(path, expected):
    assert sanitize_endpoint(path) == expected


def test_the_host_names_its_own_route_words():
    known = ["reports", "weekly"]

    assert sanitize_endpoint("/reports/weekly/ada", known) == "/reports/weekly/{value}"
    assert sanitize_endpoint("/api/projects/alice/charts", known) == "/api/projects/{value}/charts"
    assert sanitize_endpoint("/reports/<int:id>", known) == "/reports/{value}"
    assert sanitize_endpoint("/reports/a b", ["reports", "a b"]) == "/reports/{value}"


def test_a_very_long_path_is_cut_at_a_segment_boundary():
    out = sanitize_endpoint("/api/" + "/".join(["projects"] * 200))

    assert len(out) <= MAX_ENDPOINT
    assert out.endswith("/...") and is_clean_endpoint(out)
    assert sanitize_endpoint("/" + "x" * 1000) == "/{token}"


_word = st.one_of(
    st.sampled_from(sorted(VISIVO_WORDS)),
    st.text(string.ascii_lowercase, min_size=1, max_size=7),
)
_letter_hex = st.text("abcdef", min_size=1, max_size=11)
"""`deadbeef`, `cafe`: hex ids that happen to be letters only are words, not route words."""
_identifiers = st.one_of(
    st.integers(0, 10**12).map(str),
    st.uuids().map(str),
    st.binary(min_size=4, max_size=20).map(bytes.hex),
    st.from_regex(r"0[0-9A-HJKMNP-TV-Z]{25}", fullmatch=True),
    _letter_hex,
)
_secrets = st.text(string.ascii_letters + string.digits, min_size=3, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_word, _identifiers), min_size=1, max_size=8),
    st.lists(_identifiers, min_size=1, max_size=3),
    _secrets,
    _secrets,
)
def test_no_identifier_or_query_survives(words, ids, query, fragment):
    segments = words + ids
    path = "/" + "/".join(segments) + f"?q={query}#{fragment}"
    out = sanitize_endpoint(path)

    assert is_clean_endpoint(out)
    assert "?" not in out and "#" not in out
    assert_kept_only_by_rule(segments, out, VISIVO_WORDS)
    for identifier in ids:
        assert identifier not in out.split("/"), (identifier, out)
    assert sanitize_endpoint(out) == out


_host_words = st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True), max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_word, template_lookalikes(), PERSONAL_TEXT), min_size=1, max_size=8),
    _host_words,
)
def test_a_decoded_path_keeps_no_braces_or_brackets_of_its_own(segments, host_words):
    segments = [s.replace("/", "") or "x" for s in segments]
    out = sanitize_endpoint("/" + "/".join(segments), known_segments=host_words)

    assert is_clean_endpoint(out), out
    assert_kept_only_by_rule(segments, out, VISIVO_WORDS | set(host_words))


@settings(max_examples=300, deadline=None)
@given(template_lookalikes().filter(lambda s: s not in DOCUMENTED_PLACEHOLDERS))
def test_the_sender_refuses_user_punctuation_in_a_segment(segment):
    names = segment[1:-1].split("-")  # a template names its variables, joined by `-`
    names_variables = segment[0] + segment[-1] == "{}" and all(
        n.isascii() and n.isidentifier() for n in names
    )

    assert is_clean_endpoint(f"/api/{segment}/runs") is names_variables, segment


_variable = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
_converter = st.sampled_from(["", "int:", "path:", "uuid:", "string(length=2):", "any(a, b):"])
_rule_segment = st.one_of(
    st.sampled_from(sorted(VISIVO_WORDS)),
    st.builds("<{}{}>".format, _converter, _variable),
    st.builds("report-<{}>.pdf".format, _variable),
    st.builds("<{}>-<{}>".format, _variable, _variable),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_rule_segment, min_size=1, max_size=6), st.booleans())
def test_every_route_template_passes_the_senders_check(segments, slash):
    template = rule_template("/" + "/".join(segments) + ("/" if slash else ""))

    assert is_clean_endpoint(template), template
    for segment in template.split("/"):
        assert (
            segment in VISIVO_WORDS
            or segment == ""
            or (segment[0] + segment[-1] == "{}" and "<" not in segment and ":" not in segment)
        ), template


def test_the_spool_holds_only_the_sanitized_endpoint(home, project):
    telemetry = Telemetry(
        version="1.4.0", api_key="phc_test_key", project_dir=project, long_running=False
    )
    telemetry.request("GET", "/api/projects/4711/charts?owner=alice@example.com", 200, 3.0)
    telemetry.request("GET", "/api/projects/<ada:hunter2>/", 404, 3.0)
    telemetry.close()

    endpoints = [row["properties"]["endpoint"] for row in spool_rows(home)]
    assert endpoints == ["/api/projects/{id}/charts", "/api/projects/{value}/"]


SERVED_APP_WORDS = frozenset({"api", "health", "projects", "boom"})
"""The fixed words of scripts/flask_app.py's routes."""
SERVED_APP_TEMPLATES = {"/api/health", "/api/projects/{project_id}/", "/api/boom"}


def test_a_served_app_records_no_decoded_user_text(env, home, project, collector):
    proc, url, probes = start_server(env, project)
    sent: list[list[str]] = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(
        st.lists(
            st.one_of(st.sampled_from(sorted(SERVED_APP_WORDS)), template_lookalikes()),
            min_size=1,
            max_size=5,
        )
    )
    def request_decoded_lookalikes(segments: list[str]) -> None:
        segments = [s.replace("/", "") or "x" for s in segments]
        status = get(url + "/" + urllib.parse.quote("/".join(segments), safe="/"))
        assert status in (200, 404, 405, 500)
        sent.append(segments)

    try:
        request_decoded_lookalikes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0

    props = [e["properties"] for e in collector.events()]
    assert sum(p["request_count"] for p in props) == probes + len(sent), "none refused"
    vocabulary = VISIVO_WORDS | SERVED_APP_WORDS
    for endpoint in {p["endpoint"] for p in props} - SERVED_APP_TEMPLATES:
        for segment in endpoint.split("/")[1:]:
            assert segment in vocabulary | DOCUMENTED_PLACEHOLDERS | {""}, endpoint
