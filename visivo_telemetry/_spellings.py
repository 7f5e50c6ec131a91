"""Whether a config file's bytes could name a key, in any way YAML can spell it.

A file that cannot name our keys is never parsed (PyYAML costs every Visivo run 20 ms to
import), so this test may say "could" too often, never too rarely. YAML can spell a key
without its plain text in three ways, and nothing else changes what a scalar holds:
- an encoding other than UTF-8: UTF-16 or UTF-32, either byte order, with or without a byte
  order mark. Each puts NUL bytes between the ASCII letters of a key, so a file with a NUL is
  also read in each of them (PyYAML reads only UTF-16 with a mark; the others are unreadable,
  and an unreadable file that names the key opts out);
- a double-quoted scalar's escapes: `\\x5f`, `\\u005F`, `\\U0000005f` for one character;
- a double-quoted scalar's escaped line break, which joins two lines with nothing between.
Anchors, aliases, merge keys (`<<`), tags and folding copy or keep text spelled in one of these
ways (folding a line break in a key inserts a space), so they need nothing more.
"""

from __future__ import annotations

_WIDE_CODECS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
_ESCAPED_BREAKS = tuple(("\\" + brk).encode() for brk in "\r\n\x85\u2028\u2029")
"""A backslash before any line break YAML knows (CR, LF, NEL, LS, PS), in UTF-8."""
_HEX_WIDTHS = {ord("x"): 2, ord("u"): 4, ord("U"): 8}


def could_name(data: bytes, keys: tuple[str, ...]) -> bool:
    """Whether `data`, in any encoding YAML allows, could spell one of `keys` (ASCII)."""
    if _spells(data, keys):
        return True
    if b"\x00" not in data:
        return False  # UTF-16 and UTF-32 write a NUL beside every ASCII character
    return any(_spells(data.decode(codec, "replace").encode(), keys) for codec in _WIDE_CODECS)


def _spells(text: bytes, keys: tuple[str, ...]) -> bool:
    """Whether UTF-8 `text` holds one of `keys` plainly, an escaped line break, or a `\\x`,
    `\\u` or `\\U` escape of a character one of `keys` has."""
    if any(key.encode() in text for key in keys):
        return True
    at = text.find(b"\\")
    if at == -1:
        return False
    if any(brk in text for brk in _ESCAPED_BREAKS):
        return True
    letters = frozenset("".join(keys))
    while at != -1:
        width = _HEX_WIDTHS.get(text[at + 1]) if at + 1 < len(text) else None
        if width and _escaped(text[at + 2 : at + 2 + width], width) in letters:
            return True
        at = text.find(b"\\", at + 1)
    return False


def _escaped(digits: bytes, width: int) -> str:
    """The character `width` hex digits name, or "" when they do not name one."""
    if len(digits) != width:
        return ""
    try:
        return chr(int(digits, 16))
    except ValueError:
        return ""
