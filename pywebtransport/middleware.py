"""Session middleware: checks that run on each session request before it is accepted.

Theory of operation
-------------------
A middleware is an async callable ``async def mw(request) -> None | int | Rejection``
that receives the :class:`~pywebtransport.server.SessionRequest`. ``None`` lets the
request go on to the next middleware and then to its route; an ``int`` (an HTTP status
such as 403) or a :class:`Rejection` (status plus response headers) refuses the session
with that status and stops the chain. A plain (non-async) callable is accepted too.
:func:`run_middleware` applies a chain in order and returns the first rejection;
:func:`compose` makes one middleware of a chain.

Composition. :class:`~pywebtransport.app.ServerApp` runs its app-wide chain first
(``ServerApp(middleware=[…])``, ``add_middleware``), then resolves the route (404 when
none), then runs the route's own chain (``app.route("/chat", middleware=[…])``); the
first rejection stops everything after it, so a route's middleware never sees a
request the app-wide chain refused.

Ready-made middleware:

- :class:`BearerAuth` — ``authorization: Bearer <token>`` (RFC 6750 §2.1) checked
  against a set of tokens (compared in constant time: SHA-256 digests with
  :func:`hmac.compare_digest`, every entry compared) or a ``verify(token)`` callable;
  browsers cannot set headers on a WebTransport CONNECT, so ``query_param="token"``
  also takes the token from ``?token=…``. 401 with ``www-authenticate`` (RFC 6750 §3)
  when it is missing or wrong.
- :class:`CustomAuth` — ``check(request) -> bool | int | Rejection``: True (or None)
  lets the request pass, False refuses it (403 by default).
- :class:`OriginCheck` — an allow-list of ``Origin`` values (``"*"`` matches any;
  ``https://*.example.com`` matches subdomains); 403 otherwise. Requests without an
  ``Origin`` (non-browser clients) pass unless ``require_origin=True``.
- :class:`RateLimit` — a token bucket per client IP address (an IPv6 address counts by
  its /64 prefix): ``rate`` new sessions per second with bursts of ``burst``; 429
  otherwise. Its table is bounded: at most ``max_clients`` buckets (the least recently
  used goes first) and a bucket that has filled up again leaves (it is the same as no
  bucket), checked oldest first on every request, so idle clients do not stay.
- :class:`SessionLimit` — refuses (503) while ``count()`` sessions are already active;
  ``ServerApp.active_session_count`` is the natural counter.
- :class:`RequestLogger` — logs every request (path, origin, peer address, draft).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from pywebtransport.server import SessionRequest

__all__ = [
    "BearerAuth",
    "CustomAuth",
    "Middleware",
    "MiddlewareResult",
    "OriginCheck",
    "RateLimit",
    "Rejection",
    "RequestLogger",
    "SessionLimit",
    "client_key",
    "compose",
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


def compose(*chain: Middleware) -> Middleware:
    """One middleware that runs ``chain`` in order and stops at the first rejection."""
    middlewares = tuple(chain)

    async def composed(request: SessionRequest) -> Rejection | None:
        return await run_middleware(middlewares, request)

    return composed


# ======================================================================================
# authentication
# ======================================================================================

TokenCheck: TypeAlias = Callable[[str], "Awaitable[bool] | bool"]
RequestCheck: TypeAlias = Callable[
    ["SessionRequest"], "Awaitable[bool | int | Rejection | None] | bool | int | Rejection | None"
]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class BearerAuth:
    """Admit only requests that present a valid bearer token (401 otherwise).

    The token is read from ``authorization: Bearer <token>`` (RFC 6750 §2.1; the scheme
    is case-insensitive, RFC 9110 §11.1) or, when ``query_param`` is set, from that
    query parameter (RFC 6750 §2.3) — the only way a browser's ``new WebTransport(url)``
    can send one. It is valid when it is one of ``tokens`` or when ``verify(token)``
    (plain or async) returns True. ``tokens`` are kept as SHA-256 digests and compared
    with :func:`hmac.compare_digest` against every entry, so the time taken does not
    depend on which token (or which prefix of one) was presented. Refusals carry
    ``www-authenticate: Bearer realm="…"`` (with ``error="invalid_token"`` for a wrong
    token, RFC 6750 §3, §3.1).
    """

    def __init__(
        self,
        tokens: Iterable[str] | None = None,
        *,
        verify: TokenCheck | None = None,
        query_param: str | None = None,
        realm: str = "webtransport",
        status_code: int = 401,
    ) -> None:
        if (tokens is None) == (verify is None):
            raise ValueError("BearerAuth needs either tokens or verify (exactly one)")
        if '"' in realm or "\\" in realm:
            raise ValueError("the realm must not contain quotes or backslashes")
        self._digests = tuple(_digest(t) for t in tokens) if tokens is not None else ()
        self._verify = verify
        self.query_param = query_param
        self.realm = realm
        self.status_code = status_code

    def token_of(self, request: SessionRequest) -> str | None:
        """The bearer token ``request`` presents (header first, then the query)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if self.query_param:
            values = parse_qs(getattr(request, "query", "") or "").get(self.query_param)
            if values and values[0]:
                return str(values[0])
        return None

    def matches(self, token: str) -> bool:
        """Whether ``token`` is one of ``tokens`` (constant time in the token)."""
        presented = _digest(token)
        found = False
        for digest in self._digests:  # no early exit: every entry is compared
            found |= hmac.compare_digest(digest, presented)
        return found

    async def _valid(self, token: str) -> bool:
        if self._verify is None:
            return self.matches(token)
        result: Any = self._verify(token)
        if inspect.isawaitable(result):
            result = await result
        return result is True

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        token = self.token_of(request)
        challenge = f'Bearer realm="{self.realm}"'
        if token is None:
            logger.info("no bearer token for %s", request.path)
            return Rejection(
                self.status_code, {"www-authenticate": challenge}, reason="missing token"
            )
        if await self._valid(token):
            return None
        logger.info("invalid bearer token for %s", request.path)
        return Rejection(
            self.status_code,
            {"www-authenticate": f'{challenge}, error="invalid_token"'},
            reason="invalid token",
        )


class CustomAuth:
    """Admit a request when ``check(request)`` (plain or async) says so.

    ``True`` or ``None`` lets it pass; ``False`` refuses it with ``status_code`` (403 by
    default); an HTTP status or a :class:`Rejection` refuses it with that.
    """

    def __init__(self, check: RequestCheck, *, status_code: int = 403) -> None:
        self.check = check
        self.status_code = status_code

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        result: Any = self.check(request)
        if inspect.isawaitable(result):
            result = await result
        if result is True or result is None:
            return None
        if result is False:
            logger.info("custom check refused %s", request.path)
            return Rejection(self.status_code, reason="refused by check")
        return _as_rejection(result)


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


def client_key(address: str, ipv6_prefix: int = 64) -> str:
    """The rate-limit key of a client IP: an IPv4 address as is (also when mapped into
    IPv6), an IPv6 address by its ``/ipv6_prefix`` network (one host is usually given a
    whole /64, RFC 4291 §2.5.4, so counting single addresses would let it rotate)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return address


class RateLimit:
    """At most ``rate`` new sessions per second per client, bursts up to ``burst``.

    A token bucket per client (:func:`client_key` of its IP address, or ``key(request)``);
    refused requests get 429 with a ``retry-after`` header. The table of buckets has a
    cap and an exit: beyond ``max_clients`` the least recently used bucket is forgotten,
    and a bucket that has filled up again (``burst / rate`` seconds after its last use at
    most) is removed, oldest first, on each request — amortised O(1) per request.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        max_clients: int = 10_000,
        ipv6_prefix: int = 64,
        key: Callable[[SessionRequest], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if max_clients < 1:
            raise ValueError("max_clients must be positive")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix is 0..128")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self.max_clients = max_clients
        self.ipv6_prefix = ipv6_prefix
        self._key = key
        self._clock = clock
        # key -> (tokens, last time); dict order = recency of last use
        self._buckets: dict[str, tuple[float, float]] = {}
        self.evicted = 0  # buckets forgotten because of max_clients

    @property
    def tracked(self) -> int:
        """Clients with a bucket now (at most ``max_clients``)."""
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend a token for ``key``: 0.0 if granted, else the seconds until one is."""
        now = self._clock()
        buckets = self._buckets
        tokens, last = buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        buckets[key] = (tokens, now)  # re-inserted: dict order = recency
        self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        """The exits: buckets full again leave (oldest first), then the cap."""
        buckets = self._buckets
        burst, rate = self.burst, self.rate
        while len(buckets) > 1:
            oldest = next(iter(buckets))
            tokens, last = buckets[oldest]
            if tokens + (now - last) * rate < burst:
                break  # every later bucket was used after this one
            del buckets[oldest]
        while len(buckets) > self.max_clients:
            del buckets[next(iter(buckets))]
            self.evicted += 1

    async def __call__(self, request: SessionRequest) -> Rejection | None:
        if self._key is not None:
            key = self._key(request)
        else:
            key = client_key(request.remote_address[0], self.ipv6_prefix)
        wait = self.take(key)
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
