"""HTTP to the Ponder API with retries: exponential backoff with jitter on connection
errors, timeouts, 408, 429 and 5xx; any other 4xx raises `PonderAPIError` at once."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ponder_client import __version__
from ponder_client.errors import PonderAPIError, PonderUnavailableError

log = logging.getLogger("ponder_client")

RETRY_STATUSES = frozenset({408, 425, 429})
RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class Stopped(Exception):  # noqa: N818 (a signal, not an error)
    """The caller gave up waiting (finish() timed out or the process is exiting)."""


@dataclass(frozen=True)
class Backoff:
    """Delay before retry `attempt` (0-based): exponential, capped, with "equal jitter"
    (half fixed, half random), so many clients that failed together retry apart."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay


@dataclass(frozen=True)
class _Outcome:
    body: Any = None
    failure: str | None = None
    retry_after: float | None = None


def _retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _detail(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000] or response.reason_phrase, []
    if isinstance(body, dict) and "detail" in body:
        errors = body.get("errors") if isinstance(body.get("errors"), list) else []
        return str(body["detail"]), errors
    return str(body)[:2000], []


class Transport:
    """One httpx client with the bearer token; `request` retries what is worth retrying."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0, backoff: Backoff | None = None):
        self.base_url = base_url.rstrip("/")
        self.backoff = backoff or Backoff()
        self.retries = 0
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"ponder-client/{__version__}",
                     "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self, method: str, path: str, *, content: bytes | None = None, deadline: float | None = None,
        stop: threading.Event | None = None,
    ) -> Any:
        """Send until a 2xx (returns the JSON body), a final 4xx (raises `PonderAPIError`),
        the `deadline` (monotonic seconds; raises `PonderUnavailableError`) or `stop` (raises `Stopped`)."""
        attempt = 0
        while True:
            outcome = self._attempt(method, path, content)
            if outcome.failure is None:
                return outcome.body
            failure = outcome.failure
            delay = self.backoff.delay(attempt, outcome.retry_after)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise PonderUnavailableError(f"{method} {path}: gave up after {attempt + 1} attempts ({failure})")
            if attempt == 0 or attempt % 10 == 0:
                log.warning("ponder: %s %s failed (%s); retrying in %.1fs", method, path, failure, delay)
            self.retries += 1
            attempt += 1
            if stop is not None:
                if stop.wait(delay):
                    raise Stopped(failure)
            else:
                time.sleep(delay)

    def _attempt(self, method: str, path: str, content: bytes | None) -> _Outcome:
        """One try: the body on success, why (and Retry-After) when worth retrying."""
        try:
            response = self._client.request(method, path, content=content)
        except RETRY_EXCEPTIONS as exc:
            return _Outcome(failure=f"{type(exc).__name__}: {exc}")
        if response.status_code < 400:
            return _Outcome(body=response.json() if response.content else None)
        if _retryable(response.status_code):
            return _Outcome(failure=f"HTTP {response.status_code}", retry_after=_retry_after(response))
        detail, errors = _detail(response)
        raise PonderAPIError(response.status_code, detail, method=method, path=path, errors=errors)
