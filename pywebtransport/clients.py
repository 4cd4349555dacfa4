"""Client utilities: a session kept alive (:class:`ReconnectingClient`) and many sessions
to many URLs (:class:`ClientFleet`).

Theory of operation
-------------------
:class:`Backoff` is the retry schedule as a pure function: the delay before retry
``n`` (1-based) is ``min(max_delay, base * factor ** (n - 1))``, less a random part
of up to ``jitter`` of it (drawn from the RNG passed in, so a seeded
:class:`random.Random` gives a reproducible schedule; jitter spreads the retries of
many clients that lost one server at the same moment). ``max_attempts`` consecutive
failures end the retries (None: retry forever).

:class:`ReconnectingClient` keeps one session to one URL open. One task runs the loop:
connect (through a :class:`~pywebtransport.client.WebTransportClient` of its own); on
success emit ``connected`` (the first time) or ``reconnected`` with the session, which
:attr:`ReconnectingClient.session` exposes, and wait until it closes; then emit
``disconnected`` with the :class:`~pywebtransport.exceptions.SessionClosed` reason
and connect again after the first backoff delay (a server that accepts and closes at
once is not hammered). A failed attempt emits ``retrying`` (attempt, delay, error) and
sleeps the backoff delay; after ``max_attempts`` consecutive failures it emits
``gave_up`` with the last error, and :meth:`ReconnectingClient.wait_session` raises it.
:meth:`ReconnectingClient.close` (or leaving ``async with``) is final: the loop stops,
the session is closed with code 0, nothing reconnects. Closing the session itself
(``session.close()``) counts as a disconnect and reconnects. Bounded: the state is one
session, one task and counters; closed sessions leave the inner client's tables, so
nothing grows with the number of reconnects.

:class:`ClientFleet` opens ``sessions_per_url`` sessions to each of its URLs, at most
``concurrency`` connecting at once (a semaphore), and keeps aggregate statistics
(:meth:`ClientFleet.stats`: opened, failed, active, closed, and the bytes and
datagrams of every session, the closed ones folded into totals as they close). It
holds the open sessions only (at most the configured session count) and the last
``sessions`` errors. ``pool=True`` shares connections per origin where the draft
allows (see :mod:`pywebtransport.client`). :meth:`ClientFleet.close` closes every
session and connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pywebtransport.client import WebTransportClient, parse_url
from pywebtransport.config import ClientConfig
from pywebtransport.events import EventEmitter, EventType
from pywebtransport.exceptions import WebTransportError
from pywebtransport.session import WebTransportSession

__all__ = [
    "Backoff",
    "ClientEvent",
    "ClientFleet",
    "FleetStats",
    "ReconnectingClient",
]

Sleep = Callable[[float], Awaitable[Any]]
logger = logging.getLogger("pywebtransport")


class ClientEvent(StrEnum):
    """Events of a :class:`ReconnectingClient` (``data`` in brackets)."""

    CONNECTED = "connected"  # the first session (the session)
    RECONNECTED = "reconnected"  # a later session (the session)
    DISCONNECTED = "disconnected"  # the session closed (its SessionClosed reason)
    RETRYING = "retrying"  # an attempt failed ({"attempt", "delay", "error"})
    GAVE_UP = "gave_up"  # max_attempts failures in a row (the last error)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter (see the module docstring)."""

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    #: consecutive failed attempts before giving up (None: forever)
    max_attempts: int | None = None
    #: the part of each delay that is random: 0 (none) to 1 (anything from 0 to it)
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("backoff needs base >= 0, factor >= 1, max_delay >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None: forever)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry ``attempt`` (1, 2, ...)."""
        exponent = max(0, attempt - 1)
        if self.base == 0.0 or self.factor == 1.0:
            raw = self.base
        else:
            try:
                raw = self.base * self.factor**exponent
            except OverflowError:  # through logarithms: a tiny base may still bring it down
                log_raw = math.log(self.base) + exponent * math.log(self.factor)
                raw = math.exp(log_raw) if log_raw < 700.0 else math.inf
        capped = min(self.max_delay, raw)
        return capped * (1.0 - self.jitter * rng.random())

    def gives_up(self, failures: int) -> bool:
        """True once ``failures`` consecutive attempts failed and no retry is left."""
        return self.max_attempts is not None and failures >= self.max_attempts

    def schedule(self, rng: random.Random) -> Iterator[float]:
        """The delays of every retry, in order (endless with ``max_attempts=None``)."""
        attempt = 1
        while not self.gives_up(attempt):
            yield self.delay(attempt, rng)
            attempt += 1


class ReconnectingClient:
    """Keeps one session to ``url`` open (see the module docstring); an async context
    manager. ``sleep`` and ``rng`` can be replaced (tests: a fake clock, a seed)."""

    def __init__(
        self,
        url: str,
        config: ClientConfig | None = None,
        *,
        backoff: Backoff | None = None,
        headers: Mapping[str, str] | None = None,
        protocols: Iterable[str] | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        parse_url(url)  # a bad URL fails here (ValueError), not in the loop
        self.url = url
        self.backoff = backoff or Backoff()
        self.events = EventEmitter(self)
        self._client = WebTransportClient(config)
        self._headers = dict(headers or {})
        self._protocols = tuple(protocols or ())
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._changed: asyncio.Event | None = None  # pulsed when the session changes
        #: the open session (None while connecting or after the end)
        self.session: WebTransportSession | None = None
        self.last_error: BaseException | None = None
        self.gave_up = False
        self.connects = 0  # sessions established so far
        self.failures = 0  # consecutive failed attempts (0 once connected)

    @property
    def client(self) -> WebTransportClient:
        return self._client

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> ReconnectingClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the loop (``async with`` does it)."""
        if self._closed:
            raise WebTransportError("the reconnecting client is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_session(self, timeout: float | None = None) -> WebTransportSession:
        """The open session, waiting for the next one if there is none; raises the last
        error once the client gave up, WebTransportError once closed, TimeoutError."""
        if self._task is None and not self._closed:
            self.start()
        async with asyncio.timeout(timeout):
            while True:
                session = self.session
                if session is not None and not session.is_closed:
                    return session
                if self.gave_up:
                    raise self.last_error or WebTransportError("gave up")
                if self._closed:
                    raise WebTransportError("the reconnecting client is closed")
                await self._wait_change()

    async def _wait_change(self) -> None:
        changed = self._changed
        if changed is None:
            changed = self._changed = asyncio.Event()
        await changed.wait()

    def _pulse(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _run(self) -> None:
        try:
            while not self._closed:
                session = await self._connect_once()
                if session is None:
                    return  # gave up or closed
                reason = await session.wait_closed()
                self.session = None
                self._pulse()
                self.events.emit(ClientEvent.DISCONNECTED, reason)
                if not self._closed:  # no hammering a server that closes at once
                    await self._sleep(self.backoff.delay(1, self._rng))
        except Exception as exc:  # a bug (ours or a handler's): give up, say why
            logger.exception("reconnecting client for %s failed", self.url)
            self.last_error = exc
            self.gave_up = True
            self.events.emit(ClientEvent.GAVE_UP, exc)
        finally:
            self._pulse()

    async def _connect_once(self) -> WebTransportSession | None:
        """Attempts until one succeeds (the session), or None: gave up or closed."""
        while not self._closed:
            try:
                session = await self._client.connect(
                    self.url, headers=self._headers, protocols=self._protocols
                )
            except WebTransportError as exc:
                if self._closed:
                    return None
                self.last_error = exc
                self.failures += 1
                if self.backoff.gives_up(self.failures):
                    self.gave_up = True
                    self._pulse()
                    self.events.emit(ClientEvent.GAVE_UP, exc)
                    return None
                delay = self.backoff.delay(self.failures, self._rng)
                self.events.emit(
                    ClientEvent.RETRYING, {"attempt": self.failures, "delay": delay, "error": exc}
                )
                await self._sleep(delay)
                continue
            if self._closed:  # closed while connecting: final
                await session.close()
                return None
            self.failures = 0
            self.connects += 1
            self.session = session
            self._pulse()
            first = self.connects == 1
            self.events.emit(ClientEvent.CONNECTED if first else ClientEvent.RECONNECTED, session)
            return session
        return None

    async def close(self) -> None:
        """Close the session (code 0) and stop for good: no reconnect after this."""
        self._closed = True
        task, self._task = self._task, None
        session, self.session = self.session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.close()
        self._pulse()


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Aggregate counters of a :class:`ClientFleet`."""

    opened: int
    failed: int
    active: int
    closed: int
    bytes_sent: int
    bytes_received: int
    datagrams_sent: int
    datagrams_received: int


_COUNTERS = ("bytes_sent", "bytes_received", "datagrams_sent", "datagrams_received")


class ClientFleet:
    """``sessions_per_url`` sessions to each URL, at most ``concurrency`` connecting at
    once (see the module docstring); an async context manager."""

    def __init__(
        self,
        urls: Sequence[str],
        config: ClientConfig | None = None,
        *,
        sessions_per_url: int = 1,
        concurrency: int = 16,
        pool: bool | int = False,
    ) -> None:
        if sessions_per_url < 1 or concurrency < 1:
            raise ValueError("sessions_per_url and concurrency must be at least 1")
        for url in urls:
            parse_url(url)  # ValueError for a bad one, before anything connects
        self.urls = list(urls)
        self.sessions_per_url = sessions_per_url
        self.concurrency = concurrency
        self.size = len(self.urls) * sessions_per_url
        self._client = WebTransportClient(config, pool=pool)
        self._sessions: dict[WebTransportSession, str] = {}  # open ones -> their URL
        self._totals = dict.fromkeys(_COUNTERS, 0)  # of the sessions that closed
        self.errors: deque[tuple[str, BaseException]] = deque(maxlen=max(1, self.size))
        self.opened = 0
        self.failed = 0
        self.closed = 0
        #: the most sessions ever connecting at once (the concurrency limit at work)
        self.peak_connecting = 0
        self._connecting = 0

    @property
    def client(self) -> WebTransportClient:
        return self._client

    @property
    def sessions(self) -> list[WebTransportSession]:
        """The open sessions."""
        return [s for s in self._sessions if not s.is_closed]

    def sessions_to(self, url: str) -> list[WebTransportSession]:
        return [s for s, u in self._sessions.items() if u == url and not s.is_closed]

    async def __aenter__(self) -> ClientFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect_all(self, timeout: float | None = None) -> list[WebTransportSession]:
        """Open the fleet's sessions (the missing ones, on a second call); returns the
        sessions open afterwards. A failure is counted and kept in :attr:`errors`."""
        limit = asyncio.Semaphore(self.concurrency)
        wanted: list[str] = []
        for url in self.urls:
            wanted += [url] * max(0, self.sessions_per_url - len(self.sessions_to(url)))

        async def one(url: str) -> None:
            async with limit:
                self._connecting += 1
                self.peak_connecting = max(self.peak_connecting, self._connecting)
                try:
                    session = await self._client.connect(url, timeout=timeout)
                except WebTransportError as exc:
                    self.failed += 1
                    self.errors.append((url, exc))
                    return
                finally:
                    self._connecting -= 1
            self._adopt(session, url)

        await asyncio.gather(*(one(url) for url in wanted))
        return self.sessions

    def _adopt(self, session: WebTransportSession, url: str) -> None:
        self.opened += 1
        self._sessions[session] = url
        if session.is_closed:  # closed before we could listen
            self._on_closed(session)
            return
        session.events.on(EventType.CLOSED, lambda _: self._on_closed(session))

    def _on_closed(self, session: WebTransportSession) -> None:
        if self._sessions.pop(session, None) is None:
            return
        self.closed += 1
        totals = self._totals
        for name in _COUNTERS:
            totals[name] += getattr(session, name)

    def stats(self) -> FleetStats:
        totals = dict(self._totals)
        active = self.sessions
        for session in active:
            for name in _COUNTERS:
                totals[name] += getattr(session, name)
        return FleetStats(self.opened, self.failed, len(active), self.closed, **totals)

    async def close(self) -> None:
        """Close every session (code 0) and connection."""
        await self._client.close()
        for session in list(self._sessions):  # closed by the client: fold their counters
            self._on_closed(session)
