"""The real Visivo 2.2.1 for tests: a cached venv, the guide's wiring applied, a real project.

The venv lives outside the repository (`$XDG_CACHE_HOME/visivo-telemetry/`, default
`~/.cache/...`), is made once under a file lock and reused by every later run and every Python
the suite runs on: Visivo 2.2.1 needs Python 3.12+, so the venv is made from a 3.13 (or 3.12)
interpreter whatever runs pytest. Our library is never installed into it: the checkout under
test is put on `PYTHONPATH`, with the guide's changes applied to a copy of the installed
`visivo` package (files the guide does not touch are symlinks to the installed ones).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "visivo.md"
VISIVO = "visivo==2.2.1"
OUR_DEPENDENCIES = ("httpx>=0.27", "filelock>=3.12", "pyyaml>=6.0", "click>=8.1", "pytest>=8")
"""What our library needs at run time, and pytest for the guide's example of Visivo's own test."""
INSTALL_TIMEOUT_S = 900.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
"""Read at import, before any fixture removes `CI` from the environment."""
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "visivo-telemetry"
PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
MARKER = re.compile(
    r"^<!-- guide: (file|patch|shell|visivo-test|visivo-tests-patch|visivo-tests-shell"
    r"|replaced-tests)(?: (\S+))? -->\n```\w*\n(.*?)^```$",
    re.S | re.M,
)
TEST_KINDS = ("visivo-test", "visivo-tests-patch", "visivo-tests-shell")
"""Blocks that change Visivo's own tests (applied to its repository, never to the package)."""


class Unavailable(Exception):
    """The real package cannot be had here; the message says why (for the skip)."""


@dataclass(frozen=True)
class Venv:
    """The cached venv holding Visivo 2.2.1 and how long making it took (None: reused)."""

    path: Path
    install_seconds: float | None

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def visivo(self) -> Path:
        return self.path / "bin" / "visivo"

    def package(self) -> Path:
        """The installed, unmodified `visivo` package."""
        found = list(self.path.glob("lib/python3.*/site-packages/visivo"))
        if not found:
            raise Unavailable(f"no visivo package in {self.path}")
        return found[0]


def interpreter() -> Path | None:
    """A Python 3.13 or 3.12 to make the venv with: $VISIVO_TEST_PYTHON, pyenv's, or PATH's."""
    named = os.environ.get("VISIVO_TEST_PYTHON")
    if named:
        return Path(named) if os.access(named, os.X_OK) else None
    for minor in ("3.13", "3.12"):
        versions = sorted(PYENV.glob(f"{minor}.*/bin/python"), key=_patch_level, reverse=True)
        on_path = shutil.which(f"python{minor}")
        for candidate in [*versions, *([Path(on_path)] if on_path else [])]:
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def _patch_level(python: Path) -> int:
    tail = python.parent.parent.name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def ensure_venv(name: str = "visivo-2.2.1", extra: tuple[str, ...] = ()) -> Venv:
    """The cached venv `name` holding Visivo 2.2.1, our dependencies and `extra`, made (once,
    under a lock) when missing or when what it should hold changed; raises `Unavailable`."""
    python = interpreter()
    if python is None:
        raise Unavailable(f"{VISIVO} needs Python >= 3.12: none under {PYENV} or on PATH")
    minor = _minor_version(python)
    path = CACHE / f"{name}-py{minor}"
    stamp = path / ".installed"
    wanted = " ".join((VISIVO, *OUR_DEPENDENCIES, *extra))
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{path.name}.lock"), timeout=INSTALL_TIMEOUT_S):
        if stamp.exists() and stamp.read_text() == wanted:
            return Venv(path, None)
        started = time.monotonic()
        _install(python, path, wanted)
        stamp.write_text(wanted)
        return Venv(path, time.monotonic() - started)


def _minor_version(python: Path) -> str:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


def _install(python: Path, path: Path, wanted: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    steps = (
        [str(python), "-m", "venv", str(path)],
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + wanted.split(),
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            noise = "WARNING: Location"
            tail = [line for line in done.stderr.splitlines() if not line.startswith(noise)]
            raise Unavailable(f"installing {VISIVO} failed: " + "\n".join(tail[-15:]))


@dataclass(frozen=True)
class Block:
    """One fenced block of the guide that the test applies or runs."""

    kind: str
    """file (write it), patch (git apply), shell (bash), on the package; visivo-test (write the
    test file), visivo-tests-patch (git apply), visivo-tests-shell (bash), on Visivo's tests;
    replaced-tests (the Visivo tests whose outcome the guide changes, and why)."""
    target: str | None
    code: str


def guide_blocks(text: str | None = None) -> list[Block]:
    """The guide's marked blocks, in the order a maintainer applies them."""
    text = GUIDE.read_text() if text is None else text
    return [Block(kind, target, code) for kind, target, code in MARKER.findall(text)]


def patched_visivo(venv: Venv, dest: Path, blocks: list[Block]) -> Path:
    """A copy of the installed `visivo` with the guide applied; returns the dir to put on
    PYTHONPATH. Untouched files are symlinks, so the copy costs a fraction of a second."""
    dest.mkdir(parents=True)
    shutil.copytree(venv.package(), dest / "visivo", symlinks=True, copy_function=os.symlink)
    for block in blocks:
        if block.kind == "file":
            _real_file(dest / block.target).write_text(block.code)
        elif block.kind == "patch":
            for name in re.findall(r"^\+\+\+ b/(\S+)", block.code, re.M):
                _real_file(dest / name)
            _checked(["git", "apply", "-"], dest, block.code)
        elif block.kind == "shell":
            _checked(["bash", "-euc", block.code], dest)
    return dest


def patched_tests(tree: Path, blocks: list[Block]) -> Path:
    """Visivo's tests in `tree` (its repository's root) changed as the guide says."""
    for block in blocks:
        if block.kind == "visivo-test":
            target = tree / block.target
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
        elif block.kind == "visivo-tests-patch":
            _checked(["git", "apply", "-"], tree, block.code)
        elif block.kind == "visivo-tests-shell":
            _checked(["bash", "-euc", block.code], tree)
    return tree


def replaced_tests(blocks: list[Block]) -> dict[str, str]:
    """The guide's list of Visivo tests whose outcome it changes: test id (or module) to why,
    written as the id on a line and why, indented, on the next. Any other test of Visivo's
    suite must end as it ended before the guide."""
    replaced: dict[str, str] = {}
    test_id = None
    for block in blocks:
        if block.kind != "replaced-tests":
            continue
        for line in block.code.splitlines():
            if line[:1].isspace() and test_id is not None:
                replaced[test_id] = (replaced[test_id] + " " + line.strip()).strip()
            elif line.strip():
                test_id = line.strip()
                replaced[test_id] = ""
    return replaced


def _real_file(path: Path) -> Path:
    """Replace a symlink to the installed package by a copy we may change."""
    if path.is_symlink():
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _checked(argv: list[str], cwd: Path, stdin: str | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"the guide's block does not apply: {argv}\n{done.stderr}")


AUDIT_HOOK = '''
"""Test-only: log every name resolution, connection and posthog import of this process."""
import json, os, sys

_LOG = os.environ.get("VISIVO_TEST_AUDIT_LOG")


def _write(record):
    with open(_LOG, "a") as log:
        log.write(json.dumps(record) + "\\n")


def _hook(event, args):
    if event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        _write({"event": event, "host": str(args[0])})
    elif event == "socket.connect" and isinstance(args[1], tuple):
        _write({"event": event, "host": str(args[1][0]), "port": args[1][1]})
    elif event == "import" and str(args[0]).split(".")[0] == "posthog":
        _write({"event": event, "module": str(args[0])})


if _LOG:
    sys.addaudithook(_hook)
'''


def write_audit_hook(dest: Path) -> Path:
    """A `sitecustomize` that logs network attempts and posthog imports (to prove none)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "sitecustomize.py").write_text(AUDIT_HOOK)
    return dest


def audit_records(log: Path) -> list[dict]:
    """What the audit hook logged, across every process that shared the log."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class Ran:
    """One run of the `visivo` command."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


def run_visivo(
    venv: Venv, args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0
) -> Ran:
    """`visivo ARGS...` through the venv's own console script, as a user runs it."""
    done = subprocess.run(
        [str(venv.visivo), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Ran(tuple(args), done.returncode, done.stdout, done.stderr)


_TIMING = re.compile(r"\d+(\.\d+)?s\b")


def without_timings(text: str) -> str:
    """Visivo prints how long things took (`0.03s`); nothing else may differ between runs."""
    return _TIMING.sub("<t>s", text)


PROJECT_YAML = """\
name: acme-secret-project
sources:
  - name: acme-warehouse
    type: sqlite
    database: acme_sales.db
models:
  - name: acme-orders
    source: ${ref(acme-warehouse)}
    sql: SELECT * FROM orders
  - name: acme-regions
    source: ${ref(acme-warehouse)}
    sql: SELECT region, sum(amount) AS total FROM orders GROUP BY region
insights:
  - name: acme-revenue-by-month
    props:
      type: bar
      x: ?{ ${ref(acme-orders).created_at} }
      y: ?{ sum(${ref(acme-orders).amount}) }
  - name: acme-revenue-by-region
    props:
      type: bar
      x: ?{ ${ref(acme-regions).region} }
      y: ?{ ${ref(acme-regions).total} }
charts:
  - name: acme-revenue-chart
    insights:
      - ${ref(acme-revenue-by-month)}
  - name: acme-region-chart
    insights:
      - ${ref(acme-revenue-by-region)}
dashboards:
  - name: acme-board
    rows:
      - items:
          - chart: ${ref(acme-revenue-chart)}
          - chart: ${ref(acme-region-chart)}
"""
"""Every name holds `acme`, so one byte search finds any that leaked."""
PROJECT_COUNTS = {"sources": 1, "models": 2, "insights": 2, "charts": 2, "dashboards": 1}


def make_project(path: Path, yaml_text: str = PROJECT_YAML) -> Path:
    """A real Visivo project: a SQLite file of orders and the project file."""
    path.mkdir(parents=True)
    conn = sqlite3.connect(path / "acme_sales.db")
    with conn:
        conn.execute("CREATE TABLE orders (id INTEGER, region TEXT, amount REAL, created_at TEXT)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, ("north", "south")[i % 2], i * 1.5, f"2026-0{1 + i % 9}-01") for i in range(40)],
        )
    conn.close()
    (path / "project.visivo.yml").write_text(yaml_text)
    return path


def make_directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def files_containing(root: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """Every file under `root` whose bytes hold one of `needles` (case-insensitive)."""
    found: dict[str, list[str]] = {}
    lowered = [n.lower() for n in needles]
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes().lower()
        hits = [n.decode() for n in lowered if n in data]
        if hits:
            found[str(path)] = hits
    return found


def python_path(*dirs: Path) -> str:
    return os.pathsep.join(str(d) for d in dirs)
