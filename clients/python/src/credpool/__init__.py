"""Python client of ``credpool serve``: lease crawler credentials, report
how each request went. Sync (:class:`Client`) and asyncio
(:class:`AsyncClient`); a Scrapy downloader middleware in
:mod:`credpool.scrapy`."""

from .aio import AsyncClient, AsyncLease
from .client import Client, Lease
from .errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    CredpoolError,
    Forbidden,
    InvalidRequest,
    LeaseFinished,
    NoCredentialAvailable,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
    UnknownSite,
)
from .models import Acquired, Credential, ReportEffect, SecretDict, Secrets, SecretStr
from .outcome import Check, Page, Report, body_contains, classify, classify_exception, redirects_to

__all__ = [
    "Acquired",
    "ApiError",
    "AsyncClient",
    "AsyncLease",
    "Check",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Credential",
    "CredpoolError",
    "Forbidden",
    "InvalidRequest",
    "Lease",
    "LeaseFinished",
    "NoCredentialAvailable",
    "NotFound",
    "Page",
    "Report",
    "ReportEffect",
    "SecretDict",
    "SecretStr",
    "Secrets",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "UnknownSite",
    "body_contains",
    "classify",
    "classify_exception",
    "redirects_to",
]
