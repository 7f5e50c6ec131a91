"""HTTP for the sender: httpx with every timeout at one second, proxies from the environment.

The transport only moves bytes, gzip-compressed as PostHog's capture accepts them; what a
status code means (retry, split, drop) is the drain's policy. Tests of that policy swap in a
fake transport with the same two methods, which then sees the uncompressed JSON.
"""

from __future__ import annotations

import zlib
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import NamedTuple, Protocol

import httpx

from visivo_telemetry._schema import LIB_NAME
from visivo_telemetry._version import __version__

TIMEOUT_S = 1.0
USER_AGENT = f"{LIB_NAME}/{__version__}"
GZIP_LEVEL = 6
"""zlib's default; what it saves per event on the wire is measured in scripts/bench.py."""


def gzip_body(body: bytes, level: int = GZIP_LEVEL) -> bytes:
    """`body` as a gzip member with no file name or time in it (the same bytes every time)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


class Response(NamedTuple):
    """What the drain needs of an answer: the status and any `Retry-After` header."""

    status: int
    retry_after: str | None = None


class TransportError(Exception):
    """The request did not get an answer (refused, reset, timed out, DNS failure…)."""


class Transport(Protocol):
    def post(self, url: str, body: bytes) -> Response: ...

    def close(self) -> None: ...


class HttpxTransport:
    """One keep-alive connection across batches; every phase times out after one second.

    Cookies are refused: a sticky-session cookie sent back would link one session's batch
    to the next session's.
    """

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            trust_env=True,
            follow_redirects=False,
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": USER_AGENT,
            },
        )

    def post(self, url: str, body: bytes) -> Response:
        """POST the JSON `body` gzip-compressed; the answer's status and `Retry-After`."""
        try:
            answer = self._client.post(url, content=gzip_body(body))
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise TransportError(type(error).__name__) from error
        return Response(answer.status_code, answer.headers.get("retry-after"))

    def close(self) -> None:
        self._client.close()
