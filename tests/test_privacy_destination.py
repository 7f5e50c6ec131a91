"""Configuration: "Only you can set these, in the environment or in `~/.visivo/config.yml` —
never a project file, so a cloned repository cannot redirect your telemetry", and events go
over `https://` except to loopback addresses.

Every sender here runs with its HTTP(S) proxy pointed at a `ConnectionTrap`: an attempt to reach
any non-loopback host would land there, so zero connections proves nothing left the machine.
"""

from __future__ import annotations

import sqlite3

import pytest
from helpers import (
    Collector,
    clean_env,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    status_json,
    vt,
)
from helpers import wait_for_senders_to_exit as wait_for_senders
from privacy_support import (
    ConnectionTrap,
    global_config,
    project_config,
    spool_commands,
    write_text,
)

from visivo_telemetry import _destination as destination


def _env_without_host(home, trap: ConnectionTrap, **extra: str) -> dict[str, str]:
    env = clean_env(home, **{**trap.proxy_env(), **extra})
    del env["VISIVO_POSTHOG_HOST"]
    return env


def test_a_project_file_cannot_redirect_telemetry_or_change_its_key(
    home, project, collector, tmp_path
):
    with Collector(tmp_path / "decoy.db") as decoy, ConnectionTrap() as trap:
        write_text(
            global_config(home), f"posthog_host: {collector.url}\nposthog_api_key: phc_user\n"
        )
        planted = (
            f"posthog_host: {decoy.url}\nposthog_api_key: phc_planted\ntelemetry_debug: true\n"
        )
        indented = "".join(f"  {line}\n" for line in planted.splitlines())
        write_text(project_config(project), f"{planted}defaults:\n{indented}")
        env = _env_without_host(home, trap, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")

        result, _ = run_host(host_code("run"), env, cwd=project)

        (received,) = collector.wait_for_events(1)
        assert wait_for_senders(home) == []
        assert (result.returncode, result.stderr) == (0, "")
        assert received["api_key"] == "phc_user"
        assert decoy.requests() == [] and trap.connections == 0


def test_settings_come_from_the_environment_before_the_user_config(home):
    write_text(
        global_config(home),
        "posthog_host: https://eu.i.posthog.com\nposthog_api_key: phc_file\ntelemetry_debug: no\n",
    )
    env = {"HOME": str(home)}

    from_file = destination.settings(env)
    env_settings = {
        "VISIVO_POSTHOG_HOST": "https://x.example",
        "VISIVO_POSTHOG_API_KEY": "phc_env",
        "VISIVO_TELEMETRY_DEBUG": "1",
    }
    from_env = destination.settings({**env, **env_settings})

    assert from_file == ("https://eu.i.posthog.com", "phc_file", False, None, None, "global")
    assert from_env == ("https://x.example", "phc_env", True, None, None, "env")


REFUSED = [
    "http://example.invalid",
    "http://203.0.113.7:8000",
    "http://127.0.0.1.example.invalid",
    "http://localhost.example.invalid",
    "http://example.invalid#@127.0.0.1:{port}",
    "http://example.invalid?@127.0.0.1:{port}",
    "http://example.invalid\\@127.0.0.1:{port}",
    "http://user@example.invalid",
    "http://127.0.0.1:{port}@example.invalid",
    "http://[::1].example.invalid",
    "ftp://example.invalid",
    "example.invalid",
]


@pytest.mark.parametrize("host", REFUSED)
def test_plain_http_to_anything_but_loopback_is_refused_in_the_check(host):
    assert destination.check_host(host.format(port=9)) is not None


ALLOWED = [
    "https://us.i.posthog.com",
    "https://eu.i.posthog.com/",
    "HTTPS://example.com:8443/prefix",
    "http://127.0.0.1:9",
    "http://127.255.0.1",
    "http://localhost:8000/",
    "HTTP://LOCALHOST",
    "http://[::1]:8000",
]


@pytest.mark.parametrize("host", ALLOWED)
def test_https_and_loopback_http_are_allowed(host):
    assert destination.check_host(host) is None


@pytest.mark.parametrize("host", REFUSED[:6])
@pytest.mark.parametrize("where", ["environment", "user config"])
def test_a_refused_host_records_nothing_and_connects_nowhere(home, project, host, where):
    """An event goes where the settings said when it was recorded: to a refused host, nowhere,
    so it is not recorded at all (as without a usable key); `status` says why."""
    with ConnectionTrap() as trap:
        host = host.format(port=trap.url.rsplit(":", 1)[1])
        if where == "environment":
            env = clean_env(home, **trap.proxy_env(), VISIVO_POSTHOG_HOST=host)
        else:
            write_text(global_config(home), f"posthog_host: '{host}'\n")
            env = _env_without_host(home, trap)

        result, _ = run_host(host_code(), env, cwd=project)
        assert wait_for_senders(home) == []
        assert not spool_path(home).exists(), "an event that can go nowhere was recorded"
        flush(env)

        assert trap.connections == 0
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert spool_rows(home) == []
    info = status_json(env)
    assert info["destination_error"] and info["enabled"] is True
    assert "nothing is recorded or sent" in vt("status", env=env).stdout


def test_the_sender_never_connects_to_a_refused_host_a_spool_names(home, project):
    """A refused host in a row (an edited spool) or in the spool's state: dropped or refused,
    never contacted."""
    with ConnectionTrap() as trap:
        spool_commands(project, [("run", []), ("compile", [])])
        env = clean_env(home, **trap.proxy_env())
        conn = sqlite3.connect(spool_path(home))
        conn.execute("UPDATE events SET host = 'http://example.invalid'")
        conn.commit()
        conn.close()

        flush(env)

        assert trap.connections == 0
    assert spool_rows(home) == [] and spool_state(home)["dropped_invalid"] == "2"


def test_the_trap_would_see_a_connection(home, project):
    """The control for the tests above: an allowed https host is attempted, through the trap."""
    spool_commands(project, [("run", [])])
    with ConnectionTrap() as trap:
        env = clean_env(home, **trap.proxy_env(), VISIVO_POSTHOG_HOST="https://example.invalid")

        flush(env)

        assert trap.connections >= 1
    assert len(spool_rows(home)) == 1
