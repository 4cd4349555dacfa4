"""ServerApp: a WebTransport server application with routes, middleware and lifecycle.

Theory of operation
-------------------
:class:`ServerApp` sits on the low-level
:class:`~pywebtransport.server.WebTransportServer`. :meth:`ServerApp.serve` runs the
startup hooks, binds the socket and then takes every
:class:`~pywebtransport.server.SessionRequest` from ``incoming_sessions()`` into a task
of its own:

1. the middleware chain runs in registration order (:mod:`pywebtransport.middleware`);
   the first that returns an HTTP status or a :class:`~pywebtransport.middleware.Rejection`
   refuses the session with it (a middleware that raises refuses with 500);
2. the request path (without its query) is resolved by the :class:`~pywebtransport.
   routing.Router`: exact routes first, then pattern routes; no route → 405 (the
   target resource does not support WebTransport: draft-ietf-webtrans-http3-16 §3.2,
   with an empty ``allow`` field, RFC 9110 §15.5.6, §10.2.1);
3. the session is accepted, its path parameters are put on ``session.path_params`` and
   the handler runs as ``handler(session, **params)`` (only the parameters it declares).

A route may have middleware of its own (``app.route(path, middleware=[…])``): it runs
after step 2, before the session is accepted, in the same way — the app-wide chain
first, then the route's; the first refusal stops the rest.

When the handler returns, the session is closed with code 0 if it is still open. A
handler that raises is logged with its traceback and its session closed with
:attr:`ServerApp.handler_error_code` — other sessions and the server keep running. A
handler ended by its session closing under it (:class:`~pywebtransport.exceptions.
SessionClosed`) is a normal end.

Shutdown (:meth:`ServerApp.stop`, SIGINT/SIGTERM under :meth:`ServerApp.run`, or the
``serve()`` task being cancelled) is graceful: ``WebTransportServer.shutdown`` sends
GOAWAY on every connection and DRAIN on every session, waits up to
``config.shutdown_timeout`` seconds for the sessions to end, then closes what is left
and the socket. Handler tasks still running after that get a short grace period and are
then cancelled; last, the shutdown hooks run. Hooks are zero-argument callables, plain
or async, run in registration order.

``run(workers=N)`` runs the app in N processes on one UDP port under a supervisor
(:mod:`pywebtransport.workers`: connection IDs that name their worker, restarts,
rolling drain on SIGHUP); :attr:`ServerApp.worker_info` tells a worker who it is.

A backplane (:attr:`ServerApp.backplane`, :mod:`pywebtransport.backplane`) joins the
app's rooms to other instances: it starts after the startup hooks, before the socket is
bound, and closes after the handlers ended, before the shutdown hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pywebtransport.backplane.base import Backplane
from pywebtransport.config import ServerConfig
from pywebtransport.exceptions import ConnectionFailed, SessionClosed, WebTransportError
from pywebtransport.middleware import Middleware, Rejection, run_middleware
from pywebtransport.rooms import RoomPolicy, Rooms
from pywebtransport.routing import Handler, RouteMatch, Router
from pywebtransport.server import SessionRequest, WebTransportServer

if TYPE_CHECKING:
    from pywebtransport.workers import WorkerInfo
    from quic.aio.workers import WorkerSpec

__all__ = ["HANDLER_ERROR_CODE", "Hook", "ServerApp"]

logger = logging.getLogger("pywebtransport.app")

#: WebTransport application error code a session gets when its handler raises.
HANDLER_ERROR_CODE = 1
#: Seconds handler tasks may still run after the server's graceful shutdown.
HANDLER_GRACE = 1.0
#: Seconds a returning handler's written data may take to be acknowledged before close.
FLUSH_TIMEOUT = 2.0

Hook: TypeAlias = Callable[[], Awaitable[None] | None]
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=Middleware)
K = TypeVar("K", bound=Hook)


class ServerApp:
    """A WebTransport server application: routes, middleware, startup/shutdown hooks.

    ::

        app = ServerApp(config=ServerConfig(certfile="cert.pem", keyfile="key.pem"))

        @app.route("/echo")
        async def echo(session):
            ...

        app.run(host="127.0.0.1", port=4433)
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        middleware: list[Middleware] | None = None,
        handler_error_code: int = HANDLER_ERROR_CODE,
        room_policy: RoomPolicy | None = None,
        backplane: Backplane | None = None,
    ) -> None:
        self.config = config if config is not None else ServerConfig()
        self.router = Router()
        #: named groups of sessions with broadcast (:mod:`pywebtransport.rooms`)
        self.rooms = Rooms(room_policy, backplane)
        self.handler_error_code = handler_error_code
        self._middleware: list[Middleware] = list(middleware or [])
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._server: WebTransportServer | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._serving = False
        self._started = asyncio.Event()  # set once listening, or once that failed
        self._start_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[Any] = set()
        self.started_at: float | None = None
        self.sessions_total = 0
        self.sessions_rejected = 0
        self.handler_errors = 0
        #: with ``run(workers=N)``: which worker this process is, and the sessions of
        #: every worker (:mod:`pywebtransport.workers`); None in a single process
        self.worker_info: WorkerInfo | None = None

    # ------------------------------------------------------------------ registration

    def route(
        self, path: str, *, name: str = "", middleware: Iterable[Middleware] = ()
    ) -> Callable[[H], H]:
        """Decorator: ``handler(session)`` serves sessions whose path is exactly ``path``;
        ``middleware`` runs for this route only, after the app-wide chain."""

        def decorator(handler: H) -> H:
            self.router.add_route(path, handler, name, middleware)
            return handler

        return decorator

    def pattern_route(
        self,
        pattern: str | re.Pattern[str],
        *,
        name: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> Callable[[H], H]:
        """Decorator: ``handler(session, **named_groups)`` for paths fully matching
        ``pattern``; ``middleware`` as for :meth:`route`."""

        def decorator(handler: H) -> H:
            self.router.add_pattern_route(pattern, handler, name, middleware)
            return handler

        return decorator

    def add_route(
        self, path: str, handler: Handler, *, name: str = "", middleware: Iterable[Middleware] = ()
    ) -> None:
        self.router.add_route(path, handler, name, middleware)

    def add_pattern_route(
        self,
        pattern: str | re.Pattern[str],
        handler: Handler,
        *,
        name: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> None:
        self.router.add_pattern_route(pattern, handler, name, middleware)

    def add_middleware(self, middleware: Middleware) -> None:
        """Append ``middleware`` to the chain run on every session request."""
        self._middleware.append(middleware)

    def middleware(self, func: M) -> M:
        """Decorator form of :meth:`add_middleware`."""
        self._middleware.append(func)
        return func

    def on_startup(self, func: K) -> K:
        """Decorator: run ``func()`` (plain or async) before the server binds."""
        self._startup.append(func)
        return func

    def on_shutdown(self, func: K) -> K:
        """Decorator: run ``func()`` (plain or async) after the server has shut down."""
        self._shutdown.append(func)
        return func

    # ------------------------------------------------------------------ state

    @property
    def server(self) -> WebTransportServer:
        """The running low-level server."""
        if self._server is None:
            raise RuntimeError("the app is not serving")
        return self._server

    @property
    def port(self) -> int:
        """The bound UDP port (useful after serving on port 0)."""
        return self.server.port

    @property
    def backplane(self) -> Backplane | None:
        """What joins :attr:`rooms` to the other instances of the app (workers, hosts):
        :mod:`pywebtransport.backplane`; None keeps rooms local. Settable before
        :meth:`serve`, which starts it before listening and closes it after shutdown."""
        return self.rooms.backplane

    @backplane.setter
    def backplane(self, backplane: Backplane | None) -> None:
        if self._serving:
            raise RuntimeError("the backplane is set before serving")
        self.rooms.backplane = backplane

    @property
    def is_serving(self) -> bool:
        return self._server is not None

    @property
    def active_sessions(self) -> list[Any]:
        """Sessions accepted by the app whose handler is still running."""
        return list(self._active)

    @property
    def active_session_count(self) -> int:
        return len(self._active)

    def stats(self) -> dict[str, Any]:
        """App counters plus the server's ``stats()`` (when serving)."""
        started = self.started_at
        uptime = 0.0
        if started is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: server stopped
                uptime = asyncio.get_running_loop().time() - started
        out: dict[str, Any] = {
            "uptime": round(uptime, 3),
            "sessions_active": len(self._active),
            "sessions_total": self.sessions_total,
            "sessions_rejected": self.sessions_rejected,
            "handler_errors": self.handler_errors,
        }
        if self._server is not None:
            with contextlib.suppress(Exception):
                out["server"] = self._server.stats()
        return out

    async def wait_started(self) -> int:
        """Wait until :meth:`serve` listens; the port. Raises what made ``serve`` fail."""
        await self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        return self.port

    # ------------------------------------------------------------------ running

    def stop(self) -> None:
        """Ask a running :meth:`serve` to shut down gracefully (returns at once)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def serve(
        self, host: str | None = None, port: int | None = None, *, worker: WorkerSpec | None = None
    ) -> None:
        """Serve until :meth:`stop` (or cancellation); then shut down gracefully.
        ``worker``: serve as one worker of a group on one port (set by
        :mod:`pywebtransport.workers`)."""
        if self._serving:
            raise RuntimeError("the app is already serving")
        self._serving = True
        self._start_error = None
        self._started.clear()
        self._stop = stop = asyncio.Event()
        if self._stop_requested:
            stop.set()
        server = WebTransportServer(self.config)
        backplane = self.backplane
        try:
            await self._run_hooks(self._startup, "startup")
            if backplane is not None:
                await backplane.start()
            await server.listen(host, port, worker=worker)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            self._serving = False
            await self._close_backplane(backplane)
            await self._run_hooks(self._shutdown, "shutdown")
            raise
        self._server = server
        self.started_at = asyncio.get_running_loop().time()  # the event loop's clock
        self._started.set()
        logger.info("serving WebTransport on port %d", server.port)
        accept = asyncio.create_task(self._accept_loop(server))
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((accept, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            await self._shutdown_server(server, accept)
            self._server = None
            self._started.clear()
            self._serving = False
            self._stop_requested = False

    def run(self, host: str | None = None, port: int | None = None, workers: int = 1) -> None:
        """Serve until SIGINT or SIGTERM (blocking), then shut down gracefully.

        ``workers`` > 1: that many processes on one UDP port (SO_REUSEPORT, connection
        IDs that name their worker; see :mod:`pywebtransport.workers` — the app reaches
        the workers by fork, so build it completely before calling ``run``)."""
        if workers > 1:
            from pywebtransport.workers import run_workers

            config = self.config
            status = run_workers(
                self, config.host if host is None else host,
                config.port if port is None else port, workers,
            )  # fmt: skip
            if status:
                raise RuntimeError(f"the worker group stopped with status {status}")
            return
        asyncio.run(self._run_with_signals(host, port))

    async def _run_with_signals(self, host: str | None, port: int | None) -> None:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.stop)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # not the main thread, Windows
                pass
        try:
            await self.serve(host, port)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _shutdown_server(
        self, server: WebTransportServer, accept: asyncio.Task[None]
    ) -> None:
        logger.info("shutting down")
        try:
            await server.shutdown(
                code=0, reason="server shutting down", timeout=self.config.shutdown_timeout
            )
        except Exception:
            logger.exception("error during server shutdown")
        accept.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await accept
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=HANDLER_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=HANDLER_GRACE)
        await self._close_backplane(self.backplane)
        await self._run_hooks(self._shutdown, "shutdown")

    def _publish_sessions(self) -> None:
        """With workers: this worker's session count, for ``/status`` of any worker."""
        info = self.worker_info
        if info is not None:
            info.publish(len(self._active))

    @staticmethod
    async def _close_backplane(backplane: Backplane | None) -> None:
        if backplane is None:
            return
        try:
            await backplane.close()
        except Exception:
            logger.exception("error while closing the backplane")

    async def _run_hooks(self, hooks: list[Hook], what: str) -> None:
        for hook in hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result
        logger.debug("%d %s hook(s) done", len(hooks), what)

    async def _accept_loop(self, server: WebTransportServer) -> None:
        async for request in server.incoming_sessions():
            task = asyncio.create_task(self._handle_request(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ one session

    async def _handle_request(self, request: SessionRequest) -> None:
        try:
            match = await self._admit(request)
            if match is None:
                return
            if match.route.middleware and not await self._admit_route(request, match):
                return
            session = await request.accept()
        except (WebTransportError, ConnectionError) as exc:
            logger.info("session request %s failed: %s", request.path, exc)
            return
        except Exception:
            logger.exception("error while admitting %s", request.path)
            return
        await self._run_handler(match, session)

    async def _admit(self, request: SessionRequest) -> RouteMatch | None:
        """Middleware, then routing; rejects and returns None when refused."""
        rejection = await self._run_chain(self._middleware, request)
        match: RouteMatch | None = None
        if rejection is None:
            match = self.router.resolve(request.path)
            if match is None:
                # draft-16 §3.2: "If the target resource does not support WebTransport,
                # the server SHOULD reply with status code 405"; a 405 carries Allow
                # (RFC 9110 §15.5.6), empty: no method is served here (§10.2.1)
                rejection = Rejection(405, {"allow": ""}, reason="no route")
        if rejection is not None:
            self.sessions_rejected += 1
            logger.info("session %s rejected: %d", request.path, rejection.status_code)
            await request.reject(rejection.status_code, dict(rejection.headers) or None)
            return None
        return match

    async def _admit_route(self, request: SessionRequest, match: RouteMatch) -> bool:
        """The route's own middleware (after the app-wide chain and routing); rejects
        and returns False when refused."""
        rejection = await self._run_chain(match.route.middleware, request)
        if rejection is None:
            return True
        self.sessions_rejected += 1
        logger.info("session %s rejected by its route: %d", request.path, rejection.status_code)
        await request.reject(rejection.status_code, dict(rejection.headers) or None)
        return False

    @staticmethod
    async def _run_chain(chain: Sequence[Middleware], request: SessionRequest) -> Rejection | None:
        try:
            return await run_middleware(chain, request)
        except Exception:
            logger.exception("middleware failed on %s", request.path)
            return Rejection(500, reason="middleware error")

    async def _run_handler(self, match: RouteMatch, session: Any) -> None:
        with contextlib.suppress(AttributeError):
            session.path_params = dict(match.params)
        self._active.add(session)
        self._publish_sessions()
        self.sessions_total += 1
        code, reason = 0, ""
        try:
            await match.call(session)
        except (SessionClosed, ConnectionFailed) as exc:
            logger.debug("handler %s ended by its session closing: %s", match.route.name, exc)
        except Exception:
            self.handler_errors += 1
            logger.exception("handler %s failed", match.route.name)
            code, reason = self.handler_error_code, "internal server error"
        finally:
            self._active.discard(session)
            self._publish_sessions()
        if code == 0:
            await _wait_flushed(session, FLUSH_TIMEOUT)
        await _close_quietly(session, code, reason)


async def _wait_flushed(session: Any, timeout: float) -> None:
    """Wait (bounded) until what the handler wrote was acknowledged.

    Closing a session makes the peer abandon all of its streams (draft-16 §6), so data
    a handler wrote just before returning could otherwise be lost to the close capsule
    overtaking it (``session.wait_flushed(timeout)``; sessions without it are not
    waited for).
    """
    try:
        flush = getattr(session, "wait_flushed", None)
        if callable(flush):
            await flush(timeout)
    except Exception:  # best effort: never keeps the session from closing
        logger.debug("could not wait for the session's data to be flushed", exc_info=True)


async def _close_quietly(session: Any, code: int, reason: str) -> None:
    """Close ``session`` unless it is already closed; never raises."""
    try:
        await session.close(error_code=code, reason=reason)
    except (WebTransportError, ConnectionError):
        pass
    except Exception:
        logger.exception("error while closing a session")
