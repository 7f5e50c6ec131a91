"""Absurd inputs cost what their recorded part costs: no sanitizer or walker is quadratic.

These are hang catchers with generous bounds, never timings: a quadratic walk of these inputs
takes tens of seconds (one `list.pop(0)` per token, one `rsplit` per segment), a linear one
milliseconds. Figures belong to the benchmark.
"""

from __future__ import annotations

import time

import click

from visivo_telemetry import sanitize_endpoint
from visivo_telemetry.integrations.click import _Spec, mask_undeclared_flags

GENEROUS_S = 3.0


def _timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_a_command_with_300000_arguments_is_read_only_as_far_as_it_is_recorded():
    @click.command()
    @click.option("-v", is_flag=True)
    @click.option("--name")
    @click.argument("files", nargs=-1)
    def run(v: bool, name: str | None, files: tuple[str, ...]) -> None:
        """A command with flags, an option and arguments."""

    argv = ["-v", "/home/ada/f.csv", "--name", "acme"] * 75_000
    with click.Context(run) as ctx:
        spec = _Spec(run, ctx)
        masked, seconds = _timed(lambda: mask_undeclared_flags(argv, spec))

    assert seconds < GENEROUS_S, f"{seconds:.1f} s for 300,000 arguments"
    assert masked[:4] == ["-v", "/home/ada/f.csv", "--name", "acme"]  # values: sanitize_args
    assert len(masked) <= 64 + 1


def test_a_512_kb_path_is_sanitized_in_one_pass():
    many_segments = "/api" + "/ada" * 131_072
    endpoint, seconds = _timed(lambda: sanitize_endpoint(many_segments))

    assert seconds < GENEROUS_S, f"{seconds:.1f} s for a 512 KB path"
    assert endpoint.startswith("/api/{value}/{value}/") and endpoint.endswith("/...")
    assert len(endpoint) <= 256
