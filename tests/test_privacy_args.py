"""Privacy notice: "Command arguments keep only flag names" — no value ever leaves the machine.

The sanitizer replaces every value with `<value>`, `<path>` or `<redacted>` (sensitive flags),
whatever form the argument takes. Table-driven for each form, then hypothesis properties over
generated argv, then the spooled JSON itself.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import spool_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry, sanitize_args
from visivo_telemetry._sanitize import SENSITIVE_WORDS
from visivo_telemetry._schema import MAX_ARGS

PLACEHOLDERS = {"<value>", "<path>", "<redacted>"}


def test_the_published_example_holds_exactly():
    argv = ["--dag-filter", "+my_chart+", "--threads", "4", "--output-dir", "/home/user/output"]

    assert sanitize_args(argv) == [
        "--dag-filter",
        "<value>",
        "--threads",
        "<value>",
        "--output-dir",
        "<path>",
    ]


FORMS = {
    "--flag value": (["--threads", "4"], ["--threads", "<value>"]),
    "--flag=value": (["--dag-filter=+model+"], ["--dag-filter=<value>"]),
    "--flag=path": (["--output-dir=/home/u/out"], ["--output-dir=<path>"]),
    "--flag= (empty)": (["--name="], ["--name=<value>"]),
    "-f value": (["-t", "4"], ["-t", "<value>"]),
    "-fvalue": (["-t4"], ["-t<value>"]),
    "-fpath": (["-o/tmp/out"], ["-o<path>"]),
    "-f=value": (["-t=4"], ["-t<value>"]),
    "-Dkey=value": (["-Ddb.password=hunter2"], ["-D<value>"]),
    "-v": (["-v"], ["-v"]),
    "cluster -vvv": (["-vvv"], ["-vvv"]),
    "mixed cluster is a value": (["-xvf"], ["-x<value>"]),
    "-- makes the rest positional": (
        ["--threads", "--", "--token", "-v", "/x", "--"],
        ["--threads", "--", "<value>", "<value>", "<path>", "<value>"],
    ),
    "negative numbers": (
        ["--offset", "-5", "-2.5", "-1e3", "-inf"],
        ["--offset", "<value>", "<value>", "<value>", "<value>"],
    ),
    "empty string": (["--name", ""], ["--name", "<value>"]),
    "lone dash": (["-"], ["<value>"]),
    "positionals": (["my_model", "other_model"], ["<value>", "<value>"]),
    "repeated flags": (["--x", "1", "--x", "2"], ["--x", "<value>", "--x", "<value>"]),
    "bytes flag and value": ([b"--name", b"\xff\xfe"], ["--name", "<value>"]),
    "surrogate-escaped str": (["--name", "caf\udce9"], ["--name", "<value>"]),
    "surrogate-escaped path": ([b"/home/\xff/x"], ["<path>"]),
    "very long value": (["--name", "x" * 100_000], ["--name", "<value>"]),
    "very long path": (["--dir", "/a" * 50_000], ["--dir", "<path>"]),
    "very long flag name": (["--" + "a" * 200], ["<value>"]),
    "non-letter short flag": (["-1abc", "-/etc/passwd"], ["<value>", "<path>"]),
    "non-ASCII flag name": (["--ключ", "--café"], ["<value>", "<value>"]),
    "flag name with odd characters": (["--a+b", "--dag filter", "--=x", "--1x"], ["<value>"] * 4),
    "non-text tokens": ([None, 3, 4.5, Path("/etc/passwd")], ["<value>"] * 3 + ["<path>"]),
    "a string instead of a list": ("--token abc", ["<value>"]),
}


@pytest.mark.parametrize("argv, expected", FORMS.values(), ids=FORMS.keys())
def test_every_argument_form_keeps_only_flag_names(argv, expected):
    assert sanitize_args(argv) == expected


PATHS = [
    "/home/user/output",
    "/",
    "~",
    "~/project",
    "~alice/x",
    "./x",
    "../x",
    ".",
    "..",
    "models/orders.sql",
    "C:\\Users\\alice",
    "c:/users/alice",
    "C:",
    "\\\\server\\share\\file",
    ".\\x",
]


@pytest.mark.parametrize("value", PATHS)
def test_paths_never_leave_the_machine(value):
    assert sanitize_args(["--dir", value, f"--dir={value}", value]) == [
        "--dir",
        "<path>",
        "--dir=<path>",
        "<path>",
    ]


def test_a_bare_name_of_an_existing_file_is_a_path(tmp_path, monkeypatch):
    (tmp_path / "customers_2024.csv").write_text("x")
    monkeypatch.chdir(tmp_path)

    assert sanitize_args(["--input", "customers_2024.csv"]) == ["--input", "<path>"]


OTHER_VALUES = [
    "https://alice:hunter2@example.com/x",
    "https://example.com/path?q=1",
    "postgres://user:pw@db.internal:5432/prod",
    "alice@example.com",
    "10.0.0.1",
    "192.168.1.20:8080",
    "::1",
    "fe80::1%eth0",
    "+my_chart+",
    "SELECT * FROM users",
    "Grüße, 世界",
    "4",
]


@pytest.mark.parametrize("value", OTHER_VALUES)
def test_urls_emails_ips_and_other_values_become_value(value):
    out = sanitize_args(["--target", value, f"--target={value}", value])

    assert out == ["--target", "<value>", "--target=<value>", "<value>"]


SENSITIVE_FLAGS = [
    "--token",
    "--access-token",
    "--password",
    "--pass",
    "--passphrase",
    "--db-passwd",
    "--secret",
    "--secret-file",
    "--client-secret",
    "--key",
    "--api-key",
    "--api_key",
    "--private-key-path",
    "--aws-secret-access-key",
    "--auth",
    "--authorization",
    "--oauth-code",
    "--credentials",
    "--creds",
    "--cookie",
    "--cert",
    "--session",
    "--dsn",
    "--jwt",
    "--Token",
    "--PASSWORD",
]


@pytest.mark.parametrize("flag", SENSITIVE_FLAGS)
def test_sensitive_flags_keep_their_name_and_redact_their_value(flag):
    out = sanitize_args([flag, "hunter2", f"{flag}=hunter2", flag, "/home/a/key.pem"])

    assert out == [flag, "<redacted>", f"{flag}=<redacted>", flag, "<redacted>"]


@pytest.mark.parametrize("secret", ["-x7!pw", "-5", "-", "-abc=def", b"-\xff"])
def test_a_secret_that_starts_with_a_dash_is_still_redacted(secret):
    assert sanitize_args(["--password", secret, "--threads", "4"]) == [
        "--password",
        "<redacted>",
        "--threads",
        "<value>",
    ]


def test_a_flag_after_a_valueless_sensitive_flag_is_redacted_too():
    """Without the command's definition `--no-auth --threads` cannot be told from
    `--api-key --threads`: the token after a sensitive flag is its value (the click
    integration, which knows the options, keeps `--threads` there)."""
    assert sanitize_args(["--no-auth", "--threads", "4"]) == ["--no-auth", "<redacted>", "<value>"]


_FLAG_SHAPED_SECRETS = st.one_of(
    st.from_regex(r"--?[A-Za-z0-9][A-Za-z0-9_=+/.!-]{0,30}", fullmatch=True),
    st.sampled_from(["--", "-", "---", "-x", "--abc", "--abc=def", "-5"]),
    st.text(string.printable, min_size=1, max_size=30).map(lambda t: "-" + t),
    st.text(string.printable, min_size=1, max_size=30).map(lambda t: "--" + t),
)


def readme_sensitive_words() -> tuple[str, ...]:
    """The words the README's privacy notice names ("anything containing token, pass, …"),
    parsed from the README itself: the contract the sanitizer must keep, whatever its list."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    match = re.search(r"anything\s+containing\s+([a-z,\s]+?),\s*…", readme)
    assert match, "the README no longer lists the sensitive words"
    return tuple(word.strip() for word in match.group(1).split(","))


README_SENSITIVE_WORDS = readme_sensitive_words()
EVERY_SENSITIVE_WORD = tuple(sorted(set(README_SENSITIVE_WORDS) | set(SENSITIVE_WORDS)))
"""The README's words, which the sanitizer must redact even if its own list lost one, and the
sanitizer's extra ones (the README's list ends with "…")."""

_SENSITIVE_NAMES = st.tuples(
    st.sampled_from(EVERY_SENSITIVE_WORD),
    st.from_regex(r"([a-z]{1,6}-)?", fullmatch=True),
    st.from_regex(r"(-[a-z]{1,6})?", fullmatch=True),
).map(lambda t: f"--{t[1]}{t[0]}{t[2]}")


@given(_SENSITIVE_NAMES, _FLAG_SHAPED_SECRETS, st.sampled_from([[], ["--threads", "4"]]))
def test_the_token_after_a_sensitive_flag_is_redacted_whatever_it_looks_like(flag, secret, rest):
    """Class: a secret spelled like an option (`--api-key --abc`, `--password -x`)."""
    out = sanitize_args([flag, secret, *rest])

    assert out[:2] == [flag, "<redacted>"]
    assert out[2:] == (["--threads", "<value>"] if rest else [])


def test_output_never_has_more_tokens_than_input():
    assert len(sanitize_args([f"--f{i}" for i in range(500)])) == MAX_ARGS

    def endless():
        while True:
            yield "--token"
            yield "hunter2"

    assert sanitize_args(endless()) == ["--token", "<redacted>"] * (MAX_ARGS // 2)


def test_a_broken_iterable_never_raises():
    def broken():
        yield "--threads"
        raise OSError("boom")

    assert sanitize_args(broken()) == ["--threads"]
    assert sanitize_args(None) == []
    assert sanitize_args(42) == []


# --------------------------------------------------------------------------- properties
#
# Generated argv: long and short flags (some sensitive), each followed by a value, joined to
# one with `=` or attached to a short flag, plus positionals and a `--` separator. Values are
# secrets, paths, URLs with credentials, emails, IPs, numbers, any unicode, surrogate-escaped
# and raw bytes.
#
# Honesty: without the command's definition a value spelled exactly like an option (`--name`,
# `--name=x`, `-vvv`) or like the separator `--` cannot be told from one; the sanitizer keeps
# those by design, so the generator leaves them out. Every other value must vanish.

_LONG_FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*(=.*)?", re.DOTALL)
_CLUSTER = re.compile(r"-([A-Za-z])\1*")
_ALNUM = string.ascii_letters + string.digits


def _spelled_like_an_option(value: str) -> bool:
    return bool(_LONG_FLAG.fullmatch(value) or _CLUSTER.fullmatch(value)) or value == "--"


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


_words = st.text(_ALNUM, min_size=1, max_size=10)
_secrets = st.text(string.printable, min_size=1, max_size=40)
_paths = st.one_of(
    st.lists(_words, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    _words.map(lambda w: f"~/{w}"),
    _words.map(lambda w: f"./{w}"),
    _words.map(lambda w: f"C:\\Users\\{w}"),
    st.tuples(_words, _words).map(lambda p: f"\\\\{p[0]}\\{p[1]}"),
)
_urls = st.tuples(_words, _secrets, _words).map(lambda u: f"https://{u[0]}:{u[1]}@{u[2]}.io/x")
_emails = st.tuples(_words, _words).map(lambda e: f"{e[0]}@{e[1]}.com")
_ips = st.ip_addresses().map(str)
_numbers = st.one_of(st.integers().map(str), st.floats(allow_nan=False).map(str))
_unicode = st.text(min_size=1, max_size=30)
_surrogates = st.binary(min_size=1, max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
_raw_bytes = st.binary(min_size=1, max_size=20)

VALUES = st.one_of(
    _secrets, _paths, _urls, _emails, _ips, _numbers, _unicode, _surrogates, _raw_bytes
).filter(lambda v: not _spelled_like_an_option(_text(v)))

LONG_FLAGS = st.one_of(
    st.from_regex(r"--[a-z][a-z0-9_-]{0,20}", fullmatch=True),
    st.sampled_from(["--token", "--password", "--secret-file", "--api-key", "--db-creds"]),
    st.sampled_from(EVERY_SENSITIVE_WORD).map(lambda w: f"--my-{w}"),
)
SHORT_FLAGS = st.from_regex(r"-[A-Za-z]", fullmatch=True)
CORE_SENSITIVE_WORDS = EVERY_SENSITIVE_WORD
"""Every sensitive word; a flag containing one must have its value redacted."""


def test_every_word_the_readme_names_is_sensitive_and_generated():
    """The README's list, parsed, is the one we know (so the parse cannot come back short),
    and every word of it is in the sanitizer's list; the next test gives each its own run."""
    assert README_SENSITIVE_WORDS == (
        "token",
        "pass",
        "pwd",
        "secret",
        "key",
        "auth",
        "credential",
        "cookie",
        "salt",
        "nonce",
        "jwt",
        "signature",
        "bearer",
    )
    assert set(README_SENSITIVE_WORDS) <= set(SENSITIVE_WORDS)


@pytest.mark.parametrize("word", README_SENSITIVE_WORDS)
@settings(max_examples=30, deadline=None)
@given(
    st.from_regex(r"([a-z]{1,6}[-_]?)?", fullmatch=True),
    st.from_regex(r"([-_]?[a-z]{1,6})?", fullmatch=True),
    st.booleans(),
    _FLAG_SHAPED_SECRETS | st.text(string.printable, min_size=1, max_size=40),
)
def test_a_flag_containing_any_word_of_the_readme_has_its_value_redacted(
    word, before, after, upper, secret
):
    """Each README word on its own: remove one from the sanitizer's list and this fails."""
    name = f"{before}{word}{after}"
    flag = "--" + (name.upper() if upper else name)

    assert sanitize_args([flag, secret]) == [flag, "<redacted>"]
    assert sanitize_args([f"{flag}={secret}"]) == [f"{flag}=<redacted>"]


class Item(NamedTuple):
    kind: str
    tokens: list
    value: str | None


def _item(kind: str, flag: str, value: str | bytes) -> Item:
    text = _text(value)
    if kind == "flag value":
        return Item(kind, [flag, value], text)
    if kind == "flag=value":
        return Item(kind, [f"{flag}={text}"], text)
    if kind == "short value":
        return Item(kind, [flag[:2], value], text)
    if kind == "short+value":
        return Item(kind, [flag[:2] + text], text)
    return Item(kind, [value], text)


def _not_a_cluster(item: Item) -> bool:
    """`-v` + `vvv` is `-vvvv`: a count of `-v`, not a value, so it is not generated."""
    return item.kind != "short+value" or set(item.value) != {item.tokens[0][1]}


ITEMS = st.one_of(
    st.tuples(st.sampled_from(["flag value", "flag=value", "positional"]), LONG_FLAGS, VALUES),
    st.tuples(st.sampled_from(["short value", "short+value"]), SHORT_FLAGS, VALUES),
).map(lambda t: _item(*t)).filter(_not_a_cluster) | st.one_of(
    st.tuples(SHORT_FLAGS, st.integers(0, 4)).map(
        lambda t: Item("cluster", [t[0] + t[0][1] * t[1]], None)
    ),
    LONG_FLAGS.map(lambda f: Item("flag", [f], None)),
)
ARGV_PARTS = st.tuples(st.lists(ITEMS, max_size=10), st.lists(VALUES | LONG_FLAGS, max_size=4))


class Argv(NamedTuple):
    argv: list
    items: list[Item]
    after: list
    values: list[str]


def _build(parts: tuple[list[Item], list]) -> Argv:
    """argv, the items before `--`, the tokens after it, and every generated value."""
    items, after = parts
    argv = [token for item in items for token in item.tokens]
    if after:
        argv += ["--", *after]
    values = [item.value for item in items if item.value is not None]
    values += [_text(t) for t in after if not _spelled_like_an_option(_text(t))]
    return Argv(argv, items, after, values)


def _vocabulary(argv: list) -> set[str]:
    """Every token the sanitizer may emit for this argv: flag names and placeholders only."""
    allowed = set(PLACEHOLDERS) | {"--"}
    allowed |= {f"-{letter}{p}" for letter in string.ascii_letters for p in PLACEHOLDERS}
    for token in map(_text, argv):
        name = token.partition("=")[0]
        if _LONG_FLAG.fullmatch(name) or _CLUSTER.fullmatch(token):
            allowed |= {name} | {f"{name}={p}" for p in PLACEHOLDERS}
    return allowed


def _distinctive(values: list[str], vocabulary: set[str]) -> list[str]:
    """Values of 3+ characters that no flag name or placeholder happens to contain."""
    return [v for v in values if len(v) >= 3 and not any(v in word for word in vocabulary)]


@settings(max_examples=300, deadline=None)
@given(ARGV_PARTS)
def test_no_value_ever_appears_in_sanitized_args(parts):
    case = _build(parts)
    out = sanitize_args(case.argv)
    vocabulary = _vocabulary(case.argv)

    assert len(out) == min(len(case.argv), MAX_ARGS)
    assert set(out) <= vocabulary, set(out) - vocabulary
    for value in _distinctive(case.values, vocabulary):
        assert not any(value in token for token in out), value


def _expected_first(item: Item, secret_due: bool) -> str | None:
    """What the item's first token must become (None: any placeholder shape will do)."""
    head = _text(item.tokens[0])
    if secret_due:
        return "<redacted>"
    if item.kind in ("flag", "cluster", "flag value", "short value"):
        return head.partition("=")[0]
    if item.kind == "flag=value" and _is_core_sensitive(head.partition("=")[0]):
        return head.partition("=")[0] + "=<redacted>"
    return None


def _is_core_sensitive(flag: str) -> bool:
    return flag.startswith("--") and any(w in flag.lower() for w in CORE_SENSITIVE_WORDS)


@settings(max_examples=300, deadline=None)
@given(ARGV_PARTS)
def test_flags_survive_and_sensitive_values_are_redacted(parts):
    case = _build(parts)
    out = sanitize_args(case.argv)
    position = 0
    secret_due = False
    for item in case.items:
        got = out[position : position + len(item.tokens)]
        expected = _expected_first(item, secret_due)
        if expected is not None:
            assert got[0] == expected, (item, got)
        if secret_due:
            # Its first token is the value of the sensitive flag before it, whatever it looked
            # like; a later token (`-A0` after `--token --token`) is read afresh, and may keep
            # a flag's name, never a value: each ends in a placeholder.
            assert all(t.endswith(tuple(PLACEHOLDERS)) for t in got[1:]), (item, got)
            secret_due = False
            position += len(item.tokens)
            continue
        if item.kind == "flag=value":
            assert got[0].partition("=")[2] in PLACEHOLDERS
        if item.kind == "flag value" and _is_core_sensitive(got[0]):
            assert got[1] == "<redacted>", (item, got)
        if item.kind == "short+value" and expected is None:
            assert got[0][:2] == item.tokens[0][:2] and got[0][2:] in PLACEHOLDERS
        secret_due = item.kind == "flag" and _is_core_sensitive(got[0])
        position += len(item.tokens)
    if case.after:
        assert out[position] == ("<redacted>" if secret_due else "--")
        if not secret_due:  # a redacted `--` was the secret, not the end of the options
            assert set(out[position + 1 :]) <= PLACEHOLDERS


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ARGV_PARTS)
def test_no_value_ever_reaches_the_spool(home, project, parts):
    """The spooled JSON is exactly what will be sent: argv shows up only as placeholders."""
    case = _build(parts)
    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=project)
    with telemetry.command("run", []):
        pass
    with telemetry.command("run", case.argv):
        pass
    telemetry.close()
    *_, baseline, row = spool_rows(home)
    stored = json.dumps(row["properties"], ensure_ascii=False)
    unrelated = json.dumps(baseline["properties"], ensure_ascii=False)
    vocabulary = _vocabulary(case.argv)

    measured = {"command_args": [], "duration_ms": 0}
    assert {**row["properties"], **measured} == {**baseline["properties"], **measured}
    assert set(row["properties"]["command_args"]) <= vocabulary
    for value in _distinctive(case.values, vocabulary):
        if value not in unrelated:
            assert value not in stored, value
            assert json.dumps(value)[1:-1] not in stored, value
