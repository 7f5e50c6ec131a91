"""`visivo-telemetry`: the user's view of telemetry. Off the hot path, so click is fine here."""

from __future__ import annotations

import sys

import click


@click.group()
def main() -> None:
    """Inspect, deliver or stop Visivo's anonymous usage telemetry."""


@main.command()
def flush() -> None:
    """Send every pending event now, ignoring backoff."""
    from sender.run import deliver

    outcome = deliver(respect_backoff=False, lock_timeout=35.0, budget_s=600.0)
    if outcome is None:
        click.echo("another sender is busy; try again in a moment", err=True)
        sys.exit(1)
    click.echo(f"sent {outcome.sent} events, {outcome.failed} failed ({outcome.stopped_because})")
    if outcome.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
