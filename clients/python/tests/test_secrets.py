"""Canary secrets never show in a repr(), a str(), an exception or a log
line of the client, only where the caller reads them on purpose."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
from conftest import Live
from test_client import site

import credpool
from credpool import AsyncClient, Client, NoCredentialAvailable


def test_no_secret_in_reprs_errors_or_logs(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = {k: f"CANARY{k}{uuid.uuid4().hex}" for k in ("cookie", "header", "token", "pw")}
    s = site()
    op = Client(live.addr, live.operator)
    op.add_credential(
        {
            "site": s,
            "type": "account",
            "id": f"{s}-acct",
            "username": "someone",
            "max_concurrent": 1,
            "secrets": {
                "password": canary["pw"],
                "access_token": canary["token"],
                "cookies": [{"name": "sid", "value": canary["cookie"]}],
                "headers": [{"name": "X-Auth", "value": canary["header"]}],
            },
        }
    )
    crawler = Client(live.addr, live.crawler)
    shown: list[str] = [repr(crawler), str(crawler)]
    with crawler.lease(s) as lease:
        # The canaries are real: the holder reads them.
        assert lease.cookies["sid"] == canary["cookie"]
        assert lease.headers["X-Auth"] == canary["header"]
        assert lease.access_token == canary["token"]
        assert lease.secrets.password == canary["pw"]
        assert canary["token"] in lease.request_headers()["Authorization"]
        shown += [repr(lease), str(lease), f"{lease}", repr(lease.secrets), str(lease.secrets)]
        shown += [repr(lease.cookies), str(lease.cookies), repr(lease.headers)]
        shown += [repr(lease.request_headers()), repr(lease.credential)]
        try:
            crawler.acquire(s)
        except NoCredentialAvailable as e:
            shown += [str(e), repr(e)]
        raised = False
        try:
            with crawler.lease(s):
                pass
        except NoCredentialAvailable as e:
            raised = True
            shown.append(str(e))
        assert raised
    admin = Client(live.addr, live.admin)
    view, secrets = admin.reveal(f"{s}-acct")
    assert secrets.cookies["sid"] == canary["cookie"]
    shown += [repr(view), repr(secrets), str(secrets)]
    exported = admin.export(f"{s}-acct")
    assert canary["cookie"] in exported.reveal()
    shown += [repr(exported), str(exported)]
    made = admin.create_token("crawler")
    shown.append(repr(made))
    token = made["token"].reveal()
    for e in (
        lambda: Client(live.addr, token + "x").stats(),
        lambda: Client("http://127.0.0.1:9", token).healthz(),
        lambda: op.add_credential({"site": s, "type": "session", "secrets": {"password": 7}}),
    ):
        with pytest.raises(credpool.CredpoolError) as err:
            e()
        shown += [str(err.value), repr(err.value)]

    async def aio() -> None:
        async with AsyncClient(live.addr, token) as pool:
            shown.append(repr(pool))
            async with pool.lease(s) as lease:
                shown.extend([repr(lease), str(lease.secrets)])
                await lease.report_response(httpx.Response(200))

    asyncio.run(aio())
    text = "\n".join(shown) + "\n" + caplog.text
    assert "lease" in caplog.text.lower() or "HTTP Request" in caplog.text
    for name, value in canary.items():
        assert value not in text, f"the {name} canary showed"
    assert token not in text, "the API token showed"
    assert "***" in repr(lease.cookies)
