"""Constants that depend on one another live in `visivo_telemetry/_tuning.py`, whose relations
are checked when it is imported: a value that breaks one fails at once, never on a user's
machine (a sender outliving `flush`'s wait, a lease that lapses while its sender lives)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import ROOT

from visivo_telemetry import _spool, _tuning, cli
from visivo_telemetry._sender import drain, run

TUNED = {
    name: value
    for name, value in vars(_tuning).items()
    if name.isupper() and type(value) in (int, float)
}


def _broken(smaller: str, sign: str, larger: str) -> dict[str, object]:
    """The shipped values with `smaller` raised just past what the relation allows."""
    over = TUNED[larger] if sign == "<" else TUNED[larger] + 1
    return {**TUNED, smaller: over}


def test_the_shipped_values_keep_every_relation():
    _tuning.check(TUNED)


@pytest.mark.parametrize("relation", _tuning.RELATIONS, ids=lambda r: f"{r[0]}{r[1]}{r[2]}")
def test_a_value_that_breaks_a_relation_is_refused(relation):
    smaller, sign, larger, why = relation

    expected = f"{smaller} = .* must be {sign} {larger} = .*: {re.escape(why)}"
    with pytest.raises(ValueError, match=expected):
        _tuning.check(_broken(smaller, sign, larger))


@pytest.mark.parametrize("name", sorted(TUNED))
def test_every_tuned_value_must_be_positive(name):
    with pytest.raises(ValueError, match=f"{name} = 0 must be positive"):
        _tuning.check({**TUNED, name: 0})


def test_a_broken_value_fails_the_import_itself():
    source = Path(_tuning.__file__).read_text()
    assert "\nLEASE_S = 120.0\n" in source
    broken = source.replace("\nLEASE_S = 120.0\n", "\nLEASE_S = 20.0\n")

    with pytest.raises(ValueError, match="LIFETIME_S = 30 must be < LEASE_S = 20.0"):
        exec(compile(broken, _tuning.__file__, "exec"), {"__name__": "_tuning_broken"})


@pytest.mark.parametrize(
    "module, name",
    [
        (run, "LIFETIME_S"),
        (run, "DRAIN_BUDGET_S"),
        (run, "LINGER_S"),
        (run, "POLL_S"),
        (run, "IDLE_POLL_S"),
        (run, "BRISK_S"),
        (run, "HANDOFF_S"),
        (run, "RING_WAIT_S"),
        (drain, "BATCH_SIZE"),
        (drain, "LEASE_S"),
        (cli, "SENDER_WAIT_S"),
        (_spool, "SPAWN_GRACE_S"),
        (_spool, "LONGEST_WAIT_S"),
        (drain, "BACKOFF_MAX_S"),
    ],
)
def test_each_module_uses_the_tuned_value(module, name):
    """Imported from `_tuning`, never defined again (`run.LIFETIME_S` still works)."""
    body = ast.parse(Path(module.__file__).read_text()).body
    imported = [
        node
        for node in body
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").endswith("_tuning")
        and name in [alias.name for alias in node.names]
    ]
    assigned = [
        target
        for node in body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if getattr(target, "id", None) == name
    ]

    assert imported and not assigned
    assert getattr(module, name) is TUNED[name]


def test_no_other_module_keeps_a_copy_of_a_tuned_value():
    """The host's launcher, pipeline, request counter and integrations read `_tuning` too."""
    sources = [*(ROOT / "visivo_telemetry").rglob("*.py"), *(ROOT / "sender").glob("*.py")]
    copies = []
    for path in sources:
        if path.name == "_tuning.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            targets += [node.target] if isinstance(node, ast.AnnAssign) else []
            copies += [f"{path.name}: {t.id}" for t in targets if getattr(t, "id", "") in TUNED]
    assert copies == []


@pytest.mark.parametrize(
    "document, phrase",
    [
        ("README.md", f"in one {_tuning.WINDOW_S:g} s window"),
        ("README.md", f"a hard {_tuning.LIFETIME_S} s lifetime"),
        ("README.md", f"batches of {_tuning.BATCH_SIZE}"),
        ("docs/design.md", f"in the last {_tuning.SPAWN_GRACE_S:g} s"),
        ("docs/design.md", f"waits {_tuning.LINGER_S:g} s for more events"),
        ("docs/design.md", f"stopping {_tuning.HANDOFF_S:g} s before its end"),
        ("docs/design.md", f"it looks every {_tuning.POLL_S * 1000:g} ms while"),
        ("docs/design.md", f"then every {_tuning.IDLE_POLL_S * 1000:g} ms"),
        ("docs/design.md", f"by itself every {_tuning.RING_WAIT_S:g} s"),
        ("docs/design.md", f"after {_tuning.DRAIN_BUDGET_S:g} s of work"),
        ("docs/design.md", f"`SIGALRM` at {_tuning.LIFETIME_S} s"),
        ("docs/design.md", f"its {_tuning.WINDOW_GRACE_S:g} s grace"),
    ],
)
def test_the_documents_state_the_tuned_values(document, phrase):
    text = " ".join((ROOT / document).read_text().split())
    assert phrase in text
