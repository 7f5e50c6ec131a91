"""Turn argv and URL paths into shapes that carry no user data.

Only flag *names* survive; every value, whatever it looks like, becomes a placeholder. Plain
string work rather than regexes: this runs in every CLI process, where compiling patterns at
import would cost more than the sanitizing itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .schema import MAX_ARGS, MAX_ENDPOINT

REDACTED = "<redacted>"
PATH = "<path>"
VALUE = "<value>"

SENSITIVE_WORDS = (
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "key",
    "auth",
    "credential",
    "cred",
    "cookie",
    "private",
    "cert",
    "signature",
    "bearer",
    "session",
    "dsn",
)

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_FLAG_NAME = 48


def is_sensitive_flag(name: str) -> bool:
    """A flag whose value is a secret by its name (matched by substring, any case)."""
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def _is_long_flag_name(name: str) -> bool:
    """`--` followed by a plausible option name: letters, digits, `-`, `_`."""
    body = name[2:]
    return (
        0 < len(body) <= _MAX_FLAG_NAME
        and body[0] in _ALNUM
        and all(c in _NAME_CHARS for c in body)
    )


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _looks_like_path(value: str) -> bool:
    if value.startswith(("/", "~", "./", "../", ".\\", "..\\", "\\\\")):
        return True
    if "/" in value or "\\" in value or os.sep in value:
        return True
    if len(value) >= 2 and value[1] == ":" and value[0] in _LETTERS:
        return True
    if value in (".", ".."):
        return True
    try:
        return os.path.lexists(value)
    except (ValueError, OSError):
        return False


def placeholder(value: str, sensitive: bool = False) -> str:
    """The placeholder that stands for `value`: `<redacted>`, `<path>` or `<value>`."""
    if sensitive:
        return REDACTED
    if "://" in value or "@" in value:
        return VALUE
    return PATH if _looks_like_path(value) else VALUE


def _as_text(token: object) -> str | None:
    if isinstance(token, str):
        return token
    if isinstance(token, bytes):
        return token.decode("utf-8", "surrogateescape")
    return None


def _sanitize_short(token: str) -> str:
    """`-v`, `-vvv` stay; `-fvalue`, `-Dkey=value`, `-t=x` keep only the letter."""
    letter, rest = token[1], token[2:]
    if letter not in _LETTERS:
        return VALUE
    if not rest or rest == letter * len(rest):
        return token
    attached = rest[1:] if rest.startswith("=") else rest
    return f"-{letter}{placeholder(attached)}"


def sanitize_args(args: Iterable[object]) -> list[str]:
    """Keep flag names, replace every value by a placeholder; never raises.

    A token after a sensitive flag becomes `<redacted>` whether it was the flag's value or a
    positional argument: without the command's definition we cannot tell, so we assume secret.
    """
    out: list[str] = []
    positional_only = False
    secret_next = False
    try:
        tokens = list(args)
    except Exception:
        return out
    for raw in tokens[:MAX_ARGS]:
        token = _as_text(raw)
        if token is None:
            out.append(PATH if isinstance(raw, os.PathLike) else VALUE)
            secret_next = False
            continue
        if positional_only or not token.startswith("-") or token == "-" or _is_number(token):
            out.append(placeholder(token, secret_next))
            secret_next = False
        elif token == "--":
            out.append(token)
            positional_only = True
            secret_next = False
        elif token.startswith("--"):
            name, has_value, value = token.partition("=")
            if not _is_long_flag_name(name):
                out.append(placeholder(token, secret_next))
                secret_next = False
                continue
            sensitive = is_sensitive_flag(name)
            if has_value:
                out.append(f"{name}={placeholder(value, sensitive)}")
                secret_next = False
            else:
                out.append(name)
                secret_next = sensitive
        else:
            out.append(_sanitize_short(token))
            secret_next = False
    return out


def _segment_placeholder(segment: str) -> str | None:
    """The placeholder for an identifier-like path segment, or None for a route word.

    Whole-segment tests only, most specific first, so a hash that starts with digits is
    never half-replaced.
    """
    if not segment:
        return None
    if all(c in _DIGITS for c in segment):
        return "{id}"
    if (
        len(segment) == 36
        and segment.count("-") == 4
        and all(c in _HEX for c in segment.replace("-", ""))
    ):
        return "{uuid}"
    has_digit = any(c in _DIGITS for c in segment)
    if len(segment) >= 8 and has_digit and all(c in _HEX for c in segment):
        return "{hash}"
    if any(c not in _NAME_CHARS for c in segment):
        return "{value}"
    if has_digit and len(segment) >= 8:
        return "{id}"
    if len(segment) >= 20 and any(c.isupper() for c in segment):
        return "{token}"
    return None


def sanitize_endpoint(path: str, known_segments: Sequence[str] | None = None) -> str:
    """URL path with ids replaced by placeholders and no query string or fragment.

    `known_segments` (e.g. the static words of an app's routes) makes it strict: any other
    segment is replaced, so an unmatched path cannot carry a name. Never raises.
    """
    try:
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not isinstance(path, str):
            return "/"
        for mark in ("?", "#"):
            path = path.split(mark, 1)[0]
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        known = frozenset(known_segments) if known_segments is not None else None
        segments = []
        for segment in path.split("/"):
            replaced = _segment_placeholder(segment)
            if replaced is None and known is not None and segment and segment not in known:
                replaced = "{value}"
            segments.append(replaced or segment)
        result = "/".join(segments)
        if not result.startswith("/"):
            result = "/" + result
        if len(result) > MAX_ENDPOINT:
            result = result[: MAX_ENDPOINT - 3] + "..."
        return result
    except Exception:
        return "/"
