"""Item 8 of issue 12: a config file too large to read entirely is unclear: off; one under
the limit is decided from its parse events, as exactly as building it would decide."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry
from visivo_telemetry import _yaml_scan as yaml_scan
from visivo_telemetry._files import _MAX_CONFIG_BYTES, Unreadable

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(1, 5000),
    st.sampled_from(["false", "true", None]),
    st.sampled_from(["project", "user"]),
)
def test_a_file_over_the_limit_is_an_opt_out(home, project, over, late_value, where):
    filler = "# " + "x" * 78 + "\n"
    text = "name: demo\n" + filler * ((_MAX_CONFIG_BYTES + over) // len(filler) + 1)
    if late_value is not None:
        text += f"defaults:\n  telemetry_enabled: {late_value}\n"
    (project / "project.visivo.yml").unlink(missing_ok=True)
    (home / ".visivo").mkdir(exist_ok=True)
    (home / ".visivo" / "config.yml").unlink(missing_ok=True)
    target = (
        project / "project.visivo.yml" if where == "project" else home / ".visivo" / "config.yml"
    )
    target.write_text(text)

    assert Telemetry("1.4.0", project_dir=project, api_key="phc_test_key").enabled is False


def test_a_file_just_under_the_limit_is_read(home, project):
    text = "defaults:\n  telemetry_enabled: true\n"
    text += "#" * (_MAX_CONFIG_BYTES - len(text) - 1) + "\n"
    (project / "project.visivo.yml").write_text(text)
    assert Telemetry("1.4.0", project_dir=project, api_key="phc_test_key").enabled is True


# --------------------------------------------------------------------------- the events path
#
# A project file is read from PyYAML's parse events instead of being built (about 4x cheaper
# on a 1 MB project). The oracle is what PyYAML's load, then "any mapping with a
# `telemetry_enabled` that is not true", decides; both must agree on every document, also
# the malformed ones, whose load fails (off).

_KEYS = ["telemetry_enabled", "name", "defaults", "'telemetry_enabled'", "charts", "<<"]
_WORDS = [
    "true", "false", "yes", "no", "on", "off", "y", "1", "0", "01", "0x1", "2", "'true'", "~",
    "", "null", "maybe", "1.5", "1:20", "2026-02-28", "2026-02-30", "0b_", "._", "=", "&a x",
    "*a", "!!str true", "!!bool true", "[true]", "{telemetry_enabled: no}", "{a: 1}", "ref(x)",
    '"select 1"', "a: b", "- x", "[",
]  # fmt: skip
_EXTRA_LINES = [
    "---", "...", "sql: |", "  telemetry_enabled: false", "? [a]", ": telemetry_enabled",
    "x: &b {telemetry_enabled: false}", "y: *b", "<<: {telemetry_enabled: false}", "\t",
    "%YAML 1.1", "# telemetry_enabled: false",
]  # fmt: skip

_trees = st.recursive(
    st.sampled_from(_WORDS),
    lambda inner: st.one_of(
        st.lists(st.tuples(st.sampled_from(_KEYS), inner), min_size=1, max_size=4),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=12,
)


def _render(tree: object, indent: int = 0) -> list[str]:
    """Block YAML lines for a tree of (key, value) lists, lists and raw scalar words."""
    pad = " " * indent
    if isinstance(tree, str):
        return [pad + tree]
    lines = []
    for entry in tree:
        head, value = entry if isinstance(entry, tuple) else ("-", entry)
        colon = "" if head == "-" else ":"
        if isinstance(value, str):
            lines.append(f"{pad}{head}{colon} {value}".rstrip())
        else:
            lines.append(f"{pad}{head}{colon}")
            lines.extend(_render(value, indent + 2))
    return lines


@st.composite
def _documents(draw: st.DrawFn) -> str:
    tree = draw(_trees)
    lines = _render(tree if not isinstance(tree, str) else [("telemetry_enabled", tree)])
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_EXTRA_LINES)))
    return "\n".join(lines) + "\n"


def _loaded_opts_out(data: bytes) -> bool:
    """The oracle: build the document with PyYAML (refusing a repeated key), then look."""
    try:
        mapping = yaml_scan._load_yaml(data, "project.visivo.yml", (yaml_scan.ENABLED_KEY,))
    except Unreadable:
        return True
    return mapping is not None and yaml_scan.opts_out_anywhere(mapping)


@settings(max_examples=600, deadline=None)
@given(_documents())
@example("name:\n  telemetry_enabled: false\nname: true\n")  # a repeat cannot drop an opt-out
@example("name: 1\nname: {telemetry_enabled: false}\n")  # nor hide one
@example("a: {b: {telemetry_enabled: no}, telemetry_enabled: true}\n")  # a nested one counts
@example("1: {telemetry_enabled: false}\n0x1: x\n")  # 1 and 0x1 are one key
@example("yes: [{telemetry_enabled: off}]\n1: x\n")  # True and 1 too
@example("d:\n  e: {telemetry_enabled: no}\n  e: 1\nd2: 1\n")
def test_the_events_decide_what_building_the_document_decides(text):
    data = text.encode()
    try:
        found = yaml_scan._events_opt_out(yaml, _LOADER(data))
    except Exception:
        found = True  # project_opts_out: an error reading events is Unreadable, off
    event("built instead" if found is None else f"events: {'off' if found else 'no opt-out'}")
    if found is not None:
        assert found == _loaded_opts_out(data), text


def test_a_large_project_file_is_decided_from_its_events(tmp_path):
    """Near the limit, each way the answer can go, through the real function; a plain project
    file (no anchors, aliases or tags) is judged from its events, never built."""
    charts = "".join(
        f"  - name: chart_{i}\n    height: {400 + i}\n    sql: |\n      select {i}\n"
        for i in range(12_000)
    )
    on = "defaults:\n  telemetry_enabled: true\n"
    cases = [  # (before the charts, after them, opts out)
        (on, "", False),
        ("defaults:\n  telemetry_enabled: false\n", "", True),
        (on + "  telemetry_enabled: true\n", "", True),  # named twice
        (on, "bad: 2026-02-30\n", True),  # a load fails on it
        (on, "last: [\n", True),  # a syntax error
        (on, "defaults: 1\n", False),  # the repeated key drops nothing that opts out
        ("defaults:\n  telemetry_enabled: off\n", "defaults: 1\n", True),  # nor an opt-out
    ]
    path = tmp_path / "project.visivo.yml"
    for head, tail, off in cases:
        text = head + "charts:\n" + charts + tail
        assert len(text) < _MAX_CONFIG_BYTES
        path.write_text(text)
        try:
            decided = yaml_scan.project_opts_out(str(path))
        except Unreadable:
            decided = True  # what `decide` makes of it: off
        try:
            judged = yaml_scan._events_opt_out(yaml, _LOADER(text.encode()))
        except Exception:
            judged = True  # a parse or construction error: Unreadable, off
        assert (decided, judged, _loaded_opts_out(text.encode())) == (off, off, off), (head, tail)
