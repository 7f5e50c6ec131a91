"""Absurd inputs cost what their recorded head costs: a click command given 150,000 arguments,
and one `request()` whose path is 128 KB (#27: no walker or sanitizer may be quadratic).

The command is timed as whole processes, with and without telemetry, paired round by round;
the path on the caller's thread, in this process (what a server's request thread pays).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench_common import (
    HOST,
    PYTHON,
    Row,
    child_env,
    median,
    ms,
    new_home,
    verdict,
    wait_for_senders,
)

BENCHMARK = "absurd inputs"
FEW, MANY = 10, 150_000
ARGS_TARGET_S = 0.050
PATH_BYTES = 128 * 1024
PATH_TARGET_S = 0.005


def _host(variant: str, count: int, env: dict[str, str], cwd: Path) -> float:
    argv = [PYTHON, str(HOST), variant, "run", "--threads", "4", *["a"] * count]
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=True)
    return time.perf_counter() - started


def rows(base: Path, url: str, rounds: int) -> list[Row]:
    """The added cost of telemetry for 10 and for 150,000 arguments; a 128 KB path's cost."""
    homes = {v: new_home(base, f"inputs-{v}") for v in ("none", "visivo")}
    added: dict[int, list[float]] = {FEW: [], MANY: []}
    for round_no in range(rounds):
        for count in (FEW, MANY):
            order = ("none", "visivo") if round_no % 2 == 0 else ("visivo", "none")
            took = {
                v: _host(v, count, child_env(homes[v], url, "bench-inputs"), base) for v in order
            }
            added[count].append(took["visivo"] - took["none"])
            wait_for_senders([homes["visivo"]])
    few, many = median(added[FEW]), median(added[MANY])
    more = None if few is None or many is None else many - few
    path_s = _path_cost()
    return [
        Row(BENCHMARK, f"click command, {FEW} arguments", f"{ms(few)} added by telemetry"),
        Row(
            BENCHMARK,
            f"click command, {MANY:,} arguments",
            f"{ms(many)} added by telemetry",
            delta=f"{ms(more)} more than with {FEW}",
            target=verdict(
                more is not None and more <= ARGS_TARGET_S, f"≤ {ms(ARGS_TARGET_S)} more"
            ),
        ),
        Row(
            BENCHMARK,
            "`sanitize_endpoint` of a 128 KB path",
            f"{ms(path_s)} on the caller's thread",
            target=verdict(path_s <= PATH_TARGET_S, f"≤ {ms(PATH_TARGET_S)}"),
        ),
    ]


def _path_cost(calls: int = 20) -> float:
    """The median time of sanitizing one 128 KB path (many segments, each a value to mask)."""
    from visivo_telemetry import sanitize_endpoint

    path = ("/api" + "/ada" * (PATH_BYTES // 4))[:PATH_BYTES]
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        sanitize_endpoint(path)
        times.append(time.perf_counter() - started)
    return median(times) or 0.0
