"""The checks of `scripts/check_install.sh`, one subcommand per step; each prints what it checked.

    archives DIST           the sdist and the wheel in DIST: files, top-level names, LICENSE
    standin DIR             write a local `sender-0.3` wheel (top-level `sender.Mail`) into DIR
    installed VENV WORK     imports and metadata of the non-editable install in VENV
    deliver VENV WORK       a host in VENV records one event; the collector must store it

Run with an interpreter that has sqlite-utils (the collector's store); the venv under test
needs nothing but what the wheel brings.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "phc_ci_install_check_0123456789abcdef"
DELIVERY_DEADLINE_S = 30.0
SENDER_END_S = 40.0
"""A sender lingers for the next command after delivering, and ends by itself within its 30 s
cap (`_tuning.LIFETIME_S`): this is that cap and a margin."""
PACKAGE = "visivo_telemetry"
RUNTIME_DEPENDENCIES = {"httpx", "filelock", "pyyaml", "click", "truststore", "certifi"}
SENDER_MODULES = ("__init__.py", "__main__.py", "run.py", "drain.py", "transport.py", "trust.py")
NEVER_IN_THE_SDIST = (".ci", ".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache")
NEVER_IN_THE_SDIST += (".ruff_cache", "dist", "build")
TELEMETRY_ENV = ("VISIVO_", "DO_NOT_TRACK", "CI", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class CheckFailed(Exception):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def ok(message: str) -> None:
    print(f"  ok  {message}", flush=True)


def source_version() -> str:
    text = (ROOT / PACKAGE / "_version.py").read_text(encoding="utf-8")
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    check(match, "no __version__ in visivo_telemetry/_version.py")
    return match.group(1)


def clean_env(**extra: str) -> dict[str, str]:
    """The runner's environment without anything that would steer telemetry or imports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(TELEMETRY_ENV)}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- archives


def check_archives(dist: Path) -> None:
    version = source_version()
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    check(len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist: {wheels}")
    wheel, sdist = wheels[0], sdists[0]
    check(wheel.name == f"{PACKAGE}-{version}-py3-none-any.whl", f"wheel name: {wheel.name}")
    check(sdist.name == f"{PACKAGE}-{version}.tar.gz", f"sdist name: {sdist.name}")
    ok(f"built {sdist.name} and, from it, {wheel.name}")

    dist_info = f"{PACKAGE}-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(f"{dist_info}/RECORD").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        sender_init = archive.read(f"{PACKAGE}/_sender/__init__.py").decode()
    recorded = [line.split(",")[0] for line in record.splitlines() if line.strip()]
    tops = {path.split("/")[0] for path in recorded}
    check(tops == {PACKAGE, dist_info}, f"wheel RECORD top-level names: {sorted(tops)}")
    check(set(recorded) == set(names), "wheel RECORD and the archive's files differ")
    ok(f"wheel RECORD: {len(recorded)} files, top-level names only {sorted(tops)}")
    for module in SENDER_MODULES:
        check(f"{PACKAGE}/_sender/{module}" in names, f"wheel lacks {PACKAGE}/_sender/{module}")
    check("__path__" not in sender_init, "wheel carries the checkout's _sender stand-in")
    ok("the sender is inside the package as visivo_telemetry._sender (not the checkout stand-in)")
    check(f"{dist_info}/licenses/LICENSE" in names, "wheel lacks dist-info/licenses/LICENSE")
    fields = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines()]
    meta: dict[str, list[str]] = {}
    for key, value in (f for f in fields if len(f) == 2):
        meta.setdefault(key, []).append(value)
    check(
        meta.get("License-Expression") == ["MIT"],
        f"License-Expression: {meta.get('License-Expression')}",
    )
    check(meta.get("License-File") == ["LICENSE"], f"License-File: {meta.get('License-File')}")
    check(
        not [c for c in meta.get("Classifier", []) if c.startswith("License ::")],
        "license classifier",
    )
    ok("wheel carries LICENSE; METADATA says License-Expression: MIT, License-File: LICENSE")
    runtime = {
        re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower()
        for r in meta.get("Requires-Dist", [])
        if "extra ==" not in r
    }
    check(runtime == RUNTIME_DEPENDENCIES, f"runtime Requires-Dist: {sorted(runtime)}")
    ok(f"runtime Requires-Dist: {sorted(runtime)}")
    check("visivo-telemetry = visivo_telemetry.cli:main" in entry_points, "console script")
    ok("console script visivo-telemetry = visivo_telemetry.cli:main")

    prefix = f"{PACKAGE}-{version}/"
    with tarfile.open(sdist) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    check(all(name.startswith(prefix) for name in members), "sdist files outside its folder")
    inside = [name[len(prefix) :] for name in members]
    for required in ("LICENSE", "README.md", "pyproject.toml", "PKG-INFO"):
        check(required in inside, f"sdist lacks {required}")
    for required in (f"{PACKAGE}/_version.py", "sender/run.py", "scripts/collector.py"):
        check(required in inside, f"sdist lacks {required}")
    unwanted = sorted(
        name
        for name in inside
        if any(part in NEVER_IN_THE_SDIST or part.startswith(".venv") for part in name.split("/"))
        or name.endswith(".pyc")
    )
    check(not unwanted, f"sdist carries {unwanted[:10]}")
    tops = sorted({name.split("/")[0] for name in inside})
    ok(f"sdist: {len(inside)} files, LICENSE included, no .ci/, venv or cache; top level {tops}")


# --------------------------------------------------------------------------- stand-in sender


def write_standin(folder: Path) -> None:
    """A `sender-0.3` wheel like PyPI's: one top-level module `sender` exposing `Mail`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "sender.py": b'"""Stand-in for PyPI\'s sender 0.3."""\n__version__ = "0.3"\n\n\n'
        b"class Mail:\n    pass\n",
        "sender-0.3.dist-info/METADATA": b"Metadata-Version: 2.1\nName: sender\nVersion: 0.3\n",
        "sender-0.3.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: check_install\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        "sender-0.3.dist-info/top_level.txt": b"sender\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("sender-0.3.dist-info/RECORD,,")
    files["sender-0.3.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(folder / "sender-0.3-py3-none-any.whl", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    ok(f"wrote {folder / 'sender-0.3-py3-none-any.whl'}")


# --------------------------------------------------------------------------- installed

INSPECT = textwrap.dedent(
    """
    import importlib.metadata as m, json, sys
    from sender import Mail
    import sender
    import visivo_telemetry, visivo_telemetry._sender.run
    from visivo_telemetry._version import __version__
    files = [str(f) for f in m.files("visivo-telemetry")]
    print(json.dumps({
        "prefix": sys.prefix,
        "mail": Mail.__name__,
        "sender": sender.__file__,
        "sender_dist": m.version("sender"),
        "library": visivo_telemetry.__file__,
        "library_version": __version__,
        "our_sender": visivo_telemetry._sender.run.__file__,
        "files": files,
        "tops": sorted(t for t, d in m.packages_distributions().items() if "visivo-telemetry" in d),
    }))
    """
)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def check_installed(venv: Path, work: Path) -> None:
    plain = work / "plain"
    plain.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(venv_python(venv)), "-c", INSPECT],
        cwd=plain,
        env=clean_env(HOME=str(work / "home-inspect")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    check(result.returncode == 0, f"imports failed:\n{result.stderr}")
    seen = json.loads(result.stdout)
    site = Path(seen["library"]).resolve().parent.parent
    check(Path(seen["prefix"]).resolve() == venv.resolve(), f"not the check venv: {seen['prefix']}")
    check(seen["mail"] == "Mail" and Path(seen["sender"]).parent == site, seen["sender"])
    ok(f"`from sender import Mail` works: PyPI's sender {seen['sender_dist']} at {seen['sender']}")
    check(not str(Path(seen["library"]).resolve()).startswith(str(ROOT)), seen["library"])
    check(
        Path(seen["our_sender"]).resolve().parent == site / PACKAGE / "_sender", seen["our_sender"]
    )
    check(seen["library_version"] == source_version(), seen["library_version"])
    ok(f"`import visivo_telemetry` works beside it: {seen['library']} (not the source tree)")
    dist_info = f"{PACKAGE}-{source_version()}.dist-info"
    tops = {f.split("/")[0] for f in seen["files"] if not f.startswith("..")}
    scripts = sorted(f for f in seen["files"] if f.startswith(".."))
    check(tops == {PACKAGE, dist_info}, f"installed top-level names: {sorted(tops)}")
    check([Path(s).name for s in scripts] == ["visivo-telemetry"], f"outside site: {scripts}")
    check(seen["tops"] == [PACKAGE], f"import names of visivo-telemetry: {seen['tops']}")
    ok(f"installed RECORD: only {sorted(tops)} and the console script {scripts[0]}")

    result = subprocess.run(
        [str(venv / "bin" / "visivo-telemetry"), "status"],
        cwd=plain,
        env=clean_env(HOME=str(work / "home-status"), VISIVO_POSTHOG_API_KEY=API_KEY),
        capture_output=True,
        text=True,
        timeout=60,
    )
    check(result.returncode == 0 and "telemetry:" in result.stdout, result.stdout + result.stderr)
    ok("`visivo-telemetry status` runs from the installed console script")


# --------------------------------------------------------------------------- delivery

HOST = textwrap.dedent(
    """
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.0.0", project_dir=".")
    with t.command("run", []):
        pass
    """
)


def plant_decoy(folder: Path, marker: Path) -> None:
    """A `sender/` package that leaves a marker if anything ever imports or runs it."""
    package = folder / "sender"
    package.mkdir(parents=True, exist_ok=True)
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("__init__.py", "__main__.py", "run.py", "drain.py", "transport.py"):
        (package / name).write_text(code)


def load_collector():
    spec = importlib.util.spec_from_file_location("collector", ROOT / "scripts" / "collector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Collector


def senders_of(home: Path) -> list[int]:
    """Live sender processes whose HOME is this check's (Linux /proc; none elsewhere)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"_sender" in cmdline and f"HOME={home}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def check_delivery(venv: Path, work: Path) -> None:
    home, project, shadow = work / "home", work / "project", work / "shadow"
    for folder in (home, project, shadow):
        folder.mkdir(exist_ok=True)
    marker = work / "decoy-ran"
    plant_decoy(project, marker)
    plant_decoy(shadow, marker)
    Collector = load_collector()
    with Collector(work / "received.db") as collector:
        env = clean_env(
            HOME=str(home),
            PYTHONPATH=str(shadow),
            VISIVO_POSTHOG_HOST=collector.url,
            VISIVO_POSTHOG_API_KEY=API_KEY,
        )
        for where, extra in ((project, {}), (work, {"PYTHONPATH": str(shadow)})):
            armed = subprocess.run(
                [str(venv_python(venv)), "-c", "import sender"],
                cwd=where,
                env={**env, "PYTHONPATH": "", **extra},
                capture_output=True,
                timeout=60,
            )
            check(armed.returncode == 0 and marker.exists(), f"the decoy in {where} is not armed")
            marker.unlink()
        ok("the decoys are armed: a plain `import sender` there would load them")
        started = time.monotonic()
        result = subprocess.run(
            [str(venv_python(venv)), "-c", HOST],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        check(result.returncode == 0, f"the host failed ({result.returncode}):\n{result.stderr}")
        check((result.stdout, result.stderr) == ("", ""), f"host output: {result!r}")
        ok(f"host ran from {project} (decoy sender/ there and on PYTHONPATH): exit 0, no output")
        events = collector.wait_for_events(1, timeout=DELIVERY_DEADLINE_S)
        waited = time.monotonic() - started
        check(events, f"no event reached the collector within {DELIVERY_DEADLINE_S:.0f} s")
        check(len(events) == 1, f"{len(events)} events arrived, expected 1")
        event = events[0]
        props = event["properties"]
        check(event["event"] == "cli_command" and props.get("command") == "run", event)
        check(props.get("visivo_version") == "1.0.0", props)
        check(props.get("$lib_version") == source_version(), props)
        check(event.get("api_key") == API_KEY, f"api_key: {event.get('api_key')}")
        ok(f"the collector stored the cli_command event after {waited:.1f} s, with our key")
        deadline = started + SENDER_END_S
        while senders_of(home) and time.monotonic() < deadline:
            time.sleep(0.1)
        check(not senders_of(home), f"sender still alive: {senders_of(home)}")
        ok(f"the sender exited by itself, {time.monotonic() - started:.1f} s after the host began")
    check(
        not marker.exists(), f"a decoy sender ran: {marker.read_text() if marker.exists() else ''}"
    )
    ok("no decoy `sender` was imported by the host or its sender")


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["archives"]:
            check_archives(Path(argv[1]))
        elif argv[:1] == ["standin"]:
            write_standin(Path(argv[1]))
        elif argv[:1] == ["installed"]:
            check_installed(Path(argv[1]), Path(argv[2]))
        elif argv[:1] == ["deliver"]:
            check_delivery(Path(argv[1]), Path(argv[2]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as failure:
        print(f"check_install: FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
