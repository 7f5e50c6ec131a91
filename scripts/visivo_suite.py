"""Visivo's own test suite, before and after the adoption guide (docs/visivo.md), compared.

    .venv/bin/python scripts/visivo_suite.py    (exit 1 on a changed outcome, or a stale list)

Two trees, each Visivo's repository as a maintainer has it: the installed `visivo==2.2.1`
package at the root beside Visivo's tests (the tarball in `$VISIVO_TESTS_TARBALL`, default
`/work/shared/visivo-tests/`). The baseline is the package as installed; the patched tree has
every block of the guide applied, to the package and to Visivo's tests, by the same code
that applies it in `tests/test_real_visivo.py`, and this checkout installed (not the repository
on the path). Each tree runs Visivo's suite with Visivo's own `pytest.ini` and conftest, one
worker, `--no-cov`, a fresh HOME and TMPDIR, `VISIVO_POSTHOG_HOST` a closed loopback port, and,
when this runs as root and `unshare` works, no network but loopback.

Outcomes are compared test by test. A test whose outcome changes fails the check unless the
guide's `replaced-tests` block names it (with why) and the patched tree no longer has it; a
test that only the patched tree has must pass; an entry of the list that no test gone from the
patched tree matches fails it too (a stale list). About 120 tests fail on both sides (the tests
are newer than 2.2.1, and the sandbox has no network): they do not count. The venv is cached
in `~/.cache/visivo-telemetry/`, and so are the baseline's outcomes, which depend only on the
venv, the tarball and how the suite is run (`--fresh-baseline` runs it again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import visivo_support as vs  # noqa: E402

TEST_DEPENDENCIES = (
    "pytest==9.0.3",
    "pytest-env==1.6.0",
    "pytest-httpx==0.36.2",
    "pytest-mock==3.15.1",
    "requests-mock==1.12.1",
    "factory-boy==3.3.3",
    "symspellpy==6.9.0",
    "pytest-cov==7.1.0",
    "coverage==7.13.5",
    "setuptools",
    "hatchling>=1.27",
)
"""Visivo's test dependencies at its lock's versions, and what installs this checkout."""
VENV_NAME = "visivo-suite-2.2.1"
TARBALL = Path(
    os.environ.get("VISIVO_TESTS_TARBALL")
    or "/work/shared/visivo-tests/visivo-tests-ad394b9b.tar.xz"
)
PYTEST_ARGS = (
    "-p",
    "no:cacheprovider",
    "-p",
    "visivo_suite_outcomes",
    "--no-cov",
    "-q",
    "--continue-on-collection-errors",
)
RUNNER_VERSION = "1"
"""Bump when how a side is run changes: the cached baseline is then run again."""
SIDE_TIMEOUT_S = 1800

OUTCOMES_PLUGIN = '''
"""Writes each test's outcome (and each collection error) as one JSON line."""
import json, os

_PATH = os.environ["VISIVO_SUITE_OUTCOMES"]
_seen = {}


def _write(nodeid, outcome):
    _seen[nodeid] = outcome


def pytest_collectreport(report):
    if report.failed:
        _write(report.nodeid, "collection error")


def pytest_runtest_logreport(report):
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            _write(report.nodeid, "xfailed" if report.skipped else "xpassed")
        else:
            _write(report.nodeid, report.outcome)
    elif report.failed:
        _write(report.nodeid, "error")
    elif report.skipped:
        _write(report.nodeid, "xfailed" if hasattr(report, "wasxfail") else "skipped")


def pytest_sessionfinish(session):
    with open(_PATH, "w") as out:
        json.dump(_seen, out, sort_keys=True)
'''


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolation() -> list[str]:
    """`unshare` into a namespace with only loopback, when this may (root, a kernel that lets)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = ["unshare", "-m", "-n", "ip", "link", "set", "lo", "up"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return []
    return ["unshare", "-m", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def tree(venv: vs.Venv, dest: Path, blocks: list[vs.Block]) -> Path:
    """Visivo's repository as a maintainer has it, with `blocks` of the guide applied."""
    vs.patched_visivo(venv, dest, [b for b in blocks if b.kind not in vs.TEST_KINDS])
    with tarfile.open(TARBALL) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+: no path outside `dest`
            archive.extractall(dest, filter="data")
        else:
            archive.extractall(dest)
    return vs.patched_tests(dest, blocks)


def install_checkout(venv: vs.Venv, site: Path) -> None:
    """This checkout, installed as a user gets it (its wheel's files), into `site`."""
    done = subprocess.run(
        [str(venv.python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"visivo_suite: installing this checkout failed:\n{done.stderr}")


def run_side(
    name: str, venv: vs.Venv, root: Path, work: Path, pythonpath: list[Path], extra: list[str]
) -> tuple[dict[str, str], float, str]:
    """Visivo's suite in `root`: its outcomes by test id, the seconds it took, its last lines."""
    home = work / f"{name}-home"
    tmp = work / f"{name}-tmp"
    home.mkdir()
    tmp.mkdir()
    outcomes = work / f"{name}-outcomes.json"
    env = {
        "PATH": f"{venv.path / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1",
        "VISIVO_POSTHOG_HOST": f"http://127.0.0.1:{closed_port()}",
        "VISIVO_SUITE_OUTCOMES": str(outcomes),
    }
    argv = [*isolation(), str(venv.python), "-m", "pytest", *PYTEST_ARGS, *extra]
    started = time.monotonic()
    done = subprocess.run(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SIDE_TIMEOUT_S,
    )
    seconds = time.monotonic() - started
    (work / f"{name}-pytest.log").write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not outcomes.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SystemExit(f"visivo_suite: the {name} suite did not run ({done.returncode}):\n{tail}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return json.loads(outcomes.read_text()), seconds, last


def baseline_key(venv: vs.Venv, extra: list[str]) -> str:
    """What the baseline's outcomes depend on: the venv, the tarball, how a side is run."""
    digest = hashlib.sha256()
    digest.update((venv.path / ".installed").read_bytes())
    digest.update(TARBALL.read_bytes())
    digest.update(" ".join((RUNNER_VERSION, OUTCOMES_PLUGIN, *PYTEST_ARGS, *extra)).encode())
    digest.update(" ".join(isolation()).encode())
    return digest.hexdigest()[:16]


def is_replaced(test_id: str, replaced: dict[str, str]) -> bool:
    """Whether the guide names this test, its file, its class or its folder."""
    return any(
        test_id == key
        or test_id.startswith((key + "::", key + "["))
        or (key.endswith("/") and test_id.startswith(key))
        for key in replaced
    )


def counts(outcomes: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for outcome in outcomes.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in sorted(tally.items(), key=lambda kv: -kv[1]))


def compare(
    baseline: dict[str, str], patched: dict[str, str], replaced: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """(tests the guide declares replaced, and the patched tree no longer has; tests only the
    patched tree has, passing; every other change of outcome)."""
    declared, added, unexpected = [], [], []
    for test_id in sorted(set(baseline) | set(patched)):
        before, after = baseline.get(test_id, "absent"), patched.get(test_id, "absent")
        if before == after:
            continue
        line = f"{test_id}: {before} -> {after}"
        if is_replaced(test_id, replaced) and after == "absent":
            declared.append(line)
        elif before == "absent" and after == "passed":
            added.append(line)
        else:
            unexpected.append(line)
    return declared, added, unexpected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-baseline", action="store_true", help="ignore the cached one")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments for both sides")
    options = parser.parse_args()
    if not TARBALL.exists():
        print(f"visivo_suite: no tarball of Visivo's tests at {TARBALL}", file=sys.stderr)
        return 2
    blocks = vs.guide_blocks()
    replaced = vs.replaced_tests(blocks)
    started = time.monotonic()
    venv = vs.ensure_venv(VENV_NAME, TEST_DEPENDENCIES)
    if venv.install_seconds is not None:
        print(f"visivo_suite: made {venv.path} in {venv.install_seconds:.0f} s")
    work = options.keep or Path(tempfile.mkdtemp(prefix="visivo-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        plugin = work / "plugin"
        plugin.mkdir()
        (plugin / "visivo_suite_outcomes.py").write_text(OUTCOMES_PLUGIN)
        cached = vs.CACHE / f"visivo-suite-baseline-{baseline_key(venv, options.pytest_args)}.json"
        if cached.exists() and not options.fresh_baseline:
            baseline, base_s = json.loads(cached.read_text()), None
            print(f"visivo_suite: baseline from {cached} (--fresh-baseline runs it again)")
        else:
            base_tree = tree(venv, work / "baseline", [])
            baseline, base_s, last = run_side(
                "baseline", venv, base_tree, work, [plugin], options.pytest_args
            )
            print(f"visivo_suite: baseline ran in {base_s:.0f} s: {last}")
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(baseline, sort_keys=True))
            partial.replace(cached)  # another run reading it never sees half a file
        site = work / "site"
        install_checkout(venv, site)
        patched_tree = tree(venv, work / "patched", blocks)
        patched, patched_s, last = run_side(
            "patched", venv, patched_tree, work, [plugin, site], options.pytest_args
        )
        print(f"visivo_suite: patched ran in {patched_s:.0f} s: {last}")
    finally:
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    declared, added, unexpected = compare(baseline, patched, replaced)
    ids = [line.split(": ")[0] for line in declared]
    unchanged = [k for k in replaced if not any(is_replaced(i, {k: ""}) for i in ids)]
    print(f"baseline: {counts(baseline)}")
    print(f"patched:  {counts(patched)}")
    print(f"changed as the guide declares ({len(declared)}; docs/visivo.md says why):")
    for key, why in replaced.items():
        n = sum(1 for i in ids if is_replaced(i, {key: why}))
        print(f"  {n:4d}  {key}  {why}")
    print(f"only in the patched tree, passing ({len(added)}):")
    for line in added:
        print(f"  {line}")
    if unchanged:
        print(f"declared replaced, yet no such test is gone ({len(unchanged)}): the list is stale")
        for key in unchanged:
            print(f"  {key}")
    print(f"changed outcomes the guide does not declare: {len(unexpected)}")
    for line in unexpected:
        print(f"  {line}")
    print(f"visivo_suite: {time.monotonic() - started:.0f} s in all")
    return 1 if unexpected or unchanged else 0


if __name__ == "__main__":
    sys.exit(main())
