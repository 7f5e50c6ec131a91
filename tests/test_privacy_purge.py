"""Privacy notice: "an existing spool is deleted" on opt-out, and "the sender checks again before
every batch and deletes the spool instead of sending if you opted out after events were recorded."
"""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import (
    clean_env,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    wait_for_senders_to_exit,
)
from privacy_support import files_under, global_config, project_config, spool_commands, write_text

from visivo_telemetry._sender.run import drain_spool
from visivo_telemetry._sender.transport import HttpxTransport
from visivo_telemetry._spawn import sender_argv


def _spool_files(home) -> list[str]:
    return [name for name in files_under(home) if name.startswith(".visivo/telemetry.db")]


OPT_OUTS = {
    "env": ({"VISIVO_TELEMETRY_DISABLED": "yes"}, None, None),
    "do not track": ({"DO_NOT_TRACK": "1"}, None, None),
    "project": ({}, "defaults:\n  telemetry_enabled: false\n", None),
    "global": ({}, None, "telemetry_enabled: no\n"),
}


@pytest.mark.parametrize("extra_env, project_text, global_text", OPT_OUTS.values(), ids=OPT_OUTS)
def test_an_opted_out_host_deletes_the_existing_spool(
    home, project, extra_env, project_text, global_text
):
    spool_commands(project, [("run", ["--threads", "4"]), ("compile", [])])
    assert len(spool_rows(home)) == 2
    if project_text is not None:
        write_text(project_config(project), project_text)
    if global_text is not None:
        write_text(global_config(home), global_text)

    result, _ = run_host(host_code(), clean_env(home, **extra_env), cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert _spool_files(home) == []


@pytest.mark.parametrize(
    "opt_out",
    [{"VISIVO_TELEMETRY_DISABLED": "1"}, {"DO_NOT_TRACK": "true"}, "global config"],
    ids=["env", "do not track", "global config"],
)
def test_flush_deletes_instead_of_sending_after_an_opt_out(env, home, project, collector, opt_out):
    spool_commands(project, [("run", []), ("compile", []), ("serve", [])])
    if opt_out == "global config":
        write_text(global_config(home), "telemetry_enabled: false\n")
        opt_out = {}

    result = flush({**env, **opt_out})

    assert result.returncode == 0, result.stderr
    assert _spool_files(home) == []
    assert collector.events() == [] and collector.requests() == []


def test_a_detached_sender_deletes_instead_of_sending_after_an_opt_out(
    env, home, project, collector
):
    spool_commands(project, [("run", [])])

    subprocess.run(
        sender_argv(),
        env={**env, "VISIVO_TELEMETRY_DISABLED": "1"},
        cwd=project,
        timeout=60,
        check=True,
    )

    assert _spool_files(home) == []
    assert collector.requests() == []


def test_the_sender_rechecks_before_every_batch(env, home, project, collector):
    """An opt-out that arrives while the sender drains stops it at the next batch."""
    spool_commands(project, [("run", [])] * 250)
    drain_env = {"HOME": str(home), "VISIVO_POSTHOG_HOST": collector.url}

    def opt_out_after_first_batch(sent: int, failed: int) -> None:
        drain_env["VISIVO_TELEMETRY_DISABLED"] = "1"

    transport = HttpxTransport()
    try:
        outcome = drain_spool(
            str(spool_path(home)),
            transport,
            respect_backoff=False,
            progress=opt_out_after_first_batch,
            env=drain_env,
        )
    finally:
        transport.close()

    assert outcome.stopped_because == "opted-out"
    assert len(collector.events()) == outcome.sent < 250
    assert len(collector.requests()) == 1
    assert _spool_files(home) == []


def test_opting_out_after_a_send_failure_leaves_nothing_behind(home, project):
    """Events that waited for a dead receiver are deleted by the next opted-out run."""
    run_host(host_code(), clean_env(home), cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 1

    run_host(host_code(), clean_env(home, DO_NOT_TRACK="1"), cwd=project)

    assert _spool_files(home) == []
    assert not os.path.exists(spool_path(home))
