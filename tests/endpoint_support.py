"""The endpoint rule, written from the privacy notice, for the endpoint tests to check against.

A segment of an unmatched or raw path is kept only when it is a route word (Visivo 2.2.1's API
words, or a word the host names); anything else becomes one of the documented placeholders.
"""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import strategies as st

ROUTES_FILE = Path(__file__).with_name("visivo_2_2_1_api_routes.txt")

DOCUMENTED_PLACEHOLDERS = frozenset({"{id}", "{uuid}", "{hash}", "{token}", "{value}"})
"""The README's list of what a replaced segment becomes, written out by hand on purpose."""


def visivo_api_routes() -> list[str]:
    """The route rules of Visivo 2.2.1's API server, as read from its wheel."""
    lines = ROUTES_FILE.read_text().splitlines()
    return [line for line in lines if line.startswith("/")]


def route_words(rules: list[str]) -> frozenset[str]:
    """The fixed words of route rules: every segment without a variable."""
    return frozenset(s for rule in rules for s in rule.split("/") if s and "<" not in s)


VISIVO_WORDS = route_words(visivo_api_routes())


def assert_kept_only_by_rule(segments: list[str], out: str, vocabulary: frozenset[str]) -> None:
    """Segment by segment: a vocabulary word stays as it is (so does the empty segment of a
    trailing slash), anything else is a placeholder."""
    kept = out.split("/")[1:]
    assert len(kept) == len(segments), (segments, out)
    for given, sent in zip(segments, kept, strict=True):
        if given in vocabulary or given == "":
            assert sent == given, (given, out)
        else:
            assert sent in DOCUMENTED_PLACEHOLDERS, (given, out)


PERSONAL_TEXT = st.sampled_from(
    [
        "ada",
        "Ada Lovelace",
        "alice@example.com",
        "ada:hunter2",
        "user:password",
        "ip=1.2.3.4",
        "token=abc123",
        "sales-dashboard",
        "O'Brien",
        '"quoted"',
        "josé",
        "my project",
        "deadbeef",
        "cafe",
    ]
) | st.text(string.ascii_letters + string.digits + " :=.@'\"-_,;()+", min_size=1, max_size=16)
"""What a user's names, credentials and addresses look like once a server has decoded them."""


@st.composite
def template_lookalikes(draw: st.DrawFn) -> str:
    """A decoded segment shaped like a route variable or placeholder, built from user text."""
    text = draw(PERSONAL_TEXT)
    converter = draw(st.sampled_from(["", "int:", "path:", "string:", "uuid:"]))
    shape = draw(st.sampled_from(["{%s}", "<%s>", "{%s", "%s}", "<%s", "x-{%s}.pdf"]))
    return shape % (converter + text)
