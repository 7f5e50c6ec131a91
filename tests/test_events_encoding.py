"""The spooled JSON is exactly what the standard library would write, byte for byte.

Hosts that have not imported `json` encode with `_encode`; the rest with `json` itself.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visivo_telemetry._events import _encode, dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_encoder_writes_what_json_dumps_writes(value):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert _encode(value) == expected
    assert dumps(value) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {(1, 2): "x"}, {"a": object()}])
def test_the_encoder_refuses_what_json_refuses(bad):
    with pytest.raises((ValueError, TypeError)):
        json.dumps(bad, allow_nan=False)
    with pytest.raises((ValueError, TypeError)):
        _encode(bad)
