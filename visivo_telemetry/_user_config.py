"""Read and write one boolean key of `~/.visivo/config.yml`, keeping the rest of the file.

Line-based, so the user's other keys, comments and layout survive `enable`, `disable` and the
first-run notice. Reading needs no PyYAML (the notice check runs in every CLI process); a write
is checked with PyYAML before it replaces the file, so we never leave a file that means
something other than what we wrote.
"""

from __future__ import annotations

import os

from . import _config as config


class ConfigWriteError(Exception):
    """The user's config could not be updated; the message is one line for the terminal."""


def _matches(line: str, key: str) -> bool:
    """A top-level `key:` line (no indentation), the only form we read or rewrite."""
    if not line.startswith(key):
        return False
    return line[len(key) :].lstrip(" \t").startswith(":")


def _value_and_comment(line: str) -> tuple[str, str]:
    """`key: value   # note` → (`value`, `   # note`), the comment with its spacing."""
    rest = line.split(":", 1)[1].rstrip("\r\n")
    for index in range(1, len(rest)):
        if rest[index] == "#" and rest[index - 1] in " \t":
            start = len(rest[:index].rstrip(" \t"))
            return rest[:start].strip(), rest[start:]
    return rest.strip(), ""


def read_flag(path: str, key: str) -> bool | None:
    """The value of a top-level boolean `key` (last one wins), or None when absent or unclear."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError:
        return None
    found: bool | None = None
    for line in lines:
        if _matches(line, key):
            found = config.word(_value_and_comment(line)[0])
    return found


def _rewrite(text: str, key: str, value: bool) -> str:
    word = "true" if value else "false"
    lines = text.splitlines(keepends=True)
    replaced = False
    for index, line in enumerate(lines):
        if _matches(line, key):
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            lines[index] = f"{key}: {word}{_value_and_comment(line)[1]}{ending}"
            replaced = True
    if not replaced:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}: {word}\n")
    return "".join(lines)


def _means(text: str, key: str, value: bool) -> bool:
    """Whether `text` reads back as `key: value` the way `config.decide` reads it."""
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        # `decide` treats an unparsable file that mentions telemetry as an opt-out.
        return value is False
    if not isinstance(parsed, dict) or key not in parsed:
        return False
    return config.word(parsed[key]) is value


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise ConfigWriteError(f"cannot update {path}: it is not UTF-8 text") from None
    except OSError as error:
        raise ConfigWriteError(f"cannot read {path}: {error.strerror or error}") from None


def _write_private(path: str, text: str) -> None:
    """Replace `path` atomically with a 0600 file; a symlinked config is written through."""
    target = os.path.realpath(path)
    temporary = f"{target}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def write_flag(path: str, key: str, value: bool) -> None:
    """Set top-level `key` to true/false in the YAML file at `path`, creating it privately."""
    directory = os.path.dirname(path)
    try:
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise ConfigWriteError(f"cannot write {path}: {directory} is not a directory")
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o700)
        text = _read_text(path)
        updated = _rewrite(text, key, value)
        if not _means(updated, key, value):
            raise ConfigWriteError(
                f"cannot update {path}: it is not a plain YAML mapping; "
                f"add `{key}: {'true' if value else 'false'}` by hand"
            )
        if updated != text:
            _write_private(path, updated)
    except OSError as error:
        raise ConfigWriteError(f"cannot write {path}: {error.strerror or error}") from None
