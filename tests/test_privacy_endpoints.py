"""Privacy notice: "API endpoints are route templates; ids, UUIDs and hashes become placeholders;
query strings and fragments are dropped."
"""

from __future__ import annotations

import string

import pytest
from helpers import spool_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry, sanitize_endpoint
from visivo_telemetry.schema import MAX_ENDPOINT, is_clean_endpoint

CASES = {
    "numeric id": ("/api/projects/123", "/api/projects/{id}"),
    "several ids": ("/api/projects/1/charts/22/", "/api/projects/{id}/charts/{id}/"),
    "uuid": ("/api/runs/550e8400-e29b-41d4-a716-446655440000", "/api/runs/{uuid}"),
    "uppercase uuid": ("/r/550E8400-E29B-41D4-A716-446655440000", "/r/{uuid}"),
    "hex hash": ("/api/commits/9f86d081884c7d65", "/api/commits/{hash}"),
    "hash starting with digits": ("/api/files/12ab34cd", "/api/files/{hash}"),
    "hash of digits then letters": ("/api/files/20240101deadbeef", "/api/files/{hash}"),
    "long hex without digits": ("/api/files/deadbeefcafe", "/api/files/{hash}"),
    "git sha": ("/c/" + "a1" * 20, "/c/{hash}"),
    "ulid": ("/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/api/jobs/{id}"),
    "base64 token with digits": ("/share/dGhpcyBpcyBhIHNlY3JldA", "/share/{id}"),
    "base64url token": ("/share/ZmFyYmF_LWJheg-cXVa", "/share/{token}"),
    "mixed-case token": ("/share/AbCdEfGhIjKlMn", "/share/{token}"),
    "very long token": ("/share/" + "q" * 40, "/share/{token}"),
    "id with letters": ("/api/items/item12345678", "/api/items/{id}"),
    "query string dropped": ("/api/search?q=alice&token=abc", "/api/search"),
    "fragment dropped": ("/docs#alice", "/docs"),
    "both dropped": ("/a/1?x=1#y", "/a/{id}"),
    "full URL": ("http://alice-laptop:8000/api/projects/7?x=1", "/api/projects/{id}"),
    "email": ("/api/users/alice@example.com", "/api/users/{value}"),
    "file name": ("/data/customers.csv", "/data/{value}"),
    "percent-encoded": ("/api/models/my%20model", "/api/models/{value}"),
    "non-ASCII": ("/api/users/josé", "/api/users/{value}"),
    "matrix parameter": ("/a;jsessionid=XYZ/b", "/{value}/b"),
    "protocol-relative host": ("//evil.example/x", "//{value}/x"),
    "no leading slash": ("api/projects/5", "/api/projects/{id}"),
    "empty": ("", "/"),
    "route words stay": ("/api/projects/", "/api/projects/"),
    "short version words stay": ("/api/v1/health", "/api/v1/health"),
    "bytes": (b"/api/projects/9?q=x", "/api/projects/{id}"),
    "not a string": (None, "/"),
}


@pytest.mark.parametrize("path, expected", CASES.values(), ids=CASES.keys())
def test_identifiers_and_queries_never_leave_the_machine(path, expected):
    assert sanitize_endpoint(path) == expected


TEMPLATES = [
    "/api/projects/<int:project_id>/",
    "/api/projects/<project_id>/charts/<path:name>",
    "/api/<string(length=2):lang>/x",
    "/api/projects/{project_id}/",
    "/api/projects/{id}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_route_templates_pass_through_unchanged(template):
    assert sanitize_endpoint(template) == template
    assert is_clean_endpoint(template)


def test_strict_mode_replaces_every_unknown_segment():
    known = ["api", "projects", "charts"]

    assert sanitize_endpoint("/api/projects/alice/charts", known) == "/api/projects/{value}/charts"
    assert sanitize_endpoint("/api/users/alice", known) == "/api/{value}/{value}"
    assert sanitize_endpoint("/api/projects/<int:id>", known) == "/api/projects/<int:id>"


def test_a_very_long_path_is_cut_at_a_segment_boundary():
    out = sanitize_endpoint("/api/" + "/".join(["word"] * 200))

    assert len(out) <= MAX_ENDPOINT
    assert out.endswith("/...") and is_clean_endpoint(out)
    assert sanitize_endpoint("/" + "x" * 1000) == "/{token}"


_word = st.text(string.ascii_lowercase, min_size=1, max_size=7)
_identifiers = st.one_of(
    st.integers(0, 10**12).map(str),
    st.uuids().map(str),
    st.binary(min_size=4, max_size=20).map(bytes.hex),
    st.from_regex(r"0[0-9A-HJKMNP-TV-Z]{25}", fullmatch=True),
)
_secrets = st.text(string.ascii_letters + string.digits, min_size=3, max_size=12)


@settings(max_examples=200, deadline=None)
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
    kept = out.split("/")
    for identifier in ids:
        assert identifier not in kept, (identifier, out)
    assert len(kept) == len(segments) + 1
    assert sanitize_endpoint(out) == out


def test_the_spool_holds_only_the_sanitized_endpoint(home, project):
    telemetry = Telemetry(
        version="1.4.0", api_key="phc_test_key", project_dir=project, long_running=False
    )
    telemetry.request("GET", "/api/projects/4711/charts?owner=alice@example.com", 200, 3.0)
    telemetry._record_route("POST", "/api/projects/<int:project_id>/run", 201, 4.0)
    telemetry.close()

    endpoints = [row["properties"]["endpoint"] for row in spool_rows(home)]
    assert endpoints == ["/api/projects/{id}/charts", "/api/projects/<int:project_id>/run"]
