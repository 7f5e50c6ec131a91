"""The whole machine's bill (#24): CPU per command, the sender included, and the sender's own
CPU per delivery broken down into its parts.

A host starts its sender detached (its own session, reparented once the host exits), so no
rusage of ours ever sees it. Here each part runs as our direct child, started exactly as a host
starts it (the same interpreter and launch code), and `RUSAGE_CHILDREN` gives its CPU, user plus
system: what the machine pays, however busy it is otherwise. Interactive use (a command now and
then) gives each command a sender of its own, so its bill is the host's CPU plus one sender's.
A burst (15 commands 0.6 s apart, as a script runs them) lets senders be shared, so it is
measured as the whole machine sees it: `/proc/stat`'s busy time over the burst, its senders
included, less the busy time of an idle block as long (Linux only).
The runner's CA and proxy variables are dropped, as on most users' machines: the receiver is
plain HTTP on 127.0.0.1, so the TLS a real delivery adds (its handshake, and the trust store
read at it) is not in these figures.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import HOST, PYTHON, ROOT, Row, child_env, median, ms, new_home, wait_for_senders

BENCHMARK = "Machine CPU"
TARGET_RATIO = 0.5
"""#24's goal: a command's CPU, sender included, at most half of the PostHog path's."""

_IMPORTS = (
    "import sys; sys.path[0] = {root!r}; "
    "from visivo_telemetry._sender import run; "
    "from visivo_telemetry._sender.transport import HttpxTransport, import_httpx; "
    "import_httpx(); import filelock"
)
STEPS = (
    ("interpreter start", "pass"),
    ("+ imports (httpx, filelock, the sender)", _IMPORTS),
    ("+ HTTP client and TLS setup", _IMPORTS + "; HttpxTransport().close()"),
)
"""Cumulative launch codes: each step's CPU less the one before is that part's cost."""


NETWORK_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)  # fmt: skip


def _env(home: Path, url: str, api_key: str = "bench") -> dict[str, str]:
    env = child_env(home, url, api_key)
    return {k: v for k, v in env.items() if k.upper() not in NETWORK_ENV}


def _cpu_of(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """The CPU seconds (user + system) of one child run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _seed_one_event(home: Path, url: str) -> None:
    """One event waiting in `home`'s spool, bound for `url`, as a host records it."""
    sys.path.insert(0, str(ROOT))
    from visivo_telemetry import _events as events
    from visivo_telemetry import _spool as spool

    conn = spool.connect(str(home / ".visivo" / "telemetry.db"))
    try:
        props = events.cli_command_properties("run", ["--threads", "<value>"], 1.0, None, {})
        spool.append(conn, events.build("cli_command", "1.4.0", props), ("phc_bench", url))
    finally:
        conn.close()


def _sender_argv() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from visivo_telemetry._spawn import sender_argv

    return sender_argv()


def rows(base: Path, url: str, rounds: int) -> list[Row]:
    """The sender's CPU by part, and each variant's CPU per command in interactive use."""
    home = new_home(base, "machine-sender")
    env = _env(home, url)
    steps: dict[str, list[float]] = {label: [] for label, _ in STEPS}
    delivery: list[float] = []
    hosts: dict[str, list[float]] = {"none": [], "visivo": [], "posthog": []}
    for _ in range(rounds):
        for label, code in STEPS:
            launch = code.format(root=str(ROOT))
            steps[label].append(_cpu_of([PYTHON, "-c", launch], env, base))
        _seed_one_event(home, url)
        delivery.append(_cpu_of(_sender_argv(), env, base))
        for variant in _variants():
            variant_home = new_home(base, f"machine-{variant}-{len(hosts[variant])}")
            variant_env = _env(variant_home, url, "bench-machine")
            # The host's sender runs detached: let it finish before the next measurement.
            hosts[variant].append(_cpu_of([PYTHON, str(HOST), variant, "run"], variant_env, base))
            wait_for_senders([variant_home])
    return _table(steps, delivery, hosts)


def _variants() -> tuple[str, ...]:
    import importlib.util

    found = importlib.util.find_spec("posthog") is not None
    return ("none", "visivo", "posthog") if found else ("none", "visivo")


def _table(
    steps: dict[str, list[float]], delivery: list[float], hosts: dict[str, list[float]]
) -> list[Row]:
    table = []
    previous = 0.0
    for label, values in steps.items():
        cumulative = median(values) or 0.0
        table.append(Row(BENCHMARK, f"sender part: {label}", f"{ms(cumulative - previous)} CPU"))
        previous = cumulative
    sender = median(delivery) or 0.0
    table.append(
        Row(
            BENCHMARK,
            "sender part: + drain one event and linger, plain HTTP",
            f"{ms(sender - previous)} CPU",
            delta=f"{ms(sender)} per delivery in all",
        )
    )
    none = median(hosts["none"]) or 0.0
    visivo = (median(hosts["visivo"]) or 0.0) + sender
    table.append(Row(BENCHMARK, "per command, interactive: no telemetry", f"{ms(none)} CPU"))
    posthog = median(hosts["posthog"]) if hosts["posthog"] else None
    ratio = None if posthog in (None, none) else (visivo - none) / (posthog - none)
    target = f"≤ {TARGET_RATIO:.1f}× the PostHog path's added CPU"
    table.append(
        Row(
            BENCHMARK,
            "per command, interactive: visivo-telemetry (host + its sender)",
            f"{ms(visivo)} CPU",
            delta=f"+{ms(visivo - none)}",
            target=target
            if ratio is None
            else f"{'✅' if ratio <= TARGET_RATIO else '❌'} "
            f"{ratio:.2f}× the PostHog path's ({target})",
        )
    )
    if posthog is not None:
        table.append(
            Row(
                BENCHMARK,
                "per command, interactive: PostHog SDK (in process)",
                f"{ms(posthog)} CPU",
                delta=f"+{ms(posthog - none)}",
            )
        )
    return table


BURST_COMMANDS = 15
BURST_GAP_S = 0.6


def _busy_s() -> float | None:
    """The machine's busy CPU seconds since boot (all cores), from `/proc/stat`; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def burst_rows(base: Path, url: str, rounds: int) -> list[Row]:
    """CPU per command over a burst, the whole machine's (senders included), per variant."""
    if _busy_s() is None:
        return [Row(BENCHMARK, "per command, burst", "n/a: no /proc/stat on this system")]
    per_command: dict[str, list[float]] = {v: [] for v in _variants()}
    for round_no in range(rounds):
        for variant in _variants():
            home = new_home(base, f"burst-{variant}-{round_no}")
            env = _env(home, url, "bench-burst")
            before, started = _busy_s() or 0.0, time.monotonic()
            for _ in range(BURST_COMMANDS):
                launched = time.monotonic()
                subprocess.run([PYTHON, str(HOST), variant, "run"], env=env, cwd=base, check=False)
                time.sleep(max(0.0, BURST_GAP_S - (time.monotonic() - launched)))
            wait_for_senders([home])
            busy, took = (_busy_s() or 0.0) - before, time.monotonic() - started
            idle_before = _busy_s() or 0.0
            time.sleep(took)
            idle = (_busy_s() or 0.0) - idle_before
            per_command[variant].append(max(0.0, busy - idle) / BURST_COMMANDS)
    none = median(per_command["none"]) or 0.0
    table = []
    for variant, label in (("none", "no telemetry"), ("visivo", "visivo-telemetry")):
        value = median(per_command[variant]) or 0.0
        delta = "—" if variant == "none" else f"+{ms(value - none)}"
        table.append(
            Row(BENCHMARK, f"per command, burst of 15: {label}", f"{ms(value)} CPU", delta)
        )
    if "posthog" in per_command:
        posthog = median(per_command["posthog"]) or 0.0
        visivo = median(per_command["visivo"]) or 0.0
        ratio = (visivo - none) / (posthog - none) if posthog > none else None
        target = f"≤ {TARGET_RATIO:.1f}× the PostHog path's added CPU"
        table[-1] = table[-1]._replace(
            target=target
            if ratio is None
            else f"{'✅' if ratio <= TARGET_RATIO else '❌'} {ratio:.2f}× the PostHog path's"
        )
        table.append(
            Row(
                BENCHMARK,
                "per command, burst of 15: PostHog SDK (in process)",
                f"{ms(posthog)} CPU",
                f"+{ms(posthog - none)}",
            )
        )
    return table
