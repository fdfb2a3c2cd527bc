"""A real Scrapy crawl of the simulated shop, run as its own process (a
Twisted reactor runs once per process):

    python crawl_shop.py pool  SHOP_URL SECONDS CONCURRENCY   # CREDPOOL_ADDR, CREDPOOL_TOKEN
    python crawl_shop.py naive SHOP_URL SECONDS CONCURRENCY   # cookies as JSON on stdin

``pool`` takes each request's credential from credpool through
:class:`credpool.scrapy.CredpoolMiddleware`; ``naive`` is the usual cookie
rotation (:mod:`naive_rotation`). Either way the crawl keeps its own record
of every credential use (which account, from when to when, what the site
answered) and prints one JSON line computed from it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from typing import Any

import scrapy
from naive_rotation import NaiveCookieRotation
from scrapy.crawler import CrawlerProcess
from scrapy.http import Request, Response

from credpool.outcome import Report
from credpool.scrapy import CredpoolMiddleware

#: (account, start, end, outcome) of every use of a credential.
USES: list[tuple[str, float, float, str]] = []
PAGES = Counter[str]()


class RecordingCredpool(CredpoolMiddleware):
    def lease_ended(self, request: Request, lease: Any, report: Report, leased_at: float) -> None:
        USES.append((lease.credential.id, leased_at, time.monotonic(), report.outcome))


class RecordingNaive(NaiveCookieRotation):
    def used(self, account: str, started: float, outcome: str) -> None:
        USES.append((account, started, time.monotonic(), outcome))


class ShopSpider(scrapy.Spider):
    name = "shop"
    credpool_site = "shop.sim"

    def __init__(self, shop: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.shop = shop
        self.n = 0

    def _next(self) -> Request:
        self.n += 1
        return Request(
            f"{self.shop}/item/{self.n}", dont_filter=True, callback=self.parse, errback=self.failed
        )

    async def start(self) -> Any:
        # A steady CONCURRENT_REQUESTS in flight: each answer, good or
        # failed, asks for the next page.
        for _ in range(self.settings.getint("CONCURRENT_REQUESTS") * 2):
            yield self._next()

    def start_requests(self) -> Any:
        return [self._next() for _ in range(self.settings.getint("CONCURRENT_REQUESTS") * 2)]

    def parse(self, response: Response) -> Any:
        if b'<form id="captcha"' in response.body:
            PAGES["captcha"] += 1
        elif response.status == 200 and b"item" in response.body:
            PAGES["ok"] += 1
        else:
            PAGES[f"other-{response.status}"] += 1
        yield self._next()

    def failed(self, failure: Any) -> Any:
        PAGES["failed"] += 1
        yield self._next()


def overlaps(uses: list[tuple[str, float, float, str]]) -> tuple[int, int]:
    """Uses that began while another use of the same account was open, and
    the accounts concerned."""
    by: dict[str, list[tuple[float, float]]] = {}
    for account, start, end, _ in uses:
        by.setdefault(account, []).append((start, end))
    count, accounts = 0, 0
    for spans in by.values():
        spans.sort()
        open_until, here = float("-inf"), 0
        for start, end in spans:
            if start < open_until:
                here += 1
            open_until = max(open_until, end)
        count += here
        accounts += here > 0
    return count, accounts


def main() -> None:
    mode, shop, seconds, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    settings: dict[str, Any] = {
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "CLOSESPIDER_TIMEOUT": seconds,
        "DOWNLOAD_TIMEOUT": 10,
        "RETRY_ENABLED": True,
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": os.environ.get("CRAWL_LOG", "WARNING"),
        "REDIRECT_ENABLED": False,
    }
    if mode == "pool":
        settings["DOWNLOADER_MIDDLEWARES"] = {f"{__name__}.RecordingCredpool": 950}
        settings["CREDPOOL_CHECKS"] = [
            __import__("credpool").body_contains('<form id="captcha"'),
        ]
    else:
        settings["DOWNLOADER_MIDDLEWARES"] = {f"{__name__}.RecordingNaive": 950}
        settings["NAIVE_COOKIES"] = json.load(sys.stdin)
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(ShopSpider)
    process.crawl(crawler, shop=shop)
    started = time.monotonic()
    process.start()
    elapsed = time.monotonic() - started
    stats = crawler.stats.get_stats() if crawler.stats else {}
    granted = stats.get("credpool/acquire/granted", 0)
    refused = stats.get("credpool/acquire/no_available", 0)
    twice, accounts_twice = overlaps(USES)
    answers = Counter(u[3] for u in USES)
    out = {
        "mode": mode,
        "seconds": seconds,
        "elapsed": round(elapsed, 1),
        "concurrency": concurrency,
        "pages_ok": PAGES["ok"],
        "pages": dict(PAGES),
        "uses": len(USES),
        "answers": dict(answers),
        "acquires": granted + refused,
        "acquires_granted": granted,
        "availability": granted / (granted + refused) if granted + refused else None,
        "used_twice_at_once": twice,
        "accounts_used_twice_at_once": accounts_twice,
        "accounts_used": len({u[0] for u in USES}),
        "accounts_dropped": sorted(NaiveCookieRotation.dropped),
        "refused_by_reason": {
            k.rsplit("/", 1)[1]: v
            for k, v in stats.items()
            if k.startswith("credpool/acquire/no_available/")
        },
        "retried": stats.get("credpool/retried", 0) + stats.get("naive/retried", 0),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
