"""HTTP for the sender: httpx with every timeout at one second, proxies from the environment.

The transport only moves bytes; what a status code means (retry, split, drop) is the drain's
policy. Tests of that policy swap in a fake transport with the same two methods.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import NamedTuple, Protocol

import httpx

TIMEOUT_S = 1.0
USER_AGENT = "visivo-telemetry-sender"


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
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )

    def post(self, url: str, body: bytes) -> Response:
        try:
            answer = self._client.post(url, content=body)
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise TransportError(type(error).__name__) from error
        return Response(answer.status_code, answer.headers.get("retry-after"))

    def close(self) -> None:
        self._client.close()
