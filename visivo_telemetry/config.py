"""Decide whether telemetry is on, and read the settings only the user may set.

Precedence (first opt-out wins): environment, the project's `project.visivo.yml`, the user's
`~/.visivo/config.yml`, then on. Only an opt-out decides: nothing found lower in the list can
be overridden by a "true" higher up, so a cloned repository cannot turn telemetry back on.
An unclear or unreadable answer where the user wrote about telemetry counts as "off".
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

PROJECT_FILE = "project.visivo.yml"
DEFAULT_HOST = "https://us.i.posthog.com"
DEFAULT_API_KEY = "phc_visivo_public_telemetry_key"

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "n"})

ENABLED_KEY = "telemetry_enabled"
USER_SETTING_KEYS = ("posthog_host", "posthog_api_key", "telemetry_debug")


class Paths(NamedTuple):
    """Where telemetry keeps its files; all under `~/.visivo`."""

    home: str
    db: str
    lock: str
    config: str


class Decision(NamedTuple):
    """Whether telemetry is on, which source decided, and that source's file if any."""

    enabled: bool
    decided_by: str
    source_path: str | None = None


class Settings(NamedTuple):
    """Where events go and how; resolved from the environment or the user's config only."""

    host: str
    api_key: str
    debug: bool
    host_error: str | None

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
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
    return None


class Unreadable(Exception):
    """A config file that mentions telemetry but cannot be read as YAML."""


def read_yaml(path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A YAML mapping from `path`, or None when the file is absent or mentions none of `keys`.

    The substring test spares every Visivo run the 20 ms PyYAML import: project files that say
    nothing about telemetry are never parsed. Raises `Unreadable` for a file that mentions a
    key but cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Unreadable(path) from error
    if not any(key.encode() in data for key in keys):
        return None
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        parsed = yaml.load(data.decode("utf-8"), Loader=loader)  # noqa: S506 - safe loader
    except Exception as error:
        raise Unreadable(path) from error
    return parsed if isinstance(parsed, dict) else {}


def _opt_out_in(mapping: dict[str, Any]) -> bool | None:
    """True when a mapping opts out; None when it says nothing. Only `true` keeps telemetry on."""
    if ENABLED_KEY not in mapping:
        return None
    return word(mapping[ENABLED_KEY]) is not True


def _env_decision(env: dict[str, str] | os._Environ[str]) -> Decision | None:
    disabled = env.get("VISIVO_TELEMETRY_DISABLED")
    if disabled is not None and word(disabled) is not False:
        return Decision(False, "env:VISIVO_TELEMETRY_DISABLED")
    dnt = env.get("DO_NOT_TRACK")
    if dnt is not None and dnt.strip().lower() not in ("", "0", "false"):
        return Decision(False, "env:DO_NOT_TRACK")
    return None


def _project_decision(project_dir: str | os.PathLike[str] | None) -> Decision | None:
    if project_dir is None:
        return None
    path = os.path.join(os.fspath(project_dir), PROJECT_FILE)
    try:
        mapping = read_yaml(path, (ENABLED_KEY,))
    except Unreadable:
        return Decision(False, "project", path)
    if mapping is None:
        return None
    defaults = mapping.get("defaults")
    for scope in (defaults if isinstance(defaults, dict) else {}, mapping):
        if _opt_out_in(scope):
            return Decision(False, "project", path)
    return None


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
        if mapping is not None and _opt_out_in(mapping):
            return Decision(False, "global", where.config)
        return Decision(True, "default")
    except Exception:
        return Decision(False, "error")


def _is_loopback(hostname: str) -> bool:
    hostname = hostname.strip("[]").lower()
    return hostname in ("localhost", "::1") or hostname.startswith("127.")


def check_host(host: str) -> str | None:
    """Why `host` may not receive events (None when it may): https only, but for loopback."""
    scheme, sep, rest = host.partition("://")
    if not sep or not rest:
        return "not a URL"
    authority = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    hostname = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    if "]" in authority:
        hostname = authority.split("]", 1)[0] + "]"
    if scheme.lower() == "https":
        return None
    if scheme.lower() == "http" and _is_loopback(hostname):
        return None
    return "https:// is required except for loopback addresses"


def settings(env: dict[str, str] | os._Environ[str] | None = None) -> Settings:
    """Destination, key and debug switch, from the environment, else `~/.visivo/config.yml`.

    Never from a project file: a cloned repository must not be able to redirect telemetry.
    """
    env = os.environ if env is None else env
    try:
        mapping = user_config(paths(env)) or {}
    except Unreadable:
        mapping = {}

    def pick(env_name: str, key: str, default: str) -> str:
        value = env.get(env_name)
        if value:
            return value
        value = mapping.get(key)
        return str(value) if value not in (None, "") else default

    host = pick("VISIVO_POSTHOG_HOST", "posthog_host", DEFAULT_HOST).strip()
    api_key = pick("VISIVO_POSTHOG_API_KEY", "posthog_api_key", DEFAULT_API_KEY).strip()
    debug = word(pick("VISIVO_TELEMETRY_DEBUG", "telemetry_debug", "0")) is True
    return Settings(host, api_key, debug, check_host(host))
