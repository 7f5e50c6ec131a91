"""The whole machine's bill (#24): CPU per command, the sender included, and the sender's own
CPU per delivery broken down into its parts.

A host starts its sender detached (its own session, reparented once the host exits), so no
rusage of the host ever sees it. The sender's parts run here as our direct children, started
exactly as a host starts them (the same interpreter and launch code), and `RUSAGE_CHILDREN`
gives their CPU, user plus system: what the machine pays, however busy it is otherwise.
Interactive use (a command every 20 s) runs each variant in a driver process that is a child
subreaper (Linux): the senders its hosts start are reparented to it and reaped by it when they
end by themselves, lingering included, so its `RUSAGE_CHILDREN` is the hosts' CPU plus their
senders'. A burst (15 commands 0.6 s apart, as a script runs them) is measured as the whole
machine sees it: `/proc/stat`'s busy time over the burst and until its senders end, less the
busy time of an idle block as long (Linux only).
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

from visivo_telemetry._tuning import LINGER_S

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


def rows(base: Path, url: str, rounds: int, lingering: int = 0) -> list[Row]:
    """The sender's CPU per delivery, by part; with `lingering`, as many senders also linger
    their whole linger (no command comes), side by side, for the part waiting costs."""
    home = new_home(base, "machine-sender")
    env = {**_env(home, url), LINGER_KNOB: "0"}  # its linger is the interactive rows' part
    steps: dict[str, list[float]] = {label: [] for label, _ in STEPS}
    delivery: list[float] = []
    for _ in range(rounds):
        for label, code in STEPS:
            launch = code.format(root=str(ROOT))
            steps[label].append(_cpu_of([PYTHON, "-c", launch], env, base))
        _seed_one_event(home, url)
        delivery.append(_cpu_of(_sender_argv(), env, base))
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
            "sender part: + drain one event, plain HTTP",
            f"{ms(sender - previous)} CPU",
            delta=f"{ms(sender)} per delivery in all",
        )
    )
    if lingering:
        waited = _lingering_cpu(base, url, lingering)
        table.append(
            Row(
                BENCHMARK,
                f"sender part: + lingering {LINGER_S:g} s for a next command that never comes",
                f"{ms(waited - sender)} CPU",
                delta=f"{ms(waited)} per delivery in all ({lingering} senders)",
            )
        )
    return table


def _lingering_cpu(base: Path, url: str, senders: int) -> float:
    """The mean CPU seconds of `senders` senders, each delivering one event and then lingering
    to its end, run side by side (each its own spool) so that they take one linger's time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    running = []
    for n in range(senders):
        home = new_home(base, f"machine-lingering-{n}")
        _seed_one_event(home, url)
        env = {**_env(home, url), LINGER_KNOB: ""}
        running.append(subprocess.Popen(_sender_argv(), env=env, cwd=base))
    for sender in running:
        sender.wait(timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / senders


def _variants() -> tuple[str, ...]:
    import importlib.util

    found = importlib.util.find_spec("posthog") is not None
    return ("none", "visivo", "posthog") if found else ("none", "visivo")


LINGER_KNOB = "VISIVO_TELEMETRY_SENDER_LINGER_S"
INTERACTIVE_COMMANDS = 6
INTERACTIVE_GAP_S = 20.0
SHORT_LINGER = "visivo-0.5"
"""visivo-telemetry with its senders letting go 0.5 s after their last event, as before #24:
each interactive command then pays for a sender of its own."""
LABELS = {
    "none": "no telemetry",
    "visivo": "visivo-telemetry (hosts + senders)",
    SHORT_LINGER: "visivo-telemetry, senders lingering 0.5 s (before)",
    "posthog": "PostHog SDK (in process)",
}
PR_SET_CHILD_SUBREAPER = 36


def interactive_rows(base: Path, url: str, commands: int = INTERACTIVE_COMMANDS) -> list[Row]:
    """CPU per command when a user runs one every 20 s, senders included, per variant.

    The variants' drivers run at once, their commands staggered across the gap, so one run
    takes as long as one variant's; CPU time, unlike wall time, is each process's own.
    """
    if not sys.platform.startswith("linux"):
        return [Row(BENCHMARK, "per command, interactive", "n/a: needs a Linux subreaper")]
    variants = (*_variants()[:2], SHORT_LINGER, *_variants()[2:])
    drivers = {}
    for variant in variants:
        home = new_home(base, f"interactive-{variant}")
        argv = [PYTHON, __file__, "drive", variant, str(home), url, str(commands)]
        drivers[variant] = subprocess.Popen(argv, cwd=base, stdout=subprocess.PIPE, text=True)
        time.sleep(INTERACTIVE_GAP_S / len(variants))
    per_command = {}
    for variant, driver in drivers.items():
        out, _ = driver.communicate(timeout=commands * INTERACTIVE_GAP_S + 120)
        per_command[variant] = float(out.split()[-1]) / commands
    none = per_command["none"]
    posthog = per_command.get("posthog")
    table = []
    for variant in variants:
        value = per_command[variant]
        label = f"per command, interactive ({commands} commands {INTERACTIVE_GAP_S:g} s apart): "
        row = Row(BENCHMARK, label + LABELS[variant], f"{ms(value)} CPU")
        if variant != "none":
            row = row._replace(delta=f"+{ms(value - none)}")
        if variant in ("visivo", SHORT_LINGER) and posthog is not None and posthog > none:
            ratio = (value - none) / (posthog - none)
            target = f"≤ {TARGET_RATIO:.1f}× the PostHog path's added CPU"
            mark = "✅" if ratio <= TARGET_RATIO else "❌"
            row = row._replace(target=f"{mark} {ratio:.2f}× the PostHog path's ({target})")
        table.append(row)
    return table


def _drive(variant: str, home: Path, url: str, commands: int) -> float:
    """Run `commands` hosts of `variant`, `INTERACTIVE_GAP_S` apart, adopt their senders and
    reap them as they end by themselves: the CPU seconds of all of them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    env = _env(home, url, f"bench-interactive-{variant}")
    if variant == SHORT_LINGER:
        env[LINGER_KNOB] = "0.5"
    host = "visivo" if variant == SHORT_LINGER else variant
    next_at = time.monotonic()
    for _ in range(commands):
        time.sleep(max(0.0, next_at - time.monotonic()))
        subprocess.run([PYTHON, str(HOST), host, "run"], env=env, cwd=home, capture_output=True)
        next_at += INTERACTIVE_GAP_S
    while True:  # every adopted sender, until none is left (each ends within its 30 s cap)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
            wait_for_senders([home], let_go=False)
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["drive"]:
        variant, home, url, commands = sys.argv[2:6]
        print(_drive(variant, Path(home), url, int(commands)))
