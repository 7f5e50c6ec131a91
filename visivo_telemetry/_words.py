"""What a yes/no word means: one reading for every source, and the few ways sources differ.

A word is read the same way wherever it comes from: stripped, in any case, YAML 1.1's booleans
as users write them (`no`, `off`) plus `y`/`n`. Only the words that mean "no" differ per source,
as the README documents them; `FALSE_WORDS` states those differences, and nothing else does.
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
"""Yes, for every source."""

FALSE_WORDS = {
    "file": frozenset({"", "0", "false", "no", "off", "n"}),
    "VISIVO_TELEMETRY_DISABLED": frozenset({"0", "false", "no", "off", "n"}),
    "DO_NOT_TRACK": frozenset({"0", "false"}),
    "CI": frozenset({"", "0", "false"}),
}
"""No, per source. `DO_NOT_TRACK` and `CI` take only `0` and `false`, their conventions. Blank
is no in a file and for `CI`, but unclear for an opt-out variable, so there it opts out."""


def word(value: object, source: str = "file") -> bool | None:
    """True, False, or None when `value` is neither, as `source` (a `FALSE_WORDS` key) reads it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS[source]:
            return False
    return None


def is_true(value: object) -> bool:
    """A file's yes (`telemetry_enabled`, `telemetry_debug`): only a true word; anything else,
    unclear included, is no, so a file keeps telemetry on only when it plainly says so."""
    return word(value) is True


def is_set(value: str | None, name: str) -> bool:
    """Whether environment switch `name` is set: not empty, and not a word it reads as no."""
    return bool(value) and word(value, name) is not False
