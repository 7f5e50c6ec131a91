"""Whether a config file's bytes could name a key, in any way YAML can spell it.

A file that cannot name our keys is never parsed (PyYAML costs every Visivo run 20 ms to
import), so this test may say "could" too often, never too rarely. YAML can spell a key
without its plain text in three ways, and nothing else changes what a scalar holds:
- an encoding other than UTF-8: UTF-16 or UTF-32, either byte order, with or without a byte
  order mark. Each puts NUL bytes between the ASCII letters of a key, so a file with a NUL is
  also read in each of them, and with its NULs dropped, for wide text that does not start
  where the file does (PyYAML reads only UTF-16 with a mark; the others are unreadable, and
  an unreadable file that names the key opts out);
- a double-quoted scalar's escapes: `\\x5f`, `\\u005F`, `\\U0000005f` for one character;
- a double-quoted scalar's escaped line break, which joins two lines with nothing between.
Anchors, aliases, merge keys (`<<`), tags and folding copy or keep text spelled in one of these
ways (folding a line break in a key inserts a space), so they need nothing more.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_WIDE_CODECS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
_BREAKS = (b"\n", b"\r")
_WIDE_BREAKS = tuple(brk.encode() for brk in "\x85\u2028\u2029")
"""The line breaks YAML knows: LF, CR, and beyond ASCII NEL, LS, PS (in UTF-8)."""
_ASCII_ESCAPES = (b"x", b"u00", b"U000000")
"""How a double-quoted scalar escapes an ASCII character: a backslash, one of these, then
two hex digits."""
_FOLLOWS = _BREAKS + _WIDE_BREAKS + _ASCII_ESCAPES
"""What may follow a backslash that escapes a break or a character of a key."""
_BYTES_PER_BACKSLASH = 64
"""Where backslashes are rarer than one in this many bytes, each is looked at; where more
common, the patterns of `_FOLLOWS` are searched for instead (a pass over the file each).
Either way a file costs at most about 5 µs per kilobyte."""


def could_name(data: bytes, keys: tuple[str, ...]) -> bool:
    """Whether `data`, in any encoding YAML allows, could spell one of `keys` (ASCII)."""
    if _spells(data, keys):
        return True
    if b"\x00" not in data:
        return False  # UTF-16 and UTF-32 write a NUL beside every ASCII character
    if any(_spells(data.decode(codec, "replace").encode(), keys) for codec in _WIDE_CODECS):
        return True
    return _spells(data.replace(b"\x00", b""), keys)  # wide text at an odd offset


def _spells(text: bytes, keys: tuple[str, ...]) -> bool:
    """Whether UTF-8 `text` holds one of `keys` plainly, or a backslash that escapes a line
    break or a character one of `keys` has."""
    if any(key.encode() in text for key in keys):
        return True
    at = text.find(b"\\")
    if at == -1:
        return False
    letters = frozenset("".join(keys))
    if text.count(b"\\", at) * _BYTES_PER_BACKSLASH > len(text):
        return any(_escapes_a_part(text, after, letters) for after in _searched(text))
    while at != -1:
        if text.startswith(_FOLLOWS, at + 1) and _escapes_a_part(text, at + 1, letters):
            return True
        at = text.find(b"\\", at + 1)
    return False


def _searched(text: bytes) -> Iterator[int]:
    """Where each `_FOLLOWS` that follows a backslash starts (beyond ASCII ones only where
    the text is not ASCII)."""
    follows = _BREAKS + _ASCII_ESCAPES + (() if text.isascii() else _WIDE_BREAKS)
    for start in follows:
        pattern = b"\\" + start
        at = text.find(pattern)
        while at != -1:
            yield at + 1
            at = text.find(pattern, at + 1)


def _escapes_a_part(text: bytes, at: int, letters: frozenset[str]) -> bool:
    """Whether the bytes at `at`, after a backslash, escape a line break (which joins two
    lines with nothing between) or one of `letters`."""
    if text.startswith(_BREAKS + _WIDE_BREAKS, at):
        return True
    for escape in _ASCII_ESCAPES:
        if text.startswith(escape, at):
            digits = text[at + len(escape) : at + len(escape) + 2]
            return _escaped(digits) in letters
    return False


def _escaped(digits: bytes) -> str:
    """The character two hex digits name, or "" when they are not two hex digits."""
    if len(digits) != 2 or not digits.isalnum():
        return ""
    try:
        return chr(int(digits, 16))
    except ValueError:
        return ""
