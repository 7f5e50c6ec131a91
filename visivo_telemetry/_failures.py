"""Why a delivery failed, in words a user can act on: one declaration per failure kind.

The sender stores a kind in the spool's `last_error` (`sender/transport.py` classifies what
went wrong); `status` and `flush` show it with its hint. Standard library only and no imports:
`status` must not pay for the sender's HTTP stack to explain it.
"""

from __future__ import annotations

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Where a user names the certificates to trust, in the order the sender reads them."""

_CA_HINT = "set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to a PEM file holding your company's root CA"

HINTS: dict[str, str] = {
    "certificate-untrusted": f"the receiver's certificate is not trusted here: {_CA_HINT}",
    "ca-bundle-unreadable": f"{' / '.join(CA_VARIABLES)} names no readable certificate file or "
    "folder: fix or unset it",
    "tls-handshake": "the TLS handshake failed (a firewall or proxy intercepting HTTPS?): "
    f"{_CA_HINT}, or set HTTPS_PROXY",
    "proxy-auth": "the proxy asks for credentials: put them in its URL "
    "(HTTPS_PROXY=http://user:password@proxy:port)",
    "proxy-refused": "the proxy refused to connect to the receiver: check HTTPS_PROXY / "
    "ALL_PROXY, or exempt the receiver with NO_PROXY",
    "proxy-unreachable": "the proxy in HTTPS_PROXY / ALL_PROXY does not answer: check its "
    "address, or unset it",
    "proxy-unsupported": "the proxy setting cannot be used: http://, https://, socks5:// and "
    "socks5h:// proxies are supported",
    "dns": "the receiver's name could not be resolved: check the network (behind a SOCKS "
    "proxy, use socks5h:// so the proxy resolves names)",
    "connection-refused": "nothing accepts connections at the receiver's address: check "
    "VISIVO_POSTHOG_HOST and the network",
    "connection-failed": "the connection to the receiver failed (network down or reset): "
    "the events wait for the next try",
    "timeout": "no answer within 1 second (connecting, TLS, proxy or response): the network "
    "is slow or blocked; the events wait for the next try",
    "sender-unavailable": "the sender could not start (a dependency is missing or broken): "
    "reinstall visivo-telemetry",
    "no-api-key": "no PostHog API key: the application gives none and VISIVO_POSTHOG_API_KEY "
    "is unset",
    "refused-host": "VISIVO_POSTHOG_HOST is refused: https is required except on loopback",
    "split-budget": "the receiver rejected parts of a batch too many times: retried later",
}

_HTTP_HINTS = {
    401: "the receiver refused the API key: check VISIVO_POSTHOG_API_KEY",
    403: "the receiver refused the API key: check VISIVO_POSTHOG_API_KEY",
    407: HINTS["proxy-auth"],
    413: "the receiver found a batch too large: retried in smaller parts",
    429: "the receiver asks to slow down: retried after the time it gave",
}


def hint(error: str | None) -> str | None:
    """One line saying what a stored failure means and what the user can set; None if unknown."""
    if not error:
        return None
    if error.startswith("http_") and error[5:].isdigit():
        status = int(error[5:])
        if status in _HTTP_HINTS:
            return _HTTP_HINTS[status]
        if status >= 500:
            return f"the receiver failed (HTTP {status}): the events wait for the next try"
        return f"the receiver answered HTTP {status}"
    return HINTS.get(error)
