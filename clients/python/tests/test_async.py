"""The asyncio client against a live ``credpool serve``."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest
from conftest import Live
from test_client import add_session, site

from credpool import AsyncClient, Client, Forbidden, NoCredentialAvailable


def test_async_leases_reports_and_waits(live: Live) -> None:
    op = Client(live.addr, live.operator)
    s = site()
    (cid,) = add_session(op, s)

    async def main() -> None:
        async with AsyncClient(live.addr, live.crawler) as pool:
            async with pool.lease(s, type="session") as lease:
                assert lease.cookies == {"sid": "v0"}
                with pytest.raises(NoCredentialAvailable) as no:
                    await pool.acquire(s)
                assert no.value.reason == "all-leased"
            assert lease.finished
            async with pool.lease(s) as lease:
                effect = await lease.report_response(httpx.Response(200))
            assert effect.status == "active"
            with pytest.raises(httpx.ReadTimeout):
                async with pool.lease(s):
                    raise httpx.ReadTimeout("slow site")
            # Many tasks, one exclusive credential: each waits its turn.
            held: list[tuple[float, float]] = []

            async def worker() -> None:
                lease = await pool.acquire(s, wait=20)
                start = time.monotonic()
                await asyncio.sleep(0.05)
                held.append((start, time.monotonic()))
                await lease.report("success")

            await asyncio.gather(*(worker() for _ in range(5)))
            held.sort()
            assert len(held) == 5
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(held))
            lease = await pool.acquire(s)
            effect, got = await pool.report_and_acquire(lease, "success", s)
            assert got.lease is not None and effect.status == "active"
            await got.lease.release()
            with pytest.raises(Forbidden):
                await pool.stats()
        async with AsyncClient(live.addr, live.viewer) as viewer:
            assert (await viewer.get_credential(cid))["fail_count"] == 1
            assert (await viewer.stats(s))[0]["total"] == 1
            assert "credpool" in await viewer.metrics()

    asyncio.run(main())
