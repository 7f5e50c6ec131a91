"""Benchmark visivo-telemetry against no telemetry and the PostHog SDK; prints a Markdown table.

    bash scripts/bench.sh            # full run, about 20 minutes (installs the `bench` extra)
    bash scripts/bench.sh --quick    # smaller run, under a minute and a half
    bash scripts/bench.sh --output bench-results.md
    bash scripts/bench.sh --only visivo   # the real Visivo 2.2.1 rows alone
    bash scripts/bench.sh --only machine  # the whole machine's bill alone (CPU, senders included)

Everything runs on 127.0.0.1 against the local receiver (scripts/collector.py), in temporary
HOMEs, with bytecode caches enabled for child processes; nothing touches the user's ~/.visivo.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_chart
import bench_cli
import bench_inputs
import bench_machine
import bench_spool
import bench_visivo
from bench_common import Row, kill_senders, load_collector, refusing_url

HEADER = (
    "Benchmark",
    "Variant",
    "Result (median)",
    "Paired Δ vs. no telemetry (median)",
    "Events",
    "Target",
)


@dataclass(frozen=True)
class Plan:
    """How much work one invocation does."""

    rounds: int
    tight_rounds: int
    tight_block: int
    refusing_posthog_rounds: int
    blackhole_posthog_rounds: int
    blackhole_posthog_cap_s: float
    hot_path_calls: int
    drain_events: int
    per_writer: int
    poller_minutes: float
    poller_scale: float
    visivo_rounds: int = 10
    inputs_rounds: int = 10
    burst_rounds: int = 3


FULL = Plan(20, 20, 5, 5, 2, 90.0, 5000, 100_000, 2000, 10.0, 20.0)
QUICK = Plan(3, 3, 3, 1, 1, 12.0, 500, 5000, 200, 1.0, 20.0, visivo_rounds=2, inputs_rounds=2)


def conditions(plan: Plan, healthy_url: str) -> list[bench_cli.Condition]:
    """The network conditions of the CLI benchmark, black hole last (it changes the receiver)."""
    Condition = bench_cli.Condition
    return [
        Condition("healthy", "healthy receiver", healthy_url, plan.rounds, plan.rounds, 30.0),
        Condition(
            "tight",
            "tight loop, healthy receiver",
            healthy_url,
            plan.tight_rounds,
            plan.tight_rounds,
            30.0,
            block=plan.tight_block,
        ),
        Condition(
            "refusing",
            "receiver refuses connections",
            refusing_url(),
            plan.rounds,
            plan.refusing_posthog_rounds,
            60.0,
        ),
        Condition(
            "blackhole",
            "receiver black-holes (accepts, never answers)",
            healthy_url,
            plan.rounds,
            plan.blackhole_posthog_rounds,
            plan.blackhole_posthog_cap_s,
        ),
    ]


def cli_rows(base: Path, collector, plan: Plan) -> list[Row]:
    """Every CLI-overhead row, condition by condition."""
    table: list[Row] = []
    for condition in conditions(plan, collector.url):
        if condition.name == "blackhole":
            collector.set_mode("blackhole")
        runs = bench_cli.measure(base, condition)
        receiver_db = None if condition.name == "refusing" else collector.db_path
        table += bench_cli.rows(condition, runs, receiver_db)
        collector.set_mode("ok")
    return table


def machine_rows(base: Path, url: str, plan: Plan) -> list[Row]:
    """The whole machine's bill: the sender's parts; in a full run, its linger too (3 senders
    side by side, 22 s), the interactive rows (a command every 20 s, two and a half minutes)
    and the burst (15 commands and an idle block as long)."""
    lingering = 0 if plan is QUICK else 3
    table = bench_machine.rows(base, url, plan.inputs_rounds, lingering)
    if plan is not QUICK:
        table += bench_machine.interactive_rows(base, url)
        table += bench_machine.burst_rows(base, url, plan.burst_rounds)
    return table


def run_all(base: Path, plan: Plan, only: str | None = None) -> list[Row]:
    """Every benchmark, in an order that keeps the receiver's mode changes simple."""
    with load_collector()(base / "received.db") as collector:
        if only == "poller":
            return bench_spool.poller(base, collector, plan.poller_minutes, plan.poller_scale)
        if only == "visivo":
            return visivo_rows(base, collector, plan)
        if only == "machine":
            return machine_rows(base, collector.url, plan)
        bench_cli.warm_up(base, collector.url)
        table = bench_spool.hot_path(base, plan.hot_path_calls)
        table += cli_rows(base, collector, plan)
        table += bench_inputs.rows(base, collector.url, plan.inputs_rounds)
        table += machine_rows(base, collector.url, plan)
        table += bench_spool.drain(base, collector, plan.drain_events)
        table += bench_spool.concurrency(base, plan.per_writer)
        table += bench_spool.poller(base, collector, plan.poller_minutes, plan.poller_scale)
        if plan is QUICK:
            skipped = "not in a quick run: --quick --only visivo"
            table.append(Row(bench_visivo.BENCHMARK, "—", skipped))
        else:
            table += visivo_rows(base, collector, plan)
    return table


def visivo_rows(base: Path, collector, plan: Plan) -> list[Row]:
    """The real Visivo 2.2.1 rows (its PostHog client black-holed: the CLI rows' caps)."""
    return bench_visivo.rows(
        base,
        collector,
        plan.visivo_rounds,
        plan.blackhole_posthog_rounds,
        plan.blackhole_posthog_cap_s,
    )


def markdown(table: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table:
        cells = (str(cell).replace("|", "\\|") for cell in row[: len(HEADER)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    """One line on where and how the numbers were taken."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        from importlib.metadata import version

        posthog = f"posthog {version('posthog')}"
    except Exception:
        posthog = "posthog not installed"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {posthog}; load average before: {load}"
    )


def report(table: list[Row], plan: Plan, seconds: float, before: str) -> str:
    """The full Markdown report: context, then the table."""
    kind = "quick" if plan is QUICK else "full"
    return (
        f"visivo-telemetry benchmark ({kind} run, {seconds:.0f} s). {before}; "
        f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n\n"
        f"{markdown(table)}\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (smoke test)")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--only", choices=["poller", "visivo", "machine"], help="run one benchmark only"
    )
    parser.add_argument("--chart", type=Path, help="also draw the headline rows as an SVG here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the report, clean up every process and file we made."""
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    before = machine()
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="visivo-bench-"))
    try:
        table = run_all(base, plan, args.only)
    finally:
        homes = base / "homes"
        kill_senders(homes.iterdir() if homes.exists() else [])
        shutil.rmtree(base, ignore_errors=True)
    text = report(table, plan, time.perf_counter() - started, before)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    if args.chart:
        args.chart.write_text(bench_chart.from_rows(table, f"Bars on a log scale. {before}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
