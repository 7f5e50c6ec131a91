"""The PyYAML-free reading of plain `key: word` config files means what PyYAML would read.

`~/.visivo/config.yml` as `visivo-telemetry enable` writes it must not cost every Visivo run
the PyYAML import, and must never be read differently because of that.
"""

from __future__ import annotations

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from visivo_telemetry._words import word
from visivo_telemetry._yaml_scan import parse_flat

KEYS = ["telemetry_enabled", "telemetry_debug", "posthog_host", "posthog_api_key", "name"]
FLAT_WORDS = [
    "true", "True", "TRUE", "false", "False", "yes", "Yes", "no", "NO", "on", "Off", "y", "N",
    "1", "0", "2", "10", "", "null", "Null", "maybe", "phc_abc123",
    "https://eu.i.posthog.com", "http://127.0.0.1:8000", "yes # a comment",
]  # fmt: skip
"""Plain words, as `key: word` lines carry them: the fast path takes every one."""
RICH_WORDS = [
    "no\t# a tab before the comment",
    "~", "'true'", '"no"', "[1, 2]", "{a: b}", "a: b", "*ref", "&anchor x", "!!str yes", "|", ">",
    "01", "00", "0x1", "0b1", "1_", "0_1", "-1", "1.0", ".5", "1:20", "2026-02-28",
]  # fmt: skip
"""Anything YAML gives more meaning than a word: left to PyYAML. Numbers other than plain
digits among them: PyYAML reads `01`, `0x1`, `0b1`, `1_` and `0_1` as 1, which keeps
telemetry on."""
FLAT_NOISE = ["", "# a comment", "   ", "  # an indented comment"]
RICH_NOISE = [
    "  nested: true", "---", "- item", "key:value", "telemetry enabled: no",
    "# \x00", "# \x7f", "\x0c", "# \x1b[0m", "\ufeff",
]  # fmt: skip
"""A line YAML reads as more than a word, or refuses: control characters, even in a comment."""


@st.composite
def flat_documents(draw: st.DrawFn) -> list[str]:
    """Plain `key: word` lines (each key once) among blank and comment lines."""
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=5))
    lines = [f"{key}: {draw(st.sampled_from(FLAT_WORDS))}" for key in keys]
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(FLAT_NOISE)))
    return lines


@st.composite
def rich_documents(draw: st.DrawFn) -> list[str]:
    """A flat document with one thing more than plain lines: a rich value, a rich line or a
    key named twice."""
    lines = draw(flat_documents())
    kind = draw(st.sampled_from(["value", "line", "repeat"]))
    if kind == "value":
        extra = f"{draw(st.sampled_from(KEYS))}: {draw(st.sampled_from(RICH_WORDS))}"
    elif kind == "line":
        extra = draw(st.sampled_from(RICH_NOISE))
    else:
        key = draw(st.sampled_from(KEYS))
        lines.append(f"{key}: {draw(st.sampled_from(FLAT_WORDS))}")
        extra = f"{key}: {draw(st.sampled_from(FLAT_WORDS))}"
    event(f"richer by: {kind}")
    lines.insert(draw(st.integers(0, len(lines))), extra)
    return lines


@settings(max_examples=400, deadline=None)
@given(flat_documents())
def test_the_fast_path_reads_what_pyyaml_reads(lines):
    """Every example is checked: plain lines always take the fast path, and it must read them
    as PyYAML does (the rejection path is the next test)."""
    data = "\n".join(lines).encode()
    flat = parse_flat(data)
    assert flat is not None, data
    event(f"keys read: {len(flat)}")
    parsed = yaml.safe_load(data) or {}
    assert set(flat) == set(parsed)
    for key, value in flat.items():
        assert word(value) == word(parsed[key])
        if isinstance(parsed[key], str):
            assert value == parsed[key]


@settings(max_examples=200, deadline=None)
@given(rich_documents())
def test_anything_more_than_plain_lines_is_left_to_pyyaml(lines):
    assert parse_flat("\n".join(lines).encode()) is None, lines


def test_the_files_our_commands_write_take_the_fast_path():
    written = b"# my Visivo settings\nposthog_host: https://eu.i.posthog.com  # EU\n"
    assert parse_flat(written + b"telemetry_enabled: true\n") == {
        "posthog_host": "https://eu.i.posthog.com",
        "telemetry_enabled": "true",
    }


def test_anything_richer_goes_to_pyyaml():
    for text in ["defaults:\n  telemetry_enabled: false\n", "a: 'quoted'\n", "a: [1]\n", "- a\n"]:
        assert parse_flat(text.encode()) is None
