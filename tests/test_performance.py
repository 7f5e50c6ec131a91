"""Performance promises that can be checked deterministically, and the benchmark's smoke test.

Speed itself is judged by `scripts/bench.py`, not by tests: timings on a shared machine are
noise. What a test can prove is that recording an event never imports the heavy modules whose
import alone would cost a short CLI run tens of milliseconds.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, clean_env, run_host, spool_rows

NEVER_ON_THE_HOT_PATH = (
    "httpx",
    "sqlite_utils",
    "filelock",
    "subprocess",
    "click",
    "flask",
    "asyncio",
    "json",
    "re",
    "typing",
)
"""What recording never imports (the README's list): each costs a short CLI process time."""
ONLY_WITH_A_CONFIG_FILE = "yaml"

RECORD_AND_LIST_MODULES = textwrap.dedent(
    """
    import sys
    from visivo_telemetry import Telemetry

    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
    telemetry.request("GET", "/api/trace/42/", 200, 3.5)
    with telemetry.command("run", ["--threads", "4", "--output-dir", "/tmp/out"]):
        pass
    sys.stdout.write("\\n".join(sorted(sys.modules)))
    """
)


def _imported_by_recording(env: dict[str, str], project: Path) -> set[str]:
    """Top-level names of every module loaded in a fresh host that recorded two events."""
    result, _ = run_host(RECORD_AND_LIST_MODULES, env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return {name.split(".")[0] for name in result.stdout.split()}


def test_recording_imports_nothing_heavy_and_no_yaml_without_a_config(
    env, home, project, collector
):
    loaded = _imported_by_recording(env, project)

    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH), loaded & set(NEVER_ON_THE_HOT_PATH)
    assert ONLY_WITH_A_CONFIG_FILE not in loaded
    assert len(collector.wait_for_events(2)) == 2, "the host must really have recorded"


def test_recording_with_a_config_file_still_imports_nothing_heavy(env, home, project, collector):
    (home / ".visivo").mkdir(mode=0o700)
    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: true\n")

    loaded = _imported_by_recording(env, project)

    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH), loaded & set(NEVER_ON_THE_HOT_PATH)
    assert len(collector.wait_for_events(2)) == 2, "the host must really have recorded"


def test_a_flat_config_file_is_read_without_pyyaml(env, home, project, collector):
    (home / ".visivo").mkdir(mode=0o700)
    (home / ".visivo" / "config.yml").write_text(
        "# written by visivo-telemetry enable\ntelemetry_enabled: true\n"
    )

    loaded = _imported_by_recording(env, project)

    assert ONLY_WITH_A_CONFIG_FILE not in loaded
    assert len(collector.wait_for_events(2)) == 2, "the host must really have recorded"


def test_an_opted_out_host_does_not_even_load_sqlite(home, project):
    loaded = _imported_by_recording(clean_env(home, VISIVO_TELEMETRY_DISABLED="1"), project)

    assert loaded.isdisjoint({*NEVER_ON_THE_HOT_PATH, ONLY_WITH_A_CONFIG_FILE, "sqlite3"})
    assert not (home / ".visivo").exists()


def test_recording_while_the_receiver_refuses_imports_nothing_heavy(home, project):
    loaded = _imported_by_recording(clean_env(home), project)

    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH), loaded & set(NEVER_ON_THE_HOT_PATH)
    assert ONLY_WITH_A_CONFIG_FILE not in loaded
    assert len(spool_rows(home)) >= 1


def test_a_sender_never_imports_httpxs_command_line():
    """httpx's `httpx._main` (click, rich, pygments) is ~40% of a sender's imports; the sender
    never runs it. httpx still works, and its `main` is httpx's own stub."""
    code = textwrap.dedent(
        """
        import sys
        from visivo_telemetry._sender.transport import HttpxTransport
        HttpxTransport().close()
        import httpx
        assert callable(httpx.main) and httpx.Client
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("click", "rich", "pygments")
                     or m == "httpx._main"))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


BENCH_ROWS = (
    r"Hot path: record one `cli_command`, warm",
    r"Hot path: record one `api_request`, warm",
    r"Hot path: import \+ `Telemetry\(\)` \+ first event, cold process",
    r"Hot path: modules imported by import \+ first event",
    *(
        rf"CLI run: {condition} \| {variant} "
        for condition in (
            "healthy receiver",
            "tight loop, healthy receiver",
            "receiver refuses connections",
            r"receiver black-holes \(accepts, never answers\)",
        )
        for variant in ("no telemetry", "the floor:", "visivo-telemetry", "PostHog SDK")[
            : 4 if importlib.util.find_spec("posthog") else 3
        ]
    ),
    r"absurd inputs \| click command, 150,000 arguments \| .* added by telemetry",
    r"absurd inputs \| `sanitize_endpoint` of a 128 KB path \| ",
    r"Machine CPU \| sender part: \+ drain one event, plain HTTP \| .* CPU",
    r"Drain: 5,000 spooled events to the local receiver",
    *(rf"Concurrency: {n} writer process" for n in (1, 2, 4, 8)),
)


@pytest.mark.timeout(180)
def test_the_quick_benchmark_prints_every_row(tmp_path):
    output = tmp_path / "bench.md"

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=150,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    assert output.read_text() == table
    for row in BENCH_ROWS:
        assert re.search(r"^\| " + row, table, re.MULTILINE), f"missing row: {row}"
    assert "Traceback" not in done.stderr
