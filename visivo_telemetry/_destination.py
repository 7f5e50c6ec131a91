"""Where events go: the application's PostHog key and host, unless the user names others.

The application gives them in code; the user may override them in the environment or
`~/.visivo/config.yml`, a project file never can. The library ships no key: capture answers
200 to any well-formed key, so a wrong default would lose every event with a success.
"""

from __future__ import annotations

import os

from ._files import Unreadable, paths
from ._record import Record
from ._words import is_true
from ._yaml_scan import user_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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

    Never from a project file: a cloned repository must not be able to redirect telemetry;
    never from a config file another user owns (`~/.visivo` a link to their folder).
    """
    env = os.environ if env is None else env
    try:
        mapping = user_config(paths(env), owned=True) or {}
    except Unreadable:
        mapping = {}
    return _first_given((env, mapping), app_api_key, app_host)


def recorded(api_key: object, host: object) -> Settings | None:
    """The destination an event carries (its recorder's settings), checked again as the
    recorder checked it; None when it is not one (a spool someone edited): such an event is
    dropped, never sent where the file names."""
    if not isinstance(api_key, str) or not isinstance(host, str):
        return None
    host = ingestion_host(host)
    found = Settings(host, api_key, False, check_host(host), check_api_key(api_key), "recorded")
    return None if found.host_error or found.key_error else found


def application_settings(app_api_key: str | None, app_host: str | None) -> Settings:
    """What the application alone says: a test's capture, where the developer's own
    environment and `~/.visivo/config.yml` must not count."""
    return _first_given(({}, {}), app_api_key, app_host)


def _first_given(user: tuple[Any, Any], app_api_key: str | None, app_host: str | None) -> Settings:
    env, mapping = user

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
    debug = is_true(pick("VISIVO_TELEMETRY_DEBUG", "telemetry_debug")[0])
    return Settings(host, api_key, debug, check_host(host), check_api_key(api_key), key_source)
