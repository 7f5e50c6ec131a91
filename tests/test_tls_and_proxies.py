"""Delivery through the networks Visivo's users have: HTTPS with a company's CA, HTTP and SOCKS
proxies, and failures that say what happened.

Everything is real and on this machine: an HTTPS receiver (`scripts/collector.py` serving TLS)
with a certificate from a CA made here (trustme); tinyproxy (HTTP CONNECT) and microsocks
(SOCKS5) as the proxies. For the production URL end to end, the receiver listens on port 443 of
a loopback address and the proxy, alone in a mount namespace, reads an /etc/hosts that maps
`us.i.posthog.com` there: the sender resolves nothing itself, as through a corporate proxy.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from helpers import (
    Collector,
    clean_env,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    status_json,
    vt,
    wait_for_senders_to_exit,
)

PRODUCTION = "https://us.i.posthog.com"
HINT_CA = "REQUESTS_CA_BUNDLE"
PROXY_USER, PROXY_PASSWORD = "alice", "s3cret-pw"


# --------------------------------------------------------------------------- the parts


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA and a certificate it issued for the receiver's names (PEM files)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("us.i.posthog.com", "localhost", "127.0.0.1", "::1")
    files = {"ca": folder / "ca.pem", "chain": folder / "server.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["chain"]))
    hashed = folder / "ca-dir"
    hashed.mkdir()
    shutil.copy(files["ca"], hashed / "ca.pem")
    subprocess.run(["openssl", "rehash", str(hashed)], check=True, capture_output=True)
    files["dir"] = hashed
    return files


def https_receiver(tmp_path: Path, pki: dict[str, Path], host="127.0.0.1", port=0) -> Collector:
    tls = (pki["chain"], pki["chain"], pki["ca"])
    return Collector(tmp_path / f"received-{host}-{port}.db", host=host, port=port, tls=tls)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read() if process.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def can_map_names() -> str | None:
    """Why the proxy tests cannot run here (None when they can); in CI they must run."""
    missing = [name for name in ("tinyproxy", "microsocks") if shutil.which(name) is None]
    if missing and not os.environ.get("CI"):
        return f"{' and '.join(missing)} not installed (scripts/test.sh installs them as root)"
    if os.geteuid() != 0:
        return "a private /etc/hosts for the proxy (a mount namespace) needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        return "this machine refuses mount namespaces"
    return None


def start_proxy(argv: list[str], port: int, hosts: Path, what: str) -> subprocess.Popen:
    """`argv` in its own mount namespace, reading `hosts` as its /etc/hosts."""
    script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
    process = subprocess.Popen(
        ["unshare", "-m", "--", "sh", "-c", script, "sh", str(hosts), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port, process, what)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def posthog_here(tmp_path: Path, pki: dict[str, Path]) -> Iterator[tuple[Collector, Path]]:
    """The HTTPS receiver on port 443 of a loopback address that `us.i.posthog.com` names in
    the proxies' hosts file; yields it and that file."""
    reason = can_map_names()
    if reason:
        pytest.skip(reason)
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{address} us.i.posthog.com\n")
    with https_receiver(tmp_path, pki, host=address, port=443) as receiver:
        yield receiver, hosts


@pytest.fixture
def http_proxy(posthog_here, tmp_path: Path) -> Iterator[tuple[int, Collector]]:
    """tinyproxy, HTTP CONNECT, credentials required: its port and the receiver behind it."""
    receiver, hosts = posthog_here
    port = free_port()
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 20\nLogLevel Info\n"
        f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}\n"
    )
    process = start_proxy(["tinyproxy", "-d", "-c", str(conf)], port, hosts, "tinyproxy")
    try:
        yield port, receiver
    finally:
        stop(process)


@pytest.fixture
def socks_proxy(posthog_here) -> Iterator[tuple[int, Collector]]:
    """microsocks, SOCKS5 with a user and password: its port and the receiver behind it."""
    receiver, hosts = posthog_here
    port = free_port()
    argv = ["microsocks", "-i", "127.0.0.1", "-p", str(port), "-u", PROXY_USER]
    process = start_proxy([*argv, "-P", PROXY_PASSWORD], port, hosts, "microsocks")
    try:
        yield port, receiver
    finally:
        stop(process)


class SilentServer:
    """Accepts connections and never says a word: a TLS handshake or a CONNECT that stalls."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()


# --------------------------------------------------------------------------- helpers


def record_one(home: Path, project: Path, **env: str) -> dict[str, str]:
    """One command run by a real host with `env`; its sender is waited for. The environment."""
    environment = clean_env(home, **env)
    result, _ = run_host(host_code(), environment, cwd=project)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []
    return environment


def assert_delivered(receiver: Collector, home: Path) -> None:
    [event] = receiver.events()
    assert event["event"] == "cli_command" and spool_rows(home) == []


def assert_kept_because(home: Path, kind: str) -> dict[str, str | None]:
    state = spool_state(home)
    assert len(spool_rows(home)) == 1, "the event must wait in the spool"
    assert state["last_error"] == kind, state
    assert float(state["next_attempt_at"]) > time.time(), "a failure must back off"
    return state


def spool_bytes(home: Path) -> bytes:
    folder = spool_path(home).parent
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())


# --------------------------------------------------------------------------- trust


@pytest.mark.parametrize(
    "variable", ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]
)
def test_the_company_ca_named_by_each_variable_is_trusted(variable, home, project, tmp_path, pki):
    path = pki["dir"] if variable == "SSL_CERT_DIR" else pki["ca"]
    with https_receiver(tmp_path, pki) as receiver:
        record_one(home, project, VISIVO_POSTHOG_HOST=receiver.url, **{variable: str(path)})
        assert_delivered(receiver, home)


def test_a_certificate_nobody_named_is_refused_kept_and_explained(home, project, tmp_path, pki):
    with https_receiver(tmp_path, pki) as receiver:
        env = record_one(home, project, VISIVO_POSTHOG_HOST=receiver.url)
        assert receiver.events() == []
        state = assert_kept_because(home, "certificate-untrusted")
        assert "CERTIFICATE_VERIFY_FAILED" in state["last_error_detail"]

        info = status_json(env)
        assert HINT_CA in info["last_error_hint"]
        human = vt("status", env=env).stdout
        assert "last error:   certificate-untrusted at " in human and HINT_CA in human

        flushed = vt("flush", env=env)
        assert flushed.returncode == 1 and "Traceback" not in flushed.stderr
        [line] = flushed.stderr.splitlines()
        assert line.startswith("Error: could not deliver (certificate-untrusted: ")
        assert HINT_CA in line

        fixed = vt("flush", env={**env, "REQUESTS_CA_BUNDLE": str(pki["ca"])})
        assert fixed.returncode == 0, fixed.stderr
        assert_delivered(receiver, home)


def test_the_first_variable_set_wins_and_is_the_only_trust(home, project, tmp_path, pki):
    """`SSL_CERT_FILE` naming another CA hides the right one in `REQUESTS_CA_BUNDLE`."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with https_receiver(tmp_path, pki) as receiver:
        record_one(
            home,
            project,
            VISIVO_POSTHOG_HOST=receiver.url,
            SSL_CERT_FILE=str(other),
            REQUESTS_CA_BUNDLE=str(pki["ca"]),
        )
        assert receiver.events() == []
        assert_kept_because(home, "certificate-untrusted")


def test_a_ca_variable_naming_nothing_is_a_recorded_failure(home, project, tmp_path, pki):
    missing = tmp_path / "no-such-ca.pem"
    with https_receiver(tmp_path, pki) as receiver:
        env = record_one(
            home, project, VISIVO_POSTHOG_HOST=receiver.url, REQUESTS_CA_BUNDLE=str(missing)
        )
        assert receiver.events() == []
        state = assert_kept_because(home, "ca-bundle-unreadable")
        assert state["last_error_detail"].startswith("REQUESTS_CA_BUNDLE")
        assert "REQUESTS_CA_BUNDLE" in status_json(env)["last_error_hint"]


# --------------------------------------------------------------------------- proxies


def test_the_production_url_through_an_http_proxy_with_credentials(http_proxy, home, project, pki):
    port, receiver = http_proxy
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"
    record_one(
        home,
        project,
        VISIVO_POSTHOG_HOST=PRODUCTION,
        HTTPS_PROXY=proxy,
        REQUESTS_CA_BUNDLE=str(pki["ca"]),
    )
    assert_delivered(receiver, home)


def test_a_proxy_asking_for_credentials_is_explained_never_leaked(http_proxy, home, project, pki):
    port, receiver = http_proxy
    env = record_one(
        home,
        project,
        VISIVO_POSTHOG_HOST=PRODUCTION,
        https_proxy=f"http://127.0.0.1:{port}",  # lower case, as many tools write it
        REQUESTS_CA_BUNDLE=str(pki["ca"]),
    )
    assert receiver.events() == []
    state = assert_kept_because(home, "proxy-auth")
    assert "407" in state["last_error_detail"]
    assert "HTTPS_PROXY=http://user:password@" in status_json(env)["last_error_hint"]

    wrong = f"http://{PROXY_USER}:wrong-{PROXY_PASSWORD}@127.0.0.1:{port}"
    flushed = vt("flush", env={**env, "https_proxy": wrong})
    assert flushed.returncode == 1 and "proxy-auth" in flushed.stderr
    assert PROXY_PASSWORD.encode() not in spool_bytes(home)
    assert PROXY_PASSWORD not in vt("status", "--json", env={**env, "https_proxy": wrong}).stdout


@pytest.mark.parametrize("scheme", ["socks5h", "socks5"])
def test_the_production_url_through_a_socks5_proxy(scheme, socks_proxy, home, project, pki):
    port, receiver = socks_proxy
    record_one(
        home,
        project,
        VISIVO_POSTHOG_HOST=PRODUCTION,
        ALL_PROXY=f"{scheme}://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}",
        REQUESTS_CA_BUNDLE=str(pki["ca"]),
    )
    assert_delivered(receiver, home)


def test_socks_credentials_refused_are_explained(socks_proxy, home, project, pki):
    port, receiver = socks_proxy
    record_one(
        home,
        project,
        VISIVO_POSTHOG_HOST=PRODUCTION,
        ALL_PROXY=f"socks5h://{PROXY_USER}:nope@127.0.0.1:{port}",
        REQUESTS_CA_BUNDLE=str(pki["ca"]),
    )
    assert receiver.events() == []
    assert_kept_because(home, "proxy-auth")
    assert b"nope@" not in spool_bytes(home)


def test_no_proxy_sends_the_receiver_direct(home, project, tmp_path, pki):
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    with https_receiver(tmp_path, pki) as receiver:
        base = {
            "VISIVO_POSTHOG_HOST": receiver.url.replace("127.0.0.1", "localhost"),
            "HTTPS_PROXY": dead_proxy,
            "REQUESTS_CA_BUNDLE": str(pki["ca"]),
        }
        record_one(home, project, **base)
        assert receiver.events() == []
        assert_kept_because(home, "proxy-unreachable")

        flushed = vt("flush", env=clean_env(home, **base, NO_PROXY="localhost"))
        assert flushed.returncode == 0, flushed.stderr
        assert_delivered(receiver, home)


@pytest.mark.parametrize("broken", ["proxy scheme httpx lacks", "HTTP stack fails to import"])
def test_a_sender_that_cannot_send_backs_off_so_commands_start_no_more(
    broken, home, project, tmp_path
):
    """A broken setup is one recorded failure with its backoff, never a sender per command.

    A `sitecustomize` on `PYTHONPATH` logs every Python process's command line: the senders
    started are counted, not guessed from the spool.
    """
    site = tmp_path / "site"
    site.mkdir()
    launches = tmp_path / "launches.log"
    (site / "sitecustomize.py").write_text(
        f"import sys\nwith open({str(launches)!r}, 'a') as log:\n"
        "    log.write(repr(sys.orig_argv) + '\\n')\n"
    )
    if broken == "proxy scheme httpx lacks":
        setting = {"ALL_PROXY": f"socks4://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:1080"}
        kind = "proxy-unsupported"
    else:
        (site / "httpx").mkdir()
        (site / "httpx" / "__init__.py").write_text("raise ImportError('httpx is broken')\n")
        setting = {}
        kind = "sender-unavailable"
    env = clean_env(
        home, VISIVO_POSTHOG_HOST="https://localhost:9", PYTHONPATH=str(site), **setting
    )
    commands = 5
    for _ in range(commands):
        result, _ = run_host(host_code(), env, cwd=project)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert wait_for_senders_to_exit(home) == []
    lines = launches.read_text().splitlines()
    senders = [line for line in lines if "_sender" in line]
    assert len(lines) == commands + len(senders)
    assert len(senders) == 1, "a command started a sender despite the backoff"
    state = spool_state(home)
    assert state["last_error"] == kind and state["failures"] == "1"
    assert len(spool_rows(home)) == commands
    assert PROXY_PASSWORD.encode() not in spool_bytes(home)

    flushed = vt("flush", env=env)
    assert flushed.returncode == 1 and "Traceback" not in flushed.stderr
    [line] = flushed.stderr.splitlines()
    assert f"could not deliver ({kind}: " in line


# --------------------------------------------------------------------------- timeouts, IPv6


def test_a_stalled_handshake_and_a_stalled_proxy_are_timeouts(home, project, pki):
    for via_proxy in (False, True):
        silent = SilentServer()
        try:
            if via_proxy:
                extra = {
                    "VISIVO_POSTHOG_HOST": PRODUCTION,
                    "HTTPS_PROXY": f"http://127.0.0.1:{silent.port}",
                }
            else:
                extra = {"VISIVO_POSTHOG_HOST": f"https://localhost:{silent.port}"}
            env = record_one(home, project, REQUESTS_CA_BUNDLE=str(pki["ca"]), **extra)
            assert_kept_because(home, "timeout")
            started = time.monotonic()
            flushed = vt("flush", env=env)
            assert time.monotonic() - started < 20, "a hang catcher, not a speed test"
            assert flushed.returncode == 1 and "could not deliver (timeout: " in flushed.stderr
        finally:
            silent.close()
        vt("purge", env=env)


def test_an_ipv6_receiver(home, project, tmp_path):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with Collector(tmp_path / "v6.db", host="::1") as receiver:
        assert receiver.url.startswith("http://[::1]:")
        record_one(home, project, VISIVO_POSTHOG_HOST=receiver.url)
        assert_delivered(receiver, home)
