"""Decide whether telemetry is on, and where events go.

Precedence (first opt-out wins): environment, the project's `project.visivo.yml`, the user's
`~/.visivo/config.yml`, then on. Only an opt-out decides: nothing found lower in the list can
be overridden by a "true" higher up, so a cloned repository cannot turn telemetry back on.
An unclear or unreadable answer where the user wrote about telemetry counts as "off".

The destination (PostHog project key and host) is the application's, given in code; the user
may override it in the environment or `~/.visivo/config.yml`, a project file never can. The
library ships no key: capture answers 200 to any well-formed key, so a wrong default would
lose every event with a success.
"""

from __future__ import annotations

import os
import stat

from ._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROJECT_FILE = "project.visivo.yml"
DEFAULT_HOST = "https://us.i.posthog.com"
"""Where a key goes when nobody names a host: PostHog's US cloud, as posthog-python does."""

INGESTION_HOSTS = {
    "https://app.posthog.com": "https://us.i.posthog.com",
    "https://us.posthog.com": "https://us.i.posthog.com",
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}
"""PostHog's app hosts do not ingest events; posthog-python maps them to these."""

MAX_API_KEY = 64
PERSONAL_KEY_PREFIX = "phx_"

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "n"})

ENABLED_KEY = "telemetry_enabled"
USER_SETTING_KEYS = ("posthog_host", "posthog_api_key", "telemetry_debug")


class Paths(Record):
    """Where telemetry keeps its files (str each): home, db, lock, config; all in `~/.visivo`."""

    _fields = ("home", "db", "lock", "config")


class Decision(Record):
    """Whether telemetry is on (`enabled`), which source decided it, and that source's file."""

    _fields = ("enabled", "decided_by", "source_path")
    _defaults = (None,)


class Settings(Record):
    """Where events go and how: the user's choice, else the application's.

    `host_error` / `key_error` say why nothing may be sent (None when it may); `key_source`
    names who gave the key (`env`, `global`, `application`, or None when nobody did).
    """

    _fields = ("host", "api_key", "debug", "host_error", "key_error", "key_source")
    _defaults = (None, None)

    @property
    def batch_url(self) -> str:
        return self.host.rstrip("/") + "/batch/"


def paths(env: dict[str, str] | os._Environ[str] | None = None) -> Paths | None:
    """The files under `~/.visivo`, or None when there is no usable absolute home."""
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    if not home or not os.path.isabs(home):
        return None
    base = os.path.join(home, ".visivo")
    return Paths(
        base,
        os.path.join(base, "telemetry.db"),
        os.path.join(base, "telemetry.lock"),
        os.path.join(base, "config.yml"),
    )


def word(value: object) -> bool | None:
    """YAML 1.1 / env-var truth value: True, False, or None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
    return None


def is_set(value: str | None) -> bool:
    """A switch like `DO_NOT_TRACK` or `CI`: set to anything but empty, `0` or `false`."""
    return value is not None and value.strip().lower() not in ("", "0", "false")


class Unreadable(Exception):
    """A config file that mentions telemetry but cannot be read as a YAML mapping."""


_MAX_CONFIG_BYTES = 1 << 20
_MAX_YAML_CONTAINERS = 100_000
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _read_regular(path: str) -> bytes | None:
    """A regular file of at most 1 MiB; None when absent. Never blocks on a FIFO or device.

    A larger file cannot be read entirely, so it is unclear (`Unreadable`): off."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Unreadable(path) from error
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable(path)
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_CONFIG_BYTES:
            chunk = os.read(fd, _MAX_CONFIG_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size >= _MAX_CONFIG_BYTES and os.read(fd, 1):
            raise Unreadable(path)  # not read entirely: a late opt-out would be missed
        return b"".join(chunks)
    except OSError as error:
        raise Unreadable(path) from error
    finally:
        os.close(fd)


def _mentioning(path: str, keys: tuple[str, ...]) -> bytes | None:
    """The bytes of `path`, or None when it is absent or mentions none of `keys`.

    The substring test spares every Visivo run the 20 ms PyYAML import: project files that say
    nothing about telemetry are never parsed (UTF-16 files, which the test cannot see into,
    always are).
    """
    data = _read_regular(path)
    if data is None:
        return None
    if not data.startswith(_UTF16_BOMS) and not any(key.encode() in data for key in keys):
        return None
    return data


def read_yaml(path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A YAML mapping from `path`, or None when the file is absent or mentions none of `keys`.

    Raises `Unreadable` for a file that mentions a key but is not a readable YAML mapping.
    """
    data = _mentioning(path, keys)
    if data is None:
        return None
    flat = parse_flat(data)
    if flat is not None:
        return flat or None
    return _load_yaml(data, path, keys)


def _load_yaml(data: bytes, path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        import yaml

        parsed = yaml.load(data, Loader=_unique_keys_loader(yaml, keys))  # noqa: S506 - safe
    except Exception as error:
        raise Unreadable(path) from error
    if parsed is None:
        return None
    if not isinstance(parsed, dict):
        raise Unreadable(path)
    return parsed


def _unique_keys_loader(yaml: Any, keys: tuple[str, ...]) -> Any:
    """PyYAML's safe loader, refusing what makes an opt-out unclear: a mapping that names one
    of `keys` twice (`telemetry_enabled: false`, then `true`), or a repeated key whose earlier
    value opts out (`defaults: {telemetry_enabled: false}`, then `defaults: 1`); unclear means
    off."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeys(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            named = [
                key.value
                for key, _ in getattr(node, "value", ())
                if getattr(key, "tag", "").endswith(":str") and key.value in keys
            ]
            if len(named) != len(set(named)):
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key", node.start_mark
                )
            mapping = super().construct_mapping(node, deep)
            if len(mapping) < len(node.value):
                self._refuse_an_overridden_opt_out(node)
            return mapping

        def _refuse_an_overridden_opt_out(self, node: Any) -> None:
            last = {}
            for key_node, value_node in node.value:
                last[self.construct_object(key_node, deep=True)] = value_node
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                if last[key] is not value_node and self._holds_opt_out(value_node):
                    raise yaml.constructor.ConstructorError(
                        None, None, "an opt-out overridden by a repeated key", node.start_mark
                    )

        def _holds_opt_out(self, root: Any) -> bool:
            """`_opts_out_anywhere` on a node: values under construction may not be filled
            in yet (PyYAML fills containers after their parents)."""
            seen: set[int] = set()
            stack = [root]
            while stack:
                node = stack.pop()
                if id(node) in seen or isinstance(node, yaml.nodes.ScalarNode):
                    continue
                seen.add(id(node))
                if len(seen) > _MAX_YAML_CONTAINERS:
                    return True
                pairs = node.value if isinstance(node, yaml.nodes.MappingNode) else ()
                for key, value in pairs:
                    if isinstance(key, yaml.nodes.ScalarNode) and key.value == ENABLED_KEY:
                        if not isinstance(value, yaml.nodes.ScalarNode):
                            return True
                        if word(self.construct_object(value, deep=True)) is not True:
                            return True
                if isinstance(node, yaml.nodes.MappingNode):
                    stack.extend(child for pair in pairs for child in pair)
                else:
                    stack.extend(node.value)
            return False

    return UniqueKeys


_FLAT_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")
_FLAT_VALUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def parse_flat(data: bytes) -> dict[str, str | None] | None:
    """Read a file of plain `key: word` lines without PyYAML; None if it holds anything more.

    `~/.visivo/config.yml` as `visivo-telemetry enable` writes it (or with `posthog_host`) is
    such a file, and the 20 ms PyYAML import would otherwise land on every Visivo run. Values
    stay text (null aside) for `word()` to read, which reads them as PyYAML's values would be
    read; anything richer (nesting, quotes, flow style, duplicates) goes to PyYAML.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, colon, rest = line.partition(":")
        if not colon or not _FLAT_KEY_CHARS.issuperset(key) or not key or key in found:
            return None
        if rest and rest[0] not in " \t":
            return None
        value = rest.split(" #", 1)[0].strip()
        if not _FLAT_VALUE_CHARS.issuperset(value):
            return None
        found[key] = None if value in _YAML_NULLS else value
    return found


def _opt_out_in(mapping: dict[str, Any]) -> bool | None:
    """True when a mapping opts out; None when it says nothing. Only `true` keeps telemetry on."""
    if ENABLED_KEY not in mapping:
        return None
    return word(mapping[ENABLED_KEY]) is not True


def _opts_out_anywhere(root: object) -> bool:
    """Whether any mapping in the document, however nested, has a `telemetry_enabled` not true.

    A user who wrote the key in the wrong place still meant it. Aliases may share nodes (or
    loop), so each mapping or list is visited once, and past a bound we assume "off".
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > _MAX_YAML_CONTAINERS:
            return True
        if isinstance(node, dict) and _opt_out_in(node):
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend(child for child in children if isinstance(child, (dict, list)))
    return False


class _NotRead(Exception):
    """A document that PyYAML's events alone cannot judge exactly: build it instead."""


_MAX_EVENT_DEPTH = 64
"""Deeper than this, building the document might hit Python's recursion limit (an error,
so "off"); the events cannot tell where, so such a document is built."""
_CONSTRUCTED_FIRST_CHARS = frozenset("-+.0123456789")
"""A plain scalar starting with one of these may resolve to an int, float or timestamp whose
construction fails (`0b_`, `2026-02-30`), failing the whole load: those are constructed."""


def _digits(text: str) -> bool:
    """ASCII digits only (`400`, `017`): an int or a string, whose construction cannot fail."""
    return text.isdigit() and text.isascii()


class _Open:
    """A mapping or sequence being read: for a mapping, whether the next node is a key, the
    last key's event and how often it named `telemetry_enabled`; for both, whether it holds
    an opt-out (`own`)."""

    __slots__ = ("is_mapping", "expect_key", "key", "enabled_keys", "own")

    def __init__(self, is_mapping: bool) -> None:
        self.is_mapping = is_mapping
        self.expect_key = True
        self.key: Any = None
        self.enabled_keys = 0
        self.own = False


def _events_opt_out(yaml: Any, loader: Any) -> bool | None:
    """What loading the document, then `_opts_out_anywhere`, decides, from the parse events
    of `loader` (a PyYAML loader given the document; its `get_event` is all that is used).

    Exact by construction: the parser is PyYAML's own (its syntax errors raise as a load's
    do); a `telemetry_enabled` value is constructed as a load would; every scalar whose
    construction can fail is constructed; a repeated `telemetry_enabled`, a mapping or list
    used as a key (unhashable), a second document and a root that is not a mapping fail as a
    load fails (off). An opt-out under any occurrence of a repeated key counts, as the
    loader refuses a repeat that would drop one (`_unique_keys_loader`). Anchors, aliases,
    explicit tags, merge keys (`<<`), the `=` scalar, nesting deeper than `_MAX_EVENT_DEPTH`
    and more containers than `_opts_out_anywhere` visits return None: build it.
    """
    ev = yaml.events
    resolver = yaml.resolver.Resolver()
    constructor = yaml.constructor.SafeConstructor()
    constructors = constructor.yaml_constructors
    scalar_node = yaml.nodes.ScalarNode
    ends = (ev.MappingEndEvent, ev.SequenceEndEvent)
    skipped = (ev.StreamStartEvent, ev.DocumentEndEvent)

    def construct(event: Any) -> Any:
        tag = resolver.resolve(scalar_node, event.value, event.implicit)
        if tag not in constructors or tag.endswith((":merge", ":value")):
            raise _NotRead
        node = scalar_node(tag, event.value, event.start_mark, event.end_mark, event.style)
        return constructors[tag](constructor, node)

    def settle(parent: _Open, holds: bool) -> None:
        """A value of `parent` is complete; `holds`: it holds an opt-out (which no later
        repeat of its key can drop: a file that says both is unclear, so off)."""
        parent.own = parent.own or holds
        if parent.is_mapping:
            parent.expect_key = True

    stack: list[_Open] = []
    containers = documents = 0
    root: Any = None
    root_holds = False
    next_event = loader.get_event
    stream_end = ev.StreamEndEvent
    try:
        while True:
            event = next_event()
            kind = type(event)
            if kind is stream_end:
                break
            if kind in ends:
                done = stack.pop()
                if stack:
                    settle(stack[-1], done.own)
                else:
                    root_holds = done.own
                continue
            if kind is ev.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    return True  # a load refuses a second document: unreadable, off
                continue
            if kind in skipped:
                continue
            if kind is ev.AliasEvent or event.anchor is not None or event.tag is not None:
                raise _NotRead
            is_scalar = kind is ev.ScalarEvent
            plain = is_scalar and event.implicit[0]
            if plain and (event.value in ("=", "<<")):
                raise _NotRead
            if plain and event.value[:1] in _CONSTRUCTED_FIRST_CHARS and not _digits(event.value):
                construct(event)  # raises as the load would for `0b_`, `2026-02-30`
            parent = stack[-1] if stack else None
            if parent is None:
                root = construct(event) if is_scalar else kind
            elif parent.is_mapping and parent.expect_key:
                if not is_scalar:
                    return True  # a mapping or list as a key is unhashable: unreadable, off
                parent.key = event
                parent.expect_key = False
                if event.value == ENABLED_KEY:
                    parent.enabled_keys += 1
                    if parent.enabled_keys > 1:
                        return True  # named twice: unclear, off
            elif is_scalar:
                if parent.is_mapping and parent.key.value == ENABLED_KEY:
                    parent.own = parent.own or word(construct(event)) is not True
                settle(parent, False)
            elif parent.is_mapping and parent.key.value == ENABLED_KEY:
                parent.own = True  # a mapping or list is not `true`
            if not is_scalar:
                containers += 1
                stack.append(_Open(kind is ev.MappingStartEvent))
                if containers > _MAX_YAML_CONTAINERS or len(stack) > _MAX_EVENT_DEPTH:
                    raise _NotRead
    except _NotRead:
        return None
    if root is ev.MappingStartEvent:
        return root_holds
    # Empty (a load gives None) decides nothing; any other root is not a mapping: off.
    return root is not None


def _env_decision(env: dict[str, str] | os._Environ[str]) -> Decision | None:
    # Empty means not set; whitespace only is set and not recognised, so it opts out.
    disabled = env.get("VISIVO_TELEMETRY_DISABLED")
    if disabled and (not disabled.strip() or word(disabled) is not False):
        return Decision(False, "env:VISIVO_TELEMETRY_DISABLED")
    dnt = env.get("DO_NOT_TRACK")
    if is_set(dnt) or (dnt and not dnt.strip()):
        return Decision(False, "env:DO_NOT_TRACK")
    return None


def _project_decision(project_dir: str | os.PathLike[str] | None) -> Decision | None:
    if project_dir is None:
        return None
    path = os.path.join(os.fspath(project_dir), PROJECT_FILE)
    try:
        opts_out = project_opts_out(path)
    except Unreadable:
        return Decision(False, "project", path)
    return Decision(False, "project", path) if opts_out else None


def project_opts_out(path: str) -> bool:
    """Whether a project file opts out (raises `Unreadable` for one that cannot be read).

    A project file is Visivo's whole project, often hundreds of kilobytes: building it with
    PyYAML costs about 0.6 s per MB on every command, so it is read from PyYAML's own parser
    events instead (`_events_opt_out`), and built only when those cannot tell exactly.
    """
    data = _mentioning(path, (ENABLED_KEY,))
    if data is None:
        return False
    flat = parse_flat(data)
    if flat is not None:
        return _opts_out_anywhere(flat)
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(data)
        try:
            found = _events_opt_out(yaml, loader)
        finally:
            loader.dispose()
    except Exception as error:
        raise Unreadable(path) from error
    if found is None:
        mapping = _load_yaml(data, path, (ENABLED_KEY,))
        return mapping is not None and _opts_out_anywhere(mapping)
    return found


def user_config(where: Paths | None) -> dict[str, Any] | None:
    """The user's `~/.visivo/config.yml` as a mapping; raises `Unreadable` if it is unusable."""
    if where is None:
        return None
    return read_yaml(where.config, (ENABLED_KEY, *USER_SETTING_KEYS))


def decide(
    project_dir: str | os.PathLike[str] | None = None,
    env: dict[str, str] | os._Environ[str] | None = None,
) -> Decision:
    """Whether telemetry is on, and why. Never raises; when in doubt, off."""
    env = os.environ if env is None else env
    try:
        found = _env_decision(env) or _project_decision(project_dir)
        if found:
            return found
        where = paths(env)
        if where is None:
            return Decision(False, "no-home")
        try:
            mapping = user_config(where)
        except Unreadable:
            return Decision(False, "global", where.config)
        if mapping is not None and _opts_out_anywhere(mapping):
            return Decision(False, "global", where.config)
        return Decision(True, "default")
    except Exception:
        return Decision(False, "error")


def _is_loopback_ipv4(hostname: str) -> bool:
    parts = hostname.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts)
    )


def _split_authority(authority: str) -> tuple[str, str] | None:
    """`host`, `port` of an authority; None for anything a URL parser might read otherwise."""
    if authority.startswith("["):
        hostname, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        return hostname, port[1:]
    if authority.count(":") > 1:
        return None
    hostname, _, port = authority.partition(":")
    return hostname, port


def _is_loopback_authority(authority: str) -> bool:
    """`localhost`, `127.x.y.z` or `[::1]`, with an optional numeric port and nothing else."""
    split = _split_authority(authority.lower())
    if split is None:
        return False
    hostname, port = split
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return False
    return hostname in ("localhost", "::1") or _is_loopback_ipv4(hostname)


def check_host(host: str) -> str | None:
    """Why `host` may not receive events (None when it may): https only, but for loopback.

    The authority of an `http://` host must be plainly a loopback address; anything a URL
    parser might read as another host (`user@`, `\\`, `#@127.0.0.1`, `127.0.0.1.evil`) is refused.
    """
    scheme, sep, rest = host.partition("://")
    if not sep or not rest or not host.isprintable() or " " in host:
        return "not a URL"
    if scheme.lower() == "https":
        return None
    if scheme.lower() != "http":
        return "https:// is required except for loopback addresses"
    authority = rest.partition("/")[0]
    if any(c in authority for c in "@\\?#%") or not _is_loopback_authority(authority):
        return "https:// is required except for loopback addresses"
    return None


def ingestion_host(host: str) -> str:
    """`host` without a trailing slash, with PostHog's app hosts mapped to their ingestion hosts."""
    stripped = host.strip().rstrip("/")
    return INGESTION_HOSTS.get(stripped.lower(), stripped)


def check_api_key(api_key: str | None) -> str | None:
    """Why `api_key` cannot be a PostHog project key (None when it can).

    The shape capture checks: present, at most 64 characters, printable, not a personal key.
    Capture cannot tell whether a project owns the key, so a well-formed wrong key still loses
    everything; that is why the application, not this library, provides it.
    """
    if not api_key:
        return "no API key: the application gives none and the user sets none"
    if len(api_key) > MAX_API_KEY or not api_key.isascii() or not api_key.isprintable():
        return "not a PostHog project API key"
    if api_key.startswith(PERSONAL_KEY_PREFIX):
        return "a personal API key, not a project API key"
    return None


def settings(
    env: dict[str, str] | os._Environ[str] | None = None,
    app_api_key: str | None = None,
    app_host: str | None = None,
) -> Settings:
    """Destination, key and debug switch: the environment, else `~/.visivo/config.yml`, else
    what the application passed in code.

    Never from a project file: a cloned repository must not be able to redirect telemetry.
    """
    env = os.environ if env is None else env
    try:
        mapping = user_config(paths(env)) or {}
    except Unreadable:
        mapping = {}

    def pick(env_name: str, key: str, app_value: object = None) -> tuple[str | None, str | None]:
        """The first non-blank of the environment, the user's file, the application; its source."""
        for value, source in ((env.get(env_name), "env"), (mapping.get(key), "global")):
            if value is not None and str(value).strip():
                return str(value).strip(), source
        if app_value is not None and str(app_value).strip():
            return str(app_value).strip(), "application"
        return None, None

    api_key, key_source = pick("VISIVO_POSTHOG_API_KEY", "posthog_api_key", app_api_key)
    host = ingestion_host(pick("VISIVO_POSTHOG_HOST", "posthog_host", app_host)[0] or DEFAULT_HOST)
    debug = word(pick("VISIVO_TELEMETRY_DEBUG", "telemetry_debug")[0] or "0") is True
    return Settings(host, api_key, debug, check_host(host), check_api_key(api_key), key_source)
