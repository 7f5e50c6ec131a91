"""Helpers for the privacy tests: spool events in-process, write config files, trap connections."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from visivo_telemetry import _pipeline

DOCUMENTED_COMMON_KEYS = {
    "visivo_version",
    "python_version",
    "platform",
    "platform_version",
    "architecture",
    "session_id",
    "$process_person_profile",
    "$geoip_disable",
    "$ip",
    "$lib",
    "$lib_version",
}
"""The privacy notice's list of what every event carries, written out by hand on purpose."""

DOCUMENTED_CLI_KEYS = DOCUMENTED_COMMON_KEYS | {
    "command",
    "command_args",
    "duration_ms",
    "success",
    "error_type",
}
DOCUMENTED_CLI_OPTIONAL_KEYS = {"job_count", "object_counts"}
DOCUMENTED_API_KEYS = DOCUMENTED_COMMON_KEYS | {
    "endpoint",
    "method",
    "status_code",
    "duration_ms",
    "request_count",
}


def spool_commands(project: Path, commands: Iterable[tuple[str, list]] = (("run", []),)) -> int:
    """Record commands through the host's real pipeline in this process (HOME from the env):
    decided, sanitized, built and spooled exactly as `Telemetry` does, but with no launcher,
    so no sender starts and the test decides when one runs."""
    app = _pipeline.App("1.4.0", "phc_test_key", None, str(project))
    pipeline = _pipeline.production(app, long_running=False)
    assert pipeline.enabled, pipeline.opt_out.decided_by
    pipeline.launcher = None
    count = 0
    for name, args in commands:
        try:  # the boundary `Telemetry` keeps: nothing raises into the host
            pipeline.record_command(name, args, 12.5, None, {})
        except Exception:
            pass
        count += 1
    pipeline.sink.close()
    return count


def write_text(path: Path, text: str | bytes) -> Path:
    """Write a config file (creating its directory) exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def global_config(home: Path) -> Path:
    return home / ".visivo" / "config.yml"


def project_config(project: Path) -> Path:
    return project / "project.visivo.yml"


def mode(path: Path) -> int:
    """Permission bits of a path, not following a symlink."""
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_under(root: Path) -> list[str]:
    """Every file and directory below `root`, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def all_bytes_under(root: Path) -> bytes:
    """The concatenated contents of every regular file below `root`."""
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


class ConnectionTrap:
    """A loopback listener that counts every TCP connection made to it.

    Set as the HTTP(S) proxy of a sender: any attempt to reach any host would land here, so
    zero connections proves nothing was contacted (and nothing leaves the machine).
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.1)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def proxy_env(self) -> dict[str, str]:
        """Environment variables that send every HTTP(S) request through the trap."""
        return {
            name: self.url
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
        } | {"NO_PROXY": "", "no_proxy": ""}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def __enter__(self) -> ConnectionTrap:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()
