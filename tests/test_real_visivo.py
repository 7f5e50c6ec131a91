"""The adoption guide (docs/visivo.md) applied to the real `visivo==2.2.1`, end to end.

Every marked block of the guide is applied to a copy of the installed package; then the real
`visivo` console script runs a real project (SQLite source, models, insights, charts, a
dashboard), a real `FlaskApp` serves real HTTP on 127.0.0.1, and a real `visivo serve` is
stopped by Ctrl-C and by SIGTERM. Events go to the local receiver; an audit hook in every
Visivo process (and the senders it starts) logs each name lookup, connection and `posthog`
import, to prove nothing tried to reach PostHog. What a run
prints and its exit code are compared with Visivo 2.2.1 itself, unmodified, telemetry off.

Visivo's own opt-out variable, `VISIVO_TELEMETRY_DISABLED`, is also ours, so it cannot fence
off Visivo's PostHog client without switching off what is under test: the guide deletes that
client, the audit hook proves it is never imported, and `VISIVO_POSTHOG_HOST` (which 2.2.1
reads too) points at the local receiver, which would store any PostHog SDK event it got.
Skips, saying why, when no Python 3.12+ is installed; under CI an install failure fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import visivo_support as vs
from helpers import (
    DEAD_RECEIVER,
    Collector,
    clean_env,
    flush,
    json_strings,
    spool_rows,
    wait_for_senders_to_exit,
)
from privacy_support import DOCUMENTED_API_KEYS, DOCUMENTED_CLI_KEYS, DOCUMENTED_CLI_OPTIONAL_KEYS

pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("real_visivo")]

SECRET = "sk_live_acmeSECRETvalue"
KEYS = {
    "cli": "phc_cli_home",
    "optout": "phc_optout_home",
    "off": "phc_off_home",
    "api": "phc_api_home",
    "capture": "phc_capture_home",
    "serve-SIGINT": "phc_serve_sigint_home",
    "serve-SIGTERM": "phc_serve_sigterm_home",
}
"""Each scenario has its own HOME and PostHog key, so the receiver tells their events apart."""


@dataclass
class Real:
    """Visivo 2.2.1, patched by the guide, and everything its runs share."""

    venv: vs.Venv
    root: Path
    pythonpath: str
    collector: Collector
    project: Path
    broken: Path
    optout: Path
    neutral: Path

    def home(self, name: str) -> Path:
        path = self.root / "homes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def audit_log(self, name: str) -> Path:
        return self.root / f"audit-{name}.jsonl"

    def env(self, scenario: str) -> dict[str, str]:
        """Telemetry on, events to the receiver under the scenario's key, audit hook on."""
        return clean_env(
            self.home(scenario),
            VISIVO_POSTHOG_HOST=self.collector.url,
            VISIVO_POSTHOG_API_KEY=KEYS[scenario],
            PYTHONPATH=self.pythonpath,
            VISIVO_TEST_AUDIT_LOG=str(self.audit_log(scenario)),
        )

    def baseline_env(self) -> dict[str, str]:
        """Visivo 2.2.1 as installed, its telemetry off: what a run printed before the guide."""
        return clean_env(
            self.home("baseline"),
            VISIVO_TELEMETRY_DISABLED="1",
            VISIVO_POSTHOG_HOST=DEAD_RECEIVER,
            PYTHONPATH=str(self.root / "audit"),
            VISIVO_TEST_AUDIT_LOG=str(self.audit_log("baseline")),
        )

    def ours(self, scenario: str, args: list[str], cwd: Path | None = None) -> vs.Ran:
        self.reset_project()
        return vs.run_visivo(self.venv, args, self.env(scenario), cwd or self.project)

    def theirs(self, args: list[str], cwd: Path | None = None) -> vs.Ran:
        self.reset_project()
        return vs.run_visivo(self.venv, args, self.baseline_env(), cwd or self.project)

    def reset_project(self) -> None:
        """The project as first written: a run's output depends on what earlier runs built."""
        shutil.rmtree(self.project)
        shutil.copytree(self.root / "pristine", self.project)

    def received(self, scenario: str) -> list[dict]:
        """The scenario's events at the receiver, once every sender of its HOME has exited.

        Rows a sender could not deliver (a 1 s timeout on a loaded machine, then backoff) are
        flushed: what is under test is what was recorded, not the sender's retries.
        """
        home = self.home(scenario)
        assert not wait_for_senders_to_exit(home), "a sender outlived its work"
        if spool_rows(home):
            flush(self.env(scenario))
        return [e for e in self.collector.events() if e["api_key"] == KEYS[scenario]]


@pytest.fixture(scope="session")
def venv() -> vs.Venv:
    """The cached venv with Visivo 2.2.1 (made on first use; its install time is printed)."""
    try:
        made = vs.ensure_venv()
    except vs.Unavailable as why:
        if vs.IN_CI and vs.interpreter() is not None:
            pytest.fail(str(why))
        pytest.skip(str(why))
    if made.install_seconds is not None:
        print(f"\nreal visivo: installed {vs.VISIVO} in {made.install_seconds:.0f} s")
    return made


@pytest.fixture(scope="session")
def real(venv: vs.Venv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    """The guide applied to a copy of Visivo 2.2.1, the projects, and one receiver for all."""
    root = tmp_path_factory.mktemp("real-visivo")
    audit = vs.write_audit_hook(root / "audit")
    overlay = vs.patched_visivo(venv, root / "overlay", vs.guide_blocks())
    broken = vs.PROJECT_YAML.replace("${ref(acme-region-chart)}", "${ref(acme-missing-chart)}")
    pristine = vs.make_project(root / "pristine")
    (pristine / "acme.env").write_text(f"ACME_WAREHOUSE_PASSWORD={SECRET}\n")
    with Collector(root / "received.db") as collector:
        yield Real(
            venv=venv,
            root=root,
            pythonpath=vs.python_path(audit, overlay, vs.ROOT),
            collector=collector,
            project=vs.make_directory(root / "acme-project"),
            broken=vs.make_project(root / "acme-broken", broken),
            optout=vs.make_project(
                root / "acme-opted-out",
                vs.PROJECT_YAML + "defaults:\n  telemetry_enabled: false\n",
            ),
            neutral=vs.make_directory(root / "elsewhere"),
        )


CLI_RUNS = {
    "compile": ["compile"],
    "run": ["run", "-th", "1", "-df", "+acme-revenue-chart+", "-o", "{project}/target"],
    "typo": ["compiel", "-w", "{project}"],
    "failing": ["compile", "-w", "{broken}"],
    "secret values": ["-e", "{project}/acme.env", "compile", "-s", SECRET, "-w", "{project}"],
    "undeclared secret flag": ["compile", f"--api-key={SECRET}", "-w", "{project}"],
}
"""What a user types; `{project}`/`{broken}` become absolute paths."""


@pytest.fixture(scope="session")
def cli(real: Real) -> dict[str, tuple[vs.Ran, vs.Ran]]:
    """Each command run by Visivo 2.2.1 unmodified (telemetry off), then with the guide."""
    runs = {}
    for name, template in CLI_RUNS.items():
        args = [a.format(project=real.project, broken=real.broken) for a in template]
        cwd = real.neutral if name == "failing" else real.project
        runs[name] = (real.theirs(args, cwd), real.ours("cli", args, cwd))
    return runs


@pytest.fixture(scope="session")
def cli_events(real: Real, cli: dict) -> list[dict]:
    return real.received("cli")


def the_event(events: list[dict], command: str, args: list[str]) -> dict:
    """The one event of a command recorded with these (sanitized) arguments."""
    found = [
        p
        for p in (e["properties"] for e in events)
        if (p["command"], p["command_args"]) == (command, args)
    ]
    assert len(found) == 1, (command, args, [e["properties"] for e in events])
    return found[0]


def test_every_run_prints_and_exits_as_visivo_221_does(cli: dict) -> None:
    for name, (theirs, ours) in cli.items():
        assert ours.code == theirs.code, (name, ours.stderr)
        assert vs.without_timings(ours.stdout) == vs.without_timings(theirs.stdout), name
        assert vs.without_timings(ours.stderr) == vs.without_timings(theirs.stderr), name
    assert [cli[n][1].code for n in ("compile", "run", "typo", "failing")] == [0, 0, 1, 1]


def test_one_event_per_run_and_only_documented_keys(cli: dict, cli_events: list[dict]) -> None:
    assert len(cli_events) == len(cli)
    for event in cli_events:
        assert event["event"] == "cli_command"
        keys = set(event["properties"])
        assert DOCUMENTED_CLI_KEYS <= keys <= DOCUMENTED_CLI_KEYS | DOCUMENTED_CLI_OPTIONAL_KEYS
        assert event["properties"]["$lib"] == "visivo-telemetry"
        assert event["properties"]["visivo_version"] == "2.2.1"


def test_compile_records_object_counts_and_no_job_count(cli_events: list[dict]) -> None:
    compiled = the_event(cli_events, "compile", [])
    assert compiled["success"] is True
    assert {k: compiled["object_counts"][k] for k in vs.PROJECT_COUNTS} == vs.PROJECT_COUNTS
    assert "job_count" not in compiled


def test_run_records_job_count_and_no_object_counts(cli_events: list[dict]) -> None:
    ran = the_event(cli_events, "run", ["-th", "<value>", "-df", "<value>", "-o", "<path>"])
    assert ran["success"] is True
    assert ran["job_count"] >= 1
    assert "object_counts" not in ran


def test_a_typo_is_an_unknown_command_without_its_arguments(cli_events: list[dict]) -> None:
    typo = the_event(cli_events, "unknown-command", [])
    assert typo["success"] is False
    assert typo["error_type"] == "NoSuchCommand"


def test_a_failing_project_records_the_class_of_its_error(cli_events: list[dict]) -> None:
    failed = the_event(cli_events, "compile", ["-w", "<path>"])
    assert failed["success"] is False
    assert failed["error_type"] and failed["error_type"].isidentifier()
    assert "object_counts" not in failed


def test_secret_values_and_undeclared_flags_are_placeholders(cli_events: list[dict]) -> None:
    assert the_event(cli_events, "compile", ["-s", "<value>", "-w", "<path>"])
    undeclared = the_event(cli_events, "compile", ["<value>", "-w", "<path>"])
    assert undeclared["error_type"] == "NoSuchOption"


def test_no_name_path_or_secret_reaches_the_receiver_or_the_spool(
    real: Real, cli_events: list[dict]
) -> None:
    hostname = os.uname().nodename
    needles = [b"acme", SECRET.encode(), str(real.root).encode()]
    # A hostname of a few letters ("vm") turns up by chance in the receiver's gzip bodies and
    # SQLite pages: it is compared whole with every string that arrived (as
    # test_privacy_what_leaves.py does), and looked for in raw bytes only when long enough.
    if len(hostname) > 3:
        needles.append(hostname.encode())
    receiver_files = [p for p in real.root.glob("received.db*")]
    assert receiver_files
    for path in receiver_files:
        data = path.read_bytes().lower()
        assert not [n for n in needles if n.lower() in data], path
    arrived = [
        s
        for request in real.collector.received()
        for s in json_strings(json.loads(request["text"]))
    ]
    assert arrived and hostname not in arrived
    assert vs.files_containing(real.home("cli"), needles) == {}


def test_nothing_tried_to_reach_posthog(real: Real, cli_events: list[dict]) -> None:
    records = vs.audit_records(real.audit_log("cli"))
    connects = [r for r in records if r["event"] == "socket.connect"]
    assert connects, "the audit hook saw no connection at all: is it installed?"
    assert [r for r in records if r["event"] == "import"] == []
    assert [r for r in records if "host" in r and not vs.is_loopback(r["host"])] == []
    assert {r["port"] for r in connects} == {real.collector.port}


def test_an_opted_out_working_dir_writes_nothing(real: Real) -> None:
    args = ["compile", "-w", str(real.optout)]
    theirs = real.theirs(args, real.neutral)
    ours = real.ours("optout", args, real.neutral)
    assert (ours.code, vs.without_timings(ours.stdout), vs.without_timings(ours.stderr)) == (
        theirs.code,
        vs.without_timings(theirs.stdout),
        vs.without_timings(theirs.stderr),
    )
    assert ours.code == 0
    assert real.received("optout") == []
    assert sorted(p.name for p in real.home("optout").rglob("*")) == []


def test_telemetry_off_silences_the_machine_and_status_says_so(real: Real) -> None:
    before = real.ours("off", ["telemetry", "status"])
    assert before.code == 0
    assert "Telemetry is on: enabled by default." in before.stdout
    assert [e["properties"]["command"] for e in real.received("off")] == ["telemetry status"]
    off = real.ours("off", ["telemetry", "off"])
    assert off.code == 0
    assert "Telemetry is off for this machine" in off.stdout
    assert real.ours("off", ["compile"]).code == 0
    after = real.ours("off", ["telemetry", "status"])
    assert "Telemetry is off: this machine opted out (visivo telemetry off)." in after.stdout
    commands = [e["properties"]["command"] for e in real.received("off")]
    assert commands == ["telemetry status"]
    config = (real.home("off") / ".visivo" / "config.yml").read_text()
    assert "telemetry_enabled: false" in config
    assert not (real.home("off") / ".visivo" / "telemetry.db").exists()


SERVER = """
import os
from werkzeug.serving import make_server
from visivo.commands.parse_project_phase import parse_project_phase
from visivo.server.flask_app import FlaskApp

working_dir = os.getcwd()
output_dir = os.path.join(working_dir, "target")
project = parse_project_phase(working_dir, output_dir, None, None, None)
app = FlaskApp(output_dir, project, working_dir=working_dir)
server = make_server("127.0.0.1", 0, app.app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""
"""Visivo's own FlaskApp, served by werkzeug on 127.0.0.1 (`visivo serve` binds 0.0.0.0)."""


@dataclass
class Served:
    responses: dict[str, tuple[int, bytes]]
    events: list[dict]
    exit_code: int


def http(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="session")
def served(real: Real) -> Served:
    """Real requests to a real FlaskApp; SIGTERM ends it, as a service manager would."""
    real.reset_project()
    server = subprocess.Popen(
        [str(real.venv.python), "-c", SERVER],
        cwd=real.project,
        env=real.env("api"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.strip().isdigit(), f"the server did not start: {server.communicate()[1]}"
        port = int(line)
        base = f"http://127.0.0.1:{port}"
        workspace_event = {"name": "canvas_action", "payload": {"dashboard": "acme-board"}}
        responses = {
            "project": http(f"{base}/api/project/"),
            "dashboard": [http(f"{base}/api/dashboards/acme-board/") for _ in range(3)][-1],
            "missing": http(f"{base}/api/acme-no-such-thing/"),
            "relay": http(f"{base}/api/telemetry/workspace-event/", "POST", workspace_event),
            "viewer": http(f"{base}/"),
        }
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return Served(responses, real.received("api"), exit_code)


def test_the_api_server_counts_its_routes_never_their_names(served: Served) -> None:
    assert served.responses["project"][0] == 200
    assert served.responses["dashboard"][0] == 200
    assert served.exit_code == -signal.SIGTERM
    seen = {
        (p["method"], p["endpoint"], p["status_code"]): p["request_count"]
        for p in (e["properties"] for e in served.events)
    }
    assert seen[("GET", "/api/project/", 200)] == 1
    assert seen[("GET", "/api/dashboards/{dashboard_name}/", 200)] == 3
    # Visivo's viewer answers any other GET (`/<path:path>`): its route, never the words typed
    assert seen[("GET", "/{path}", 200)] == 1
    assert len(seen) == 3, seen
    for event in served.events:
        assert event["event"] == "api_request"
        assert set(event["properties"]) <= DOCUMENTED_API_KEYS
        assert "acme" not in json.dumps(event).lower()


def test_the_viewer_records_nothing(real: Real, served: Served) -> None:
    status, html = served.responses["viewer"]
    assert status == 200
    assert b"<script>window.__VISIVO_TELEMETRY_DISABLED=true</script>" in html
    assert served.responses["relay"] == (204, b"")
    assert not [e for e in served.events if "telemetry" in e["properties"]["endpoint"]]
    records = vs.audit_records(real.audit_log("api"))
    assert [r for r in records if "host" in r and not vs.is_loopback(r["host"])] == []
    assert [r for r in records if r["event"] == "import"] == []


SERVING = "View your project at"
"""What `visivo serve` prints once its server is up and the project built."""


@dataclass
class Stopped:
    """A real `visivo serve`, stopped by a signal once it served a request."""

    exit_code: int
    output: str
    served: int


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_stop(real: Real, env: dict[str, str], signum: int, name: str) -> Stopped:
    """`visivo serve` in the project, one request once it is up, then `signum`."""
    real.reset_project()
    port = unused_port()
    log = real.root / f"serve-{name}.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(real.venv.visivo), "serve", "-p", str(port)],
            cwd=real.project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while SERVING not in log.read_text() and time.monotonic() < deadline:
            assert server.poll() is None, f"serve ended early:\n{log.read_text()}"
            time.sleep(0.2)
        assert SERVING in log.read_text(), f"serve never came up:\n{log.read_text()}"
        status, _ = http(f"http://127.0.0.1:{port}/api/project/")
        server.send_signal(signum)
        exit_code = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return Stopped(exit_code, log.read_text(), status)


@pytest.mark.parametrize(
    "signum, exit_code, success, error_type",
    [
        (signal.SIGINT, 0, True, None),  # serve catches Ctrl-C, its way to stop: exits 0
        (signal.SIGTERM, -signal.SIGTERM, False, "SIGTERM"),  # a death by the signal
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_serve_stopped_by_a_signal_is_recorded_as_it_ended(
    real: Real, signum: int, exit_code: int, success: bool, error_type: str | None
) -> None:
    """Ctrl-C is how a user stops `visivo serve`: it exits 0, and the run is a success, as
    Visivo 2.2.1 recorded it. SIGTERM kills it (-15, as without telemetry): the run is
    recorded as ended by that signal. Its requests are kept either way."""
    name = signal.Signals(signum).name
    theirs = serve_and_stop(real, real.baseline_env(), signum, f"{name}-2.2.1")
    ours = serve_and_stop(real, real.env(f"serve-{name}"), signum, name)
    assert (theirs.exit_code, theirs.served) == (exit_code, 200), theirs.output
    assert (ours.exit_code, ours.served) == (exit_code, 200), ours.output
    events = real.received(f"serve-{name}")
    [command] = [e["properties"] for e in events if e["event"] == "cli_command"]
    assert command["command"] == "serve"
    assert command["command_args"] == ["-p", "<value>"]
    assert command["success"] is success
    assert command.get("error_type") == error_type
    requests = [e["properties"] for e in events if e["event"] == "api_request"]
    assert [(r["endpoint"], r["status_code"]) for r in requests] == [("/api/project/", 200)]


RECORDED_EVENTS_TEST = "tests/telemetry/test_recorded_events.py"
"""The guide's example of `capture_events()` in Visivo's own suite (scripts/visivo_suite.py
runs it, and the rest of Visivo's suite, in Visivo's repository)."""


def test_capture_events_as_the_guide_shows_for_visivos_own_suite(real: Real) -> None:
    [block] = [b for b in vs.guide_blocks() if b.target == RECORDED_EVENTS_TEST]
    suite = real.root / "visivo-suite"
    (suite / Path(block.target).parent).mkdir(parents=True, exist_ok=True)
    (suite / block.target).write_text(block.code)
    env = real.env("capture")
    done = subprocess.run(
        [str(real.venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", block.target],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
