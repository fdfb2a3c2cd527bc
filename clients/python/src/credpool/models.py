"""What the server answers, as typed values whose repr() and str() never
show a secret: a secret value prints as ``'***'``; its owner reads it
through the attribute or item it lives in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MASK = "***"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time of the API (``2026-12-05T21:11:41Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class SecretStr:
    """A secret string: ``str()`` and ``repr()`` show ``***``; ``.reveal()``
    gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a SecretStr is not pickled")


class SecretDict(dict[str, str]):
    """Cookie or header values by name: a plain ``dict`` (so HTTP libraries
    take it as one) whose ``repr()`` and ``str()`` show names only."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {MASK!r}" for k in self) + "}"

    __str__ = __repr__


def _pairs(value: Any) -> SecretDict:
    out = SecretDict()
    if isinstance(value, list):
        for p in value:
            if isinstance(p, Mapping) and isinstance(p.get("name"), str):
                out[p["name"]] = str(p.get("value", ""))
    return out


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, repr=False)
class Secrets:
    """The secret material of a lease (or of an admin's reveal)."""

    cookies: SecretDict = field(default_factory=SecretDict)
    headers: SecretDict = field(default_factory=SecretDict)
    password: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    api_key: str | None = None
    secret_key: str | None = None
    recovery_codes: tuple[str, ...] = ()

    @staticmethod
    def from_json(value: Any) -> Secrets:
        v = value if isinstance(value, Mapping) else {}
        codes = v.get("recovery_codes")
        return Secrets(
            cookies=_pairs(v.get("cookies")),
            headers=_pairs(v.get("headers")),
            password=_opt(v.get("password")),
            access_token=_opt(v.get("access_token")),
            refresh_token=_opt(v.get("refresh_token")),
            api_key=_opt(v.get("api_key")),
            secret_key=_opt(v.get("secret_key")),
            recovery_codes=tuple(c for c in codes if isinstance(c, str))
            if isinstance(codes, list)
            else (),
        )

    def present(self) -> list[str]:
        """The names of the fields that hold something (no values)."""
        out = [f"cookies[{', '.join(self.cookies)}]"] if self.cookies else []
        out += [f"headers[{', '.join(self.headers)}]"] if self.headers else []
        for name in ("password", "access_token", "refresh_token", "api_key", "secret_key"):
            if getattr(self, name) is not None:
                out.append(name)
        if self.recovery_codes:
            out.append("recovery_codes")
        return out

    def __repr__(self) -> str:
        return f"Secrets({', '.join(self.present())})"

    __str__ = __repr__


@dataclass(frozen=True)
class Credential:
    """The leased credential as the lease shows it (no secrets)."""

    id: str
    site: str
    type: str
    status: str
    health: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def from_json(v: Mapping[str, Any]) -> Credential:
        known = {"id", "site", "type", "status", "health"}
        return Credential(
            id=str(v.get("id", "")),
            site=str(v.get("site", "")),
            type=str(v.get("type", "")),
            status=str(v.get("status", "")),
            health=int(v.get("health") or 0),
            extra={k: x for k, x in v.items() if k not in known},
        )


@dataclass(frozen=True)
class ReportEffect:
    """What a report did to the credential."""

    lease: str
    status: str
    health: int
    cooldown_until: datetime | None

    @staticmethod
    def from_json(v: Mapping[str, Any]) -> ReportEffect:
        return ReportEffect(
            lease=str(v.get("lease", "")),
            status=str(v.get("status", "")),
            health=int(v.get("health") or 0),
            cooldown_until=parse_time(v.get("cooldown_until")),
        )


@dataclass(frozen=True, repr=False)
class LeaseData:
    """A granted lease: its id, times, credential and secrets."""

    id: str
    site: str
    granted_at: datetime | None
    expires_at: datetime | None
    credential: Credential
    secrets: Secrets
    warnings: tuple[str, ...] = ()

    @property
    def cookies(self) -> SecretDict:
        return self.secrets.cookies

    @property
    def headers(self) -> SecretDict:
        return self.secrets.headers

    @property
    def access_token(self) -> str | None:
        return self.secrets.access_token

    @property
    def cookie_header(self) -> str:
        """The ``Cookie`` request header of the lease's cookies."""
        return "; ".join(f"{k}={v}" for k, v in self.secrets.cookies.items())

    def request_headers(self) -> SecretDict:
        """Every header a request with this credential carries: its stored
        headers, ``Cookie`` from its cookies, ``Authorization: Bearer`` from
        its access token (unless a stored header sets them)."""
        out = SecretDict(self.secrets.headers)
        names = {k.lower() for k in out}
        if self.secrets.cookies and "cookie" not in names:
            out["Cookie"] = self.cookie_header
        if self.secrets.access_token and "authorization" not in names:
            out["Authorization"] = f"Bearer {self.secrets.access_token}"
        return out

    def __repr__(self) -> str:
        c = self.credential
        expires = self.expires_at.isoformat() if self.expires_at else None
        return (
            f"{type(self).__name__}(id={self.id!r}, credential={c.id!r}, site={c.site!r}, "
            f"type={c.type!r}, expires_at={expires!r}, secrets={self.secrets!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class Acquired:
    """An acquire's whole answer: a lease, or why there is none."""

    status: str
    reason: str | None
    next_free_at: datetime | None
    alternatives: tuple[str, ...]
    warnings: tuple[str, ...]
    lease: LeaseData | None

    @staticmethod
    def from_json(v: Mapping[str, Any], site: str) -> Acquired:
        warnings = tuple(str(w) for w in v.get("warnings") or [])
        lease = v.get("lease")
        data = None
        if isinstance(lease, Mapping):
            data = LeaseData(
                id=str(lease.get("id", "")),
                site=site,
                granted_at=parse_time(lease.get("granted_at")),
                expires_at=parse_time(lease.get("expires_at")),
                credential=Credential.from_json(lease.get("credential") or {}),
                secrets=Secrets.from_json(lease.get("secrets")),
                warnings=warnings,
            )
        return Acquired(
            status=str(v.get("status", "")),
            reason=_opt(v.get("reason")),
            next_free_at=parse_time(v.get("next_free_at")),
            alternatives=tuple(str(a) for a in v.get("alternatives") or []),
            warnings=warnings,
            lease=data,
        )
