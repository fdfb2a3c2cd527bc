"""Several servers: a call moves on from a server that is down, hangs up or
has no leader, and acquire is not sent twice when it may have arrived.

The live server is real; the broken peers are a closed port, a socket that
reads the request and hangs up, and an HTTP peer answering 503
``no_leader`` (what a standby says while no server leads the tenant)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import harness
import httpx
import pytest
from conftest import Live
from test_client import add_session, site

from credpool import AsyncClient, Client, ConnectionFailed, ServerError


def dead_addr() -> str:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class HangUp:
    """Accepts, reads the request, closes without an answer: the request
    reached a server, which may have acted on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    head = conn.recv(65536).decode("latin-1")
                except OSError:
                    continue
                if head:
                    self.requests.append(head.split("\r\n", 1)[0])

    def close(self) -> None:
        self.sock.close()


class NoLeader:
    """An HTTP peer answering every request 503 ``no_leader``."""

    def __init__(self, retry_after: str = "1") -> None:
        requests: list[str] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                requests.append(f"{self.command} {self.path}")
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                body = json.dumps(
                    {"error": {"code": "no_leader", "message": "no server leads the tenant"}}
                ).encode()
                self.send_response(503)
                self.send_header("content-type", "application/json")
                self.send_header("retry-after", retry_after)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def hang_up() -> Iterator[HangUp]:
    peer = HangUp()
    yield peer
    peer.close()


@pytest.fixture
def no_leader() -> Iterator[NoLeader]:
    peer = NoLeader()
    yield peer
    peer.close()


def test_first_server_dead_second_alive(live: Live) -> None:
    s = site()
    add_session(Client(live.addr, live.operator), s)
    dead = dead_addr()
    with Client(f"{dead}, {live.addr}", live.crawler) as pool:
        # Acquire too: a refused connection carried nothing.
        with pool.lease(s) as lease:
            assert lease.cookies == {"sid": "v0"}
            effect = lease.report("success")
        assert effect.status == "active"
        # The server that answered is the one later calls start on.
        assert pool.addr.startswith(live.addr), pool.addr
    with Client([dead, live.addr], live.viewer) as viewer:
        assert viewer.stats(s)[0]["site"] == s


def test_every_server_dead_fails_after_the_deadline() -> None:
    servers = [dead_addr(), dead_addr()]
    started = time.monotonic()
    with (
        Client(servers, "cpt_unused", failover_deadline=0.5) as pool,
        pytest.raises(ConnectionFailed) as err,
    ):
        pool.stats()
    took = time.monotonic() - started
    # It went on trying for the deadline (and not for ever).
    assert 0.5 <= took < 20, took
    assert "ConnectError" in str(err.value)
    assert "cpt_unused" not in str(err.value)


def test_acquire_that_may_have_arrived_is_not_sent_again(live: Live, hang_up: HangUp) -> None:
    s = site()
    add_session(Client(live.addr, live.operator), s)
    with Client([hang_up.addr, live.addr], live.crawler) as pool:
        with pytest.raises(ConnectionFailed):
            pool.acquire(s)
        assert hang_up.requests == ["POST /v1/acquire HTTP/1.1"]
        # The live server never saw it: its one credential is still free.
        viewer = Client(live.addr, live.viewer)
        assert viewer.stats(s)[0]["open_leases"] == 0
        # The next call starts on the other server.
        lease = pool.acquire(s)
        assert viewer.stats(s)[0]["open_leases"] == 1
    # A report is sent again: the server answers a repeat the same way.
    with Client([hang_up.addr, live.addr], live.crawler) as pool:
        effect = pool.report(lease.id, "success")
        assert effect.status == "active"
        assert hang_up.requests[-1].startswith(f"POST /v1/leases/{lease.id}/report ")
        assert viewer.stats(s)[0]["open_leases"] == 0
    # And every read.
    with Client([hang_up.addr, live.addr], live.viewer) as reader:
        assert reader.list_credentials(site=s)[0]["id"] == f"{s}-s0"
        assert hang_up.requests[-1].startswith("GET /v1/credentials")


def test_no_leader_reads_go_on_elsewhere_after_retry_after_acquire_does_not(
    live: Live, no_leader: NoLeader
) -> None:
    s = site()
    add_session(Client(live.addr, live.operator), s)
    with Client([no_leader.addr, live.addr], live.viewer) as viewer:
        started = time.monotonic()
        assert viewer.stats(s)[0]["site"] == s
        assert no_leader.requests == [f"GET /v1/stats?site={s}"]
        # Retry-After: 1 was honoured before the next attempt.
        assert time.monotonic() - started >= 1.0
    # A standby says no_leader also when its forward was cut after it was
    # sent: an acquire may have been applied, so it is not sent again.
    with Client([no_leader.addr, live.addr], live.crawler) as pool:
        with pytest.raises(ServerError) as err:
            pool.acquire(s)
        assert err.value.code == "no_leader"
        assert err.value.retry_after == 1
        assert Client(live.addr, live.viewer).stats(s)[0]["open_leases"] == 0
        # The next call starts on the other server.
        lease = pool.acquire(s)
        lease.report("success")
    with Client([no_leader.addr], live.viewer, failover_deadline=0.3) as alone:
        with pytest.raises(ServerError) as err:
            alone.stats()
        assert err.value.code == "no_leader"


def test_async_client_moves_on_too(live: Live, hang_up: HangUp) -> None:
    s = site()
    add_session(Client(live.addr, live.operator), s)

    async def main() -> None:
        pool = AsyncClient([dead_addr(), live.addr], live.crawler)
        async with pool, pool.lease(s) as lease:
            assert lease.cookies == {"sid": "v0"}
            await lease.report("success")
        async with AsyncClient([hang_up.addr, live.addr], live.crawler) as pool:
            with pytest.raises(ConnectionFailed):
                await pool.acquire(s)
            assert hang_up.requests[-1] == "POST /v1/acquire HTTP/1.1"
            lease = await pool.acquire(s)
        async with AsyncClient([hang_up.addr, live.addr], live.crawler) as pool:
            await pool.release(lease.id)
            assert hang_up.requests[-1].startswith(f"POST /v1/leases/{lease.id}/release ")

    asyncio.run(main())
    assert Client(live.addr, live.viewer).stats(s)[0]["open_leases"] == 0


def test_a_server_killed_mid_run(tmp_path: Path) -> None:
    """Two ``credpool serve`` over one Redis; the leader is SIGKILLed while a
    crawler loops: its reports all get through (a standby takes over and
    answers a repeat as the first), and leases go on after the kill."""
    redis = harness.Redis(tmp_path)
    data = tmp_path / "data"
    harness.run(data, "init")
    config = tmp_path / "credpool.toml"
    config.write_text("")
    crawler, operator = harness.token(data, "crawler"), harness.token(data, "operator")
    viewer = harness.token(data, "viewer")
    nodes: list[harness.Server] = []
    try:
        for _ in range(2):
            port = harness.free_port()
            url = f"http://127.0.0.1:{port}"
            extra = ("--store", redis.url, "--advertise", url, "--lock-ttl", "1s")
            nodes.append(
                harness.Server(
                    data, config, interval_ms=100, listen=f"127.0.0.1:{port}", extra=extra
                )
            )
        addrs = [n.addr for n in nodes]

        def leader() -> int | None:
            for i, n in enumerate(nodes):
                if n.proc.poll() is not None:
                    continue
                try:
                    h = httpx.get(f"{n.addr}/v1/health", timeout=2).json()
                except httpx.HTTPError:
                    continue
                if h["tenants"].get("default", {}).get("leader"):
                    return i
            return None

        deadline = time.monotonic() + 30
        while (first := leader()) is None:
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.1)
        s = site()
        add_session(Client(addrs, operator), s, n=4)

        reported: list[str] = []
        acquire_errors: list[str] = []
        stop = threading.Event()

        def crawl() -> None:
            with Client(addrs, crawler, failover_deadline=30, timeout=5) as pool:
                while not stop.is_set():
                    try:
                        lease = pool.acquire(s, wait=10)
                    except ConnectionFailed:
                        # Not sent again when it may have been applied.
                        acquire_errors.append("connection")
                        continue
                    except ServerError as e:
                        acquire_errors.append(e.code)
                        time.sleep(e.retry_after or 1)
                        continue
                    lease.report("success")
                    reported.append(lease.id)

        worker = threading.Thread(target=crawl)
        worker.start()
        time.sleep(1.5)
        before = len(reported)
        nodes[first].kill()
        time.sleep(5)
        stop.set()
        worker.join(60)
        assert not worker.is_alive()
        after = len(reported) - before
        assert before > 0 and after > 0, (before, after, acquire_errors)
        # Every report acknowledged is counted by the pool that leads now.
        views = Client(addrs, viewer).list_credentials(site=s, level="internal")
        assert sum(v["success_count"] for v in views) >= len(reported)
        # What an acquire may meet while no server leads: nothing else.
        assert set(acquire_errors) <= {"connection", "no_leader", "not_leader"}, acquire_errors
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.stop()
        redis.stop()
