"""A small typed event emitter for sessions and servers.

Theory of operation
-------------------
An :class:`EventEmitter` maps event types (:class:`EventType` members or plain strings;
``EventType.STREAM == "stream"``) to handlers. :meth:`EventEmitter.emit` builds one
:class:`Event` (``type``, ``data``, ``source``) and calls every handler registered
for its type in registration order; ``once`` handlers are removed before they run. A
handler may be a plain function or a coroutine function: coroutines are run as tasks
(kept referenced until done) so ``emit`` never blocks. Handler exceptions are logged,
never propagated into the emitting protocol code. :meth:`EventEmitter.wait_for` is the
awaitable form: the next event of a type that satisfies ``condition``.

Events of a :class:`~pywebtransport.session.WebTransportSession`:

=============  ==========================================================
type           ``data``
=============  ==========================================================
``stream``     the new incoming stream object
``datagram``   the datagram payload (``bytes``)
``draining``   None — the peer asked for a graceful end (DRAIN / GOAWAY)
``closed``     the :class:`~pywebtransport.exceptions.SessionClosed` reason
=============  ==========================================================

A :class:`~pywebtransport.server.WebTransportServer` emits ``session_request``,
``session`` (established) and ``connection`` / ``connection_closed``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar, overload

__all__ = ["Event", "EventEmitter", "EventHandler", "EventType"]

logger = logging.getLogger("pywebtransport")


class EventType(StrEnum):
    """Names of the events the API emits."""

    STREAM = "stream"
    DATAGRAM = "datagram"
    DRAINING = "draining"
    CLOSED = "closed"
    SESSION_REQUEST = "session_request"
    SESSION = "session"
    CONNECTION = "connection"
    CONNECTION_CLOSED = "connection_closed"


@dataclass(frozen=True, slots=True)
class Event:
    """One emitted event."""

    type: str
    data: Any = None
    source: Any = None


EventHandler: TypeAlias = Callable[[Event], Awaitable[None] | None]
H = TypeVar("H", bound=EventHandler)


class EventEmitter:
    """Handlers per event type: ``on``, ``once``, ``off``, ``emit``, ``wait_for``."""

    __slots__ = (  # one per session: no per-instance dict (issue 10, memory)
        "__dict__",
        "_source",
        "_tasks",
        "handlers",
    )

    def __init__(self, source: Any = None) -> None:
        self._source = source
        #: The registered handlers and their ``once`` flags per event key (an
        #: :class:`EventType` member equals its str key), never replaced: read it, do not
        #: change it. A per-datagram path tests ``handlers.get(key)`` instead of calling
        #: :meth:`listens` (issue 10: a call less per datagram).
        self.handlers: dict[str, list[tuple[EventHandler, bool]]] = {}
        # handler tasks still running: made by the first async handler (idle memory)
        self._tasks: set[asyncio.Task[None]] | None = None

    @overload
    def on(self, event: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, handler: H) -> H: ...
    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` for ``event``; without a handler, a decorator."""
        return self._register(event, handler, once=False)

    @overload
    def once(self, event: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def once(self, event: str, handler: H) -> H: ...
    def once(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Like :meth:`on`, but the handler runs for the next such event only."""
        return self._register(event, handler, once=True)

    def _register(self, event: str, handler: H | None, once: bool) -> H | Callable[[H], H]:
        if handler is None:

            def decorator(func: H) -> H:
                self._add(event, func, once)
                return func

            return decorator
        self._add(event, handler, once)
        return handler

    def off(self, event: str, handler: EventHandler | None = None) -> None:
        """Remove ``handler`` (every handler of ``event`` when None)."""
        key = str(event)
        if handler is None:
            self.handlers.pop(key, None)
            return
        entries = self.handlers.get(key)
        if entries:
            entries[:] = [e for e in entries if e[0] is not handler and e[0] != handler]

    def listens(self, event: str) -> bool:
        """True when a handler of ``event`` is registered (a hot path skips :meth:`emit`
        when not: no :class:`Event` is built for nobody)."""
        return bool(self.handlers.get(event))  # an EventType member equals its str key

    def remove_all_listeners(self) -> None:
        self.handlers.clear()

    def listeners(self, event: str) -> list[EventHandler]:
        return [h for h, _ in self.handlers.get(str(event), ())]

    def listener_count(self, event: str) -> int:
        return len(self.handlers.get(str(event), ()))

    def _add(self, event: str, handler: EventHandler, once: bool) -> None:
        if not callable(handler):
            raise TypeError("event handler must be callable")
        self.handlers.setdefault(str(event), []).append((handler, once))

    def emit(self, event: str, data: Any = None) -> Event:
        """Call the handlers of ``event`` with one :class:`Event`; returns it."""
        key = str(event)
        item = Event(key, data, self._source)
        entries = self.handlers.get(key)
        if not entries:
            return item
        run = list(entries)
        if any(once for _, once in run):
            kept = [e for e in entries if not e[1]]
            if kept:
                self.handlers[key] = kept
            else:
                del self.handlers[key]
        for handler, _ in run:
            try:
                result = handler(item)
            except Exception:
                logger.exception("handler of %r failed", key)
                continue
            if inspect.isawaitable(result):
                self._spawn(result, key)
        return item

    def _spawn(self, awaitable: Awaitable[None], key: str) -> None:
        async def runner() -> None:
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("handler of %r failed", key)

        task = asyncio.get_running_loop().create_task(runner())
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def wait_for(
        self,
        event: str,
        timeout: float | None = None,
        condition: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The next ``event`` (that satisfies ``condition``); raises TimeoutError."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        def handler(item: Event) -> None:
            if future.done():
                return
            try:
                if condition is not None and not condition(item):
                    return
            except Exception as exc:
                future.set_exception(exc)
                return
            future.set_result(item)

        self._add(event, handler, once=False)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self.off(event, handler)
