"""CLI overhead: the same click host with no telemetry, visivo-telemetry and the PostHog SDK.

Variants run interleaved (A/B/C, order rotated every round) so that machine noise lands on all
of them alike; each variant/condition has its own HOME and api key, so the receiver can tell
whose events arrived. Between rounds we wait for our senders to exit, except in the tight
loop, whose point is that a sender from one run competes with the next runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import (
    HOST,
    PYTHON,
    Row,
    arrived,
    child_env,
    median,
    ms,
    new_home,
    spooled,
    verdict,
    wait_for_senders,
)

VARIANTS = ("none", "floor", "visivo", "posthog")
LABELS = {
    "none": "no telemetry",
    "floor": "the floor: import sqlite3, one WAL insert and commit, one posix_spawn",
    "visivo": "visivo-telemetry",
    "posthog": "PostHog SDK",
}
FLOOR_RATIO_TARGET = 1.5
"""#24's goal: the wall time a command adds is at most this many times the floor's."""
HOST_ARGS = ["run", "--threads", "4", "--dag-filter", "+my_chart+"]
OVERHEAD_TARGET_S = 0.010


@dataclass
class Condition:
    """One network condition and how hard to push each variant in it."""

    name: str
    label: str
    url: str
    rounds: int
    posthog_rounds: int
    posthog_cap_s: float
    block: int = 1
    cap_s: float = 15.0


@dataclass
class Runs:
    """Wall times of one variant, per round (a list per round: one entry, or a tight block)."""

    home: Path
    api_key: str
    times: list[list[float | None]] = field(default_factory=list)
    printed: int = 0

    def flat(self) -> list[float]:
        """Every completed run's wall time."""
        return [t for block in self.times for t in block if t is not None]

    def timeouts(self) -> int:
        return sum(t is None for block in self.times for t in block)

    def runs(self) -> int:
        return sum(len(block) for block in self.times)


def posthog_available() -> bool:
    """Whether the `bench` extra (the PostHog SDK) is installed."""
    return importlib.util.find_spec("posthog") is not None


def run_host(
    variant: str, env: dict[str, str], cwd: Path, cap_s: float
) -> tuple[float | None, bool]:
    """One host run: its wall time (None on timeout) and whether it printed anything."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [PYTHON, str(HOST), variant, *HOST_ARGS],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=cap_s,
        )
    except subprocess.TimeoutExpired:
        return None, False
    return time.perf_counter() - started, bool(done.stdout or done.stderr)


def warm_up(base: Path, url: str) -> None:
    """One run of each variant so bytecode caches exist, as they do for users."""
    for variant in variants():
        home = new_home(base, f"warm-{variant}")
        run_host(variant, child_env(home, url, "bench-warm"), base, 60.0)
        wait_for_senders([home], timeout=10.0)


def variants() -> tuple[str, ...]:
    """The variants this machine can run."""
    return VARIANTS if posthog_available() else VARIANTS[:3]


def measure(base: Path, condition: Condition) -> dict[str, Runs]:
    """All rounds of one condition; returns each variant's runs."""
    runs = {
        v: Runs(new_home(base, f"{condition.name}-{v}"), f"bench-{condition.name}-{v}")
        for v in variants()
    }
    for round_no in range(condition.rounds):
        names = variants()
        shift = round_no % len(names)
        order = names[shift:] + names[:shift]
        for variant in order:
            if variant == "posthog" and round_no >= condition.posthog_rounds:
                continue
            _one_block(base, condition, variant, runs[variant])
    wait_for_senders([r.home for r in runs.values()])
    return runs


def _one_block(base: Path, condition: Condition, variant: str, runs: Runs) -> None:
    """A block of back-to-back runs of one variant (a single run outside the tight loop)."""
    cap = condition.posthog_cap_s if variant == "posthog" else condition.cap_s
    env = child_env(runs.home, condition.url, runs.api_key)
    block: list[float | None] = []
    for _ in range(condition.block):
        seconds, printed = run_host(variant, env, base, cap)
        block.append(seconds)
        runs.printed += printed
    runs.times.append(block)
    wait_for_senders([runs.home])


def paired_deltas(variant: Runs, baseline: Runs) -> list[float]:
    """Per round and position: variant − baseline of the same round."""
    deltas = []
    for ours, theirs in zip(variant.times, baseline.times, strict=False):
        for a, b in zip(ours, theirs, strict=False):
            if a is not None and b is not None:
                deltas.append(a - b)
    return deltas


def rows(condition: Condition, runs: dict[str, Runs], receiver_db: Path | None) -> list[Row]:
    """The table rows of one condition."""
    baseline = runs["none"]
    floor = median(paired_deltas(runs["floor"], baseline))
    return [_row(condition, v, runs[v], baseline, receiver_db, floor) for v in runs]


def _row(
    condition: Condition,
    variant: str,
    runs: Runs,
    baseline: Runs,
    receiver_db: Path | None,
    floor: float | None,
) -> Row:
    shape = f"{len(runs.times)} rounds" + (
        f" × {condition.block} back-to-back" if condition.block > 1 else ""
    )
    result = _result(runs, variant, condition)
    if variant == "none":
        return Row(f"CLI run: {condition.label}", f"{LABELS[variant]} ({shape})", result)
    delta_s = median(paired_deltas(runs, baseline))
    delta = "n/a" if delta_s is None else f"{delta_s * 1e3:+.1f} ms"
    if runs.timeouts() and runs.timeouts() * 2 >= runs.runs():
        delta = f"> {condition.posthog_cap_s - (median(baseline.flat()) or 0):.0f} s"
    if variant == "visivo":
        ok = delta_s is not None and delta_s <= OVERHEAD_TARGET_S and not runs.timeouts()
        target = verdict(ok, "≤ +10 ms")
        if delta_s is not None and floor:
            ratio = delta_s / floor
            target += "; " + verdict(
                ratio <= FLOOR_RATIO_TARGET, f"{ratio:.1f}× the floor (≤ {FLOOR_RATIO_TARGET}×)"
            )
    elif variant == "floor":
        target = "the floor"
    else:
        target = "reference (today)"
        if delta_s is not None and floor and not runs.timeouts():
            target += f"; {delta_s / floor:.0f}× the floor"
    return Row(
        f"CLI run: {condition.label}",
        f"{LABELS[variant]} ({shape})",
        result,
        delta,
        _events(runs, variant, receiver_db),
        target,
    )


def _result(runs: Runs, variant: str, condition: Condition) -> str:
    """Median wall time, honest about runs cut off by the cap."""
    cap = condition.posthog_cap_s if variant == "posthog" else condition.cap_s
    timeouts, total = runs.timeouts(), runs.runs()
    if timeouts and timeouts * 2 >= total:
        return f"timeout (> {cap:.0f} s) in {timeouts}/{total} runs"
    text = ms(median(runs.flat()))
    if timeouts:
        text += f"; {timeouts}/{total} runs timed out (> {cap:.0f} s)"
    if runs.printed and variant != "posthog":
        text += f"; printed in {runs.printed} runs!"
    return text


def _events(runs: Runs, variant: str, receiver_db: Path | None) -> str:
    """How many recorded events reached the receiver, and how many still wait in the spool."""
    if variant == "floor":
        return "— (sends nothing)"
    got = arrived(receiver_db, runs.api_key) if receiver_db is not None else 0
    text = f"{got}/{runs.runs()} arrived"
    if variant == "visivo":
        text += f", {spooled(runs.home)} spooled"
    elif got < runs.runs():
        text += f", {runs.runs() - got} lost"
    return text
