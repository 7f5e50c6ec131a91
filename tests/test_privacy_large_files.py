"""Item 8 of issue 12: a config file too large to read entirely is unclear: off."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry
from visivo_telemetry.config import _MAX_CONFIG_BYTES


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
