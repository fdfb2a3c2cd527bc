"""Typed errors of the credpool client.

No message carries a secret: the server names what was wrong, never a value
it was sent, and the client adds only method, path and status.
"""

from __future__ import annotations

from datetime import datetime


class CredpoolError(Exception):
    """Any error from the client or the server."""


class ConnectionFailed(CredpoolError):
    """The server could not be reached, or the connection broke."""


class ApiError(CredpoolError):
    """The server refused the request: ``{"error": {"code", "message"}}``."""

    # Seconds the server asked to wait (429, 503), when it said.
    retry_after: float | None = None

    def __init__(self, status: int, code: str, message: str, *, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class InvalidRequest(ApiError):
    """400: a bad body, field or value (the server names it)."""


class Unauthorized(ApiError):
    """401: no token, or an unknown, expired or revoked one."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError):
    """404: no such lease, credential, ticket or endpoint."""


class UnknownSite(NotFound):
    """404 ``unknown_site``: the pool has no credential at all for the site.

    Waiting will not help (a typo, or a site never added); ``alternatives``
    names known sites that look like it (``did you mean jd.com?``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        method: str,
        path: str,
        alternatives: list[str],
    ) -> None:
        super().__init__(status, code, message, method=method, path=path)
        self.alternatives = alternatives


class Conflict(ApiError):
    """409: already exists, or a change the credential's state forbids."""


class TooManyRequests(ApiError):
    """429: the token went over the server's request rate."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        method: str,
        path: str,
        retry_after: float | None,
    ) -> None:
        super().__init__(status, code, message, method=method, path=path)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed (its store unavailable, ...)."""


class NoCredentialAvailable(CredpoolError):
    """No credential could be leased for the request.

    ``status`` is the server's (``no-available`` or ``all-blocked``), ``reason``
    why (``all-cooling``, ``all-leased``, ``all-rate-limited``, ``all-banned``,
    ``none-match``, ...), ``next_free_at`` when one is expected to be free
    (None if unknown), ``alternatives`` what the policy suggests instead.
    """

    def __init__(
        self,
        site: str,
        status: str,
        reason: str | None,
        next_free_at: datetime | None,
        alternatives: list[str],
        warnings: list[str],
    ) -> None:
        when = f", next free at {next_free_at.isoformat()}" if next_free_at else ""
        super().__init__(f"no credential available for {site}: {reason or status}{when}")
        self.site = site
        self.status = status
        self.reason = reason
        self.next_free_at = next_free_at
        self.alternatives = alternatives
        self.warnings = warnings


class LeaseFinished(CredpoolError):
    """The lease was already reported or released by this client."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def api_error(
    status: int,
    code: str,
    message: str,
    *,
    method: str,
    path: str,
    retry_after: float | None,
    alternatives: list[str] | None = None,
) -> ApiError:
    """The typed error for a refusal."""
    if status == 404 and code == "unknown_site":
        return UnknownSite(
            status, code, message, method=method, path=path, alternatives=alternatives or []
        )
    if status == 429:
        return TooManyRequests(
            status, code, message, method=method, path=path, retry_after=retry_after
        )
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    err = cls(status, code, message, method=method, path=path)
    if status == 503:
        # No leader just now (issue 15's failover): when to ask again.
        err.retry_after = retry_after
    return err
