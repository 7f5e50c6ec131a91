"""Declared options keep their names, from click's own table; no value ever survives."""

from __future__ import annotations

import json
import string

import click
import pytest
from helpers import TEST_API_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry
from visivo_telemetry._sanitize import is_sensitive_flag
from visivo_telemetry.integrations.click import instrument

MARK = "zqx"
"""Every generated value carries it; no option name does."""

LOWER = string.ascii_lowercase.replace("z", "")


def recorded(group: click.Group, argv: list[str], capsys) -> dict:
    """Run `group` in-process with a real Telemetry in debug mode; the one event it printed."""
    telemetry = Telemetry(version="1.4.0", project_dir=None, api_key=TEST_API_KEY)
    instrument(group, telemetry, show_notice=False)
    capsys.readouterr()
    group.main(argv, prog_name="visivo", standalone_mode=False)
    [line] = capsys.readouterr().err.splitlines()
    return json.loads(line)["properties"]


@st.composite
def options(draw):
    """Declared options of every kind, and for each how one use is typed and recorded."""
    words = st.text(LOWER, min_size=2, max_size=8).filter(lambda w: not is_sensitive_flag(w))
    shorts = st.text(LOWER, min_size=1, max_size=3).filter(lambda w: not is_sensitive_flag(w))
    count = draw(st.integers(1, 6))
    longs = draw(st.lists(words, min_size=count, max_size=count, unique=True))
    letters = draw(st.lists(shorts, min_size=count, max_size=count, unique=True))
    return [
        (f"--{w}", f"-{s}", draw(st.sampled_from(KINDS)))
        for w, s in zip(longs, letters, strict=True)
    ]


KINDS = ("value", "flag", "count", "pair")
VALUES = st.builds(
    lambda prefix, body: prefix + MARK + body,
    st.sampled_from(["", "-", "--", "+"]),
    st.text(string.ascii_letters + string.digits + "_", max_size=6),
)


def build(opts) -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    @cli.command()
    def run(**_: object) -> None:
        pass

    for long, short, kind in opts:
        if kind == "value":
            decl = click.Option([long, short])
        elif kind == "flag":
            decl = click.Option([long, short], is_flag=True)
        elif kind == "count":
            decl = click.Option([long, short], count=True)
        else:
            decl = click.Option([f"{long}/--no-{long[2:]}"])
        run.params.append(decl)
    return cli


@st.composite
def invocations(draw):
    """Declared options, an argv using them, and the args that must be recorded."""
    opts = draw(options())
    argv: list[str] = []
    expected: list[str] = []
    for long, short, kind in draw(st.lists(st.sampled_from(opts), max_size=6)):
        form = draw(st.sampled_from(["long", "short", "equals", "attached", "no"]))
        name = short if form in ("short", "attached") else long
        if kind == "pair":
            name = f"--no-{long[2:]}" if form == "no" else long
            argv.append(name)
            expected.append(name)
        elif kind != "value":
            argv.append(name)
            expected.append(name)
        elif form == "equals":
            argv.append(f"{long}={draw(VALUES)}")
            expected.append(f"{long}=<value>")
        elif form == "attached" and len(short) == 2:
            argv.append(short + MARK)
            expected.append(f"{short}<value>")
        else:
            argv += [name, draw(VALUES)]
            expected += [name, "<value>"]
    return build(opts), argv, expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(invocations())
def test_every_declared_option_keeps_its_name_and_no_value_survives(
    home, monkeypatch, capsys, invocation
):
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")
    group, argv, expected = invocation
    props = recorded(group, ["run", *argv], capsys)
    assert props["command"] == "run" and props["success"] is True
    assert props["command_args"] == expected
    assert MARK not in json.dumps(props)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-df", "+x+", "-th", "2"], ["-df", "<value>", "-th", "<value>"]),
        (["--name", "--acme-corp"], ["--name", "<value>"]),
        (["-k", "hunter2", "--threads=4"], ["-k", "<redacted>", "--threads=<value>"]),
        (["--no-color", "-dp", "/home/ada/profiles"], ["--no-color", "-dp", "<path>"]),
    ],
)
def test_visivo_style_options(home, monkeypatch, capsys, argv, expected):
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")

    @click.group()
    def cli() -> None:
        pass

    @cli.command()
    @click.option("-df", "--dag-filter")
    @click.option("-th", "--threads", type=int)
    @click.option("-dp", "--dbt-profile")
    @click.option("--name")
    @click.option("-k", "--api-key")
    @click.option("--color/--no-color")
    def run(**_: object) -> None:
        pass

    props = recorded(cli, ["run", *argv], capsys)
    assert props["command_args"] == expected
    assert "hunter2" not in json.dumps(props) and "acme" not in json.dumps(props)
