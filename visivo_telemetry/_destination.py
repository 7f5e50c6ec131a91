"""TEMPORARY shim until the config split lands."""

from ._config import Settings, settings  # noqa: F401


def application_settings(api_key, host):
    from ._config import DEFAULT_HOST, check_api_key, check_host, ingestion_host

    host = ingestion_host(host or DEFAULT_HOST)
    return Settings(
        host,
        api_key,
        False,
        check_host(host),
        check_api_key(api_key),
        "application" if api_key else None,
    )
