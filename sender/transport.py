"""HTTP for the sender: httpx with every timeout at one second, trust and proxies from the
environment, and every failure named by what the user can do about it.

The transport only moves bytes, gzip-compressed as PostHog's capture accepts them; what a
status code means (retry, split, drop) is the drain's policy. Tests of that policy swap in a
fake transport with the same two methods, which then sees the uncompressed JSON.
"""

from __future__ import annotations

import re
import socket
import ssl
import sys
import urllib.request
import zlib
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from visivo_telemetry._schema import LIB_NAME
from visivo_telemetry._version import __version__

from .trust import CaBundleError, ssl_context

TIMEOUT_S = 1.0
USER_AGENT = f"{LIB_NAME}/{__version__}"
GZIP_LEVEL = 6
"""zlib's default; what it saves per event on the wire is measured in scripts/bench.py."""
DETAIL_CHARS = 200


def gzip_body(body: bytes, level: int = GZIP_LEVEL) -> bytes:
    """`body` as a gzip member with no file name or time in it (the same bytes every time)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


class Response(NamedTuple):
    """What the drain needs of an answer: the status and any `Retry-After` header."""

    status: int
    retry_after: str | None = None


class TransportError(Exception):
    """The request got no answer; `kind` is a key of `_failures.HINTS`, `detail` the cause."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Transport(Protocol):
    def post(self, url: str, body: bytes) -> Response: ...

    def close(self) -> None: ...


class HttpxTransport:
    """One keep-alive connection across batches; every phase times out after one second.

    httpx is imported here, not at the top: a sender whose httpx (or proxy support) is missing
    or broken then fails as a recorded, backed-off failure rather than at import.
    Cookies are refused: a sticky-session cookie sent back would link one session's batch
    to the next session's.
    """

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        try:
            httpx = import_httpx()
            self._httpx = httpx
            self._client = httpx.Client(
                timeout=httpx.Timeout(timeout),
                verify=ssl_context(),
                trust_env=True,
                follow_redirects=False,
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": USER_AGENT,
                },
            )
        except CaBundleError as error:
            detail = describe(error.__cause__, str(error))
            raise TransportError("ca-bundle-unreadable", detail) from error
        except ImportError as error:
            kind = "proxy-unsupported" if "socks" in str(error).lower() else "sender-unavailable"
            raise TransportError(kind, describe(error)) from error
        except ValueError as error:  # a proxy URL httpx cannot use
            raise TransportError("proxy-unsupported", describe(error)) from error

    def post(self, url: str, body: bytes) -> Response:
        """POST the JSON `body` gzip-compressed; the answer's status and `Retry-After`."""
        try:
            answer = self._client.post(url, content=gzip_body(body))
        except (self._httpx.HTTPError, OSError, ValueError) as error:
            raise TransportError(failure_kind(error, proxied(url)), describe(error)) from error
        return Response(answer.status_code, answer.headers.get("retry-after"))

    def close(self) -> None:
        self._client.close()


def import_httpx() -> Any:
    """httpx without its command-line client, which a sender never runs: `import httpx` loads
    `httpx._main` (click, rich, pygments when installed) for its `httpx` command, about 40% of
    what a sender imports. httpx catches that import's `ImportError` and keeps a stub `main`;
    a `None` in `sys.modules` is Python's own way to make an import fail. Nothing else changes:
    with another httpx layout this is simply a plain import."""
    if "httpx" in sys.modules:
        return sys.modules["httpx"]
    blocked = "httpx._main" not in sys.modules
    if blocked:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        if blocked:
            del sys.modules["httpx._main"]
    return httpx


def proxied(url: str) -> bool:
    """Whether the environment sends `url` through a proxy (only to name a failure)."""
    proxies = urllib.request.getproxies()
    host = urlsplit(url).hostname or ""
    if not (proxies.get(urlsplit(url).scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


def failure_kind(error: BaseException, through_proxy: bool = False) -> str:
    """The kind of a failed request (a key of `_failures.HINTS`), from its chain of causes."""
    chain = _causes(error)
    names = {type(cause).__name__ for cause in chain}
    if any(isinstance(cause, ssl.SSLCertVerificationError) for cause in chain):
        return "certificate-untrusted"
    if "ProxyError" in names:  # a CONNECT answered non-2xx, or a SOCKS server's refusal
        text = " ".join(str(cause) for cause in chain).lower()
        wants_credentials = "407" in text or "auth" in text or "password" in text
        return "proxy-auth" if wants_credentials else "proxy-refused"
    if names & {"ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout"}:
        return "timeout"
    if any(isinstance(cause, TimeoutError) for cause in chain):  # `socket.timeout` is one
        return "timeout"
    if any(isinstance(cause, ssl.SSLError) for cause in chain):
        return "tls-handshake"
    if any(isinstance(cause, socket.gaierror) for cause in chain):
        return "dns"
    if any(isinstance(cause, ConnectionRefusedError) for cause in chain):
        return "proxy-unreachable" if through_proxy else "connection-refused"
    return "proxy-unreachable" if through_proxy and "ConnectError" in names else "connection-failed"


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain and len(chain) < 16:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")


def describe(error: BaseException | None, fallback: str = "") -> str:
    """The innermost cause in one short line, with any `user:password@` of a URL removed."""
    chain = _causes(error) if error is not None else []
    if not chain:
        return fallback
    root = chain[-1]
    text = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
    if fallback:
        text = f"{fallback}: {text}"
    return _CREDENTIALS.sub("***@", " ".join(text.split()))[:DETAIL_CHARS]
