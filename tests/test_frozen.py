"""Frozen apps (PyInstaller): the app's own binary, started with no argument, is the sender.

PyInstaller is not needed to test this: what matters is an executable that is not a Python
interpreter but embeds one, so that `sys.executable` is the app. `build_launcher` compiles such
a launcher with gcc against the venv's base CPython (`python3-config --embed`): like a
PyInstaller bootloader it sets `sys.executable` to itself, passes its argv to the app untouched
(`-c` or `-m` mean nothing to it), ignores PYTHON* variables, sets `sys.frozen = True` and runs
one entry script as `__main__`. Built `onefile`, it also follows PyInstaller's onefile protocol
(unpack into a fresh folder, run itself as the app's process, delete the folder when that
exits). The entry script is a Visivo-like click CLI wired as a host wires it
(scripts/visivo_cli.py).

Every run happens under `SUPERVISE`, a subreaper: whatever the app starts, detached or not,
becomes its child once the app exits, so "no sender was started" is an observation (no
descendant at all), not a wait, and a sender that would loop is seen and killed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import PYTHON, ROOT, flush, spool_rows

from visivo_telemetry._spawn import SENDER_ENV

SCRIPTS = ROOT / "scripts"
COMMAND = ["run", "--threads", "4"]

LAUNCHER_C = r"""
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* WHERE */

static void fail(PyConfig *config, PyStatus status) {
    PyConfig_Clear(config);
    Py_ExitStatusException(status);
}

/* The embedded interpreter: sys.executable is this binary, argv reaches the app untouched. */
static int run_python(int argc, char **argv, const char *self, const char *script,
                      const char *bundle) {
    PyStatus status;
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    config.use_environment = 0;
    config.site_import = 0;
    config.user_site_directory = 0;
    config.write_bytecode = 0;
    status = PyConfig_SetBytesString(&config, &config.program_name, argv[0]);
    if (PyStatus_Exception(status)) fail(&config, status);
    status = PyConfig_SetBytesString(&config, &config.executable, self);
    if (PyStatus_Exception(status)) fail(&config, status);
    status = PyConfig_SetBytesString(&config, &config.home, PYTHON_HOME);
    if (PyStatus_Exception(status)) fail(&config, status);
    status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status)) fail(&config, status);
    config.module_search_paths_set = 1;
    for (const char **path = SEARCH_PATHS; *path; path++) {
        wchar_t *wide = Py_DecodeLocale(*path, NULL);
        if (wide == NULL) return 120;
        status = PyWideStringList_Append(&config.module_search_paths, wide);
        PyMem_RawFree(wide);
        if (PyStatus_Exception(status)) fail(&config, status);
    }
    status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    PyObject *meipass = PyUnicode_DecodeFSDefault(bundle);
    if (meipass == NULL || PySys_SetObject("_MEIPASS", meipass) != 0) return 120;
    Py_DECREF(meipass);
    if (PySys_SetObject("frozen", Py_True) != 0) return 120;
    FILE *app = fopen(script, "rb");
    if (app == NULL) return 120;
    int failed = PyRun_SimpleFileExFlags(app, script, 1, NULL);
    if (Py_FinalizeEx() < 0) return 120;
    return failed ? 1 : 0;
}

#if ONEFILE
/* PyInstaller's onefile protocol: a top-level process unpacks the app into a fresh folder,
   runs itself as the app's process with _PYI_APPLICATION_HOME_DIR naming that folder, waits
   for it and deletes the folder. A process started from sys.executable inherits the variable
   and reuses the folder (a worker) unless PYINSTALLER_RESET_ENVIRONMENT=1 (PyInstaller 6.9+). */
static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char chunk[4096];
    size_t n;
    if (in == NULL || out == NULL) return -1;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0) fwrite(chunk, 1, n, out);
    fclose(in);
    return fclose(out);
}

static int unpack_and_run(char **argv, const char *self) {
    char bundle[PATH_MAX], script[PATH_MAX];
    int status = 0;
    snprintf(bundle, sizeof bundle, "%s/_MEIXXXXXX", UNPACK_INTO);
    if (mkdtemp(bundle) == NULL) return 120;
    snprintf(script, sizeof script, "%s/entry.py", bundle);
    if (copy_file(APP_SCRIPT, script) != 0) return 120;
    setenv("_PYI_APPLICATION_HOME_DIR", bundle, 1);
    pid_t pid = fork();
    if (pid == 0) {
        execv(self, argv);
        _exit(120);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    unlink(script);
    rmdir(bundle);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
#endif

int main(int argc, char **argv) {
    char self[PATH_MAX];
    if (realpath("/proc/self/exe", self) == NULL) return 120;
#if ONEFILE
    const char *reset = getenv("PYINSTALLER_RESET_ENVIRONMENT");
    if (reset != NULL && strcmp(reset, "1") == 0) {
        unsetenv("_PYI_APPLICATION_HOME_DIR");
        unsetenv("PYINSTALLER_RESET_ENVIRONMENT");
    }
    const char *bundle = getenv("_PYI_APPLICATION_HOME_DIR");
    if (bundle == NULL) return unpack_and_run(argv, self);
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/entry.py", bundle);
    return run_python(argc, argv, self, script, bundle);
#else
    return run_python(argc, argv, self, APP_SCRIPT, APP_DIR);
#endif
}
"""

APP = """\
\"\"\"The entry script of a frozen Visivo-like app. Test instrumentation: each process it runs in
appends what it was started with to $FROZEN_APP_LOG (stage "started", then "app" once the
app itself runs); $FROZEN_APP_WITHOUT_POSIX_SPAWN removes posix_spawn (the subprocess path).\"\"\"

import json
import os
import sys

from visivo_telemetry._spawn import SENDER_ENV


def log(stage):
    entry = {
        "pid": os.getpid(),
        "stage": stage,
        "argv": sys.argv,
        "executable": sys.executable,
        "bundle": sys._MEIPASS,
        "marker": os.environ.get(SENDER_ENV),
    }
    fd = os.open(os.environ["FROZEN_APP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (json.dumps(entry) + "\\n").encode())
    os.close(fd)


log("started")
if os.environ.get("FROZEN_APP_WITHOUT_POSIX_SPAWN"):
    del os.posix_spawn
HOOK
log("app")

import visivo_cli

visivo_cli.wire()
visivo_cli.visivo(prog_name="visivo")
"""
HOOK = "from visivo_telemetry import run_sender_if_requested\n\nrun_sender_if_requested()"

SUPERVISE = r"""
import ctypes, json, os, signal, subprocess, sys, time

PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
argv, cwd = json.loads(sys.argv[1]), sys.argv[2]
app = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
stdout, stderr = app.communicate(timeout=60)


def children():
    mine = str(os.getpid())
    for entry in os.listdir("/proc"):
        try:
            status = open(f"/proc/{entry}/status").read()
        except OSError:
            continue
        if entry.isdigit() and f"\nPPid:\t{mine}\n" in status:
            yield int(entry)


others, killed, deadline = [], [], time.monotonic() + 40
while True:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid:
        others.append({"pid": pid, "exit_code": os.waitstatus_to_exitcode(status)})
    elif time.monotonic() > deadline:
        for child in children():
            killed.append(child)
            os.kill(child, signal.SIGKILL)
    else:
        time.sleep(0.02)
print(json.dumps({"pid": app.pid, "returncode": app.returncode, "stdout": stdout,
                  "stderr": stderr, "descendants": others, "killed": killed}))
"""


def embed_flags() -> tuple[str, list[str], list[str]]:
    """gcc and the flags that embed the venv's base CPython; skips when either is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not on PATH: cannot build the frozen-like launcher")
    version = sysconfig.get_python_version()
    config = Path(sys.base_prefix, "bin", f"python{version}-config")
    if not config.exists():
        pytest.skip(f"{config} is missing: no embed flags for libpython{version}")
    flags = []
    for what in ("--cflags", "--ldflags"):
        result = subprocess.run([str(config), "--embed", what], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"{config} --embed {what} failed: {result.stderr.strip()}")
        flags.append(result.stdout.split())
    return gcc, flags[0], flags[1]


def c_string(text: str) -> str:
    """`text` as a C string literal (JSON's escapes are valid C for these paths)."""
    return json.dumps(text)


def build_launcher(folder: Path, name: str, *, calls_hook: bool, onefile: bool = False) -> Path:
    """A frozen-like app in `folder`: the launcher binary `name` and its entry script.

    `onefile`: the app unpacks itself into a fresh folder per top-level run, as PyInstaller's
    onefile builds do (`sys._MEIPASS` names that folder).
    """
    gcc, cflags, ldflags = embed_flags()
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{name}_entry.py"
    script.write_text(APP.replace("HOOK", HOOK if calls_hook else ""), encoding="utf-8")
    paths = sysconfig.get_paths()
    search = [
        str(ROOT),
        str(SCRIPTS),
        paths["stdlib"],
        sysconfig.get_config_var("DESTSHARED") or os.path.join(paths["platstdlib"], "lib-dynload"),
        paths["purelib"],
        paths["platlib"],
    ]
    defines = (
        f"#define PYTHON_HOME {c_string(sys.base_prefix)}\n"
        f"#define APP_SCRIPT {c_string(str(script))}\n"
        f"#define APP_DIR {c_string(str(folder))}\n"
        f"#define UNPACK_INTO {c_string(str(folder))}\n"
        f"#define ONEFILE {int(onefile)}\n"
        f"static const char *SEARCH_PATHS[] = {{{', '.join(map(c_string, search))}, NULL}};\n"
    )
    source = folder / f"{name}.c"
    source.write_text(LAUNCHER_C.replace("/* WHERE */", defines))
    binary = folder / name
    build = subprocess.run(
        [gcc, "-o", str(binary), str(source), *cflags, *ldflags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    return binary.resolve()


@pytest.fixture(scope="module")
def launchers(tmp_path_factory) -> dict[str, Path]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the launcher finds itself through /proc/self/exe and runs under a subreaper")
    folder = tmp_path_factory.mktemp("frozen")
    return {
        "onedir": build_launcher(folder, "visivo", calls_hook=True),
        "onefile": build_launcher(folder, "visivo-onefile", calls_hook=True, onefile=True),
        "unwired": build_launcher(folder, "visivo-unwired", calls_hook=False),
    }


def supervise(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run `argv` as the user would, then collect every process it left behind."""
    result = subprocess.run(
        [PYTHON, "-c", SUPERVISE, json.dumps(argv), str(cwd)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def plain_run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The same CLI under plain Python, telemetry not wired: what the user must see."""
    code = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import visivo_cli; "
    code += 'visivo_cli.visivo(prog_name="visivo")'
    return subprocess.run(
        [PYTHON, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30
    )


def app_log(path: Path) -> tuple[list[dict], list[list[dict]]]:
    """What the launched processes logged: the entries of each one that ran the app, and of
    each one that did not (a sender), every list in order."""
    by_pid: dict[int, list[dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            by_pid.setdefault(entry["pid"], []).append(entry)
    ran_app = [e for e in by_pid.values() if "app" in {x["stage"] for x in e}]
    others = [e for e in by_pid.values() if e not in ran_app]
    return ran_app, others


@pytest.fixture
def frozen_env(env, tmp_path) -> dict[str, str]:
    return {**env, "FROZEN_APP_LOG": str(tmp_path / "frozen-app.log")}


def assert_unchanged(run: dict, args: list[str], env, cwd) -> None:
    """What the user sees is what the same CLI shows under plain Python without telemetry."""
    plain = plain_run(args, env, cwd)
    assert (run["returncode"], run["stdout"], run["stderr"]) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )


@pytest.mark.parametrize(
    "bundle, spawn_path",
    [("onedir", "posix_spawn"), ("onedir", "subprocess"), ("onefile", "posix_spawn")],
)
def test_a_frozen_app_delivers_through_its_own_binary_started_without_arguments(
    launchers, frozen_env, home, project, collector, bundle, spawn_path
):
    launcher = launchers[bundle]
    if spawn_path == "subprocess":
        frozen_env["FROZEN_APP_WITHOUT_POSIX_SPAWN"] = "1"

    run = supervise([str(launcher), *COMMAND], frozen_env, project)

    assert_unchanged(run, COMMAND, frozen_env, project)
    assert run["killed"] == []
    [host], senders = app_log(Path(frozen_env["FROZEN_APP_LOG"]))
    assert [e["stage"] for e in host] == ["started", "app"]
    assert host[0]["argv"] == [str(launcher), *COMMAND]
    assert host[0]["executable"] == str(launcher)
    assert len(senders) == 1, senders
    [sender] = senders[0]
    assert sender["argv"] == [str(launcher)]
    assert sender["executable"] == str(launcher)
    assert [d["exit_code"] for d in run["descendants"]] == [0]
    if bundle == "onefile":
        assert sender["bundle"] != host[0]["bundle"], "the sender used the host's unpacked files"
        assert list(launcher.parent.glob("_MEI*")) == []
    else:
        assert run["descendants"][0]["pid"] == sender["pid"]
    [event] = collector.wait_for_events(1)
    assert event["properties"]["command"] == "run"
    assert event["properties"]["command_args"] == ["--threads", "<value>"]
    assert spool_rows(home) == []


def test_a_frozen_app_that_never_calls_the_hook_spools_and_starts_nothing(
    launchers, frozen_env, home, project, collector
):
    run = supervise([str(launchers["unwired"]), *COMMAND], frozen_env, project)

    assert_unchanged(run, COMMAND, frozen_env, project)
    assert run["descendants"] == [] and run["killed"] == []
    ran_app, others = app_log(Path(frozen_env["FROZEN_APP_LOG"]))
    assert len(ran_app) == 1 and others == []
    [row] = spool_rows(home)
    assert row["properties"]["command"] == "run"
    assert collector.events() == []

    assert flush(frozen_env).returncode == 0
    [event] = collector.wait_for_events(1)
    assert event["uuid"] == row["uuid"]


def test_a_sender_marker_leaked_into_a_users_command_is_dropped(
    launchers, frozen_env, home, project, collector
):
    launcher = launchers["onedir"]
    supervise([str(launcher), *COMMAND], frozen_env, project)
    _, [[sender]] = app_log(Path(frozen_env["FROZEN_APP_LOG"]))
    marker = sender["marker"]
    assert marker
    collector.wait_for_events(1)
    Path(frozen_env["FROZEN_APP_LOG"]).unlink()

    leaked = supervise([str(launcher), *COMMAND], {**frozen_env, SENDER_ENV: marker}, project)

    assert_unchanged(leaked, COMMAND, frozen_env, project)
    assert leaked["descendants"] == [] and leaked["killed"] == []
    [entries], others = app_log(Path(frozen_env["FROZEN_APP_LOG"]))
    assert others == []
    assert [(e["stage"], e["marker"]) for e in entries] == [("started", marker), ("app", None)]
    [row] = spool_rows(home)
    assert row["properties"]["command"] == "run"


def test_a_usage_error_is_unchanged_in_a_frozen_app(launchers, frozen_env, project, collector):
    args = ["rnu", "acme-secret"]
    run = supervise([str(launchers["onedir"]), *args], frozen_env, project)

    assert_unchanged(run, args, frozen_env, project)
    assert run["returncode"] == 2
    assert [d["exit_code"] for d in run["descendants"]] == [0]
    [event] = collector.wait_for_events(1)
    assert event["properties"]["command"] == "unknown-command"
