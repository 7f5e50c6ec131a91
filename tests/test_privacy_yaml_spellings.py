"""Item 5 of issue 26: every way YAML spells an opt-out is one.

A project file or `~/.visivo/config.yml` whose YAML reading has a `telemetry_enabled` that is
not true opts out, however the file spells it: escapes in a double-quoted key (`\\x5f`,
`\\u005F`, `\\U0000005f`), an escaped line break inside the key, quotes, an explicit `?` key,
tags, anchors and aliases, merge keys, flow style, comments, directives and markers, and every
encoding YAML allows, with or without its byte order mark. A file PyYAML cannot read (UTF-32,
UTF-16 without a mark, a second document, a syntax error) opts out when it names the key.

The oracle is PyYAML's own load of the file's bytes (`yaml.safe_load`, the pure-Python
loader), then the README's rule: only `true`, `yes`, `on`, `y` or `1` (any case) keep
telemetry on, wherever the key sits; a file that names the key but does not load as a mapping
is an opt-out. Whether a file names the key is known by how each example was written, never
asked of the code under test.
"""

from __future__ import annotations

import codecs
import sys

import pytest
import yaml
from helpers import clean_env, host_code, run_host, sender_pids, spool_rows
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from privacy_support import files_under, global_config, project_config, write_text

from visivo_telemetry import _precedence as precedence
from visivo_telemetry._spellings import could_name

KEY = "telemetry_enabled"
README_TRUE = {"true", "yes", "on", "y", "1"}
"""The README's words that keep telemetry on, written out here on purpose."""

ENCODINGS = {
    "utf-8": ("utf-8", b""),
    "utf-8 with a mark": ("utf-8", codecs.BOM_UTF8),
    "utf-16-le with a mark": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be with a mark": ("utf-16-be", codecs.BOM_UTF16_BE),
    "utf-32-le with a mark": ("utf-32-le", codecs.BOM_UTF32_LE),
    "utf-32-be with a mark": ("utf-32-be", codecs.BOM_UTF32_BE),
    "utf-16-le": ("utf-16-le", b""),
    "utf-16-be": ("utf-16-be", b""),
    "utf-32-le": ("utf-32-le", b""),
    "utf-32-be": ("utf-32-be", b""),
}
"""Every encoding YAML 1.2 allows (it detects the mark-less ones from their NUL bytes)."""
PYYAML_READS = {"utf-8", "utf-8 with a mark", "utf-16-le with a mark", "utf-16-be with a mark"}
LONG = "# " + "=" * 4000 + "\n"
"""A long comment: a file where a few backslashes are rare."""


def encode(text: str, encoding: str) -> bytes:
    codec, mark = ENCODINGS[encoding]
    return mark + text.encode(codec)


# --------------------------------------------------------------------------- the oracle


def _keeps_on(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in README_TRUE


def _any_mapping_opts_out(root: object) -> bool:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or not isinstance(node, (dict, list)):
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if KEY in node and not _keeps_on(node[KEY]):
                return True
            stack.extend(node.values())
        else:
            stack.extend(node)
    return False


def pyyaml_says_off(data: bytes, names_the_key: bool) -> bool:
    """What PyYAML's full load of `data` decides, by the README's rule."""
    try:
        root = yaml.load(data, Loader=yaml.SafeLoader)  # noqa: S506 - the safe loader
    except Exception as error:  # not only YAMLError: `!!bool false#` raises a KeyError
        event(f"PyYAML cannot read it: {type(error).__name__}")
        return names_the_key
    if root is None:
        return False
    if not isinstance(root, dict):
        return names_the_key
    return _any_mapping_opts_out(root)


# --------------------------------------------------------------------------- spellings

_HEX = ("x", 2), ("u", 4), ("U", 8)
BREAKS = ["\n", "\r\n", "\r", "\x85", "\u2028", "\u2029"]
"""Every line break YAML 1.1 knows: LF, CR LF, CR, NEL, LS, PS."""


@st.composite
def double_quoted(draw: st.DrawFn, text: str, indent: str) -> str:
    """`text` in double quotes, some characters escaped as `\\x`, `\\u` or `\\U` (hex in
    either case), perhaps split by an escaped line break (which joins with nothing between)."""
    percent = draw(st.sampled_from([0, 0, 5, 25, 100]))  # of the characters escaped
    out = []
    for char in text:
        if draw(st.integers(1, 100)) <= percent:
            letter, width = draw(st.sampled_from(_HEX))
            digits = f"{ord(char):0{width}x}"
            out.append("\\" + letter + (digits.upper() if draw(st.booleans()) else digits))
        else:
            out.append(char)
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(1, len(out) - 1))
        brk = draw(st.sampled_from(BREAKS))
        out.insert(at, "\\" + brk + indent + "  ")
    return '"' + "".join(out) + '"'


@st.composite
def spelled(draw: st.DrawFn, text: str, indent: str) -> tuple[str, bool]:
    """A scalar whose value is `text`; and whether it may span lines (then it can only be an
    explicit `?` key: an implicit key is one line)."""
    style = draw(st.sampled_from(["plain", "single", "double", "block"]))
    event(f"key written: {style}")
    if style == "plain":
        scalar = text
    elif style == "single":
        scalar = f"'{text}'"
    elif style == "double":
        scalar = draw(double_quoted(text, indent))
    else:
        scalar = f"|-\n{indent}  {text}"
    if draw(st.integers(0, 4)) == 0:
        scalar = draw(st.sampled_from(["!!str ", "!<tag:yaml.org,2002:str> "])) + scalar
    return scalar, style == "block" or any("\\" + brk in scalar for brk in BREAKS)


VALUES = [
    "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N", "0", "", "~",
    "null", "maybe", "'false'", '"no"', "!!bool false", "!!str false", '"f\\x61lse"', "[]",
    "{}", "0.0", "1.0", "true", "True", "TRUE", "yes", "Yes", "on", "ON", "y", "Y", "1", "'true'",
    '"yes"', "!!bool true", "!!str on", "!!int 1", '"tru\\u0065"', "01",
]  # fmt: skip
"""Values that YAML reads as false, true, or neither (neither is not true: an opt-out)."""


@st.composite
def entry(draw: st.DrawFn, indent: str, key: str = KEY) -> tuple[list[str], list[str]]:
    """Lines of a block mapping entry `key: value` at `indent`, spelled in one of YAML's ways,
    and the lines (anchors) that must come before the mapping holding it."""
    value = draw(st.sampled_from(VALUES))
    before = []
    if draw(st.integers(0, 3)) == 0:
        event("value by alias")
        before, value = [f"word: &v {value}"], "*v"
    scalar, multiline = draw(spelled(key, indent))
    way = draw(st.sampled_from(["implicit", "explicit", "alias"]))
    if way == "alias":
        event("key by alias")
        return [f"{indent}*k : {value}"], [*before, f"label: &k {scalar}"]
    if multiline or way == "explicit":
        event("explicit key")
        return [f"{indent}? {scalar}", f"{indent}: {value}"], before
    return [f"{indent}{scalar}: {value}"], before


@st.composite
def opt_out_documents(draw: st.DrawFn) -> tuple[str, bool]:
    """A document naming `telemetry_enabled` somewhere; and whether it names it (always)."""
    place = draw(st.sampled_from(["top", "defaults", "flow", "list", "merge", "value"]))
    event(f"placed: {place}")
    before: list[str] = []
    if place == "top":
        lines, before = draw(entry(""))
    elif place == "defaults":
        inner, before = draw(entry("  "))
        lines = ["defaults:", *inner]
    elif place == "list":
        inner, before = draw(entry("    "))
        lines = ["charts:", "  - name: a", *inner]
    elif place == "flow":
        scalar, multiline = draw(spelled(KEY, ""))
        scalar = KEY if multiline else scalar
        lines = [f"defaults: {{name: x, {scalar}: {draw(st.sampled_from(VALUES))}}}"]
    elif place == "merge":
        inner, before = draw(entry("  "))
        merged = draw(st.sampled_from(["*b", "[*b, *c]", "[*c, *b]"]))
        lines = ["c: &c {name: other}", "base: &b", *inner, "defaults:", f"  <<: {merged}"]
        if draw(st.booleans()):
            lines.append(f"  {KEY}: {draw(st.sampled_from(VALUES))}")  # overrides the merge
    else:
        scalar, multiline = draw(spelled(KEY, "  "))
        lines = [f"name: {KEY if multiline else scalar}"]
    return "\n".join([*before, *lines]), True


NEAR_MISSES = [
    "telemetry_enable: false", "telemetry enabled: false", "telemetryenabled: no",
    "'telemetry_ enabled': off", '? "telemetry_\n  enabled"\n: false', '"\\x41": false',
    '"caf\\u00e9": no', "path: 'C:\\Users\\me'", "sql: \"select '\\\\d+'\"", "enabled: false",
    "defaults: {telemetry: false}", "name: [unclosed",
]  # fmt: skip
"""Documents that do not name the key in any spelling (the last one does not even load)."""


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, bool]:
    """A whole file's text, with the common furniture around it; and whether it names the key."""
    if draw(st.integers(0, 4)) == 0:
        body, names = draw(st.sampled_from(NEAR_MISSES)), False
    else:
        body, names = draw(opt_out_documents())
    head = draw(st.sampled_from(["", "%YAML 1.1\n---\n", "---\n", "# settings\n", "\n", LONG]))
    tail = draw(st.sampled_from(["\n", "", "\n...\n", "\n# telemetry is on\n", "\n---\nx: 1\n"]))
    text = head + body + tail
    if draw(st.integers(0, 5)) == 0:
        text = text.replace("\n", "\r\n")
    if draw(st.integers(0, 9)) == 0:
        text += f"\n# {KEY}: false\n"
        names = True
    return text, names


# --------------------------------------------------------------------------- properties


_ENCODING = st.sampled_from(sorted(PYYAML_READS)) | st.sampled_from(sorted(ENCODINGS))
"""Half of the examples in an encoding PyYAML reads, so most are decided by what they say."""


@settings(max_examples=300, deadline=None)
@given(documents(), _ENCODING, st.sampled_from(["project", "user"]))
@example(('"telemetry\\x5fenabled": false\n', True), "utf-8", "project")
@example(('"telemetry\\u005Fenabled": no\n', True), "utf-8", "user")
@example(('"telemetry\\U0000005fenabled": off\n', True), "utf-8", "project")
@example(('? "telemetry_\\\n  enabled"\n: false\n', True), "utf-8", "user")
@example(('? "tele\\\u2028  metry_enabled"\n: false\n', True), "utf-8 with a mark", "project")
@example((f"{KEY}: false\n", True), "utf-32-be with a mark", "project")
@example((f"{KEY}: true\n", True), "utf-16-le", "user")
@example(("name: demo\n", False), "utf-32-le with a mark", "project")
@example((f"{KEY}: true\n# \x00\n", True), "utf-8", "user")
def test_every_spelling_of_an_opt_out_is_honoured(tmp_path_factory, document, encoding, where):
    text, names_the_key = document
    event(encoding)
    data = encode(text, encoding)
    home, project = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("project")
    write_text(project_config(project) if where == "project" else global_config(home), data)

    decision = precedence.decide(project, env={"HOME": str(home)})

    off = pyyaml_says_off(data, names_the_key)
    event(f"oracle: {'off' if off else 'on'}")
    assert (decision.enabled, decision.decided_by) == (
        (False, "project" if where == "project" else "global") if off else (True, "default")
    ), (text, encoding)


AMONG = {
    "nothing": "",
    "a few backslashes in a long file": "name: 'C:\\Users\\me'\nsql: \"a\\tb\"\n" + LONG,
    "many backslashes": "pattern: '" + "\\d" * 300 + "'\n",
}
"""What comes before the key: the check looks at each backslash where they are rare, and
searches for the patterns that matter where they are common (a short file among them)."""


@st.composite
def _key_characters(draw: st.DrawFn) -> list[str]:
    """How each character of the key is written: plainly, or in one other way (a hex escape
    of one kind, or after an escaped line break of one kind) so that each is seen alone, or
    in any of them."""
    ways = ["x", "u", "U", "X", *BREAKS]
    mix = draw(st.sampled_from([*ways, "any"]))
    event(f"written with {mix!r}")
    pool = ["plain", *(ways if mix == "any" else [mix])]
    return draw(st.lists(st.sampled_from(pool), min_size=len(KEY), max_size=len(KEY)))


@settings(max_examples=300, deadline=None)
@given(_key_characters(), st.sampled_from(sorted(ENCODINGS)), st.sampled_from(sorted(AMONG)))
def test_the_shortcut_never_skips_a_file_that_names_the_key(how, encoding, among):
    """The check that spares a file PyYAML sees every spelling: each character of the key
    written plainly, as any hex escape, or after an escaped line break; then if PyYAML loads a
    mapping with the key, the check must have said it could."""
    out = []
    for char, way in zip(KEY, how, strict=True):
        if way == "plain":
            out.append(char)
        elif way in BREAKS:
            out.append("\\" + way + "   " + char)
        else:
            width = {"x": 2, "u": 4, "U": 8, "X": 2}[way]
            digits = f"{ord(char):0{width}x}"
            out.append("\\" + way.replace("X", "x") + (digits.upper() if way == "X" else digits))
    event(f"among {among}")
    data = encode(f'{AMONG[among]}? "{"".join(out)}"\n: false\n', encoding)
    if encoding in PYYAML_READS:
        loaded = yaml.load(data, Loader=yaml.SafeLoader)  # noqa: S506 - the safe loader
        assert loaded[KEY] is False, "the spelling is the key, as PyYAML reads it"
    assert could_name(data, (KEY,)), data


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_a_plain_project_file_is_not_parsed(tmp_path, monkeypatch, encoding):
    """The common case stays cheap: a project that never names the key, backslashes in its
    SQL and Windows paths included, is never handed to PyYAML (here, one that cannot be
    imported: trying would make the file unreadable, so off)."""
    text = "name: demo\nmodels:\n" + "".join(
        f"  - name: m{i}\n    sql: \"select regexp_replace(x, '\\\\d+', '') from t{i}\"\n"
        f"    path: 'C:\\Users\\me\\data_{i}.csv'\n"
        for i in range(200)
    )
    write_text(project_config(tmp_path), encode(text, encoding))
    monkeypatch.setitem(sys.modules, "yaml", None)

    assert precedence.project_decision(tmp_path) is None


MISALIGNED = {
    "utf-8 mark, then utf-16": codecs.BOM_UTF8 + f"{KEY}: true\n".encode("utf-16-le"),
    "one stray byte, then utf-16": b"#" + f"{KEY}: true\n".encode("utf-16-be"),
    "two stray bytes, then utf-32": b"#\n" + f"{KEY}: true\n".encode("utf-32-le"),
}
"""Wide text that does not start where the file does: no encoding reads it, yet it names the
key."""


@pytest.mark.parametrize("content", MISALIGNED.values(), ids=MISALIGNED.keys())
def test_wide_text_at_an_odd_offset_that_names_the_key_is_an_opt_out(tmp_path, content):
    write_text(project_config(tmp_path), content)

    assert precedence.decide(tmp_path, env={"HOME": str(tmp_path / "home")}).enabled is False


# --------------------------------------------------------------------------- real processes

REAL = {
    "escaped key": '"telemetry\\x5fenabled": false\n',
    "merge key": "base: &b {telemetry_enabled: no}\ndefaults:\n  <<: *b\n",
    "utf-16 with a mark": codecs.BOM_UTF16_BE
    + "defaults:\n  telemetry_enabled: off\n".encode("utf-16-be"),
    "utf-32 names the key": codecs.BOM_UTF32_BE + "telemetry_enabled: true\n".encode("utf-32-be"),
}


@pytest.mark.parametrize("content", REAL.values(), ids=REAL.keys())
@pytest.mark.parametrize("where", ["project", "user"])
def test_a_host_honours_every_spelling(home, project, content, where):
    write_text(project_config(project) if where == "project" else global_config(home), content)
    before = files_under(home)

    result, _ = run_host(host_code("run", ["--threads", "4"]), clean_env(home), project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert files_under(home) == before, "nothing written: no spool, no notice flag"
    assert sender_pids(home) == []


def test_a_host_records_when_a_utf16_file_says_true(home, project):
    """The control: the same host records when the file, in UTF-16, keeps telemetry on."""
    text = 'defaults:\n  telemetry\\x5fenabled: yes\n  "telemetry\\x5fenabled": yes\n'
    write_text(project_config(project), codecs.BOM_UTF16_LE + text.encode("utf-16-le"))

    result, _ = run_host(host_code("run", ["--threads", "4"]), clean_env(home), project)

    assert (result.returncode, result.stderr) == (0, "")
    assert [row["properties"]["command"] for row in spool_rows(home)] == ["run"]
