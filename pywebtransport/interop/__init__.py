"""The interop server's routes: ``/echo``, ``/stats`` and ``/status``.

Theory of operation
-------------------
:func:`add_interop_routes` registers three handlers on a :class:`~pywebtransport.app.
ServerApp`; ``python -m pywebtransport serve`` uses them and so can any app.

``/echo``
    Every client bidirectional stream is echoed chunk by chunk as its data arrives (so
    a peer that never sends FIN still gets its bytes back), and FIN follows the peer's
    FIN. Every datagram is sent back. Every client unidirectional stream is answered by
    a new server unidirectional stream carrying the same bytes (opened at the first
    chunk, or at the peer's FIN for an empty stream) and ended at the peer's FIN. A
    stream the peer resets is reset back with the same WebTransport code.
``/stats``
    Each client bidirectional stream gets this session's negotiated parameters and
    counters (``session.diagnostics()`` plus path, protocol, max datagram size) as one
    JSON document, then FIN. What the client sends on it is read and discarded.
``/status``
    Each client bidirectional stream gets the server-wide health and aggregate counters
    (uptime, sessions active/total, connections, streams, datagrams, bytes) as JSON,
    then FIN; with ``serve --workers N`` also ``workers`` (N), ``worker`` (the one
    answering), ``sessions_per_worker`` (a list of N, from the workers' shared counters)
    and ``steering`` (``bpf`` or ``forwarding``); ``workers`` is 1 otherwise.
    ``rooms`` has the rooms and members here, ``total_members`` across the instances
    of the app's backplane, and the backplane's counters.
``/rooms/<name>``
    The session joins room ``name``; its datagrams and its bidi streams (to FIN, at most
    1 MiB) reach every other member, through the backplane on other instances too.

Every handler runs until its session closes; the per-stream work runs in tasks owned
by the handler and cancelled when it ends.

quic-interop-runner's WebTransport mode (``python -m pywebtransport.interop server|client``)
lives in the submodules: :mod:`~pywebtransport.interop.runner` (the two roles),
:mod:`~pywebtransport.interop.runner_options` (arguments, environment, test cases),
:mod:`~pywebtransport.interop.runner_peer` (the protocol on one session) and
:mod:`~pywebtransport.interop.runner_wire` (its wire format); see docs/interop-runner.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pywebtransport.app import ServerApp
from pywebtransport.exceptions import StreamReset, WebTransportError
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import (
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)

__all__ = [
    "ROOM_MESSAGE_MAX",
    "add_interop_routes",
    "echo_handler",
    "rooms_handler",
    "rooms_status",
    "session_stats",
    "stats_handler",
]

logger = logging.getLogger("pywebtransport.interop")


class _Tasks:
    """Tasks owned by one handler: failures logged, all cancelled at the end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        async def runner() -> None:
            try:
                await coro
            except (WebTransportError, ConnectionError) as exc:
                logger.debug("interop task ended: %r", exc)
            except Exception:
                logger.exception("interop task failed")

        task = asyncio.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def for_each(
        self, items: AsyncIterator[Any], work: Callable[[Any], Awaitable[None]]
    ) -> None:
        async for item in items:
            self.spawn(work(item))

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _serve_until_closed(
    session: WebTransportSession, loops: list[Awaitable[None]], tasks: _Tasks
) -> None:
    for loop in loops:
        tasks.spawn(loop)
    try:
        await session.wait_closed()
    finally:
        await tasks.cancel()


# ======================================================================================
# /echo
# ======================================================================================


async def _echo_bidi(stream: WebTransportStream) -> None:
    try:
        async for chunk in stream:
            await stream.write(chunk)
        await stream.write(b"", end_stream=True)
    except StreamReset as exc:
        with contextlib.suppress(WebTransportError):
            stream.reset(exc.code or 0)


async def _echo_uni(session: WebTransportSession, stream: WebTransportReceiveStream) -> None:
    out: WebTransportSendStream | None = None
    try:
        async for chunk in stream:
            if out is None:
                out = await session.create_unidirectional_stream()
            await out.write(chunk)
        if out is None:
            out = await session.create_unidirectional_stream()
        await out.write(b"", end_stream=True)
    except StreamReset as exc:
        if out is not None:
            with contextlib.suppress(WebTransportError):
                out.reset(exc.code or 0)


async def _echo_datagrams(session: WebTransportSession) -> None:
    while True:
        data = await session.receive_datagram()
        try:
            session.send_datagram(data)
        except WebTransportError as exc:  # too large for our path: drop, like the network
            logger.debug("datagram not echoed: %s", exc)


async def echo_handler(session: WebTransportSession) -> None:
    """``/echo``: bidi streams, uni streams and datagrams echoed until the session ends."""
    tasks = _Tasks()
    await _serve_until_closed(
        session,
        [
            tasks.for_each(session.incoming_bidirectional_streams(), _echo_bidi),
            tasks.for_each(
                session.incoming_unidirectional_streams(),
                lambda stream: _echo_uni(session, stream),
            ),
            _echo_datagrams(session),
        ],
        tasks,
    )


# ======================================================================================
# /stats and /status
# ======================================================================================


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, default=str, separators=(",", ":")).encode()


def session_stats(session: WebTransportSession) -> dict[str, Any]:
    """The session's negotiated parameters and counters (JSON-ready)."""
    stats: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        stats.update(session.diagnostics())
    for name in ("session_id", "path", "protocol", "max_datagram_size"):
        with contextlib.suppress(Exception):
            stats.setdefault(name, getattr(session, name))
    return stats


async def _discard(stream: WebTransportStream) -> None:
    with contextlib.suppress(WebTransportError):
        async for _ in stream:
            pass


async def _answer_json(stream: WebTransportStream, document: dict[str, Any], tasks: _Tasks) -> None:
    tasks.spawn(_discard(stream))
    await stream.write(_json(document), end_stream=True)


async def stats_handler(session: WebTransportSession) -> None:
    """``/stats``: each client bidi stream gets :func:`session_stats` as JSON, then FIN."""
    tasks = _Tasks()

    async def answer(stream: WebTransportStream) -> None:
        await _answer_json(stream, session_stats(session), tasks)

    await _serve_until_closed(
        session, [tasks.for_each(session.incoming_bidirectional_streams(), answer)], tasks
    )


def rooms_status(app: ServerApp) -> dict[str, Any]:
    """Rooms here (``count``, ``members``), members on every instance of the backplane
    (``total_members``), and the backplane's counters (``backplane``, None without)."""
    rooms = app.rooms
    backplane = rooms.backplane
    return {
        "count": len(rooms),
        "members": rooms.local_members(),
        "total_members": rooms.total_members(),
        "backplane": backplane.status() if backplane is not None else None,
    }


def server_status(app: ServerApp) -> dict[str, Any]:
    """Server-wide health and aggregate counters (JSON-ready)."""
    stats = app.stats()
    server = stats.pop("server", {})
    document: dict[str, Any] = {"status": "ok" if app.is_serving else "stopped"}
    document.update(stats)
    document["rooms"] = rooms_status(app)
    info = app.worker_info
    if info is not None:  # serve --workers N (pywebtransport.workers)
        document["workers"] = info.count
        document["worker"] = info.index
        document["sessions_per_worker"] = info.sessions_per_worker()
        document["steering"] = "bpf" if info.steering else "forwarding"
    else:
        document["workers"] = 1
        document["sessions_per_worker"] = [len(app.active_sessions)]
    if isinstance(server, dict):
        for key, value in server.items():
            document.setdefault(key, value)
    return document


# ======================================================================================
# /rooms/<name>
# ======================================================================================

#: the largest stream message /rooms relays (a longer one is refused with STOP_SENDING)
ROOM_MESSAGE_MAX = 1 << 20
ROOM_MESSAGE_TOO_LARGE = 0x1


async def _read_message(stream: WebTransportStream, limit: int) -> bytes | None:
    """The stream's bytes to its FIN, or None (and STOP_SENDING) beyond ``limit``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            stream.stop_receiving(ROOM_MESSAGE_TOO_LARGE)
            stream.reset(ROOM_MESSAGE_TOO_LARGE)
            return None
        parts.append(chunk)
    return b"".join(parts)


def rooms_handler(app: ServerApp) -> Callable[..., Awaitable[None]]:
    """``/rooms/<name>``: the session joins room ``name`` of ``app.rooms``; each datagram
    it sends goes to every other member, and each bidi stream it writes (to its FIN, at
    most :data:`ROOM_MESSAGE_MAX` bytes) goes to every other member as a new uni stream;
    our half of that bidi stream ends empty once the message is queued."""

    async def handler(session: WebTransportSession, room: str) -> None:
        members = app.rooms.join(room, session)
        tasks = _Tasks()

        async def relay(stream: WebTransportStream) -> None:
            data = await _read_message(stream, ROOM_MESSAGE_MAX)
            if data is not None:
                members.send_message(data, exclude=session)
                await stream.write(b"", end_stream=True)

        async def datagrams() -> None:
            while True:
                members.send_datagram(await session.receive_datagram(), exclude=session)

        loops: list[Awaitable[None]] = [
            tasks.for_each(session.incoming_bidirectional_streams(), relay),
            datagrams(),
        ]
        await _serve_until_closed(session, loops, tasks)

    return handler


def add_interop_routes(app: ServerApp) -> None:
    """Register ``/echo``, ``/stats``, ``/status`` and ``/rooms/<name>`` on ``app``."""
    app.add_route("/echo", echo_handler)
    app.add_route("/stats", stats_handler)
    app.add_pattern_route(r"/rooms/(?P<room>[A-Za-z0-9_.-]{1,64})", rooms_handler(app))

    async def status_handler(session: WebTransportSession) -> None:
        tasks = _Tasks()

        async def answer(stream: WebTransportStream) -> None:
            await _answer_json(stream, server_status(app), tasks)

        await _serve_until_closed(
            session, [tasks.for_each(session.incoming_bidirectional_streams(), answer)], tasks
        )

    app.add_route("/status", status_handler)
