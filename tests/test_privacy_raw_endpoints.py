"""Privacy notice: through the raw API (`telemetry.request(method, path, …)`, hosts without
route rules) a path segment is kept only when it is a route word: one of Visivo's API words or
one the host names in `route_words`. Project names, user names and ids become placeholders.
"""

from __future__ import annotations

import string

from endpoint_support import (
    PERSONAL_TEXT,
    VISIVO_WORDS,
    assert_kept_only_by_rule,
    template_lookalikes,
)
from helpers import spool_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry
from visivo_telemetry._sanitize import VISIVO_ROUTE_WORDS
from visivo_telemetry._schema import is_clean_endpoint


def recording_host(project) -> Telemetry:
    telemetry = Telemetry(
        version="1.4.0", api_key="phc_test_key", project_dir=project, long_running=False
    )
    assert telemetry.enabled, telemetry.decided_by
    return telemetry


def spooled_endpoints(home) -> list[str]:
    return [row["properties"]["endpoint"] for row in spool_rows(home)]


def test_the_built_in_words_are_those_of_visivo_2_2_1s_api_routes():
    assert VISIVO_ROUTE_WORDS == VISIVO_WORDS


def test_the_readme_examples_hold(home, project):
    telemetry = recording_host(project)
    telemetry.request("GET", "/api/projects/sales-dashboard/", 200, 12.5)
    telemetry.request("GET", "/reports/weekly/ada", 200, 3.1, route_words={"reports", "weekly"})
    telemetry.close()

    assert spooled_endpoints(home) == ["/api/projects/{value}/", "/reports/weekly/{value}"]


_slug = st.from_regex(r"[a-z]{2,10}(-[a-z]{2,10}){0,2}", fullmatch=True)
"""`sales-dashboard`, `ada`: what a project, dashboard or user name looks like in a URL."""
_letter_hex = st.text("abcdef", min_size=1, max_size=11)
"""`deadbeef`, `cafe`: a short letter-only hex id is a word like any other."""
_host_words = st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,11}", fullmatch=True), max_size=6)


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """A host's route words, and a path mixing them, Visivo's words and a user's words."""
    host_words = draw(_host_words)
    words = st.sampled_from(sorted(VISIVO_WORDS | set(host_words)))
    anything = st.one_of(
        words,
        _slug,
        _letter_hex,
        PERSONAL_TEXT,
        template_lookalikes(),
        st.integers(0, 10**9).map(str),
        st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20),
    )
    segments = draw(st.lists(anything, min_size=1, max_size=8))
    return host_words, [
        s.replace("/", "").replace("?", "").replace("#", "") or "x" for s in segments
    ]


def test_a_raw_path_keeps_only_route_words(home, project):
    telemetry = recording_host(project)
    recorded: list[tuple[list[str], list[str]]] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(raw_requests(), st.booleans())
    def record(request: tuple[list[str], list[str]], slash: bool) -> None:
        host_words, segments = request
        path = "/" + "/".join(segments) + ("/" if slash else "")
        telemetry.request("GET", path, 200, 1.0, route_words=host_words)
        recorded.append((host_words, segments + [""] * slash))

    record()
    telemetry.close()

    endpoints = spooled_endpoints(home)
    assert len(endpoints) == len(recorded), "every request recorded, none refused"
    for (host_words, segments), endpoint in zip(recorded, endpoints, strict=True):
        assert is_clean_endpoint(endpoint)
        assert_kept_only_by_rule(segments, endpoint, VISIVO_WORDS | set(host_words))
