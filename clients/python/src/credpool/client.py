"""The synchronous client.

>>> pool = Client()                      # CREDPOOL_ADDR, CREDPOOL_TOKEN
>>> with pool.lease("jd.com", type="session") as lease:
...     resp = httpx.get(url, cookies=lease.cookies, headers=lease.headers)
...     lease.report_response(resp)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from . import _api
from ._failover import Servers
from .errors import ApiError, LeaseFinished
from .models import Acquired, LeaseData, ReportEffect, Secrets, SecretStr
from .outcome import Check, Report, classify, classify_exception

log = logging.getLogger("credpool")


class Lease(LeaseData):
    """A lease from :meth:`Client.lease` or :meth:`Client.acquire`: the
    credential's cookies, headers and tokens, and the calls that end it."""

    _client: Client
    _finished: bool

    @classmethod
    def _of(cls, data: LeaseData, client: Client) -> Lease:
        lease = cls(**{f: getattr(data, f) for f in data.__dataclass_fields__})
        object.__setattr__(lease, "_client", client)
        object.__setattr__(lease, "_finished", False)
        return lease

    @property
    def finished(self) -> bool:
        return self._finished

    def _finish(self) -> None:
        if self._finished:
            raise LeaseFinished(f"lease {self.id} was already reported or released")
        object.__setattr__(self, "_finished", True)

    def report(
        self, outcome: str | Report, http_status: int | None = None, retry_after: int | None = None
    ) -> ReportEffect:
        """Reports how the credential did; ends the lease."""
        r = outcome if isinstance(outcome, Report) else Report(outcome, http_status, retry_after)
        self._finish()
        return self._client.report(self.id, r)

    def report_response(self, response: Any, checks: Iterable[Check] | None = None) -> ReportEffect:
        """Reports the site's answer (httpx, requests or Scrapy response):
        401 expired, 403 blocked, 429 rate-limited with Retry-After, 5xx
        network; ``checks`` (or the client's) see it first."""
        use = self._client.checks if checks is None else tuple(checks)
        return self.report(classify(response, use))

    def report_exception(self, exc: BaseException) -> ReportEffect:
        """Reports a request that raised: network for a connection error."""
        return self.report(classify_exception(exc))

    def release(self) -> None:
        """Gives the credential back without a result."""
        self._finish()
        self._client.release(self.id)


class LeaseContext:
    """``with client.lease(...) as lease``: acquires on entry; on exit
    releases a lease that was not reported, or reports the exception."""

    def __init__(self, client: Client, body: dict[str, Any], wait: float | None) -> None:
        self._client = client
        self._body = body
        self._wait = wait
        self._lease: Lease | None = None

    def __enter__(self) -> Lease:
        self._lease = self._client._acquire_body(self._body, self._wait, None)
        return self._lease

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        if lease is None or lease.finished:
            return
        if exc is None:
            lease.release()
        else:
            try:
                lease.report_exception(exc)
            except Exception:
                log.warning("lease %s: reporting the exception failed", lease.id, exc_info=True)


class Client:
    """A client of ``credpool serve``. ``addr`` and ``token`` default to
    ``CREDPOOL_ADDR`` and ``CREDPOOL_TOKEN``; ``checks`` are applied by
    :meth:`Lease.report_response` before the status codes.

    ``addr`` may name several servers of one deployment (a list, or URLs
    separated by commas): a call that finds its server down, or without a
    leader, goes to the next one for up to ``failover_deadline`` seconds,
    when it is safe to send it again (see ``credpool._failover``)."""

    def __init__(
        self,
        addr: str | Iterable[str] | None = None,
        token: str | SecretStr | None = None,
        *,
        timeout: float = 10.0,
        failover_deadline: float = 30.0,
        checks: Iterable[Check] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        urls, token = _api.settings(addr, token)
        self._servers = Servers(urls, failover_deadline)
        self.checks: tuple[Check, ...] = tuple(checks)
        self._http = httpx.Client(
            headers=_api.headers(token),
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Client(addr={self.addr!r})"

    @property
    def addr(self) -> str:
        """The servers, comma-separated, the one in use first."""
        s = self._servers
        return ",".join(s.urls[s.current :] + s.urls[: s.current])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, call: _api.Call) -> Any:
        """One call, on the next server while one is down (see _failover)."""
        attempts = self._servers.attempts(call.idempotent)
        while True:
            server = attempts.server()
            try:
                r = self._http.request(
                    call.method,
                    server + call.path,
                    json=call.json,
                    params=call.params,
                    content=call.content,
                )
            except httpx.HTTPError as e:
                pause = attempts.after_transport_error(e)
                if pause is None:
                    raise _api.connection_failed(call, e, server) from None
                log.info("%s %s: %s unreachable, next server", call.method, call.path, server)
                time.sleep(pause)
                continue
            try:
                return _api.check(call, r)
            except ApiError as e:
                pause = attempts.after_refusal(e)
                if pause is None:
                    raise
                log.info("%s %s: %s has no leader, next server", call.method, call.path, server)
                time.sleep(pause)

    # ---------------------------------------------------------- leases

    def lease(
        self,
        site: str,
        *,
        type: str | None = None,
        purpose: str | None = None,
        tags: Iterable[str] | None = None,
        ttl_seconds: int | None = None,
        prefer_fresh: bool = False,
        wait: float | None = None,
    ) -> LeaseContext:
        """A lease as a context manager. ``wait``: seconds to wait out
        no-available answers (using ``next_free_at``) before raising
        :class:`NoCredentialAvailable`."""
        body = _api.acquire_body(site, type, purpose, tags, ttl_seconds, prefer_fresh)
        return LeaseContext(self, body, wait)

    def try_acquire(
        self,
        site: str,
        *,
        type: str | None = None,
        purpose: str | None = None,
        tags: Iterable[str] | None = None,
        ttl_seconds: int | None = None,
        prefer_fresh: bool = False,
        level: str | None = None,
    ) -> Acquired:
        """One acquire; the whole answer, a lease or why there is none
        (``Acquired.lease`` is then a :class:`Lease`)."""
        body = _api.acquire_body(site, type, purpose, tags, ttl_seconds, prefer_fresh)
        return self._one_acquire(body, level)

    def _one_acquire(self, body: dict[str, Any], level: str | None) -> Acquired:
        got: Acquired = self._run(_api.acquire(body, level))
        if got.lease is not None:
            lease = Lease._of(got.lease, self)
            log.debug("leased %s: credential %s", lease.id, lease.credential.id)
            got = Acquired(
                got.status, got.reason, got.next_free_at, got.alternatives, got.warnings, lease
            )
        return got

    def acquire(
        self,
        site: str,
        *,
        type: str | None = None,
        purpose: str | None = None,
        tags: Iterable[str] | None = None,
        ttl_seconds: int | None = None,
        prefer_fresh: bool = False,
        wait: float | None = None,
        level: str | None = None,
    ) -> Lease:
        """A lease (end it with report or release), waiting up to ``wait``
        seconds when none is free; else :class:`NoCredentialAvailable`."""
        body = _api.acquire_body(site, type, purpose, tags, ttl_seconds, prefer_fresh)
        return self._acquire_body(body, wait, level)

    def _acquire_body(self, body: dict[str, Any], wait: float | None, level: str | None) -> Lease:
        deadline = time.monotonic() + (wait or 0.0)
        attempt = 0
        while True:
            got = self._one_acquire(body, level)
            if got.lease is not None:
                assert isinstance(got.lease, Lease)
                return got.lease
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _api.no_credential(body["site"], got)
            time.sleep(_api.pause_before_retry(got, attempt, remaining))
            attempt += 1

    def report(self, lease_id: str, report: Report | str, **kw: Any) -> ReportEffect:
        """Reports a lease by id (``Lease.report`` is the usual way)."""
        r = report if isinstance(report, Report) else Report(report, **kw)
        effect: ReportEffect = self._run(_api.report(lease_id, r))
        log.debug("reported %s: %s, credential now %s", lease_id, r.outcome, effect.status)
        return effect

    def release(self, lease_id: str) -> None:
        self._run(_api.release(lease_id))
        log.debug("released %s", lease_id)

    def report_and_acquire(
        self,
        lease: Lease | str,
        report: Report | str,
        site: str,
        *,
        type: str | None = None,
        purpose: str | None = None,
        tags: Iterable[str] | None = None,
        ttl_seconds: int | None = None,
    ) -> tuple[ReportEffect, Acquired]:
        """A crawler's loop step in one request: report, then acquire."""
        if isinstance(lease, Lease):
            lease._finish()
            lease = lease.id
        r = report if isinstance(report, Report) else Report(report)
        body = _api.acquire_body(site, type, purpose, tags, ttl_seconds, False)
        effect, got = self._run(_api.report_and_acquire(lease, r, body))
        if got.lease is not None:
            got = Acquired(
                got.status,
                got.reason,
                got.next_free_at,
                got.alternatives,
                got.warnings,
                Lease._of(got.lease, self),
            )
        return effect, got

    # ------------------------------------------------- everything else

    def list_credentials(
        self, site: str | None = None, status: str | None = None, level: str | None = None
    ) -> list[dict[str, Any]]:
        """Masked views (viewer: internal; operator and admin: sensitive)."""
        return self._run(_api.credentials_list(site, status, level))  # type: ignore[no-any-return]

    def get_credential(self, id: str, level: str | None = None) -> dict[str, Any]:
        return self._run(_api.credential_show(id, level))  # type: ignore[no-any-return]

    def add_credential(self, credential: Mapping[str, Any]) -> dict[str, Any]:
        """Adds one (operator): ``{site, type, id, username, secrets: {...}, ...}``."""
        return self._run(_api.credential_add(credential))  # type: ignore[no-any-return]

    def import_credentials(
        self,
        data: str | bytes,
        format: str,
        site: str | None = None,
        skip_invalid: bool = False,
    ) -> dict[str, Any]:
        """Imports json, cookies-txt or cookie-json (operator)."""
        call = _api.credential_import(data, format, site, skip_invalid)
        return self._run(call)  # type: ignore[no-any-return]

    def remove_credential(self, id: str) -> None:
        self._run(_api.credential_remove(id))

    def unban(self, id: str) -> dict[str, Any]:
        return self._run(_api.credential_unban(id))  # type: ignore[no-any-return]

    def reset_challenge(self, id: str) -> dict[str, Any]:
        return self._run(_api.credential_reset_challenge(id))  # type: ignore[no-any-return]

    def reveal(self, id: str) -> tuple[dict[str, Any], Secrets]:
        """The credential and its secrets (admin; audited by the server)."""
        return self._run(_api.credential_reveal(id))  # type: ignore[no-any-return]

    def export(self, id: str, format: str = "json") -> SecretStr:
        """The credential exported with its secrets (admin; audited)."""
        return self._run(_api.credential_export(id, format))  # type: ignore[no-any-return]

    def stats(self, site: str | None = None) -> list[dict[str, Any]]:
        return self._run(_api.stats(site))  # type: ignore[no-any-return]

    def alerts(self) -> list[dict[str, Any]]:
        return self._run(_api.alerts())  # type: ignore[no-any-return]

    def tickets(self) -> list[dict[str, Any]]:
        return self._run(_api.tickets())  # type: ignore[no-any-return]

    def answer_ticket(self, id: str, code: str | SecretStr) -> dict[str, Any]:
        return self._run(_api.answer_ticket(id, code))  # type: ignore[no-any-return]

    def tokens(self) -> list[dict[str, Any]]:
        return self._run(_api.tokens())  # type: ignore[no-any-return]

    def create_token(self, role: str, expires_in_seconds: int | None = None) -> dict[str, Any]:
        """A token for the caller's tenant (admin); ``["token"]`` is a
        :class:`SecretStr`."""
        return self._run(_api.token_create(role, expires_in_seconds))  # type: ignore[no-any-return]

    def revoke_token(self, id: str) -> dict[str, Any]:
        return self._run(_api.token_revoke(id))  # type: ignore[no-any-return]

    def healthz(self) -> dict[str, Any]:
        return self._run(_api.healthz())  # type: ignore[no-any-return]

    def readyz(self) -> dict[str, Any]:
        return self._run(_api.readyz())  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return self._run(_api.metrics())  # type: ignore[no-any-return]
