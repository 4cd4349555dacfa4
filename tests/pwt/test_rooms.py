"""Rooms (pywebtransport.rooms): join/leave, datagram and stream-message broadcast over
real sessions on 127.0.0.1, the slow-member policies, and bounded tables."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pywebtransport.app import ServerApp
from pywebtransport.rooms import RoomLimitError, RoomPolicy, Rooms
from pywebtransport.serializers import JSONSerializer
from tests.pwt.test_app import TIMEOUT, cert, client_for, make_app, serving

__all__ = ["cert"]  # the fixture, imported for this module's tests


def room_app(app: ServerApp) -> None:
    """``/rooms/<name>``: join; each datagram goes to the others; a bidi stream's bytes
    (to its FIN) go to the others as one message each."""

    @app.pattern_route(r"/rooms/(?P<name>\w+)")
    async def member(session: Any, name: str) -> None:
        room = app.rooms.join(name, session)

        async def datagrams() -> None:
            while True:
                room.send_datagram(await session.receive_datagram(), exclude=session)

        pump = asyncio.create_task(datagrams())
        try:
            async for stream in session.incoming_bidirectional_streams():
                room.send_message(bytes(await stream.read_all()), exclude=session)
                await stream.write(b"ok", end_stream=True)
        finally:
            pump.cancel()


async def wait_for(condition: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


async def test_broadcast_reaches_every_other_member_once(cert: Any) -> None:
    app = make_app(cert)
    room_app(app)
    async with serving(app) as port, client_for(cert) as client:
        url = f"https://127.0.0.1:{port}/rooms/lobby"
        sessions = [await client.connect(url) for _ in range(4)]
        await wait_for(lambda: len(app.rooms.get("lobby") or ()) == 4)
        other = await client.connect(f"https://127.0.0.1:{port}/rooms/other")
        # a stream message from member 0 reaches members 1..3 once, not 0, not "other"
        stream = await sessions[0].create_bidirectional_stream()
        await stream.write(b"hello room", end_stream=True)
        assert bytes(await stream.read_all()) == b"ok"
        for s in sessions[1:]:
            async with asyncio.timeout(TIMEOUT):
                incoming = await s.accept_unidirectional_stream()
                assert bytes(await incoming.read_all()) == b"hello room"
        # a datagram from member 1 reaches 0, 2, 3
        sessions[1].send_datagram(b"dg")
        for s in (sessions[0], sessions[2], sessions[3]):
            assert await s.receive_datagram(timeout=TIMEOUT) == b"dg"
        room = app.rooms.get("lobby")
        assert room is not None
        assert room.stats.messages_sent == 3 and room.stats.datagrams_sent == 3
        await asyncio.sleep(0.2)  # nothing else arrives for the sender or the other room
        assert sessions[0].diagnostics()["datagrams_received"] == 1
        assert other.diagnostics()["datagrams_received"] == 0
        assert app.rooms.rooms_of(app.rooms.get("other").sessions[0]) == ["other"]  # type: ignore[union-attr]
        # closing members empties the room, and an empty room is forgotten
        for s in sessions:
            await s.close()
        await wait_for(lambda: "lobby" not in app.rooms)
        await other.close()
        await wait_for(lambda: len(app.rooms) == 0)


async def test_typed_messages_with_a_serializer(cert: Any) -> None:
    app = make_app(cert)
    joined = asyncio.Event()

    @app.route("/chat")
    async def chat(session: Any) -> None:
        app.rooms.join("chat", session)
        joined.set()
        await session.wait_closed()

    async with serving(app) as port, client_for(cert) as client:
        listener = await client.connect(f"https://127.0.0.1:{port}/chat")
        async with asyncio.timeout(TIMEOUT):
            await joined.wait()
        room = app.rooms.get("chat")
        assert room is not None
        assert room.send_message({"from": "server", "n": 1}, JSONSerializer()) == 1
        with pytest.raises(TypeError):
            room.send_message({"no": "serializer"})
        async with asyncio.timeout(TIMEOUT):
            stream = await listener.accept_unidirectional_stream()
            assert JSONSerializer().loads(bytes(await stream.read_all())) == {
                "from": "server",
                "n": 1,
            }
        await listener.close()


@pytest.mark.parametrize("slow", ["drop", "disconnect"])
async def test_a_slow_member_never_blocks_the_room(cert: Any, slow: str) -> None:
    """A member whose queue is full loses messages (drop) or is closed (disconnect);
    the others get every message, and send_message never waits."""
    policy = RoomPolicy(max_pending=4, slow=slow)  # type: ignore[arg-type]
    app = ServerApp(make_app(cert).config, room_policy=policy)
    ready = asyncio.Event()

    @app.route("/r")
    async def member(session: Any) -> None:
        app.rooms.join("r", session)
        if len(app.rooms.get("r") or ()) == 2:
            ready.set()
        await session.wait_closed()

    async with serving(app) as port, client_for(cert) as client:
        url = f"https://127.0.0.1:{port}/r"
        fast, slow_one = await client.connect(url), await client.connect(url)
        async with asyncio.timeout(TIMEOUT):
            await ready.wait()
        room = app.rooms.get("r")
        assert room is not None
        other, stuck_session = room.sessions
        # hold the slow member's writer and fill its queue: it takes nothing more
        stuck = room._members[stuck_session]
        stuck.writer = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        stuck.pending.extend([b"x"] * 4)
        count = 20
        fast_member = room._members[other]
        for i in range(count):
            room.send_message(b"m%d" % i)  # returns at once whatever the slow member does
            await wait_for(lambda: not fast_member.pending)  # the fast member keeps up
        if slow == "drop":
            assert room.stats.dropped == count
            assert len(stuck.pending) == 4  # bounded
            assert stuck_session in room
        else:
            assert room.stats.disconnected == 1  # once; then it is no member any more
            assert stuck_session not in room
            await wait_for(lambda: stuck_session.is_closed)
        await wait_for(lambda: room.stats.messages_sent >= count)
        assert room.stats.messages_sent == count  # every message reached the other member
        assert other in room
        await fast.close()
        await slow_one.close()


def test_bounds_and_exits_n_vs_4n() -> None:
    """Rooms and memberships leave the tables: N vs 4N joins/leaves hold nothing after."""

    class FakeSession:
        is_closed = False

        def __init__(self) -> None:
            from pywebtransport.events import EventEmitter

            self.events = EventEmitter(self)

    def churn(n: int) -> tuple[int, int, int]:
        rooms = Rooms(RoomPolicy(max_rooms=n + 1, max_members=4))
        sessions = [FakeSession() for _ in range(n)]
        peak = 0
        for i, s in enumerate(sessions):
            rooms.join(f"room{i % n}", s)  # type: ignore[arg-type]
            rooms.join("shared", s) if i < 4 else None  # type: ignore[func-returns-value,arg-type]
            peak = max(peak, len(rooms))
        with pytest.raises(RoomLimitError):
            rooms.join("shared", sessions[-1])  # type: ignore[arg-type]
        for s in sessions:
            s.events.emit("closed")  # each session's close leaves every room
        return peak, len(rooms), len(rooms._joined) + len(rooms._hooked)

    small, large = churn(50), churn(200)
    assert small[1:] == large[1:] == (0, 0)
    assert small[0] == 51 and large[0] == 201  # n rooms of one member, and "shared"


async def test_interop_rooms_route_and_status(cert: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve``'s ``/rooms/<name>``: datagrams and bidi-stream messages reach the other
    members; a message above the limit is refused (STOP_SENDING) and reaches nobody;
    ``/status`` counts rooms and members."""
    import json

    import pywebtransport.interop as interop

    monkeypatch.setattr(interop, "ROOM_MESSAGE_MAX", 1000)
    app = make_app(cert)
    interop.add_interop_routes(app)
    async with serving(app) as port, client_for(cert) as client:
        url = f"https://127.0.0.1:{port}/rooms/blue"
        a, b = await client.connect(url), await client.connect(url)
        await wait_for(lambda: len(app.rooms.get("blue") or ()) == 2)
        stream = await a.create_bidirectional_stream()
        await stream.write(b"to everyone", end_stream=True)
        assert bytes(await stream.read_all()) == b""
        async with asyncio.timeout(TIMEOUT):
            incoming = await b.accept_unidirectional_stream()
            assert bytes(await incoming.read_all()) == b"to everyone"
        b.send_datagram(b"ping")
        assert await a.receive_datagram(timeout=TIMEOUT) == b"ping"
        big = await a.create_bidirectional_stream()
        with pytest.raises(interop.WebTransportError):
            await big.write(b"x" * 5000, end_stream=True)
            async with asyncio.timeout(TIMEOUT):
                await big.read_all()
        status = await client.connect(f"https://127.0.0.1:{port}/status")
        ask = await status.create_bidirectional_stream()
        await ask.write(b"", end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            document = json.loads(bytes(await ask.read_all()))
        rooms = document["rooms"]
        assert (rooms["count"], rooms["members"], rooms["total_members"]) == (1, 2, 2)
        assert rooms["backplane"] is None
        room = app.rooms.get("blue")
        assert room is not None and room.stats.messages_sent == 1  # not the refused one
        for s in (a, b, status):
            await s.close()
