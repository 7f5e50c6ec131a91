"""Turn argv and URL paths into shapes that carry no user data.

Only flag *names* survive; every value, whatever it looks like, becomes a placeholder. Plain
string work rather than regexes: this runs in every CLI process, where compiling patterns at
import would cost more than the sanitizing itself. What the output may look like is defined in
`schema` (`is_clean_arg`, `is_clean_endpoint`), which the sender checks again.
"""

from __future__ import annotations

import os

from ._schema import (
    DIGITS,
    ENDPOINT_PLACEHOLDERS,
    LETTERS,
    MAX_ARGS,
    MAX_ENDPOINT,
    NAME_CHARS,
    PATH,
    REDACTED,
    ROUTE_WORD_CHARS,
    VALUE,
    is_flag_name,
    is_option_name,
    is_short_cluster,
    is_uuid,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

SENSITIVE_WORDS = (
    "token",
    "pass",
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
    "salt",
    "nonce",
    "jwt",
)
"""A flag whose name contains one of these (any case) has its value `<redacted>`."""

_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_STAT = 4096


def is_sensitive_flag(name: str) -> bool:
    """A flag whose value is a secret by its name (matched by substring, any case)."""
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def is_number(token: str) -> bool:
    """`-4`, `1e3`, `-.5`: a value even when it starts with a dash."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _names_existing_file(value: str) -> bool:
    if not value or len(value) > _MAX_STAT:
        return False
    try:
        return os.path.lexists(value)
    except (ValueError, OSError):
        return False


def _looks_like_path(value: str) -> bool:
    if value.startswith("~") or value in (".", "..") or "/" in value or "\\" in value:
        return True
    if len(value) >= 2 and value[1] == ":" and value[0] in LETTERS:
        return True
    return _names_existing_file(value)


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


def _short_option(token: str) -> str:
    """`-v`, `-vvv` stay; `-fvalue`, `-Dkey=value`, `-t=x` keep only the letter."""
    if is_short_cluster(token):
        return token
    letter, attached = token[1], token[2:]
    if letter not in LETTERS:
        return placeholder(token)
    if attached.startswith("="):
        attached = attached[1:]
    return f"-{letter}{placeholder(attached)}"


def _long_option(token: str) -> tuple[str, bool]:
    """`--name` or `--name=<placeholder>`; also whether the next token is the name's secret."""
    name, has_value, value = token.partition("=")
    if not is_flag_name(name):
        return placeholder(token), False
    sensitive = is_sensitive_flag(name)
    if has_value:
        return f"{name}={placeholder(value, sensitive)}", False
    return name, sensitive


class DeclaredOption(str):
    """A token the host's own parser (click) knows is one of its option names, possibly with
    `=value`: kept as typed (`-df`), which from the string alone could be `-d` and a value."""

    sensitive: bool = False

    def __new__(cls, text: str, sensitive: bool = False) -> DeclaredOption:
        token = super().__new__(cls, text)
        token.sensitive = sensitive
        return token


class _ArgvReader:
    """Reads argv left to right, remembering `--` and whether a secret is due next."""

    def __init__(self) -> None:
        self.positional_only = False
        self.secret_next = False

    def read(self, raw: object) -> str:
        """The sanitized form of the next token."""
        secret, self.secret_next = self.secret_next, False
        token = _as_text(raw)
        if token is None:
            return REDACTED if secret else PATH if isinstance(raw, os.PathLike) else VALUE
        if self.positional_only:
            return placeholder(token)
        if isinstance(raw, DeclaredOption) and is_option_name(token.partition("=")[0]):
            return self._declared(token, raw.sensitive)  # the command's definition knows
        if secret:
            # The value of a sensitive flag, whatever it looks like: `--api-key --abc`,
            # `--password -x` and `--token --` redact the next token.
            return REDACTED
        if token == "--":
            self.positional_only = True
            return token
        if token.startswith("--"):
            out, self.secret_next = _long_option(token)
            return out
        if not token.startswith("-") or len(token) == 1 or is_number(token):
            return placeholder(token)
        return _short_option(token)

    def _declared(self, token: str, sensitive: bool) -> str:
        name, has_value, value = token.partition("=")
        if has_value:
            return f"{name}={placeholder(value, sensitive or is_sensitive_flag(name))}"
        self.secret_next = sensitive or is_sensitive_flag(name)
        return name


def sanitize_args(args: Iterable[object]) -> list[str]:
    """Keep flag names, replace every value by a placeholder; never raises.

    One token out per token in (at most `MAX_ARGS`). The token after a sensitive flag
    (`--api-key`, no `=`) is `<redacted>` whatever it looks like, even `--abc`, `-x` or `--`:
    without the command's definition we cannot tell a value from the next flag, so we assume
    it is the secret.
    """
    out: list[str] = []
    if isinstance(args, (str, bytes)):
        args = [args]
    reader = _ArgvReader()
    try:
        for raw in args:
            if len(out) >= MAX_ARGS:
                break
            out.append(reader.read(raw))
    except Exception:
        pass
    return out


# The fixed words of Visivo 2.2.1's API routes: every `@app.route("/api/…")` in
# visivo/server/views/*.py of the visivo-2.2.1 wheel on PyPI (tests/visivo_2_2_1_api_routes.txt).
VISIVO_ROUTE_WORDS = frozenset(
    """
    actions agent api auth authorize-device-token branches callback cancel capabilities changes
    charts cloud commit consume-return-to create dashboards defaults delete deploy diff dimensions
    discard draft error explorations explorer expressions files finalize hash histogram impact init
    input-jobs inputs insight-compile-draft insight-execute-draft insight-jobs insights invalidate
    job load_example logs markdowns mcp me metrics model-jobs model-query-jobs model-schemas models
    named_children pending preferences profile profiles project project_file_path project_history
    projects record-promotion relations rename restore run runs schema source source-connections
    source-schema-jobs sources stages status tables telemetry theme translate upload validate
    workspace-event
    """.split()  # noqa: SIM905 (a list of 80 quoted words would be 80 lines)
)
"""The words a raw or unmatched path keeps without the host naming them."""

_MAX_ROUTE_WORD = 64


def _is_route_word(segment: str) -> bool:
    """Shaped like a fixed word of a route: letters, digits, `.`, `-`, `_`."""
    return 0 < len(segment) <= _MAX_ROUTE_WORD and ROUTE_WORD_CHARS.issuperset(segment)


def _is_hex_hash(segment: str, has_digit: bool) -> bool:
    """Hex of 8+ chars with a digit, or 12+ without (no English word is that long in hex)."""
    long_enough = len(segment) >= 12 or (len(segment) >= 8 and has_digit)
    return long_enough and all(c in _HEX for c in segment)


def _is_token(segment: str) -> bool:
    """base64/ULID-looking: long and mixed-case, or very long without separators."""
    if len(segment) >= 32:
        return True
    return len(segment) >= 12 and segment.lower() != segment and segment.upper() != segment


def _segment_placeholder(segment: str) -> str:
    """The placeholder for a path segment that is not a route word.

    Whole-segment tests only, most specific first, so a hash that starts with digits is
    never half-replaced; whatever is not identifier-like (a name, `deadbeef`, `{x}`) is `{value}`.
    """
    if segment in ENDPOINT_PLACEHOLDERS:
        return segment
    if all(c in DIGITS for c in segment):
        return "{id}"
    if is_uuid(segment.lower()):  # a URL may spell a uuid in capitals
        return "{uuid}"
    has_digit = any(c in DIGITS for c in segment)
    if _is_hex_hash(segment, has_digit):
        return "{hash}"
    if any(c not in NAME_CHARS for c in segment):
        return "{value}"
    if has_digit and len(segment) >= 8:
        return "{id}"
    return "{token}" if _is_token(segment) else "{value}"


def _path_only(path: str) -> str:
    for mark in ("?", "#"):
        path = path.split(mark, 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path


def _fit(segments: list[str], more: bool) -> str:
    """The segments joined behind a leading `/`; when that is over the cap (or `more` were
    left unread), as many whole segments as fit, then `/...`. One pass over what fits."""
    if len(segments) < 2 or segments[0]:
        segments = ["", *segments]  # "" and "a/b" become "/" and "/a/b"
    if not more and sum(map(len, segments)) + len(segments) - 1 <= MAX_ENDPOINT:
        return "/".join(segments)
    kept, length = 0, -1  # the first segment has no `/` before it
    for segment in segments:
        if length + 1 + len(segment) + len("/...") > MAX_ENDPOINT:
            break
        length += 1 + len(segment)
        kept += 1
    return "/".join(segments[:kept]) + "/..."


def _vocabulary(known_segments: Iterable[str] | None) -> Collection[str]:
    if known_segments is None:
        return ()
    if isinstance(known_segments, str):
        return (known_segments,)
    if isinstance(known_segments, (set, frozenset)):
        return known_segments
    return frozenset(known_segments)


def _kept_or_placeholder(segment: str, known: Collection[str]) -> str:
    if not segment:
        return segment  # before a leading `/`, after a trailing one, between `//`
    if (segment in VISIVO_ROUTE_WORDS or segment in known) and _is_route_word(segment):
        return segment
    return _segment_placeholder(segment)


def sanitize_endpoint(path: str, known_segments: Iterable[str] | None = None) -> str:
    """URL path with every segment a route word or a placeholder; no query string or fragment.

    A segment is kept only when it is one of Visivo's API route words (`VISIVO_ROUTE_WORDS`) or
    one the host names in `known_segments` (the static words of its routes). Any other
    segment becomes `{id}`, `{uuid}`, `{hash}`, `{token}` or `{value}`: names, slugs, short
    letter-only hex (`deadbeef`) and any `{…}` or `<…>` from the path itself (a decoded URL can
    spell one from user text) are never kept. Never raises.
    """
    try:
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not isinstance(path, str):
            return "/"
        known = _vocabulary(known_segments)
        # Each segment takes at least its `/`: past the cap's count the rest can never be
        # shown, so it is neither split nor read (a 128 KB path costs what its head costs).
        parts = _path_only(path).split("/", MAX_ENDPOINT + 1)
        more = len(parts) > MAX_ENDPOINT + 1
        if more:
            del parts[-1]
        return _fit([_kept_or_placeholder(s, known) for s in parts], more)
    except Exception:
        return "/"
