"""Item 10 of issue 12: an opt-out variable holding only whitespace is set and not recognised,
so telemetry is off; only the empty string means "not set"."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from visivo_telemetry import _precedence as precedence

_WHITESPACE = st.text(" \t\n\r\x0b\x0c", min_size=1, max_size=8)


@given(_WHITESPACE, st.sampled_from(["VISIVO_TELEMETRY_DISABLED", "DO_NOT_TRACK"]))
def test_whitespace_only_opts_out(value, name):
    decision = precedence._env_decision({name: value})
    assert decision is not None and decision.enabled is False


def test_empty_means_not_set():
    assert precedence._env_decision({"VISIVO_TELEMETRY_DISABLED": ""}) is None
    assert precedence._env_decision({"DO_NOT_TRACK": ""}) is None
    assert precedence._env_decision({"VISIVO_TELEMETRY_DISABLED": " false "}) is None
