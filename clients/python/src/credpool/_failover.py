"""Several servers and when a call may be sent again: the rules shared by
the sync and the asyncio client.

A call goes to the server that answered last. When that server cannot be
reached, breaks the connection, times out, or answers 503 ``no_leader`` /
``not_leader`` (no server leads the tenant just now), the call is sent to
the next server, after a pause that doubles from 50 ms to ``MAX_PAUSE``
(or the answer's ``Retry-After``), until ``failover_deadline`` seconds have
passed since its first attempt.

Only a call that cannot be applied twice is sent again after a server may
have received it: report and release (the server answers a repeat with the
same effect), and every read. Acquire takes a lease, so it is sent again
only when nothing reached a server (connection refused, or no connection in
time): a broken connection after the request went out may have left a lease
behind, and so may a 503 ``no_leader`` from a standby whose forward to the
leader was cut; the error is raised instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from .errors import ApiError, CredpoolError

MAX_PAUSE = 2.0
FIRST_PAUSE = 0.05
# No server leads the tenant just now (a standby says no_leader also when its
# forward to the leader was cut: the call may have been applied).
NO_LEADER_CODES = frozenset({"no_leader", "not_leader"})


def parse_servers(addr: str | Iterable[str]) -> list[str]:
    """``http://a:8700,http://b:8700`` (or a list): each a base URL."""
    parts = addr.split(",") if isinstance(addr, str) else list(addr)
    out: list[str] = []
    for part in parts:
        one = part.strip().rstrip("/")
        if not one:
            continue
        if "://" not in one:
            one = f"http://{one}"
        if not one.startswith(("http://", "https://")):
            raise CredpoolError(f"server address {one!r} is not http:// or https://")
        out.append(one)
    if not out:
        raise CredpoolError("no server address: pass addr= or set CREDPOOL_ADDR")
    return out


def nothing_sent(e: httpx.HTTPError) -> bool:
    """True when the request cannot have reached a server."""
    return isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def no_leader(e: ApiError) -> bool:
    return e.status == 503 and e.code in NO_LEADER_CODES


@dataclass
class Servers:
    """The servers and which one calls start on (shared by every call)."""

    urls: list[str]
    failover_deadline: float
    current: int = 0

    def attempts(self, idempotent: bool) -> Attempts:
        return Attempts(self, idempotent)

    def failed(self, index: int) -> int:
        """The server after ``index``, which later calls start on unless
        another call moved on already."""
        following = (index + 1) % len(self.urls)
        if self.current == index:
            self.current = following
        return following


class Attempts:
    """One call's attempts: which server next, and whether to go on."""

    def __init__(self, servers: Servers, idempotent: bool) -> None:
        self._servers = servers
        self._idempotent = idempotent
        self._start = time.monotonic()
        self._failures = 0
        self._index = servers.current

    def server(self) -> str:
        return self._servers.urls[self._index]

    def after_transport_error(self, e: httpx.HTTPError) -> float | None:
        """The pause before the next attempt, or None: raise ``e``."""
        if not (self._idempotent or nothing_sent(e)):
            # Not sent again, but the next call starts on another server.
            self._servers.failed(self._index)
            return None
        return self._next(None)

    def after_refusal(self, e: ApiError) -> float | None:
        """As :meth:`after_transport_error`, for an API error."""
        if not no_leader(e):
            return None
        if not self._idempotent:
            # Not sent again, but the next call starts on another server.
            self._servers.failed(self._index)
            return None
        return self._next(e.retry_after)

    def _next(self, retry_after: float | None) -> float | None:
        s = self._servers
        self._index = s.failed(self._index)
        self._failures += 1
        remaining = self._start + s.failover_deadline - time.monotonic()
        if remaining <= 0:
            return None
        n = len(s.urls)
        rounds = (self._failures - 1) // n
        if retry_after is not None:
            pause = min(float(retry_after), MAX_PAUSE)
        elif rounds == 0 and self._failures % n != 0:
            # A server this call has not tried yet: at once.
            pause = 0.0
        else:
            pause = min(FIRST_PAUSE * (2.0**rounds), MAX_PAUSE)
        return min(pause, remaining)
