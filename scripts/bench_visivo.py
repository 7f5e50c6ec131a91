"""Real Visivo 2.2.1: what telemetry adds to `visivo compile`, ours against Visivo's own client.

Three variants of the same real project's `visivo compile`, interleaved round by round (order
rotated) so machine noise lands on all alike: Visivo 2.2.1 as installed with telemetry off,
Visivo 2.2.1 with its own PostHog client on (its host pointed at the local receiver through
`VISIVO_POSTHOG_HOST`, which 2.2.1 reads), and Visivo 2.2.1 with docs/visivo.md applied. Each
is timed as the whole `visivo` process (our sender is detached and not waited for; Visivo's
client flushes before exit). The venv is the tests' cached one (tests/visivo_support.py).
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import (
    ROOT,
    Row,
    arrived,
    child_env,
    median,
    ms,
    new_home,
    spooled,
    wait_for_senders,
)

VARIANTS = ("off", "posthog", "ours")
LABELS = {
    "off": "Visivo 2.2.1, telemetry off",
    "posthog": "Visivo 2.2.1's own PostHog client",
    "ours": "docs/visivo.md applied (visivo-telemetry)",
}
BENCHMARK = "Real Visivo 2.2.1 `visivo compile`"
CHART_LABELS = {"posthog": "Visivo 2.2.1's own PostHog client", "ours": "visivo-telemetry"}


def load_support():
    """tests/visivo_support.py: the cached venv, the guide's blocks, the real project."""
    spec = importlib.util.spec_from_file_location(
        "visivo_support", ROOT / "tests" / "visivo_support.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@dataclass
class Runs:
    """One variant's wall and CPU times in one condition (None: cut off at the cap)."""

    home: Path
    api_key: str
    times: list[float | None] = field(default_factory=list)
    cpu: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    visivo: Path
    pythonpath: str
    project: Path


def rows(
    base: Path, collector, rounds: int, posthog_blackhole_rounds: int, cap_s: float
) -> list[Row]:
    """The rows of this benchmark; one row saying why when Visivo 2.2.1 cannot be had."""
    support = load_support()
    try:
        venv = support.ensure_venv()
    except support.Unavailable as why:
        return [Row(BENCHMARK, "skipped", str(why))]
    overlay = support.patched_visivo(venv, base / "visivo-overlay", support.guide_blocks())
    setup = Setup(
        venv.visivo,
        os.pathsep.join((str(overlay), str(ROOT))),
        support.make_project(base / "visivo-project"),
    )
    warm_up(base, setup, collector.url)
    table = []
    for name, mode, label in (
        ("healthy", "ok", "healthy receiver"),
        ("blackhole", "blackhole", "receiver black-holes (accepts, never answers)"),
    ):
        collector.set_mode(mode)
        limit = rounds if mode == "ok" else posthog_blackhole_rounds
        runs = measure(base, setup, collector.url, name, rounds, limit, cap_s)
        collector.set_mode("ok")
        table += condition_rows(label, runs, collector.db_path, cap_s)
    return table


def measure(
    base: Path,
    setup: Setup,
    url: str,
    condition: str,
    rounds: int,
    posthog_rounds: int,
    cap_s: float,
) -> dict[str, Runs]:
    """All rounds of one condition, one run per variant per round."""
    runs = {
        v: Runs(new_home(base, f"visivo-{condition}-{v}"), f"bench-visivo-{condition}-{v}")
        for v in VARIANTS
    }
    for round_no in range(rounds):
        shift = round_no % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            if variant == "posthog" and round_no >= posthog_rounds:
                continue
            wall, cpu = run_compile(setup, variant, runs[variant], url, cap_s)
            runs[variant].times.append(wall)
            runs[variant].cpu.append(cpu)
            wait_for_senders([runs[variant].home])
    return runs


def warm_up(base: Path, setup: Setup, url: str) -> None:
    """One run of each variant, so bytecode caches exist (the patched modules' too)."""
    for variant in VARIANTS:
        runs = Runs(new_home(base, f"visivo-warm-{variant}"), "bench-visivo-warm")
        run_compile(setup, variant, runs, url, 120.0)
        wait_for_senders([runs.home])


def run_compile(
    setup: Setup, variant: str, runs: Runs, url: str, cap_s: float
) -> tuple[float | None, float | None]:
    """One `visivo compile` of the real project: its wall and CPU (user + sys) seconds, None
    when cut off. The CPU is the `visivo` process's own: a detached sender is not its child."""
    env = child_env(runs.home, url, runs.api_key)
    env.pop("PYTHONPATH", None)
    if variant == "off":
        env["VISIVO_TELEMETRY_DISABLED"] = "1"
    elif variant == "ours":
        env["PYTHONPATH"] = setup.pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(setup.visivo), "compile"],
            cwd=setup.project,
            env=env,
            capture_output=True,
            timeout=cap_s,
        )
    except subprocess.TimeoutExpired:
        return None, None
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"visivo compile failed ({variant}): {done.stderr[-500:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def spread(runs: Runs) -> str:
    """The median absolute deviation of a variant's wall times: the noise a Δ must beat."""
    done = [t for t in runs.times if t is not None]
    middle = median(done)
    return "n/a" if middle is None else ms(median([abs(t - middle) for t in done]))


def paired(values: list[float | None], baseline: list[float | None]) -> list[float]:
    """Round by round: variant − baseline of the same round."""
    return [
        a - b for a, b in zip(values, baseline, strict=False) if a is not None and b is not None
    ]


def condition_rows(label: str, runs: dict[str, Runs], receiver_db: Path, cap_s: float) -> list[Row]:
    """One row per variant: median wall time, paired Δ against telemetry off, events."""
    baseline = runs["off"]
    table = []
    for variant, variant_runs in runs.items():
        shape = f"{len(variant_runs.times)} rounds"
        done = [t for t in variant_runs.times if t is not None]
        cut = len(variant_runs.times) - len(done)
        cpu = median([t for t in variant_runs.cpu if t is not None])
        result = f"{ms(median(done))} wall, {ms(cpu)} CPU" if done else f"timeout (> {cap_s:.0f} s)"
        if cut and done:
            result += f"; {cut}/{len(variant_runs.times)} runs timed out (> {cap_s:.0f} s)"
        if variant == "off":
            table.append(Row(f"{BENCHMARK}: {label}", f"{LABELS[variant]} ({shape})", result))
            continue
        delta_s = median(paired(variant_runs.times, baseline.times))
        cpu_s = median(paired(variant_runs.cpu, baseline.cpu))
        delta = "n/a" if delta_s is None else f"{delta_s * 1e3:+.1f} ms wall"
        if cpu_s is not None:
            delta += f", {cpu_s * 1e3:+.1f} ms CPU"
        if not done:
            delta = f"> {cap_s - (median([t for t in baseline.times if t]) or 0):.0f} s"
        got = arrived(receiver_db, variant_runs.api_key)
        events = f"{got}/{len(variant_runs.times)} arrived"
        if variant == "ours":
            events += f", {spooled(variant_runs.home)} spooled"
            noise = spread(baseline)
            target = f"no verdict: Visivo's own run varies ±{noise} (CLI rows: ≤ +10 ms)"
        else:
            target = "reference (Visivo 2.2.1 today)"
        added_ms = None if delta_s is None else delta_s * 1e3
        if not done:
            added_ms = (cap_s - (median([t for t in baseline.times if t]) or 0)) * 1e3
        chart = (
            None
            if added_ms is None
            else (f"visivo compile, {label}: time added", CHART_LABELS[variant], added_ms)
        )
        row = Row(
            f"{BENCHMARK}: {label}",
            f"{LABELS[variant]} ({shape})",
            result,
            delta,
            events,
            target,
            chart,
        )
        table.append(row)
    return table
