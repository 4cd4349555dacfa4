"""Session middleware: checks that run on each session request before it is accepted.

Theory of operation
-------------------
A middleware is an async callable ``async def mw(request) -> None | int | Rejection``
that receives the :class:`~pywebtransport.server.SessionRequest`. ``None`` lets the
request go on to the next middleware and then to its route; an ``int`` (an HTTP status
such as 403) or a :class:`Rejection` (status plus response headers) refuses the session
with that status and stops the chain. A plain (non-async) callable is accepted too.
:func:`run_middleware` applies a chain in order and returns the first rejection.

Ready-made middleware:

- :class:`OriginCheck` — an allow-list of ``Origin`` values (``"*"`` matches any;
  ``https://*.example.com`` matches subdomains); 403 otherwise. Requests without an
  ``Origin`` (non-browser clients) pass unless ``require_origin=True``.
- :class:`RateLimit` — a token bucket per client IP address: ``rate`` new sessions per
  second with bursts of ``burst``; 429 otherwise.
- :class:`SessionLimit` — refuses (503) while ``count()`` sessions are already active;
  ``ServerApp.active_session_count`` is the natural counter.
- :class:`RequestLogger` — logs every request (path, origin, peer address, draft).
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from pywebtransport.server import SessionRequest

__all__ = [
    "Middleware",
    "MiddlewareResult",
    "OriginCheck",
    "RateLimit",
    "Rejection",
    "RequestLogger",
    "SessionLimit",
    "run_middleware",
]

logger = logging.getLogger("pywebtransport.app")


@dataclass(frozen=True)
class Rejection:
    """Refuse the session with HTTP ``status_code`` and these response ``headers``."""

    status_code: int = 403
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if not 100 <= self.status_code <= 599 or 200 <= self.status_code <= 299:
            raise ValueError(f"a rejection needs a non-2xx HTTP status, got {self.status_code}")


MiddlewareResult: TypeAlias = "int | Rejection | None"
#: ``async def mw(request) -> None | int | Rejection`` (a plain function also works)
Middleware: TypeAlias = Callable[
    ["SessionRequest"], "Awaitable[MiddlewareResult] | MiddlewareResult"
]


def _as_rejection(result: object) -> Rejection | None:
    if result is None:
        return None
    if isinstance(result, Rejection):
        return result
    if isinstance(result, int) and not isinstance(result, bool):
        return Rejection(result)
    raise TypeError(f"middleware must return None, an HTTP status or a Rejection, not {result!r}")


async def run_middleware(chain: Sequence[Middleware], request: SessionRequest) -> Rejection | None:
    """Run ``chain`` in order; the first rejection, or None when all let it pass."""
    for middleware in chain:
        result: Any = middleware(request)
        if inspect.isawaitable(result):
            result = await result
        rejection = _as_rejection(result)
        if rejection is not None:
            return rejection
    return None


def _normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginCheck:
    """Allow only sessions whose ``Origin`` is in ``allowed`` (403 otherwise).

    Entries are compared case-insensitively without a trailing slash; ``"*"`` allows
    every origin and an entry with ``*`` is a glob (``https://*.example.com``).
    """

    def __init__(
        self, allowed: Iterable[str], *, require_origin: bool = False, status_code: int = 403
    ) -> None:
        entries = [_normalize_origin(o) for o in allowed]
        self.exact = frozenset(e for e in entries if "*" not in e)
        self.globs = tuple(e for e in entries if "*" in e)
        self.require_origin = require_origin
        self.status_code = status_code

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return not self.require_origin
        value = _normalize_origin(origin)
        if value in self.exact:
            return True
        return any(fnmatch.fnmatchcase(value, g) for g in self.globs)

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        if self.allows(request.origin):
            return None
        logger.info("origin %r refused for %s", request.origin, request.path)
        return Rejection(self.status_code, reason="origin not allowed")


class RateLimit:
    """At most ``rate`` new sessions per second per client IP, bursts up to ``burst``.

    A token bucket per IP address (the oldest buckets are forgotten beyond
    ``max_clients``); refused requests get 429 with a ``retry-after`` header.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, last time)

    def take(self, key: str) -> float:
        """Spend a token for ``key``: 0.0 if granted, else the seconds until one is."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # re-inserted: dict order = recency
        while len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return wait

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        wait = self.take(request.remote_address[0])
        if wait <= 0.0:
            return None
        retry = str(max(1, int(wait + 0.999)))
        return Rejection(429, {"retry-after": retry}, reason="rate limited")


class SessionLimit:
    """Refuse new sessions (503) while ``count()`` already reaches ``max_sessions``."""

    def __init__(self, max_sessions: int, count: Callable[[], int]) -> None:
        self.max_sessions = max_sessions
        self.count = count

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        if self.count() < self.max_sessions:
            return None
        return Rejection(503, {"retry-after": "1"}, reason="too many sessions")


class RequestLogger:
    """Log each session request; never rejects."""

    def __init__(self, log: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.log = log or logger
        self.level = level

    async def __call__(self, request: SessionRequest) -> None:
        host, port = request.remote_address[:2]
        self.log.log(
            self.level,
            "session request %s from %s:%s origin=%s draft=%s protocols=%s",
            request.path,
            host,
            port,
            request.origin,
            request.draft,
            ",".join(request.protocols) or "-",
        )
