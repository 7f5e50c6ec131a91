"""`visivo-telemetry`: is it on, why, what would be sent, send it now, make it stop.

Off the hot path, so click is fine here. Reading commands never create the spool.
"""

from __future__ import annotations

import calendar
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from . import _destination as destination
from . import _events as events
from . import _failures as failures
from . import _precedence as precedence
from . import _spool as spool
from ._files import (
    ConfigWriteError,
    Paths,
    folder_refusal,
    is_plain_or_absent,
    paths,
    spool_refusal,
    write_flag,
)
from ._spawn import sender_alive
from ._tuning import SENDER_WAIT_S
from ._yaml_scan import ENABLED_KEY

KEY_SOURCES = {
    "env": "VISIVO_POSTHOG_API_KEY",
    "global": "~/.visivo/config.yml",
    "application": "the application",
    None: "nowhere",
}


def _paths() -> Paths:
    where = paths()
    if where is None:
        raise click.ClickException("no usable home directory (empty or not absolute)")
    return where


def _open_existing(db: str) -> sqlite3.Connection | None:
    """The spool if it exists (never created here); None when there is none, or when it is
    not the user's own (`spool_refusal`: never opened, so never written into)."""
    if spool_refusal(_paths(), repair=False) is not None:
        return None
    try:
        return spool.open_existing(db)
    except sqlite3.Error as error:
        raise click.ClickException(f"cannot open {db}: {error}") from None


def _read(db: str, query: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
    """`query` on the spool if it exists (never created here); `default` when there is none or
    it has no tables yet."""
    conn = _open_existing(db)
    if conn is None:
        return default
    try:
        return query(conn)
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return default
        raise click.ClickException(f"cannot read the spool: {error}") from None
    finally:
        conn.close()


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("day", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}"
    return f"{int(seconds)} s"


def _source(decision: precedence.Decision) -> str | None:
    if decision.decided_by.startswith("env:"):
        return decision.decided_by[4:]
    return decision.source_path


def _reason(decision: precedence.Decision) -> str:
    source = _source(decision)
    return {
        "default": "no opt-out found",
        "project": f"{source} opts out",
        "global": f"{source} opts out",
        "machine": f"{source} opts out, for every user of this machine (an administrator's file)",
        "no-home": "no usable home directory",
    }.get(decision.decided_by, f"{source} is set" if source else decision.decided_by)


def _destination(where: Paths) -> destination.Settings:
    """Where a sender started now would send: the user's choice, else the application's."""
    return destination.settings(None, *_read(where.db, spool.destination, (None, None)))


def _masked(api_key: str | None) -> str | None:
    """A project key is public, but a user's own may not be: enough of it to recognise."""
    return None if api_key is None else api_key[:8] + ("…" if len(api_key) > 8 else "")


def collect_status(project_dir: str) -> dict[str, Any]:
    """Everything `status` reports, as plain data (the `--json` output)."""
    decision = precedence.decide(project_dir)
    where = _paths()
    refused = spool_refusal(where, repair=False)
    exists = os.path.exists(where.db)
    (pending, oldest), state = _read(
        where.db, lambda conn: (spool.summary(conn), spool.all_state(conn)), ((0, None), {})
    )
    app_key, app_host = state.get(spool.APP_KEY_STATE), state.get(spool.APP_HOST_STATE)
    settings = destination.settings(None, app_key, app_host)
    oldest_epoch = _epoch(oldest)
    next_at = state.get(spool.NEXT_ATTEMPT_AT)
    return {
        "enabled": decision.enabled,
        "decided_by": decision.decided_by,
        "source": _source(decision),
        "reason": _reason(decision),
        "debug": settings.debug,
        "destination": settings.batch_url,
        "destination_error": settings.host_error,
        "api_key": _masked(settings.api_key),
        "api_key_source": settings.key_source,
        "api_key_error": settings.key_error,
        "config_path": where.config,
        "spool_path": where.db,
        "spool_exists": exists,
        "spool_refused": refused and refused.why,
        "spool_fix": refused and refused.fix,
        "pending": pending,
        "oldest_pending_at": oldest,
        "oldest_pending_age_s": None if oldest_epoch is None else time.time() - oldest_epoch,
        "last_success_at": state.get(spool.LAST_SUCCESS_AT),
        "next_attempt_at": spool.number(next_at) or None,
        "failures": int(spool.number(state.get(spool.FAILURES))),
        "last_error": state.get(spool.LAST_ERROR),
        "last_error_at": state.get(spool.LAST_ERROR_AT),
        "last_error_detail": state.get(spool.LAST_ERROR_DETAIL),
        "last_error_hint": failures.hint(state.get(spool.LAST_ERROR)),
        "dropped": spool.counters(state),
    }


def _when(iso: str | None) -> str:
    epoch = _epoch(iso)
    return "never" if epoch is None else f"{iso} ({_span(time.time() - epoch)} ago)"


def _next_attempt(info: dict[str, Any]) -> str:
    if not info["pending"]:
        return "nothing to send"
    at = info["next_attempt_at"]
    if at is None or at <= time.time():
        return "at the next Visivo command"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return f"{stamp} (in {_span(at - time.time())}, backing off)"


def _render_status(info: dict[str, Any]) -> str:
    pending = f"{info['pending']}"
    if info["oldest_pending_age_s"] is not None:
        pending += f" (oldest {_span(info['oldest_pending_age_s'])} old)"
    error = info["last_error"] or "none"
    if info["last_error"] and info["last_error_at"]:
        error += f" at {info['last_error_at']}"
    if info["last_error_hint"]:
        error += f"\n{'':14}{info['last_error_hint']}"
    if info["last_error_detail"]:
        error += f"\n{'':14}({info['last_error_detail']})"
    dropped = ", ".join(f"{k} {v}" for k, v in info["dropped"].items() if v) or "none"
    destination = info["destination"]
    if info["destination_error"]:
        destination += f" (refused: {info['destination_error']}): nothing is recorded or sent"
    if info["api_key_error"]:
        api_key = f"none usable ({info['api_key_error']}): nothing is recorded or sent"
    else:
        api_key = f"{info['api_key']} (from {KEY_SOURCES[info['api_key_source']]})"
    spool_path = info["spool_path"] + ("" if info["spool_exists"] else " (not created)")
    if info["spool_refused"]:
        spool_path += f" (refused: {info['spool_refused']}; nothing is recorded or sent)"
    rows = [
        ("telemetry", f"{'on' if info['enabled'] else 'off'} ({info['reason']})"),
        ("decided by", info["decided_by"]),
        ("debug mode", "on (events are printed, not sent)" if info["debug"] else "off"),
        ("sends to", destination),
        ("api key", api_key),
        ("spool", spool_path),
        *([("fix", info["spool_fix"])] if info["spool_fix"] else []),
        ("pending", pending),
        ("last sent", _when(info["last_success_at"])),
        ("next attempt", _next_attempt(info)),
        ("failures", f"{info['failures']} in a row" if info["failures"] else "0"),
        ("last error", error),
        ("dropped", dropped),
    ]
    return "\n".join(f"{label + ':':<14}{value}" for label, value in rows)


@click.group()
def main() -> None:
    """Inspect, deliver or stop Visivo's anonymous usage telemetry."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--project-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Project whose project.visivo.yml may opt out.",
)
def status(as_json: bool, project_dir: str) -> None:
    """Whether telemetry is on and why, and what waits in the spool."""
    info = collect_status(project_dir)
    click.echo(json.dumps(info, indent=2) if as_json else _render_status(info))


@main.command()
@click.option("--limit", type=click.IntRange(min=1), help="Show only the N newest.")
@click.option("--raw", is_flag=True, help="The exact bytes of each body, one per line.")
@click.option("--sent", is_flag=True, help="What was sent in the last 30 days, not what waits.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON.")
def show(limit: int | None, raw: bool, sent: bool, as_json: bool) -> None:
    """The pending events exactly as they would be sent (a PostHog batch body, newest last),
    or with --sent each request that was delivered, exactly as it was sent."""
    where = _paths()
    if sent:
        _show_sent(where, limit, raw, as_json)
        return
    pending, keys = _read(
        where.db, lambda conn: (spool.newest(conn, limit), spool.pending_keys(conn)), ([], set())
    )
    keys -= {None}
    valid = [(row, item) for row in pending if (item := events.wire_json(row)) is not None]
    key = next(iter(keys)) if len(keys) == 1 else _destination(where).api_key
    body = events.part_body(key if isinstance(key, str) else "", valid)
    click.echo(body.decode() if raw else json.dumps(json.loads(body), indent=2))
    if len(keys) > 1:
        click.echo(
            f"these events go to {len(keys)} projects, each batch with its own key", err=True
        )
    invalid = len(pending) - len(valid)
    if invalid:
        click.echo(f"{invalid} invalid events would be dropped, not sent", err=True)


def _loaded(body: str) -> Any:
    """A recorded body as JSON; as the text it is when it is not (a spool someone edited)."""
    try:
        return json.loads(body)
    except ValueError:
        return body


def _show_sent(where: Paths, limit: int | None, raw: bool, as_json: bool) -> None:
    """Each delivered request, oldest first: when, where, and its body byte for byte."""
    record = _read(where.db, lambda conn: spool.sent(conn, limit), [])
    if as_json:
        listed = [{"sent_at": at, "url": url, "body": _loaded(body)} for at, url, body in record]
        click.echo(json.dumps(listed, indent=2))
        return
    for sent_at, url, body in record:
        if raw:
            click.echo(body)
            continue
        loaded = _loaded(body)
        count = len(loaded.get("batch") or []) if isinstance(loaded, dict) else 0
        click.echo(f"# sent {sent_at} to {url}: {count} event{'' if count == 1 else 's'}")
        click.echo(json.dumps(loaded, indent=2))
    if not record and not raw:
        click.echo("nothing was sent in the last 30 days", err=True)


def _explainer() -> Callable[[str], None] | None:
    """In debug mode, `flush` names each event it drops, and why, on stderr."""
    if not destination.settings(None).debug:
        return None

    def explain(line: str) -> None:
        click.echo(f"visivo-telemetry: {line}", err=True)

    return explain


def _progress_line() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(sent: int, failed: int) -> None:
        click.echo(f"\rsending… {sent} sent, {failed} failed", err=True, nl=False)

    return show


@main.command()
def flush() -> None:
    """Send every pending event now, in the foreground, ignoring backoff."""
    from visivo_telemetry._sender.run import Stop, deliver
    from visivo_telemetry._sender.transport import describe

    where = _paths()
    refused = spool_refusal(where)
    if refused is not None:
        raise click.ClickException(f"{refused.why}: nothing sent; {refused.fix}")
    progress = _progress_line()
    _ask_sender_to_let_go(where)
    try:
        outcome = deliver(
            respect_backoff=False,
            lock_timeout=SENDER_WAIT_S,
            budget_s=600.0,
            progress=progress,
            explain=_explainer(),
            nudge=lambda: _ask_sender_to_let_go(where),
        )
    except Exception as error:  # one line, never a traceback; the events stay
        raise click.ClickException(
            f"could not deliver ({describe(error)}); the events stay in the spool for later"
        ) from None
    if progress is not None:
        click.echo("\r\033[K", err=True, nl=False)
    reason = outcome.stopped_because
    if reason is Stop.BUSY:
        raise click.ClickException("another sender is busy; try again in a moment")
    if reason is Stop.OPTED_OUT:
        click.echo("telemetry is off: nothing sent, the spool was deleted")
        return
    if reason is Stop.UNSAFE_LOCK:
        raise click.ClickException(
            f"{where.lock} is a link or not a file, so it is never opened: nothing sent; "
            "remove it and the events will go"
        )
    line = f"sent {outcome.sent} events, {outcome.failed} failed"
    if outcome.dropped:
        line += f", {outcome.dropped} dropped (too old, invalid or rejected)"
    click.echo(line)
    if reason is Stop.REFUSED_HOST:
        host = _destination(where).host
        raise click.ClickException(f"refusing to send to {host}: https required")
    if reason is Stop.NO_API_KEY:
        raise click.ClickException(
            "no PostHog API key (the application gives none and VISIVO_POSTHOG_API_KEY is "
            "unset): nothing sent; the events stay in the spool"
        )
    if outcome.failed:
        error = _read(where.db, lambda conn: spool.get_state(conn, spool.LAST_ERROR), None)
        explained = f"{error}: {failures.hint(error)}" if failures.hint(error) else error or reason
        raise click.ClickException(
            f"could not deliver ({explained}); the events stay in the spool for later"
        )


def _ask_sender_to_let_go(where: Paths) -> None:
    """A sender that lingers for more events holds the lock for up to `LINGER_S`: ask it to
    let go now, so `flush` and `purge` need not wait (only in a spool of the user's own)."""
    from visivo_telemetry._sender.run import ask_to_let_go

    if spool_refusal(where, repair=False) is not None or not is_plain_or_absent(where.lock):
        return
    if sender_alive(where.lock):
        ask_to_let_go(where.db, where.lock)


def _sender_lock(where: Paths) -> Any:
    """Wait for a running sender to finish, so it cannot send what we are about to delete."""
    from filelock import FileLock, Timeout

    from visivo_telemetry._sender.run import acquire

    if folder_refusal(where.home, repair=False) is not None or not os.path.isdir(where.home):
        return None  # a folder not the user's own: nothing of ours there, nothing to wait for
    if not is_plain_or_absent(where.lock):
        return None  # a lock that is a link or a folder is never opened; no sender can hold it
    _ask_sender_to_let_go(where)
    lock = FileLock(where.lock, timeout=SENDER_WAIT_S, mode=0o600)
    try:
        acquire(lock, SENDER_WAIT_S, nudge=lambda: _ask_sender_to_let_go(where))
    except (Timeout, OSError):
        return None
    return lock


def purge_spool(where: Paths) -> int:
    """Delete the spool (and any copy set aside as corrupt); how many events it held."""
    lock = _sender_lock(where)
    try:
        return _purge_locked(where)
    finally:
        if lock is not None:
            lock.release()


def _purge_locked(where: Paths) -> int:
    refused = folder_refusal(where.home, repair=False)
    if refused is not None:  # never delete through a link to, or in, another user's folder
        raise click.ClickException(f"{refused.why}: nothing deleted there; {refused.fix}")
    try:
        count, _ = _read(where.db, spool.summary, (0, None))
    except click.ClickException:
        count = 0
    spool.purge(where.db)  # copies set aside as corrupt too
    if os.path.exists(where.db):
        raise click.ClickException(f"cannot delete {where.db}")
    return count


@main.command()
def purge() -> None:
    """Delete every pending event."""
    count = purge_spool(_paths())
    click.echo(f"deleted {count} pending event{'' if count == 1 else 's'}")


def _set_enabled(value: bool) -> Paths:
    where = _paths()
    try:
        write_flag(where.config, ENABLED_KEY, value)
    except ConfigWriteError as error:
        raise click.ClickException(str(error)) from None
    return where


@main.command()
def disable() -> None:
    """Turn telemetry off for this user and delete what waits in the spool."""
    where = _set_enabled(False)
    count = purge_spool(where)
    click.echo(f"telemetry disabled in {where.config}; deleted {count} pending events")


@main.command()
def enable() -> None:
    """Turn telemetry back on for this user (the environment and projects may still opt out)."""
    where = _set_enabled(True)
    click.echo(f"telemetry enabled in {where.config}")
    decision = precedence.decide(".")
    if not decision.enabled:
        click.echo(f"note: still off here because {_reason(decision)}", err=True)


if __name__ == "__main__":
    main()
