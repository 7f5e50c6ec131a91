"""The PyYAML-free reading of plain `key: word` config files means what PyYAML would read.

`~/.visivo/config.yml` as `visivo-telemetry enable` writes it must not cost every Visivo run
the PyYAML import, and must never be read differently because of that.
"""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from visivo_telemetry.config import parse_flat, word

KEYS = ["telemetry_enabled", "telemetry_debug", "posthog_host", "posthog_api_key", "name"]
WORDS = [
    "true", "True", "TRUE", "false", "False", "yes", "Yes", "no", "NO", "on", "Off", "y", "N",
    "1", "0", "2", "-1", "1.0", "", "~", "null", "Null", "maybe", "phc_abc123",
    "https://eu.i.posthog.com", "http://127.0.0.1:8000", "'true'", '"no"', "[1, 2]", "{a: b}",
    "a: b", "*ref", "&anchor x", "!!str yes", "yes # a comment", "|", ">",
]  # fmt: skip

line = st.tuples(st.sampled_from(KEYS), st.sampled_from(WORDS)).map(lambda kv: f"{kv[0]}: {kv[1]}")
noise = st.sampled_from(["", "# a comment", "  nested: true", "---", "- item", "key:value"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(line, noise), max_size=6))
def test_the_fast_path_reads_what_pyyaml_reads(lines):
    data = "\n".join(lines).encode()
    flat = parse_flat(data)
    if flat is None:
        return
    parsed = yaml.safe_load(data) or {}
    assert set(flat) == set(parsed)
    for key, value in flat.items():
        assert word(value) == word(parsed[key])
        if isinstance(parsed[key], str):
            assert value == parsed[key]


def test_the_files_our_commands_write_take_the_fast_path():
    written = b"# my Visivo settings\nposthog_host: https://eu.i.posthog.com  # EU\n"
    assert parse_flat(written + b"telemetry_enabled: true\n") == {
        "posthog_host": "https://eu.i.posthog.com",
        "telemetry_enabled": "true",
    }


def test_anything_richer_goes_to_pyyaml():
    for text in ["defaults:\n  telemetry_enabled: false\n", "a: 'quoted'\n", "a: [1]\n", "- a\n"]:
        assert parse_flat(text.encode()) is None
