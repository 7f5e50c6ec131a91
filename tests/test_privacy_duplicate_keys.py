"""Item 7 of issue 12: a file naming `telemetry_enabled` twice in one mapping is unclear: off,
in the project file and in `~/.visivo/config.yml`, whatever the two values are."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry

_VALUES = st.sampled_from(["true", "false", "yes", "no", "on", "off", "1", "0", "'true'", ""])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(_VALUES, min_size=2, max_size=3), st.sampled_from(["project", "user"]), st.booleans()
)
def test_a_duplicated_telemetry_enabled_is_an_opt_out(home, project, values, where, extra):
    lines = [f"  telemetry_enabled: {v}" for v in values]
    if where == "project":
        text = "name: demo\ndefaults:\n" + "\n".join(lines) + "\n"
        (project / "project.visivo.yml").write_text(text)
        (home / ".visivo").mkdir(exist_ok=True)
        (home / ".visivo" / "config.yml").unlink(missing_ok=True)
    else:
        (project / "project.visivo.yml").unlink(missing_ok=True)
        (home / ".visivo").mkdir(exist_ok=True)
        body = "\n".join(line.strip() for line in lines) + "\n"
        (home / ".visivo" / "config.yml").write_text(("other: 1\n" if extra else "") + body)

    assert Telemetry("1.4.0", project_dir=project, api_key="phc_test_key").enabled is False


def test_a_single_true_keeps_telemetry_on(home, project):
    (project / "project.visivo.yml").write_text("defaults:\n  telemetry_enabled: true\n")
    assert Telemetry("1.4.0", project_dir=project, api_key="phc_test_key").enabled is True


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["false", "no", "off", "0", "''"]),
    st.sampled_from(["1", "{}", "{telemetry_enabled: true}", "[a]", "x"]),
    st.booleans(),
    st.booleans(),
)
def test_a_repeated_key_cannot_drop_an_opt_out(home, project, off, later, later_first, anchor):
    """`defaults: {telemetry_enabled: false}` then `defaults: 1`: the file says both, so off,
    whether read from PyYAML's events or built (an anchor makes the reader build it)."""
    blocks = [f"defaults:\n  telemetry_enabled: {off}\n", f"defaults: {later}\n"]
    if later_first:
        blocks.reverse()
    head = "name: &n demo\nalias: *n\n" if anchor else "name: demo\n"
    (project / "project.visivo.yml").write_text(head + "".join(blocks))

    assert Telemetry("1.4.0", project_dir=project, api_key="phc_test_key").enabled is False
