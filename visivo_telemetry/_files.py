"""Telemetry's files: where they are, reading one safely, writing a flag into the user's config.

Reading is bounded and never blocks, whatever a config path turns out to be (a FIFO, a huge
file); what the bytes say is `_yaml_scan`'s. Writing is line-based, so the user's other keys,
comments and layout survive `enable`, `disable` and the first-run notice; a write is checked
with PyYAML before it replaces the file, so we never leave a file that means something other
than what we wrote.
"""

from __future__ import annotations

import os
import stat
import sys

from ._record import Record
from ._words import word

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Paths(Record):
    """Where telemetry keeps its files (str each): home, db, lock, config; all in `~/.visivo`."""

    _fields = ("home", "db", "lock", "config")


def home_folder(
    env: dict[str, str] | os._Environ[str] | None = None, platform: str = sys.platform
) -> str | None:
    """The user's home as Visivo finds it, or None when there is no usable one.

    Visivo writes `~/.visivo/config.yml` under `Path.home()`, so that is where an opt-out is
    looked for: `Path.home()` itself when `pathlib` is loaded (every Visivo process, and a test
    that patches it), else what it would answer, without importing `pathlib` (which brings `re`
    onto a CLI's path): on Windows `USERPROFILE` (Python ignores `HOME` there, which Git Bash,
    MSYS2 and Cygwin set), elsewhere `HOME`, else the password database. `env` answers for
    another environment (a test's). An empty or relative answer, or a `HOME` set
    but empty or relative, is no home: nothing is written to `/.visivo` or below the cwd.
    """
    windows = platform == "win32"
    path = _path_rules(platform)
    env = os.environ if env is None else env
    if env is os.environ and "pathlib" in sys.modules:
        home = _path_home(sys.modules["pathlib"])
    else:
        home = _home_from(env, windows, path)
    if not windows and "HOME" in env and not path.isabs(env["HOME"]):
        return None
    return home if home and path.isabs(home) else None


def machine_config(
    env: dict[str, str] | os._Environ[str] | None = None, platform: str = sys.platform
) -> str:
    """The administrator's file for every user of this machine: `/etc/visivo/config.yml`, or
    `%PROGRAMDATA%\\visivo\\config.yml` on Windows. It can only opt out (`_precedence`)."""
    if platform != "win32":
        return "/etc/visivo/config.yml"
    env = os.environ if env is None else env
    base = env.get("PROGRAMDATA") or "C:\\ProgramData"
    return _path_rules(platform).join(base, "visivo", "config.yml")


def _path_home(pathlib: Any) -> str | None:
    try:
        return str(pathlib.Path.home())
    except (RuntimeError, KeyError, OSError):
        return None


def _home_from(env: Any, windows: bool, path: Any) -> str | None:
    """What `Path.home()` answers for `env` (`ntpath`/`posixpath.expanduser("~")`)."""
    if windows:
        if env.get("USERPROFILE"):
            return env["USERPROFILE"]
        return path.join(env.get("HOMEDRIVE", ""), env.get("HOMEPATH", "")) or None
    if "HOME" in env:
        return env["HOME"].rstrip("/") or "/"
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, OSError):
        return None


def _path_rules(platform: str) -> Any:
    """`os.path`, or another platform's path rules to answer as it would (tests emulate it)."""
    windows = platform == "win32"
    if windows == (os.name == "nt"):
        return os.path
    import ntpath
    import posixpath

    return ntpath if windows else posixpath


def home_environment(where: Paths, platform: str = sys.platform) -> dict[str, str]:
    """The variable that gives a sender this very home: the host may have found it through a
    patched `Path.home()` (a test), which a new process would not see."""
    user_home = _path_rules(platform).dirname(where.home)
    return {"USERPROFILE" if platform == "win32" else "HOME": user_home}


def paths(
    env: dict[str, str] | os._Environ[str] | None = None, platform: str = sys.platform
) -> Paths | None:
    """The files under `~/.visivo` (`home_folder`), or None when there is no usable home."""
    home = home_folder(env, platform)
    if home is None:
        return None
    path = _path_rules(platform)
    base = path.join(home, ".visivo")
    return Paths(
        base,
        path.join(base, "telemetry.db"),
        path.join(base, "telemetry.lock"),
        path.join(base, "config.yml"),
    )


def is_plain_or_absent(path: str) -> bool:
    """Whether `path` is absent or a regular file itself (never a link, a directory or a
    device): the only lock file that may be opened, since opening one truncates it."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


class Refused(Record):
    """Why telemetry will not use `~/.visivo` (`why`), and what the user can do (`fix`)."""

    _fields = ("why", "fix")


_SPOOL_SUFFIXES = ("", "-wal", "-shm")
"""The database and the files SQLite keeps beside it in WAL mode."""

_UNSAFE_BITS = 0o022
"""Writable by the group or by others: someone else could change what we read or send."""


def user_id() -> int | None:
    """This process's uid; None where there is none (Windows), and ownership is not checked."""
    getuid = getattr(os, "getuid", None)
    return None if getuid is None else getuid()


def folder_refusal(folder: str, repair: bool = True) -> Refused | None:
    """Why `folder` (`~/.visivo`) may not hold a spool (None: it may), as OpenSSH judges `~/.ssh`.

    A folder of the user's is made private (0700) when `repair` is set. A link is accepted
    when it leads to a folder the user owns that neither group nor others can write (a
    dotfiles checkout), and is never repaired through. Anything else another user owns, a
    link elsewhere, or something that is not a folder is refused. One `lstat` (and a `stat`
    for a link). Where there are no uids (Windows), only links and file types are judged.
    """
    uid = user_id()
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None  # made 0700 by the first write
    except OSError as error:
        return Refused(f"cannot inspect {folder}: {error.strerror or error}", _FIX_HOME)
    if stat.S_ISLNK(info.st_mode):
        return _link_refusal(folder, uid)
    if not stat.S_ISDIR(info.st_mode):
        return Refused(f"{folder} is not a folder", f"remove it (rm {folder})")
    if uid is not None and info.st_uid != uid:
        return Refused(
            f"{folder} belongs to another user (uid {info.st_uid})", _fix_foreign_folder(folder)
        )
    if uid is not None and repair and info.st_mode & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError as error:
            return Refused(f"cannot make {folder} private: {error.strerror or error}", _FIX_HOME)
    return None


_FIX_HOME = "check the permissions of your home folder"


def _fix_foreign_folder(folder: str) -> str:
    return f"make it yours (sudo chown -R $USER {folder}) or remove it"


def _link_refusal(folder: str, uid: int | None) -> Refused | None:
    fix = f"remove the link (rm {folder}); telemetry makes a private folder of its own"
    try:
        target = os.stat(folder)
    except OSError:
        return Refused(f"{folder} is a link to a missing folder", fix)
    if not stat.S_ISDIR(target.st_mode):
        return Refused(f"{folder} is a link to something that is not a folder", fix)
    if uid is None:
        return None
    if target.st_uid != uid:
        return Refused(f"{folder} is a link to a folder of another user (uid {target.st_uid})", fix)
    if target.st_mode & _UNSAFE_BITS:
        real = os.path.realpath(folder)
        return Refused(
            f"{folder} is a link to {real}, which others can write",
            f"make it private (chmod 700 {real}) or remove the link (rm {folder})",
        )
    return None


def spool_refusal(where: Paths, repair: bool = True) -> Refused | None:
    """Why telemetry may not write its spool under `where` (None: it may): the folder
    (`folder_refusal`), then each file: the database, its `-wal` and `-shm`, the lock. A file
    of the user's is made 0600 (`repair`); a link, or a file another user owns, is refused,
    never written through. A lock that is a link or a folder is left to the sender, which
    never opens it (`is_plain_or_absent`). One `lstat` per path; nothing is created."""
    refused = folder_refusal(where.home, repair)
    if refused is not None:
        return refused
    uid = user_id()
    for path in (*(where.db + suffix for suffix in _SPOOL_SUFFIXES), where.lock):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            return Refused(f"cannot inspect {path}: {error.strerror or error}", _FIX_HOME)
        if not stat.S_ISREG(info.st_mode):
            if path == where.lock:
                continue
            kind = "a link" if stat.S_ISLNK(info.st_mode) else "not a file"
            return Refused(f"{path} is {kind}", f"remove it (rm {path})")
        if uid is None:
            continue
        if info.st_uid != uid:
            return Refused(
                f"{path} belongs to another user (uid {info.st_uid})", f"remove it (rm {path})"
            )
        if repair and info.st_mode & 0o077:
            try:
                os.chmod(path, 0o600)
            except OSError as error:
                return Refused(f"cannot make {path} private: {error.strerror or error}", _FIX_HOME)
    return None


class Unreadable(Exception):
    """A config file that mentions telemetry but cannot be read as a YAML mapping."""


_MAX_CONFIG_BYTES = 1 << 20


def read_regular(path: str, owner: int | None = None) -> bytes | None:
    """A regular file of at most 1 MiB; None when absent, or when `owner` is given and the
    file belongs to someone else. Never blocks on a FIFO or device.

    A larger file cannot be read entirely, so it is unclear (`Unreadable`): off."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Unreadable(path) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(path)
        if owner is not None and info.st_uid != owner:
            return None
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


class ConfigWriteError(Exception):
    """The user's config could not be updated; the message is one line for the terminal."""


def _matches(line: str, key: str) -> bool:
    """A top-level `key:` line (no indentation), the only form we rewrite."""
    if not line.startswith(key):
        return False
    return line[len(key) :].lstrip(" \t").startswith(":")


def _comment(line: str) -> str:
    """`key: value   # note` → `   # note`: the comment with its spacing, or nothing."""
    rest = line.split(":", 1)[1].rstrip("\r\n")
    for index in range(1, len(rest)):
        if rest[index] == "#" and rest[index - 1] in " \t":
            return rest[len(rest[:index].rstrip(" \t")) :]
    return ""


def _spelled(value: bool | str) -> str:
    if isinstance(value, str):
        return value
    return "true" if value else "false"


def _rewrite(text: str, key: str, value: bool | str) -> str:
    spelled = _spelled(value)
    lines = text.splitlines(keepends=True)
    replaced = False
    for index, line in enumerate(lines):
        if _matches(line, key):
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            lines[index] = f"{key}: {spelled}{_comment(line)}{ending}"
            replaced = True
    if not replaced:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}: {spelled}\n")
    return "".join(lines)


def _means(text: str, key: str, value: bool | str) -> bool:
    """Whether `text` reads back as `key: value` the way `decide` reads it."""
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        # `decide` treats an unparsable file that mentions telemetry as an opt-out.
        return value is False
    if not isinstance(parsed, dict) or key not in parsed:
        return False
    if isinstance(value, str):
        return parsed[key] == value
    return word(parsed[key]) is value


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


def write_flag(path: str, key: str, value: bool | str) -> None:
    """Set top-level `key` to true/false (or to a plain word, as `fields-1a2b3c4d`, that YAML
    reads as that string) in the YAML file at `path`, creating it privately."""
    directory = os.path.dirname(path)
    refused = folder_refusal(directory)
    if refused is not None:
        raise ConfigWriteError(f"cannot write {path}: {refused.why}; {refused.fix}")
    try:
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o700)
        text = _read_text(path)
        updated = _rewrite(text, key, value)
        if not _means(updated, key, value):
            raise ConfigWriteError(
                f"cannot update {path}: it is not a plain YAML mapping; "
                f"add `{key}: {_spelled(value)}` by hand"
            )
        if updated != text:
            _write_private(path, updated)
    except OSError as error:
        raise ConfigWriteError(f"cannot write {path}: {error.strerror or error}") from None
