"""Fixtures: a temp HOME per test, a real receiver, and a check that no sender is left behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    DEAD_RECEIVER,
    LINGER_KNOB,
    SHORT_LINGER,
    Collector,
    clean_env,
    sender_pids,
    wait_for_senders_to_exit,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME, used by in-process code too; fails the test if a sender outlives it."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for name in ("VISIVO_TELEMETRY_DISABLED", "DO_NOT_TRACK", "VISIVO_TELEMETRY_DEBUG", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VISIVO_POSTHOG_HOST", DEAD_RECEIVER)
    monkeypatch.setenv(LINGER_KNOB, SHORT_LINGER)  # senders that in-process hosts start
    yield path
    leftover = wait_for_senders_to_exit(path)
    for pid in sender_pids(path):
        os.kill(pid, signal.SIGKILL)
    assert not leftover, f"sender processes outlived the test: {leftover}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder to run hosts in."""
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A real PostHog-compatible receiver on 127.0.0.1."""
    with Collector(tmp_path / "received.db") as running:
        yield running


@pytest.fixture
def env(home: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for host processes: temp HOME, events go to the test's receiver."""
    monkeypatch.setenv("VISIVO_POSTHOG_HOST", collector.url)
    return clean_env(home, VISIVO_POSTHOG_HOST=collector.url)
