"""CredpoolMiddleware's steps on real Scrapy requests and responses against
a live ``credpool serve``: the site per request, the retry with another
credential, requests without a credential, and waiting that gives up."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Live
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse
from test_client import add_session, site

from credpool import Client
from credpool.scrapy import META_LEASE, META_RETRIES, CredpoolMiddleware


def test_middleware_leases_reports_and_retries_with_another_credential(live: Live) -> None:
    op = Client(live.addr, live.operator)
    s = site()
    ids = add_session(op, s, n=2)

    async def main() -> None:
        mw = CredpoolMiddleware(live.addr, live.crawler, max_wait=0.3)
        req = Request("http://127.0.0.1:9/item/1", meta={"credpool_site": s})
        assert await mw.process_request(req) is None
        first = req.meta[META_LEASE]
        assert req.headers[b"Cookie"] == first.cookie_header.encode()
        assert req.headers[b"X-Api"] in (b"h0", b"h1")
        assert req.meta["dont_merge_cookies"] is True
        # A 403: reported blocked (this server retires on the first), and
        # the request comes back to be sent with another credential.
        blocked = HtmlResponse(req.url, status=403, body=b"access denied", request=req)
        retry = await mw.process_response(req, blocked)
        assert isinstance(retry, Request) and retry.meta[META_RETRIES] == 1
        assert op.get_credential(first.credential.id)["status"] == "banned"
        assert await mw.process_request(retry) is None
        second = retry.meta[META_LEASE]
        assert second.credential.id != first.credential.id
        assert retry.headers[b"Cookie"] == second.cookie_header.encode()
        ok = HtmlResponse(retry.url, status=200, body=b"<html>item</html>", request=retry)
        assert await mw.process_response(retry, ok) is ok
        assert op.get_credential(second.credential.id)["success_count"] == 1
        # A download error is reported as network; Scrapy's retry takes it.
        req = Request("http://127.0.0.1:9/item/2", meta={"credpool_site": s})
        await mw.process_request(req)
        assert await mw.process_exception(req, ConnectionRefusedError()) is None
        assert op.get_credential(second.credential.id)["fail_count"] == 1
        # No credential wanted; no site known.
        free = Request("http://127.0.0.1:9/robots.txt", meta={"credpool": False})
        assert await mw.process_request(free) is None
        assert b"Cookie" not in free.headers
        with pytest.raises(IgnoreRequest, match="no site"):
            await mw.process_request(Request("http://127.0.0.1:9/x"))
        # Nothing free (one retired, one held): waits max_wait, then gives up.
        held = await mw.client().acquire(s)
        with pytest.raises(IgnoreRequest, match="no credential available"):
            await mw.process_request(Request("http://127.0.0.1:9/y", meta={"credpool_site": s}))
        await held.release()
        await mw.spider_closed()

    asyncio.run(main())
    assert sorted(ids) == sorted(c["id"] for c in op.list_credentials(site=s))
