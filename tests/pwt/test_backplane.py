"""The rooms backplane (pywebtransport.backplane): the frame codec, member counts across
instances, and MeshBackplane with three workers over real AF_UNIX sockets in one event
loop — each broadcast reaches each member once, peers that are down cost a counter,
a restarted worker is reconnected, and every queue and table stays bounded (N vs 4N)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pywebtransport.backplane import BackplaneConfig, BackplaneStats, MeshBackplane, RemoteCounts
from pywebtransport.backplane.codec import (
    COUNTS_PER_FRAME,
    Bye,
    Counts,
    EventKind,
    FrameError,
    FrameReader,
    Hello,
    RoomEvent,
    decode_body,
    encode_body,
    encode_counts,
    encode_frame,
)
from pywebtransport.backplane.mesh import socket_path
from pywebtransport.events import EventEmitter
from pywebtransport.rooms import RoomPolicy, Rooms

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 10.0


# ======================================================================================
# helpers
# ======================================================================================


class FakeStream:
    def __init__(self, inbox: list[bytes]) -> None:
        self.inbox = inbox

    async def write(self, data: bytes, end_stream: bool = False) -> None:
        self.inbox.append(bytes(data))


class FakeSession:
    """What a room needs of a session; records what it was sent."""

    is_closed = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.events = EventEmitter(self)
        self.datagrams: list[bytes] = []
        self.messages: list[bytes] = []

    def send_datagram(self, data: Any) -> None:
        self.datagrams.append(bytes(data))

    async def create_unidirectional_stream(self) -> FakeStream:
        return FakeStream(self.messages)

    async def close(self, code: int = 0, reason: str = "") -> None:
        self.is_closed = True
        self.events.emit("closed")

    def __repr__(self) -> str:
        return f"FakeSession({self.name})"


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def mesh(
    n: int, config: BackplaneConfig | None = None, start: tuple[int, ...] | None = None
) -> AsyncIterator[tuple[list[Rooms], list[MeshBackplane], Path]]:
    with tempfile.TemporaryDirectory(prefix="bp") as directory:
        backplanes = [MeshBackplane(i, n, directory, config=config) for i in range(n)]
        rooms = [Rooms(RoomPolicy(), bp) for bp in backplanes]
        for i in start if start is not None else range(n):
            await backplanes[i].start()
        try:
            yield rooms, backplanes, Path(directory)
        finally:
            for bp in backplanes:
                await bp.close()


def join(rooms: Rooms, room: str, name: str) -> FakeSession:
    session = FakeSession(name)
    rooms.join(room, session)  # type: ignore[arg-type]
    return session


# ======================================================================================
# codec
# ======================================================================================

FRAMES = [
    Hello("w0"),
    Bye("host-a/1234"),
    RoomEvent("w1", "lobby", EventKind.DATAGRAM, b"dg"),
    RoomEvent("w1", "é" * 127, EventKind.MESSAGE, b""),
    RoomEvent("x" * 255, "r", EventKind.MESSAGE, bytes(range(256)) * 10),
    Counts("w2", True, ()),
    Counts("w2", False, (("a", 0), ("b", 0xFFFFFFFF))),
]


@pytest.mark.parametrize("item", FRAMES, ids=lambda item: type(item).__name__)
def test_codec_round_trip_and_every_truncation(item: Any) -> None:
    body = encode_body(item)
    assert decode_body(body) == item
    for cut in range(len(body)):  # every proper prefix is malformed, never a frame
        if isinstance(item, RoomEvent) and cut >= len(body) - len(item.payload):
            continue  # an event's payload is the rest: a shorter one is another event
        with pytest.raises(FrameError):
            decode_body(body[:cut])
    if not isinstance(item, RoomEvent):
        with pytest.raises(FrameError):
            decode_body(body + b"\x00")  # trailing data


def test_codec_rejects() -> None:
    for bad in [
        b"\x09w",  # unknown type
        b"\x02\x07\x01a\x01b",  # unknown event kind
        b"\x01\x00",  # empty name
        b"\x01\x02\xff\xfe",  # not UTF-8
        b"\x03\x02\x01a\x00\x00\x00\x00",  # bad COUNTS flag
        b"\x03\x00\x01a" + (COUNTS_PER_FRAME + 1).to_bytes(4, "big"),  # too many pairs
    ]:
        with pytest.raises(FrameError):
            decode_body(bad)
    for item in [Hello(""), Hello("x" * 256), Counts("a", False, (("r", -1),))]:
        with pytest.raises(FrameError):
            encode_body(item)


def test_reader_byte_by_byte_and_bounded() -> None:
    stream = b"".join(encode_frame(item) for item in FRAMES)
    reader = FrameReader(max_frame=4096)
    got: list[Any] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
        assert reader.buffered <= 4 + 4096
    assert got == FRAMES and reader.buffered == 0
    big = FrameReader(max_frame=100)
    with pytest.raises(FrameError):  # refused from its length alone: nothing buffered
        big.feed((101).to_bytes(4, "big"))
    with pytest.raises(FrameError):
        FrameReader(10).feed(b"\x00\x00\x00\x00")  # an empty frame


def test_snapshot_split_in_frames() -> None:
    pairs = [(f"r{i}", i + 1) for i in range(2 * COUNTS_PER_FRAME + 1)]
    parts = list(encode_counts("w0", pairs, replace=True))
    assert [len(p.counts) for p in parts] == [COUNTS_PER_FRAME, COUNTS_PER_FRAME, 1]
    assert [p.replace for p in parts] == [True, False, False]
    assert list(encode_counts("w0", [], replace=True)) == [Counts("w0", True, ())]
    assert list(encode_counts("w0", [], replace=False)) == []
    config = BackplaneConfig()
    assert all(len(encode_body(p)) <= config.max_frame for p in parts)


# ======================================================================================
# remote counts
# ======================================================================================


def test_remote_counts_totals_replace_expire_and_bounds_n_vs_4n() -> None:
    def run(n: int) -> tuple[int, int, int, int]:
        stats = BackplaneStats()
        counts = RemoteCounts(max_instances=8, max_rooms=16, stats=stats)
        for i in range(n):  # n instances, each with n rooms: only 8 x 16 kept
            pairs = tuple((f"r{j}", 1) for j in range(n))
            counts.update(f"i{i}", pairs, replace=True, expires=float(i))
        held = (len(counts.instances), counts.rooms())
        counts.expire(now=float(n))  # every instance expired
        return *held, counts.rooms(), stats.instances_refused

    small, large = run(20), run(80)
    assert small[:3] == large[:3] == (8, 16, 0)  # bounded whatever n; nothing after expiry
    assert (small[3], large[3]) == (12, 72)  # the refused are counted

    stats = BackplaneStats()
    counts = RemoteCounts(8, 16, stats)
    counts.update("a", (("x", 2), ("y", 1)), replace=True, expires=10.0)
    counts.update("b", (("x", 3),), replace=False, expires=20.0)
    assert (counts.total("x"), counts.total("y")) == (5, 1)
    counts.update("a", (("y", 4),), replace=True, expires=10.0)  # x gone from a
    assert (counts.total("x"), counts.total("y")) == (3, 4)
    counts.update("b", (("x", 0),), replace=False, expires=20.0)
    assert counts.total("x") == 0 and counts.counts_of("b") == {}
    assert counts.expire(10.0) == ["a"] and counts.rooms() == 0
    assert counts.instances == ["b"]


# ======================================================================================
# MeshBackplane over AF_UNIX
# ======================================================================================


async def test_mesh_three_workers_each_broadcast_reaches_each_member_once() -> None:
    async with mesh(3) as (rooms, bps, directory):
        await wait_for(lambda: all(bp.connected_peers == 2 for bp in bps))
        a, b = join(rooms[0], "r", "a"), join(rooms[0], "r", "b")
        c = join(rooms[1], "r", "c")
        d = join(rooms[2], "r", "d")
        other = join(rooms[2], "s", "other")
        await wait_for(lambda: all(r.count("r") == 4 for r in rooms))
        assert [r.count("s") for r in rooms] == [1, 1, 1]
        room_a = rooms[0].get("r")
        assert room_a is not None and room_a.total_members == 4

        room_a.send_datagram(b"from a", exclude=a)  # type: ignore[arg-type]
        room_a.send_message(b"msg a", exclude=a)  # type: ignore[arg-type]
        room_d = rooms[2].get("r")
        assert room_d is not None
        room_d.send_datagram(b"from d", exclude=d)  # type: ignore[arg-type]
        everyone = (a, b, c, d)
        await wait_for(lambda: sum(len(s.datagrams) for s in everyone) == 6)
        await wait_for(lambda: sum(len(s.messages) for s in everyone) == 3)
        await asyncio.sleep(0.1)  # nothing more arrives
        assert a.datagrams == [b"from d"] and a.messages == []
        assert b.datagrams == [b"from a", b"from d"] and b.messages == [b"msg a"]
        assert c.datagrams == [b"from a", b"from d"] and c.messages == [b"msg a"]
        assert d.datagrams == [b"from a"] and d.messages == [b"msg a"]
        assert other.datagrams == other.messages == []
        assert sum(bp.stats.own_ignored for bp in bps) == 0
        assert [bp.stats.delivered for bp in bps] == [1, 3, 2]

        # leaving is counted everywhere; a closed session leaves by itself
        c.events.emit("closed")
        await wait_for(lambda: all(r.count("r") == 3 for r in rooms))
        assert (directory / "w0.sock").exists()
    assert not list(directory.glob("*.sock")) if directory.exists() else True


async def test_mesh_peer_down_costs_a_counter_then_joins() -> None:
    async with mesh(3, start=(0,)) as (rooms, bps, _):
        member = join(rooms[0], "r", "m")
        room = rooms[0].get("r")
        assert room is not None
        for i in range(100):
            room.send_datagram(b"%d" % i)
        assert bps[0].stats.dropped_down == 200  # two peers down, each event counted
        assert bps[0].queued() == 0  # and nothing held for them
        await wait_for(lambda: bps[0].stats.connect_failures >= 4)  # retried, bounded
        await bps[1].start()
        await wait_for(lambda: bps[0].connected_peers == 1 and bps[1].connected_peers == 1)
        late = join(rooms[1], "r", "late")
        await wait_for(lambda: rooms[0].count("r") == 2 and rooms[1].count("r") == 2)
        room.send_datagram(b"after")
        await wait_for(lambda: late.datagrams == [b"after"])
        assert member.datagrams == [b"%d" % i for i in range(100)] + [b"after"]


async def test_mesh_worker_restart_forgets_its_members_and_reconnects() -> None:
    async with mesh(3) as (rooms, bps, directory):
        await wait_for(lambda: all(bp.connected_peers == 2 for bp in bps))
        a = join(rooms[0], "r", "a")
        for i in range(3):
            join(rooms[1], "r", f"b{i}")
        await wait_for(lambda: rooms[0].count("r") == 4)
        await bps[1].close()  # worker 1 goes away: its members leave the totals
        await wait_for(lambda: rooms[0].count("r") == 1 and rooms[2].count("r") == 1)
        assert bps[0].remote.instances == ["w2"]  # w1 forgotten at once
        fresh = MeshBackplane(1, 3, directory)  # a new process for worker 1
        new_rooms = Rooms(RoomPolicy(), fresh)
        newcomer = join(new_rooms, "r", "new")
        await fresh.start()
        try:
            # both directions up again: w0 dialed the new w1 (its HELLO arrived there)
            # and the new w1 dialed w0 (its count arrived here)
            await wait_for(lambda: "w0" in fresh.remote.instances and rooms[0].count("r") == 2)
            room = rooms[0].get("r")
            assert room is not None
            room.send_message(b"welcome back", exclude=a)  # type: ignore[arg-type]
            await wait_for(lambda: newcomer.messages == [b"welcome back"])
            assert bps[0].stats.disconnects >= 1
        finally:
            await fresh.close()


async def test_mesh_malformed_peer_is_cut_off_and_counted() -> None:
    async with mesh(2) as (rooms, bps, directory):
        await wait_for(lambda: all(bp.connected_peers == 1 for bp in bps))
        reader, writer = await asyncio.open_unix_connection(str(socket_path(directory, 0)))
        writer.write(encode_frame(Hello("intruder")) + b"\x00\x00\x00\x02\x09\x09")
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""  # closed by w0
        writer.close()
        assert bps[0].stats.frame_errors == 1
        member = join(rooms[1], "r", "m")
        join(rooms[0], "r", "x")
        room = rooms[0].get("r")
        assert room is not None
        room.send_datagram(b"still fine")
        await wait_for(lambda: member.datagrams == [b"still fine"])


async def test_mesh_queue_and_tables_bounded_n_vs_4n() -> None:
    """Events published faster than a peer takes them: the queue holds at most
    max_queue frames and the rest is dropped and counted; the instances and rooms
    tracked stay bounded; a payload above max_message is never published."""
    config = BackplaneConfig(max_queue=32, max_queue_bytes=1 << 20, max_message=1000)

    async def run(n: int) -> tuple[int, int, int, int]:
        async with mesh(2, config) as (rooms, bps, _):
            await wait_for(lambda: all(bp.connected_peers == 1 for bp in bps))
            join(rooms[0], "r", "a")
            receiver = join(rooms[1], "r", "b")
            await wait_for(lambda: rooms[0].count("r") == rooms[1].count("r") == 2)
            room = rooms[0].get("r")
            assert room is not None
            peak = 0
            for i in range(n):  # no await: the writer cannot run in between
                room.send_datagram(b"%d" % i)
                peak = max(peak, bps[0].queued())
            room.send_datagram(b"x" * 1001)
            await wait_for(lambda: len(receiver.datagrams) == 32)
            return (
                peak,
                bps[0].stats.dropped_full,
                bps[0].stats.too_large,
                len(bps[1].remote.instances),
            )

    small, large = await run(100), await run(400)
    assert small[0] == large[0] == 32  # the queue's bound, not the input's size
    assert (small[1], large[1]) == (100 - 32, 400 - 32)  # the rest dropped, counted
    assert small[2] == large[2] == 1
    assert small[3] == large[3] == 1


class StuckSession(FakeSession):
    """A member that never takes a stream: its writer waits forever."""

    async def create_unidirectional_stream(self) -> FakeStream:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("slow", ["drop", "disconnect"])
async def test_remote_messages_meet_the_slow_member_policy(slow: str) -> None:
    """Messages from another worker go through the same per-member queues: a stuck
    member loses them (drop) or is closed (disconnect); the others get every one."""
    with tempfile.TemporaryDirectory(prefix="bp") as directory:
        bps = [MeshBackplane(i, 2, directory) for i in range(2)]
        sender = Rooms(RoomPolicy(), bps[0])
        receiver = Rooms(RoomPolicy(max_pending=4, slow=slow), bps[1])  # type: ignore[arg-type]
        for bp in bps:
            await bp.start()
        try:
            join(sender, "r", "origin")
            fast = join(receiver, "r", "fast")
            stuck = StuckSession("stuck")
            receiver.join("r", stuck)  # type: ignore[arg-type]
            await wait_for(lambda: sender.count("r") == 3)
            room = sender.get("r")
            assert room is not None
            for i in range(10):  # one at a time: the fast member keeps up
                room.send_message(b"m%d" % i)
                await wait_for(lambda n=i: len(fast.messages) == n + 1)
            local = receiver.get("r")
            assert local is not None
            if slow == "drop":
                assert local.stats.dropped == 10 - 1 - 4  # one taken by the writer, 4 queued
                assert len(local._members[stuck].pending) == 4  # type: ignore[index]
            else:
                assert local.stats.disconnected == 1 and stuck not in local
                await wait_for(lambda: stuck.is_closed and sender.count("r") == 2)
        finally:
            for bp in bps:
                await bp.close()


async def test_broadcast_from_a_worker_without_members() -> None:
    """``rooms.send_message(name, ...)`` / ``send_datagram(name, ...)`` reach the room's
    members on the other workers even when none is here (a publisher process)."""
    from pywebtransport.serializers import JSONSerializer

    async with mesh(2) as (rooms, bps, _):
        await wait_for(lambda: all(bp.connected_peers == 1 for bp in bps))
        member = join(rooms[1], "news", "reader")
        await wait_for(lambda: rooms[0].count("news") == 1)
        assert "news" not in rooms[0]
        assert rooms[0].send_message("news", {"headline": 1}, JSONSerializer()) == 0
        assert rooms[0].send_datagram("news", b"tick") == 0
        await wait_for(lambda: member.messages == [b'{"headline":1}'])
        await wait_for(lambda: member.datagrams == [b"tick"])
        with pytest.raises(TypeError):
            rooms[0].send_message("news", {"no": "serializer"})
