"""What our YAML config files say: whether a project file opts out, and the user's settings.

Only an opt-out decides, and an unclear file counts as one, so the scan refuses what would
hide an opt-out: a key named twice, a repeat that drops an earlier opt-out, a malformed file.
PyYAML costs every Visivo run 20 ms to import and 0.6 s per MB to build a document, so a file
that never mentions our keys is not parsed, plain `key: word` files are read without PyYAML,
and a project file is judged from PyYAML's parse events rather than built.
"""

from __future__ import annotations

from ._files import Unreadable, read_regular, user_id
from ._spellings import could_name
from ._words import is_true, word

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._files import Paths

ENABLED_KEY = "telemetry_enabled"
_USER_KEYS = (ENABLED_KEY, "posthog_host", "posthog_api_key", "telemetry_debug")
"""What `decide` and `settings` read from `~/.visivo/config.yml`."""

_MAX_YAML_CONTAINERS = 100_000


def _mentioning(path: str, keys: tuple[str, ...], owner: int | None = None) -> bytes | None:
    """The bytes of `path`, or None when it is absent, cannot name any of `keys`, or belongs
    to someone other than `owner` (when given).

    The test spares every Visivo run the 20 ms PyYAML import: project files that say nothing
    about telemetry are never parsed. It reads every spelling YAML allows (`could_name`: other
    encodings, escapes), so a file that names a key in any of them is parsed, or, where
    PyYAML cannot read it, unreadable: off.
    """
    data = read_regular(path, owner)
    if data is None or not could_name(data, keys):
        return None
    return data


def user_config(
    where: Paths | None, keys: tuple[str, ...] = _USER_KEYS, owned: bool = False
) -> dict[str, Any] | None:
    """The user's `~/.visivo/config.yml` as a mapping, or None when it is absent or mentions
    none of `keys`; the one reader of that file, so every key follows the same rules.

    `owned`: only a file the user owns counts (None otherwise), for settings that say where
    events go. An opt-out counts whoever owns the file: refusing one never turns telemetry on.

    Raises `Unreadable` for a file that mentions a key but is not a readable YAML mapping, or
    names one of `keys` twice.
    """
    if where is None:
        return None
    return config_mapping(where.config, keys, user_id() if owned else None)


def config_mapping(
    path: str, keys: tuple[str, ...], owner: int | None = None
) -> dict[str, Any] | None:
    """A config file (the user's, or the machine's) as a mapping, or None when it is absent,
    mentions none of `keys`, or belongs to someone other than `owner` (when given); raises
    `Unreadable` as `user_config` says."""
    data = _mentioning(path, keys, owner)
    if data is None:
        return None
    flat = parse_flat(data)
    if flat is not None:
        return flat or None
    return _load_yaml(data, path, keys)


def read_flag(where: Paths, key: str) -> bool | None:
    """Top-level `key` of the user's config as `word` reads it (None when absent); raises
    `Unreadable` when the file is unclear about it."""
    return word((user_config(where, (key,)) or {}).get(key))


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
            """`opts_out_anywhere` on a node: values under construction may not be filled
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
                        if not is_true(self.construct_object(value, deep=True)):
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
_NUMBER_STARTS = frozenset("-.0123456789")
_FLAT_BYTES = b"\t\n\r" + bytes(range(0x20, 0x7F))
"""What a flat file may hold: YAML refuses every other ASCII control character, even in a
comment, and a byte order mark or anything beyond ASCII goes to PyYAML."""


def _a_number_spelled_so(value: str) -> bool:
    """A value PyYAML may read as a number that its text does not say (`01`, `0x1`, `1_`,
    `0b1` are all 1, which keeps telemetry on), so PyYAML reads it; plain digits stay."""
    if value[:1] not in _NUMBER_STARTS:
        return False
    return not value.isdigit() or (value.startswith("0") and value != "0")


def parse_flat(data: bytes) -> dict[str, str | None] | None:
    """Read a file of plain `key: word` lines without PyYAML; None if it holds anything more.

    `~/.visivo/config.yml` as `visivo-telemetry enable` writes it (or with `posthog_host`) is
    such a file, and the 20 ms PyYAML import would otherwise land on every Visivo run. Values
    stay text (null aside) for `word()` to read, which reads them as PyYAML's values would be
    read; anything richer (nesting, quotes, flow style, duplicates) goes to PyYAML.
    """
    if data.translate(None, _FLAT_BYTES):
        return None  # beyond printable ASCII: a control character makes the file unreadable
    text = data.decode("ascii")
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
        if not _FLAT_VALUE_CHARS.issuperset(value) or _a_number_spelled_so(value):
            return None
        found[key] = None if value in _YAML_NULLS else value
    return found


def _opt_out_in(mapping: dict[str, Any]) -> bool | None:
    """True when a mapping opts out; None when it says nothing. Only `true` keeps telemetry on."""
    if ENABLED_KEY not in mapping:
        return None
    return not is_true(mapping[ENABLED_KEY])


def opts_out_anywhere(root: object) -> bool:
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
    """What loading the document, then `opts_out_anywhere`, decides, from the parse events
    of `loader` (a PyYAML loader given the document; its `get_event` is all that is used).

    Exact by construction: the parser is PyYAML's own (its syntax errors raise as a load's
    do); a `telemetry_enabled` value is constructed as a load would; every scalar whose
    construction can fail is constructed; a repeated `telemetry_enabled`, a mapping or list
    used as a key (unhashable), a second document and a root that is not a mapping fail as a
    load fails (off). An opt-out under any occurrence of a repeated key counts, as the
    loader refuses a repeat that would drop one (`_unique_keys_loader`). Anchors, aliases,
    explicit tags, merge keys (`<<`), the `=` scalar, nesting deeper than `_MAX_EVENT_DEPTH`
    and more containers than `opts_out_anywhere` visits return None: build it.
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
                    parent.own = parent.own or not is_true(construct(event))
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
        return opts_out_anywhere(flat)
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
        return mapping is not None and opts_out_anywhere(mapping)
    return found
