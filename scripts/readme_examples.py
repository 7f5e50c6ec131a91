"""The README's transcripts, produced by a real run: `python scripts/readme_examples.py --write`.

Each example is a fenced block between `<!-- example:NAME -->` and `<!-- /example:NAME -->`.
This script runs the Visivo-like CLI (`scripts/visivo_cli.py`, shown as `visivo`) and the
`visivo-telemetry` command in a temporary HOME against the local receiver on 127.0.0.1, and
writes what they printed. `--check` (what the test runs) exits 1 when the README differs from a
fresh run beyond what changes from run to run: ids, times, durations, ports, this machine's
Python and platform.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_common import RUNNER_ENV, load_collector

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "cli.md")
"""Where examples live; each example is written wherever its block appears."""
CLI = ROOT / "scripts" / "visivo_cli.py"

VARIABLE = (
    (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
    (r'"duration_ms": ?[0-9.]+', '"duration_ms": <ms>'),
    (r"\d+ (s|min|h)\b", "<n> s"),
    (r"(next attempt: +).*", r"\1<when>"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
    (
        r'"(python_version|platform_version|platform|architecture)": ?"[^"]*"',
        r'"\1": <this machine>',
    ),
)
"""What differs between two honest runs, masked before the README and a fresh run are compared."""


class Session:
    """A temporary HOME and project, the receiver, and the transcript of what was run."""

    def __init__(self, base: Path, receiver: Any) -> None:
        """`receiver`: the local collector, on its own port; `up` says whether it runs."""
        self.home = base / "home"
        self.project = base / "project"
        self.home.mkdir()
        self.project.mkdir()
        self.receiver = receiver
        self.lines: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in RUNNER_ENV}
        env.update(HOME=str(self.home), PYTHONPATH=str(ROOT))
        env["VISIVO_POSTHOG_HOST"] = self.receiver.url
        env.update(extra)
        return env

    def run(self, shown: str, argv: list[str], up: bool, comment: str = "", **env: str) -> None:
        """Run one command as a user would, the receiver up or down; add it and its output to
        the transcript unless `shown` is empty (a step that only sets the scene)."""
        if up and not self.receiver.running:
            self.receiver.start()
        elif not up and self.receiver.running:
            self.receiver.stop()
        result = subprocess.run(
            argv,
            cwd=self.project,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.wait_for_senders()
        if not shown:
            return
        prompt = f"$ {shown}"
        self.lines.append(f"{prompt:<40} # {comment}" if comment else prompt)
        output = (result.stdout + result.stderr).replace(str(self.home), "~").rstrip("\n")
        if output:
            self.lines.append(output)

    def visivo(
        self, args: str, up: bool, comment: str = "", shown: str | None = None, **env: str
    ) -> None:
        argv = [sys.executable, str(CLI), *args.split()]
        self.run(f"visivo {args}" if shown is None else shown, argv, up, comment, **env)

    def telemetry(self, args: str, up: bool, comment: str = "") -> None:
        argv = [sys.executable, "-m", "visivo_telemetry.cli", *args.split()]
        self.run(f"visivo-telemetry {args}", argv, up, comment)

    def wait_for_senders(self, timeout: float = 40.0) -> None:
        """Let a sender a command started finish, so the next command sees a settled spool."""
        marker = f"HOME={self.home}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(marker in env for env in _environs()):
            time.sleep(0.05)

    def take(self) -> str:
        text, self.lines = "\n".join(self.lines), []
        return text


def _environs() -> Iterator[bytes]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                yield Path("/proc", entry, "environ").read_bytes()
            except OSError:
                continue


def status_transcript(session: Session) -> str:
    """`status` after two commands ran while the receiver was down."""
    session.visivo("run --threads 4", up=False, shown="")
    session.visivo("compile", up=False, shown="")
    session.telemetry("status", up=False, comment="two commands ran, the receiver is down")
    return session.take()


def cli_transcript(session: Session) -> str:
    """The rest of the `visivo-telemetry` command, on the spool `status` showed."""
    session.telemetry("status --json", up=False, comment="the same, for machines")
    session.lines.pop()
    session.telemetry("show --limit 1", up=False, comment="the events as they would be sent")
    session.telemetry("flush", up=False, comment="receiver still down: exit 1")
    session.telemetry("flush", up=True, comment="deliver now, ignoring backoff")
    session.visivo("compile", up=False, shown="")
    session.telemetry("purge", up=False, comment="delete what waits")
    session.telemetry("disable", up=False, comment="writes telemetry_enabled: false")
    session.telemetry("enable", up=False)
    return session.take()


def debug_transcript(session: Session) -> str:
    """Debug mode prints the event instead of spooling it."""
    shown = "VISIVO_TELEMETRY_DEBUG=1 visivo compile"
    session.visivo("compile", up=False, shown=shown, VISIVO_TELEMETRY_DEBUG="1")
    return session.take()


def fresh_examples() -> dict[str, str]:
    """Every example, from one real run in a temporary HOME."""
    collector_class = load_collector()
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as tmp:
        receiver = collector_class(Path(tmp) / "received.db").start()  # its port, for good
        try:
            session = Session(Path(tmp), receiver)
            return {
                "status": status_transcript(session),
                "cli": cli_transcript(session),
                "debug": debug_transcript(session),
            }
        finally:
            receiver.stop()


def blocks(text: str) -> dict[str, tuple[int, int]]:
    """Where each example's fenced body sits in `text`: name → (start, end) offsets."""
    found = {}
    for match in re.finditer(
        r"<!-- example:([a-z-]+) -->\n```[a-z]*\n(.*?)```\n<!-- /example:\1 -->", text, re.S
    ):
        found[match.group(1)] = match.span(2)
    return found


def masked(text: str) -> str:
    for pattern, replacement in VARIABLE:
        text = re.sub(pattern, replacement, text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the documents' examples")
    action.add_argument("--check", action="store_true", help="exit 1 if they drifted")
    options = parser.parse_args()
    fresh = fresh_examples()
    texts = {path: path.read_text() for path in DOCUMENTS}
    places = {path: blocks(text) for path, text in texts.items()}
    missing = sorted(set(fresh) - {name for found in places.values() for name in found})
    if missing:
        print(f"readme_examples: no block for {', '.join(missing)}", file=sys.stderr)
        return 1
    drifted = []
    for path, text in texts.items():
        for name, (start, end) in sorted(places[path].items(), key=lambda item: -item[1][0]):
            if masked(text[start:end]) != masked(fresh[name] + "\n"):
                drifted.append((f"{path.relative_to(ROOT)}: {name}", fresh[name]))
            text = text[:start] + fresh[name] + "\n" + text[end:]
        if options.write:
            path.write_text(text)
    if options.check and drifted:
        for where, text in drifted:
            print(f"readme_examples: {where} differs from a fresh run:\n{text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
