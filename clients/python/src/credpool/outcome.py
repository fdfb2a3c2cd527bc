"""From a site's HTTP answer (or a failed request) to the report credpool
wants: 401 expired, 403 blocked, 429 rate-limited with its Retry-After,
5xx and connection errors network; checks you plug in see every answer
first (a captcha page served with 200, a redirect to the login page)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The outcomes the server takes.
OUTCOMES = (
    "success",
    "blocked",
    "challenged",
    "expired",
    "rate-limited",
    "network",
    "failed",
)


@dataclass(frozen=True)
class Report:
    """One report: the outcome, the HTTP status, the site's Retry-After."""

    outcome: str
    http_status: int | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.http_status is not None:
            out["http_status"] = self.http_status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


@dataclass(frozen=True)
class Page:
    """What a check sees of an answer."""

    status: int
    headers: Mapping[str, str]
    url: str
    text: Callable[[], str]

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


#: A check: returns an outcome for answers it recognises, None otherwise.
Check = Callable[[Page], "str | None"]


def body_contains(marker: str, outcome: str = "challenged") -> Check:
    """A page whose body contains ``marker`` (a captcha form, a "please
    sign in" text) is reported as ``outcome``."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")

    def check(page: Page) -> str | None:
        return outcome if marker in page.text() else None

    return check


def redirects_to(path: str, outcome: str = "expired") -> Check:
    """A redirect (3xx) whose Location contains ``path`` (``/login``) is
    reported as ``outcome``: the session was logged out."""

    def check(page: Page) -> str | None:
        location = page.header("location") or ""
        return outcome if 300 <= page.status < 400 and path in location else None

    return check


class _HasStatus(Protocol):
    headers: Any


def page_of(response: Any) -> Page:
    """A :class:`Page` of an httpx, requests, aiohttp-read or Scrapy
    response (anything with a status and headers)."""
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(response, "status", None)
    if not isinstance(status, int):
        raise TypeError("the response has no integer status_code or status")
    raw = getattr(response, "headers", None) or {}
    headers: dict[str, str] = {}
    items: Iterable[Any] = raw.items() if hasattr(raw, "items") else []
    for k, v in items:
        # Scrapy's headers are bytes, lists of bytes.
        if isinstance(v, list):
            v = v[0] if v else b""
        key = k.decode("latin-1") if isinstance(k, bytes) else str(k)
        headers[key] = v.decode("latin-1") if isinstance(v, bytes) else str(v)

    def text() -> str:
        t = getattr(response, "text", None)
        if callable(t):
            t = t()
        if isinstance(t, str):
            return t
        body = getattr(response, "body", None) or getattr(response, "content", None)
        return body.decode("utf-8", "replace") if isinstance(body, bytes) else ""

    try:
        url = str(getattr(response, "url", ""))
    except RuntimeError:
        # An httpx response made without a request.
        url = ""
    return Page(status=status, headers=headers, url=url, text=text)


def retry_after_seconds(value: str | None, now: float | None = None) -> int | None:
    """A Retry-After header (seconds, or an HTTP date) in whole seconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, round(when.timestamp() - (time.time() if now is None else now)))


def classify(response: Any, checks: Iterable[Check] = ()) -> Report:
    """The report for a site's answer."""
    page = page_of(response)
    for check in checks:
        outcome = check(page)
        if outcome is not None:
            return Report(outcome, page.status)
    s = page.status
    if s == 401:
        return Report("expired", s)
    if s == 403:
        return Report("blocked", s)
    if s == 429:
        return Report("rate-limited", s, retry_after_seconds(page.header("retry-after")))
    if s >= 500:
        return Report("network", s)
    if s in (404, 410) or s < 400:
        # The credential worked; the page is another matter.
        return Report("success", s)
    return Report("failed", s)


#: Exceptions that mean the site could not be reached, by class name
#: (httpx, requests, aiohttp, Twisted and the standard library's), so no
#: HTTP library has to be installed to recognise them.
_NETWORK_NAMES = {
    "TransportError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "RemoteProtocolError",
    "ConnectionError",
    "Timeout",
    "ClientConnectionError",
    "ServerDisconnectedError",
    "TimeoutError",
    "ConnectionRefusedError",
    "ConnectionLost",
    "ConnectionDone",
    "ResponseNeverReceived",
    "TCPTimedOutError",
    "DNSLookupError",
}


def classify_exception(exc: BaseException) -> Report:
    """The report for a request that raised: network for a connection or
    timeout error, failed otherwise."""
    if isinstance(exc, (OSError, TimeoutError)):
        return Report("network")
    names = {c.__name__ for c in type(exc).__mro__}
    return Report("network" if names & _NETWORK_NAMES else "failed")
