"""Classes 4 and 6 of issue 12: `error_type` is one ascii identifier, metrics are bounded words
and counts. Property tests over the whole class, through the real builder and the schema."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visivo_telemetry import _events as events
from visivo_telemetry import _schema as schema
from visivo_telemetry._events import SAFE_ERROR_TYPE, cli_command_properties

_NOT_IDENTIFIERS = st.one_of(
    st.lists(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), min_size=2, max_size=4
    ).map(".".join),  # db.something.internal
    st.text(min_size=1, max_size=20).filter(lambda t: not (t.isascii() and t.isidentifier())),
    st.sampled_from(["Ошибка", "Ärger", "user:password", "ip=10.0.0.1", "a b", "1Error", ""]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{64,80}", fullmatch=True),
)


def _props(error_type=None, metrics=None, command="run"):
    return cli_command_properties(command, [], 1.0, error_type, metrics or {})


def _counts(counts):
    """`object_counts` on `compile`, the one command that carries it."""
    return _props(metrics={"object_counts": counts}, command="compile")


@given(_NOT_IDENTIFIERS)
def test_an_error_type_that_is_not_one_identifier_becomes_a_fixed_word(name):
    props = _props(name)
    assert props["error_type"] == SAFE_ERROR_TYPE and props["success"] is False
    assert not schema.check_property("error_type", name)
    assert events.build("cli_command", "1.4.0", props) is not None  # the event is kept


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,63}", fullmatch=True))
def test_an_identifier_error_type_is_kept(name):
    assert _props(name)["error_type"] == name


def test_a_dynamically_named_class_is_recorded_as_the_fixed_word():
    exc_type = type("db.something.internal", (Exception,), {})
    assert _props(exc_type.__name__)["error_type"] == "Exception"


_BAD_KEYS = st.one_of(
    st.text(min_size=0, max_size=40).filter(lambda k: not schema.is_metric_key(k)),
    st.from_regex(r"[a-z][a-z0-9_]{32,40}", fullmatch=True),
    st.sampled_from(["Charts", "my project", "sales-dashboard", "ada@example.com", "_x", "1a"]),
    st.integers(),
)
_BAD_COUNTS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=schema.MAX_COUNT + 1),
    st.floats(),
    st.booleans(),
    st.text(max_size=5),
)
_GOOD_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
_GOOD_COUNTS = st.integers(0, schema.MAX_COUNT)


@given(st.dictionaries(_GOOD_KEYS, _GOOD_COUNTS, max_size=10), _BAD_KEYS, _GOOD_COUNTS)
def test_object_counts_with_a_free_text_key_are_dropped(good, key, count):
    assert "object_counts" not in _counts({**good, key: count})


@given(st.dictionaries(_GOOD_KEYS, _GOOD_COUNTS, max_size=10), _GOOD_KEYS, _BAD_COUNTS)
def test_object_counts_with_an_unbounded_count_are_dropped(good, key, count):
    assert "object_counts" not in _counts({**good, key: count})


@given(st.dictionaries(_GOOD_KEYS, _GOOD_COUNTS, max_size=10), _GOOD_COUNTS)
def test_bounded_metrics_are_kept(counts, jobs):
    assert _counts(counts)["object_counts"] == counts
    assert _props(metrics={"job_count": jobs})["job_count"] == jobs


@given(_BAD_COUNTS)
def test_a_job_count_out_of_bounds_is_dropped(jobs):
    assert "job_count" not in _props(metrics={"job_count": jobs})


def test_debug_mode_says_which_metric_was_dropped(home, project, monkeypatch, capsys):
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")
    from visivo_telemetry import Telemetry

    telemetry = Telemetry("1.4.0", project_dir=project, api_key="phc_test_key")
    with telemetry.command("compile") as command:
        command.metrics.update({"object_counts": {"Sales Dashboard": 3}, "job_count": -1})
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        "visivo-telemetry: metric job_count dropped: run only",
        "visivo-telemetry: metric object_counts dropped",
    ]
    assert "Sales Dashboard" not in "\n".join(lines)
    assert len(lines) == 3  # and the event itself, without the metrics


@pytest.mark.parametrize(
    "command, metrics, kept",
    [
        ("run", {"job_count": 12, "object_counts": {"charts": 4}}, {"job_count": 12}),
        (
            "compile",
            {"job_count": 12, "object_counts": {"charts": 4}},
            {"object_counts": {"charts": 4}},
        ),
        ("serve", {"job_count": 12, "object_counts": {"charts": 4}}, {}),
        ("dbt run", {"job_count": 12}, {}),
    ],
)
def test_each_metric_is_sent_only_with_the_command_the_notice_names(command, metrics, kept):
    props = _props(metrics=metrics, command=command)
    assert {k: props[k] for k in ("job_count", "object_counts") if k in props} == kept


def test_the_notice_names_the_command_that_carries_each_metric():
    table = schema.markdown_table()
    for metric, command in events.METRIC_COMMANDS.items():
        (row,) = [line for line in table.splitlines() if f"| `{metric}` |" in line]
        assert row.startswith("| `cli_command` |") and row.endswith(f" (`{command}` only) |")


def test_debug_mode_names_a_metric_set_on_the_wrong_command(home, project, monkeypatch, capsys):
    """Visivo's `run` compiles first, so it sets `object_counts` too: dropped, and said."""
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")
    from visivo_telemetry import Telemetry, set_metric

    telemetry = Telemetry("2.2.1", project_dir=project, api_key="phc_test_key")
    with telemetry.command("run"):
        set_metric("object_counts", {"charts": 4})
        set_metric("job_count", 12)
    first, event = capsys.readouterr().err.splitlines()
    assert first == "visivo-telemetry: metric object_counts dropped: compile only"
    props = json.loads(event)["properties"]
    assert props["job_count"] == 12 and "object_counts" not in props
