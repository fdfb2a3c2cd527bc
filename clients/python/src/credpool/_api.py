"""The HTTP API of ``credpool serve`` as calls (method, path, body) and the
reading of their answers, shared by the sync and the asyncio client."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ._failover import parse_servers
from .errors import (
    ApiError,
    ConnectionFailed,
    CredpoolError,
    NoCredentialAvailable,
    api_error,
)
from .models import Acquired, LeaseData, ReportEffect, SecretStr
from .outcome import Report, retry_after_seconds

USER_AGENT = "credpool-python/0.1"


@dataclass
class Call:
    """One request and how to read its answer."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    content: bytes | None = None
    read: Callable[[httpx.Response], Any] = field(default=lambda r: r.json())
    # May be sent again after a server may have received it (see
    # _failover): every GET, and the calls the server answers the same way
    # when repeated.
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.method == "GET":
            self.idempotent = True


def settings(
    addr: str | Iterable[str] | None, token: str | SecretStr | None
) -> tuple[list[str], SecretStr]:
    """The server addresses and token, from the arguments or the environment.

    ``addr`` (or ``CREDPOOL_ADDR``) is one base URL, several separated by
    commas, or a list: the servers of one deployment, tried in turn."""
    addr = addr or os.environ.get("CREDPOOL_ADDR")
    if not addr:
        raise CredpoolError("no server address: pass addr= or set CREDPOOL_ADDR")
    servers = parse_servers(addr)
    if token is None:
        env = os.environ.get("CREDPOOL_TOKEN")
        token = SecretStr(env) if env else None
    if isinstance(token, str):
        token = SecretStr(token)
    if token is None or not token.reveal().strip():
        raise CredpoolError("no API token: pass token= or set CREDPOOL_TOKEN")
    return servers, token


def headers(token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.reveal()}", "User-Agent": USER_AGENT}


def check(call: Call, response: httpx.Response) -> Any:
    """The answer read, or the typed error of a refusal."""
    if response.status_code < 400:
        return call.read(response)
    code, message = "http_error", response.reason_phrase or "error"
    alternatives: list[str] = []
    try:
        body = response.json()
        err = body.get("error", {})
        code = str(err.get("code", code))
        message = str(err.get("message", message))
        # An unknown site's 404 is also the acquire answer: its suggestions.
        alternatives = [str(a) for a in body.get("alternatives") or []]
    except (ValueError, AttributeError, TypeError):
        pass
    raise api_error(
        response.status_code,
        code,
        message,
        method=call.method,
        path=call.path,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
        alternatives=alternatives,
    )


def connection_failed(call: Call, e: httpx.HTTPError, server: str) -> ConnectionFailed:
    # The exception's own text names the URL at most; no header or body.
    return ConnectionFailed(f"{call.method} {server}{call.path}: {type(e).__name__}: {e}")


def _seg(s: str) -> str:
    return quote(s, safe="")


def acquire_body(
    site: str,
    type: str | None,
    purpose: str | None,
    tags: Iterable[str] | None,
    ttl_seconds: int | None,
    prefer_fresh: bool,
) -> dict[str, Any]:
    if not site or not site.strip():
        raise ValueError("site is empty")
    body: dict[str, Any] = {"site": site}
    if type is not None:
        body["type"] = type
    if purpose is not None:
        body["purpose"] = purpose
    if tags:
        body["tags"] = list(tags)
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    if prefer_fresh:
        body["prefer_fresh"] = True
    return body


def acquire(body: dict[str, Any], level: str | None) -> Call:
    site = body["site"]
    return Call(
        "POST",
        "/v1/acquire",
        json=body,
        params={"level": level} if level else None,
        read=lambda r: Acquired.from_json(r.json(), site),
    )


def report(lease_id: str, report: Report) -> Call:
    return Call(
        "POST",
        f"/v1/leases/{_seg(lease_id)}/report",
        json=report.body(),
        read=lambda r: ReportEffect.from_json(r.json()),
        # A repeat gets the first report's effect ("repeat": true).
        idempotent=True,
    )


def release(lease_id: str) -> Call:
    return Call(
        "POST", f"/v1/leases/{_seg(lease_id)}/release", read=lambda r: None, idempotent=True
    )


def report_and_acquire(lease_id: str, report: Report, next_body: dict[str, Any]) -> Call:
    site = next_body["site"]
    return Call(
        "POST",
        f"/v1/leases/{_seg(lease_id)}/report-and-acquire",
        json={"report": report.body(), "next": next_body},
        read=lambda r: (
            ReportEffect.from_json(r.json().get("report") or {}),
            Acquired.from_json(r.json(), site),
        ),
    )


def no_credential(site: str, got: Acquired) -> NoCredentialAvailable:
    return NoCredentialAvailable(
        site, got.status, got.reason, got.next_free_at, list(got.alternatives), list(got.warnings)
    )


def granted(site: str, got: Acquired) -> LeaseData:
    if got.lease is None:
        raise no_credential(site, got)
    return got.lease


def pause_before_retry(got: Acquired, attempt: int, remaining: float) -> float:
    """How long to wait before asking again after a no-available answer.

    Resting or rate-limited credentials come back at ``next_free_at`` (the
    server gives whole seconds, so it may be a little early): wait until
    then. A lease may be given back at any moment, so when all are leased
    (or for a mix of reasons) ``next_free_at`` is only an upper bound: ask
    again after a back-off that doubles from 50 ms to 1 s."""
    backoff: float = min(0.05 * (2.0**attempt), 1.0)
    until = got.next_free_at.timestamp() - time.time() if got.next_free_at else 0.0
    if got.reason in ("all-leased", "mixed"):
        until = min(until, backoff)
    return max(0.0, min(max(until, backoff), remaining))


def params(**kw: Any) -> dict[str, Any] | None:
    out = {k: v for k, v in kw.items() if v is not None and v is not False}
    return out or None


def credentials_list(site: str | None, status: str | None, level: str | None) -> Call:
    return Call("GET", "/v1/credentials", params=params(site=site, status=status, level=level))


def credential_show(id: str, level: str | None) -> Call:
    return Call("GET", f"/v1/credentials/{_seg(id)}", params=params(level=level))


def credential_add(body: Mapping[str, Any]) -> Call:
    return Call("POST", "/v1/credentials", json=dict(body))


def credential_import(data: str | bytes, format: str, site: str | None, skip_invalid: bool) -> Call:
    content = data.encode() if isinstance(data, str) else data
    return Call(
        "POST",
        "/v1/credentials/import",
        params=params(format=format, site=site, skip_invalid="true" if skip_invalid else None),
        content=content,
    )


def credential_remove(id: str) -> Call:
    return Call("DELETE", f"/v1/credentials/{_seg(id)}")


def credential_unban(id: str) -> Call:
    return Call("POST", f"/v1/credentials/{_seg(id)}/unban")


def credential_reset_challenge(id: str) -> Call:
    return Call("POST", f"/v1/credentials/{_seg(id)}/reset-challenge")


def credential_reveal(id: str) -> Call:
    from .models import Secrets

    def read(r: httpx.Response) -> tuple[dict[str, Any], Secrets]:
        v = r.json()
        secrets = Secrets.from_json(v.pop("secrets", None))
        return v, secrets

    return Call("GET", f"/v1/credentials/{_seg(id)}/reveal", read=read)


def credential_export(id: str, format: str) -> Call:
    return Call(
        "GET",
        f"/v1/credentials/{_seg(id)}/export",
        params={"format": format},
        read=lambda r: SecretStr(r.text),
    )


def stats(site: str | None) -> Call:
    return Call("GET", "/v1/stats", params=params(site=site))


def alerts() -> Call:
    return Call("GET", "/v1/alerts")


def tickets() -> Call:
    return Call("GET", "/v1/tickets")


def answer_ticket(id: str, code: str | SecretStr) -> Call:
    value = code.reveal() if isinstance(code, SecretStr) else code
    return Call("POST", f"/v1/tickets/{_seg(id)}/answer", json={"code": value})


def tokens() -> Call:
    return Call("GET", "/v1/tokens")


def token_create(role: str, expires_in_seconds: int | None) -> Call:
    body: dict[str, Any] = {"role": role}
    if expires_in_seconds is not None:
        body["expires_in_seconds"] = expires_in_seconds

    def read(r: httpx.Response) -> dict[str, Any]:
        v: dict[str, Any] = r.json()
        if isinstance(v.get("token"), str):
            v["token"] = SecretStr(v["token"])
        return v

    return Call("POST", "/v1/tokens", json=body, read=read)


def token_revoke(id: str) -> Call:
    return Call("DELETE", f"/v1/tokens/{_seg(id)}")


def healthz() -> Call:
    return Call("GET", "/healthz")


def readyz() -> Call:
    return Call("GET", "/readyz")


def metrics() -> Call:
    return Call("GET", "/metrics", read=lambda r: r.text)


__all__ = ["ApiError", "Call"]
