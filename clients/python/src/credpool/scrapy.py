"""A Scrapy downloader middleware that takes each request's credential from
``credpool serve`` and reports every answer.

settings.py::

    DOWNLOADER_MIDDLEWARES = {"credpool.scrapy.CredpoolMiddleware": 950}
    CREDPOOL_ADDR = "http://127.0.0.1:8700"   # or the environment's CREDPOOL_ADDR
    # Several servers of one deployment: a list, or one string with commas.
    # CREDPOOL_ADDR = ["http://10.0.0.1:8700", "http://10.0.0.2:8700"]
    # CREDPOOL_FAILOVER_DEADLINE = 30          # seconds a call tries the others
    CREDPOOL_TOKEN = "..."                    # or the environment's CREDPOOL_TOKEN
    CREDPOOL_SITE = "shop.example"            # or spider.credpool_site, or meta["credpool_site"]

Per request: ``meta["credpool_site"]``, ``meta["credpool_type"]``, and
``meta["credpool"] = False`` for a request that needs no credential.

Each request gets a lease: the credential's cookies (as its ``Cookie``
header; Scrapy's cookie jar is kept out, so no session leaks into another
account's request), headers and bearer token. The answer is reported (401
expired, 403 blocked, 429 rate-limited with Retry-After, 5xx network,
``CREDPOOL_CHECKS`` first, e.g. a captcha page); a request whose answer was
blocked, expired, challenged or rate-limited is retried with another
credential (``CREDPOOL_RETRY_TIMES``, 3). When nothing is free, the request
waits until the pool's ``next_free_at`` (at most ``CREDPOOL_MAX_WAIT``
seconds, 60) instead of asking again at once. A download error is reported
as network and left to Scrapy's RetryMiddleware.

Needs Twisted's asyncio reactor (Scrapy's default since 2.13).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.utils.misc import load_object

from . import _api
from .aio import AsyncClient, AsyncLease
from .errors import NoCredentialAvailable
from .outcome import Check, Report, classify, classify_exception

log = logging.getLogger("credpool.scrapy")

RETRY_OUTCOMES = ("blocked", "expired", "challenged", "rate-limited")
#: Request meta keys this middleware uses.
META_LEASE = "credpool_lease"
META_LEASED_AT = "credpool_leased_at"
META_HEADERS = "credpool_headers"
META_RETRIES = "credpool_retries"


def _checks(value: Any) -> tuple[Check, ...]:
    if not value:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[Check] = []
    for item in items:
        check = load_object(item) if isinstance(item, str) else item
        if not callable(check):
            raise NotConfigured(f"CREDPOOL_CHECKS: {item!r} is not callable")
        out.append(check)
    return tuple(out)


class CredpoolMiddleware:
    """Leases a credential per request; reports each answer."""

    def __init__(
        self,
        addr: str | Iterable[str] | None,
        token: str | None,
        *,
        failover_deadline: float = 30.0,
        site: str | None = None,
        type: str | None = None,
        lease_ttl: int | None = None,
        max_wait: float = 60.0,
        retry_times: int = 3,
        retry_outcomes: Iterable[str] = RETRY_OUTCOMES,
        checks: Iterable[Check] = (),
        stats: Any = None,
    ) -> None:
        self._addr, self._token = _api.settings(addr, token)
        self.failover_deadline = failover_deadline
        self.site = site
        self.type = type
        self.lease_ttl = lease_ttl
        self.max_wait = max_wait
        self.retry_times = retry_times
        self.retry_outcomes = frozenset(retry_outcomes)
        self.checks = tuple(checks)
        self.stats = stats
        self.crawler: Crawler | None = None
        self._client: AsyncClient | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CredpoolMiddleware:
        from scrapy.utils.reactor import is_asyncio_reactor_installed

        s = crawler.settings
        if not s.getbool("CREDPOOL_ENABLED", True):
            raise NotConfigured("CREDPOOL_ENABLED is off")
        if not is_asyncio_reactor_installed():
            raise NotConfigured(
                "credpool.scrapy needs the asyncio reactor: TWISTED_REACTOR = "
                '"twisted.internet.asyncioreactor.AsyncioSelectorReactor"'
            )
        ttl = s.get("CREDPOOL_LEASE_TTL")
        mw = cls(
            s.get("CREDPOOL_ADDR"),
            s.get("CREDPOOL_TOKEN"),
            failover_deadline=s.getfloat("CREDPOOL_FAILOVER_DEADLINE", 30.0),
            site=s.get("CREDPOOL_SITE"),
            type=s.get("CREDPOOL_TYPE"),
            lease_ttl=int(ttl) if ttl else None,
            max_wait=s.getfloat("CREDPOOL_MAX_WAIT", 60.0),
            retry_times=s.getint("CREDPOOL_RETRY_TIMES", 3),
            retry_outcomes=s.getlist("CREDPOOL_RETRY_OUTCOMES", list(RETRY_OUTCOMES)),
            checks=_checks(s.get("CREDPOOL_CHECKS")),
            stats=crawler.stats,
        )
        mw.crawler = crawler
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    def __repr__(self) -> str:
        return f"CredpoolMiddleware(addr={self._addr!r}, site={self.site!r})"

    def _inc(self, key: str, n: float = 1) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"credpool/{key}", n)

    def client(self) -> AsyncClient:
        """The client, made in the running event loop on first use."""
        if self._client is None:
            self._client = AsyncClient(
                self._addr,
                self._token,
                checks=self.checks,
                failover_deadline=self.failover_deadline,
            )
        return self._client

    async def spider_closed(self, spider: Spider | None = None) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------ hooks

    def lease_ended(
        self, request: Request, lease: AsyncLease, report: Report, leased_at: float
    ) -> None:
        """Called when a lease is reported (``leased_at`` and now are
        ``time.monotonic()``); a subclass records what it needs here."""

    # ------------------------------------------------------- the flow

    def _site_of(self, request: Request, spider: Spider | None = None) -> str | None:
        site = request.meta.get("credpool_site") or getattr(spider, "credpool_site", None)
        return site or self.site

    async def _acquire(self, site: str, type: str | None) -> AsyncLease:
        client = self.client()
        deadline = time.monotonic() + self.max_wait
        attempt = 0
        while True:
            got = await client.try_acquire(site, type=type, ttl_seconds=self.lease_ttl)
            if got.lease is not None:
                self._inc("acquire/granted")
                assert isinstance(got.lease, AsyncLease)
                return got.lease
            self._inc("acquire/no_available")
            self._inc(f"acquire/no_available/{got.reason or got.status}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _api.no_credential(site, got)
            pause = _api.pause_before_retry(got, attempt, remaining)
            self._inc("acquire/wait_seconds", pause)
            await asyncio.sleep(pause)
            attempt += 1

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if request.meta.get("credpool") is False:
            return None
        if spider is None and self.crawler is not None:
            spider = self.crawler.spider
        site = self._site_of(request, spider)
        if not site:
            raise IgnoreRequest(
                "credpool: no site for this request: set CREDPOOL_SITE, "
                "spider.credpool_site or meta['credpool_site']"
            )
        kind = request.meta.get("credpool_type") or getattr(spider, "credpool_type", self.type)
        try:
            lease = await self._acquire(site, kind)
        except NoCredentialAvailable as e:
            self._inc("gave_up")
            raise IgnoreRequest(f"credpool: {e}") from None
        for name in request.meta.pop(META_HEADERS, ()):
            request.headers.pop(name, None)
        extra = lease.request_headers()
        for name, value in extra.items():
            request.headers[name] = value
        request.meta[META_HEADERS] = list(extra)
        request.meta[META_LEASE] = lease
        request.meta[META_LEASED_AT] = time.monotonic()
        # The credential's cookies only: Scrapy's jar would carry one
        # account's session into another's request.
        request.meta["dont_merge_cookies"] = True
        return None

    async def _end(self, request: Request, report: Report) -> AsyncLease | None:
        lease = request.meta.pop(META_LEASE, None)
        if not isinstance(lease, AsyncLease) or lease.finished:
            return None
        self.lease_ended(request, lease, report, request.meta.get(META_LEASED_AT, 0.0))
        self._inc(f"outcome/{report.outcome}")
        await lease.report(report)
        return lease

    async def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Request | Response:
        if META_LEASE not in request.meta:
            return response
        report = classify(response, self.checks)
        lease = await self._end(request, report)
        retries = int(request.meta.get(META_RETRIES, 0))
        if lease is not None and report.outcome in self.retry_outcomes:
            if retries < self.retry_times:
                log.debug(
                    "%s with credential %s: %s; again with another",
                    request.url,
                    lease.credential.id,
                    report.outcome,
                )
                self._inc("retried")
                retry = request.replace(dont_filter=True)
                retry.meta[META_RETRIES] = retries + 1
                return retry
            self._inc("retries_exhausted")
        return response

    async def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> None:
        if META_LEASE in request.meta:
            await self._end(request, classify_exception(exception))
        return None
