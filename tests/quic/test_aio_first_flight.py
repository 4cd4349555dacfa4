"""The first flights of a handshake leave without waiting for a loop iteration (issue 10,
handshake row): the client's ClientHello as soon as :func:`quic.aio.connect` opened the
connection (unless the caller may still add 0-RTT data: ``wait_connected=False``), the
server's flight in the read that accepted the connection, before the task of that new
session takes its first step; and the waiters of the handshake resume in the iteration
after it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quic.aio import ConnectionClosed, QuicSession, connect, serve
from quic.configuration import QuicConfiguration
from quic.events import ConnectionTerminated, HandshakeCompleted
from tests.quic.test_aio import client_config, server_config


def _record_sent_at_wait(monkeypatch: pytest.MonkeyPatch) -> dict[bool, list[int]]:
    """Datagrams each side's pump had sent when a session first waited for its
    handshake (key: the session is a client's)."""
    seen: dict[bool, list[int]] = {True: [], False: []}
    original = QuicSession.wait_connected

    async def wait_connected(self: QuicSession) -> None:
        if not self._handshake_done:
            seen[self.connection.is_client].append(self._protocol.datagrams_sent)
        await original(self)

    monkeypatch.setattr(QuicSession, "wait_connected", wait_connected)
    return seen


async def test_both_first_flights_leave_before_anyone_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _record_sent_at_wait(monkeypatch)
    handled: list[QuicSession] = []

    async def handler(session: QuicSession) -> None:
        handled.append(session)

    server = await serve("127.0.0.1", 0, server_config(), handler)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        assert session.alpn_protocol == "test"
        while not handled:  # the client's aclose() needs no loop iteration: let it start
            await asyncio.sleep(0)
    # the client had sent its ClientHello when connect() first waited; the server's
    # session task first ran (and waited) after the server's flight had left
    assert len(seen[True]) == 1 and seen[True][0] >= 1
    assert len(seen[False]) == 1 and seen[False][0] >= 1
    assert len(handled) == 1  # the accepted session's task did run, after the flight


async def test_without_waiting_the_first_flight_leaves_at_the_flush() -> None:
    """``wait_connected=False``: the caller may add 0-RTT data before the first flight
    leaves (h3.aio does), so it goes at the flush, with whatever was added."""
    server = await serve("127.0.0.1", 0, server_config())
    sent: list[Any] = []
    async with (
        server,
        connect("127.0.0.1", server.port, client_config(), wait_connected=False) as session,
    ):
        sent.append(session._protocol.datagrams_sent)
        await session.wait_connected()
        sent.append(session._protocol.datagrams_sent)
    assert sent[0] == 0 and sent[1] >= 1


class _Protocol:
    """What a QuicSession needs of its pump to wait for its handshake: the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


class _Connection:
    configuration = QuicConfiguration(is_client=True)


async def test_waiters_resume_in_the_iteration_after_the_handshake() -> None:
    """Each wait_connected() waiter has its own future, resolved directly: it resumes in
    the next loop iteration (a shielded shared future took one more), and cancelling
    one waiter leaves the others waiting."""
    session = QuicSession(_Protocol(), _Connection())  # type: ignore[arg-type]
    first, second, cancelled = (asyncio.create_task(session.wait_connected()) for _ in "abc")
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert cancelled.cancelled() and not first.done() and not second.done()
    session._on_handshake(HandshakeCompleted("test"))
    await asyncio.sleep(0)
    assert first.done() and second.done() and first.result() is None
    assert session._connected is None  # the waiters went with the handshake
    await session.wait_connected()  # later waiters: at once


async def test_waiters_fail_when_the_connection_ends_first() -> None:
    session = QuicSession(_Protocol(), _Connection())  # type: ignore[arg-type]
    waiter = asyncio.create_task(session.wait_connected())
    await asyncio.sleep(0)
    session._on_terminated(ConnectionTerminated(0x1, "gone", by_peer=True))
    with pytest.raises(ConnectionClosed):
        await waiter
    with pytest.raises(ConnectionClosed):
        await session.wait_connected()
