"""The usual approach credpool is compared with: a downloader middleware
that cycles a fixed list of session cookies, drops a cookie when its
request meets a 403 and retries that request with the next one. No pool, no
pacing, no rest, no exclusive use."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response


class NaiveCookieRotation:
    #: Accounts whose cookie was dropped, over the crawl.
    dropped: ClassVar[set[str]] = set()

    def __init__(self, cookies: list[list[str]], crawler: Crawler, retry_times: int = 3) -> None:
        # [account, Cookie header] pairs.
        self.cookies = [(a, c) for a, c in cookies]
        self.crawler = crawler
        self.retry_times = retry_times
        self.next = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NaiveCookieRotation:
        return cls(crawler.settings.getlist("NAIVE_COOKIES"), crawler)

    def used(self, account: str, started: float, outcome: str) -> None:
        """A subclass records uses here."""

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if not self.cookies:
            engine = self.crawler.engine
            assert engine is not None
            engine.close_spider(self.crawler.spider, "no_cookies_left")
            raise IgnoreRequest("no cookie left")
        account, cookie = self.cookies[self.next % len(self.cookies)]
        self.next += 1
        request.headers["Cookie"] = cookie
        request.meta["dont_merge_cookies"] = True
        request.meta["naive_account"] = account
        request.meta["naive_started"] = time.monotonic()

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Any:
        account = request.meta.get("naive_account")
        if account is None:
            return response
        outcome = {401: "expired", 403: "blocked", 429: "rate-limited"}.get(
            response.status, "success" if response.status < 400 else "failed"
        )
        self.used(account, request.meta["naive_started"], outcome)
        if response.status == 403:
            self.cookies = [(a, c) for a, c in self.cookies if a != account]
            NaiveCookieRotation.dropped.add(account)
            tries = request.meta.get("naive_retries", 0)
            if tries < self.retry_times:
                retry = request.replace(dont_filter=True)
                retry.meta["naive_retries"] = tries + 1
                if self.crawler.stats:
                    self.crawler.stats.inc_value("naive/retried")
                return retry
        return response

    def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> None:
        account = request.meta.get("naive_account")
        if account is not None:
            self.used(account, request.meta["naive_started"], "network")
