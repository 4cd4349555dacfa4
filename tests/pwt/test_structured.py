"""Structured messaging: TypedSerializer, MessageRegistry, StructuredStream and
StructuredDatagramTransport — in memory (codec rules, bad frames, bounded state at N
and 4N) and over real sessions on 127.0.0.1 (JSON, MessagePack, Protobuf; a peer that
sends a bad frame, an oversized length, a truncated stream, bad datagrams)."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack  # an extra the suite installs (dev): never skipped
import pytest
from google.protobuf import struct_pb2, wrappers_pb2

from pywebtransport import (
    MessageRegistry,
    MessageTooLarge,
    MessageTypeMismatch,
    MsgPackSerializer,
    ProtobufSerializer,
    SerializationError,
    SessionClosed,
    StopReceiving,
    StructuredDatagramTransport,
    StructuredStream,
    TruncatedMessage,
    TypedSerializer,
    UnknownMessageType,
    WebTransportClient,
)
from pywebtransport.serializers import encode_frame
from pywebtransport.structured import MESSAGE_ERROR_CODE
from tests.pwt.pwt_support import DRAFTS, TIMEOUT, client_config, running


@dataclass
class Chat:
    text: str
    room: str = "lobby"


@dataclass
class Join:
    user: str
    tags: list[str] = field(default_factory=list)


class Note(Chat):
    """A subclass is sent with its nearest registered base's tag."""


def registry() -> MessageRegistry:
    reg = MessageRegistry()
    reg.register(1, Chat)
    reg.register(2, Join, serializer=MsgPackSerializer())
    reg.register(0x0300, wrappers_pb2.StringValue)
    reg.register(7, dict)
    return reg


# ======================================================================================
# codecs
# ======================================================================================


def test_typed_serializer_dataclass_and_checks() -> None:
    codec = TypedSerializer(Chat)
    assert codec.dumps(Chat("hi")) == b'{"text":"hi","room":"lobby"}'
    assert codec.loads(b'{"text":"x","room":"r"}') == Chat("x", "r")
    with pytest.raises(MessageTypeMismatch, match="expected a Chat"):
        codec.dumps(Join("u"))
    with pytest.raises(MessageTypeMismatch, match="not a valid Chat"):
        codec.loads(b'{"txt":"x"}')  # an unknown field
    with pytest.raises(MessageTypeMismatch, match="expected a Chat message, got list"):
        codec.loads(b"[1]")
    with pytest.raises(SerializationError, match="invalid JSON"):
        codec.loads(b"{")
    ints = TypedSerializer(int)
    assert ints.loads(b"5") == 5
    with pytest.raises(MessageTypeMismatch):
        ints.loads(b'"5"')
    proto = TypedSerializer(wrappers_pb2.StringValue)
    assert isinstance(proto.serializer, ProtobufSerializer)
    assert proto.loads(proto.dumps(wrappers_pb2.StringValue(value="p"))).value == "p"
    hooks = TypedSerializer(
        complex, encode=lambda c: [c.real, c.imag], decode=lambda v: complex(v[0], v[1])
    )
    assert hooks.dumps(1 + 2j) == b"[1.0,2.0]"
    assert hooks.loads(b"[3,4]") == 3 + 4j
    with pytest.raises(MessageTypeMismatch):
        hooks.loads(b"[3]")


def test_registry_wire_format() -> None:
    """tag:uint16 then the body (docs/messaging.md: what a browser writes)."""
    reg = registry()
    assert reg.dumps(Chat("hi")) == b"\x00\x01" + b'{"text":"hi","room":"lobby"}'
    assert reg.dumps(Join("u", ["a"])) == b"\x00\x02" + msgpack.packb({"user": "u", "tags": ["a"]})
    assert reg.dumps(wrappers_pb2.StringValue(value="v")) == b"\x03\x00\n\x01v"
    assert reg.dumps({"k": 1}) == b'\x00\x07{"k":1}'
    assert reg.dumps(Note("n"))[:2] == b"\x00\x01"
    assert reg.tag_of(Note("n")) == 1
    for obj in (Chat("a"), Join("b", ["x", "y"]), {"z": [1]}):
        assert reg.loads(reg.dumps(obj)) == obj
    assert reg.loads(reg.dumps(wrappers_pb2.StringValue(value="q"))).value == "q"
    assert reg.tags == {1: Chat, 2: Join, 0x300: wrappers_pb2.StringValue, 7: dict}


def test_registry_errors() -> None:
    reg = registry()
    with pytest.raises(UnknownMessageType, match="tag 9"):
        reg.loads(b"\x00\x09{}")
    with pytest.raises(SerializationError, match="no type tag"):
        reg.loads(b"\x00")
    with pytest.raises(UnknownMessageType, match="list is not a registered"):
        reg.dumps([1])
    with pytest.raises(MessageTypeMismatch):
        reg.loads(b"\x00\x01[1]")  # tag of Chat, body a list
    with pytest.raises(SerializationError):
        reg.loads(b"\x00\x02\xc1")  # tag of Join, not MessagePack
    with pytest.raises(ValueError, match="already"):
        reg.register(1, list)
    with pytest.raises(ValueError, match="already"):
        reg.register(99, Chat)
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        reg.register(65536, list)

    @reg.register(42)
    @dataclass
    class Decorated:
        n: int

    assert reg.loads(reg.dumps(Decorated(3))) == Decorated(3)


# ======================================================================================
# StructuredStream in memory
# ======================================================================================


class FakeStream:
    """A stream in memory: reads come in ``chunk``-byte pieces; records what the
    structured layer did to it."""

    def __init__(self, data: bytes = b"", chunk: int = 1 << 30, split_writes: bool = False):
        self.incoming = bytearray(data)
        self.chunk = chunk
        self.eof = True
        self.written = bytearray()
        self.fin = False
        self.split_writes = split_writes
        self.bytes_read = 0
        self.reads = 0
        self.stopped: list[int] = []
        self.resets: list[int] = []

    @property
    def is_write_closed(self) -> bool:
        return self.fin

    async def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        assert not self.fin
        data = bytes(data)
        if self.split_writes:  # a write that waits for credit halfway
            half = len(data) // 2
            self.written += data[:half]
            await asyncio.sleep(0)
            data = data[half:]
        self.written += data
        self.fin = end_stream

    async def close(self) -> None:
        if not self.fin:
            await self.write(b"", end_stream=True)

    async def read(self, max_size: int = -1) -> bytes:
        self.reads += 1
        n = min(max_size, len(self.incoming), self.chunk)
        out = bytes(self.incoming[:n])
        del self.incoming[:n]
        self.bytes_read += n
        return out

    def stop_receiving(self, code: int = 0) -> None:
        self.stopped.append(code)
        self.incoming.clear()

    def reset(self, code: int = 0) -> None:
        self.resets.append(code)
        self.fin = True


async def test_stream_round_trip_async_for_and_end() -> None:
    out = FakeStream()
    sender = StructuredStream(out, registry())
    await sender.send(Chat("one"))
    await sender.send_many([Join("j"), {"n": 2}])
    await sender.send(Note("last"), end_stream=True)
    assert out.fin and sender.messages_sent == 4
    receiver: StructuredStream[Any] = StructuredStream(FakeStream(bytes(out.written), chunk=3))
    receiver.serializer = registry()
    first = await receiver.receive()
    assert first == Chat("one")
    rest = [m async for m in receiver]
    assert rest == [Join("j"), {"n": 2}, Chat("last")]
    with pytest.raises(EOFError):
        await receiver.receive()
    assert receiver.messages_received == 4


async def test_stream_refuses_large_messages_before_reading_or_writing() -> None:
    out = FakeStream()
    sender = StructuredStream(out, max_message_size=10)
    with pytest.raises(MessageTooLarge, match="of 12 bytes exceeds the limit of 10"):
        await sender.send("x" * 10)  # '"xxxxxxxxxx"' is 12 bytes
    with pytest.raises(MessageTooLarge):
        await sender.send_many(["ok", "y" * 20])
    assert out.written == b"" and sender.messages_sent == 0
    await sender.send("12345678")
    assert out.written == encode_frame(b'"12345678"')

    wire = struct.pack("!I", 11) + b"z" * 11 + encode_frame(b"1")
    stream = FakeStream(wire)
    receiver = StructuredStream(stream, max_message_size=10)
    with pytest.raises(MessageTooLarge) as info:
        await receiver.receive()
    assert (info.value.size, info.value.limit) == (11, 10)
    assert stream.bytes_read == 4  # the length only: no byte of the payload was read
    assert stream.stopped == [MESSAGE_ERROR_CODE]  # STOP_SENDING: the framing is lost
    with pytest.raises(MessageTooLarge):  # and stays lost
        await receiver.receive()
    assert [m async for m in _safe(receiver)] == []
    assert stream.stopped == [MESSAGE_ERROR_CODE]


async def _safe(stream: StructuredStream[Any]) -> Any:
    try:
        async for message in stream:
            yield message
    except SerializationError:
        return


async def test_stream_truncated_and_malformed_frames() -> None:
    for wire, received, expected in (
        (b"\x00\x00", 2, 4),
        (b"\x00\x00\x00\x05abc", 3, 5),
    ):
        stream = FakeStream(wire)
        receiver = StructuredStream(stream)
        with pytest.raises(TruncatedMessage, match="ended inside a message") as info:
            await receiver.receive()
        assert (info.value.received, info.value.expected) == (received, expected)
        assert stream.stopped == [MESSAGE_ERROR_CODE]
    # a well-framed payload that does not decode costs that message only
    wire = encode_frame(b"\x00\x01{bad") + encode_frame(b"\x00\x09{}")
    wire += encode_frame(b'\x00\x07{"a":1}')
    receiver = StructuredStream(FakeStream(wire), registry())
    with pytest.raises(SerializationError, match="invalid JSON"):
        await receiver.receive()
    with pytest.raises(UnknownMessageType, match="tag 9"):
        await receiver.receive()
    assert await receiver.receive() == {"a": 1}
    assert (receiver.messages_rejected, receiver.messages_received) == (2, 1)


class TricklingStream(FakeStream):
    """Bytes arrive when the test pushes them; ``read`` waits until some are there."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.ended = False

    def push(self, data: bytes, fin: bool = False) -> None:
        self.incoming += data
        self.ended = fin
        self.arrived.set()

    async def read(self, max_size: int = -1) -> bytes:
        while not self.incoming and not self.ended:
            self.arrived.clear()
            await self.arrived.wait()  # a cancellation here takes nothing
        return await super().read(max_size)


async def test_cancelled_receive_loses_nothing() -> None:
    """A timeout around ``receive`` in the middle of a frame (after its length, inside
    its payload): the next ``receive`` goes on with the frame."""
    stream = TricklingStream()
    receiver = StructuredStream(stream)
    wire = encode_frame(b'{"n":1,"pad":"' + b"p" * 50 + b'"}') + encode_frame(b'"two"')
    for cut in (2, 4, 9, 30):  # inside the length, after it, inside the payload
        stream.push(wire[:cut])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(receiver.receive(), 0.01)
        stream.push(wire[cut:])
        async with asyncio.timeout(TIMEOUT):  # the old stateless reader lost the length
            assert (await receiver.receive())["n"] == 1
            assert await receiver.receive() == "two"
    stream.push(b"", fin=True)
    with pytest.raises(EOFError):
        await receiver.receive()
    assert not stream.stopped


async def test_concurrent_senders_do_not_interleave_frames() -> None:
    out = FakeStream(split_writes=True)
    sender = StructuredStream(out)
    await asyncio.gather(*(sender.send({"i": i, "pad": "p" * i}) for i in range(20)))
    receiver = StructuredStream(FakeStream(bytes(out.written)))
    got = [m async for m in receiver]
    assert sorted(m["i"] for m in got) == list(range(20))
    assert all(m["pad"] == "p" * m["i"] for m in got)


async def test_context_manager_closes_or_aborts() -> None:
    out = FakeStream()
    async with StructuredStream(out) as s:
        await s.send(1)
    assert out.fin and not out.resets
    out = FakeStream()
    with pytest.raises(RuntimeError):
        async with StructuredStream(out) as s:
            raise RuntimeError("handler bug")
    assert out.resets == [MESSAGE_ERROR_CODE] and out.stopped == [MESSAGE_ERROR_CODE]
    s = StructuredStream(FakeStream())
    s.abort(7)
    assert s.stream.resets == [7] and s.stream.stopped == [7]
    with pytest.raises(ValueError):
        StructuredStream(FakeStream(), max_message_size=-1)


# -------------------------------------------------------------------------- scale


def _consume(n: int) -> tuple[int, int]:
    """Read ``n`` small messages; (stream reads, bytes retained afterwards)."""
    wire = b"".join(encode_frame(b'{"seq":%d}' % i) for i in range(n))
    stream = FakeStream(wire, chunk=1200)
    tracemalloc.start()
    try:
        receiver = StructuredStream(stream)
        base = tracemalloc.get_traced_memory()[0]
        count = 0

        async def run() -> None:
            nonlocal count
            async for message in receiver:
                assert message["seq"] == count
                count += 1

        asyncio.run(run())
        retained = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert count == n
    return stream.reads, retained


def test_scale_stream_messages_linear_work_flat_memory() -> None:
    """N and 4N messages: the reads grow 4x (linear), what stays after reading does
    not grow at all."""
    reads_n, mem_n = _consume(2_000)
    reads_4n, mem_4n = _consume(8_000)
    assert 3.5 < reads_4n / reads_n < 4.5, (reads_n, reads_4n)
    assert mem_4n < mem_n + 50_000, (mem_n, mem_4n)


def test_scale_oversized_length_reads_nothing_of_the_payload() -> None:
    """A peer announcing N or 4N bytes above the limit (and sending them): the reader
    takes the 4-byte length and stops the stream, whatever the size."""
    for size in (1 << 20, 4 << 20):
        stream = FakeStream(struct.pack("!I", size) + bytes(size))
        receiver = StructuredStream(stream, max_message_size=64 * 1024)
        with pytest.raises(MessageTooLarge):
            asyncio.run(receiver.receive())
        assert stream.bytes_read == 4
        assert stream.stopped == [MESSAGE_ERROR_CODE] and not stream.incoming


# ======================================================================================
# StructuredDatagramTransport in memory
# ======================================================================================


class FakeSession:
    """Datagrams from ``inbox`` (then SessionClosed when ``closed``), sent ones kept."""

    def __init__(self, inbox: list[bytes] | None = None, limit: int = 1200) -> None:
        self.inbox: deque[bytes] = deque(inbox or [])
        self.limit = limit
        self.sent: list[bytes] = []
        self.closed = False
        self.more = asyncio.Event()

    @property
    def max_datagram_size(self) -> int:
        return self.limit

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    async def receive_datagram(self) -> bytes:
        while not self.inbox:
            if self.closed:
                raise SessionClosed(0, "closed", by_peer=True)
            self.more.clear()
            await self.more.wait()
        return self.inbox.popleft()

    def push(self, *data: bytes) -> None:
        self.inbox.extend(data)
        self.more.set()

    def close(self) -> None:
        self.closed = True
        self.more.set()


async def test_datagram_send_size_check_and_receive() -> None:
    session = FakeSession(limit=100)
    dg = StructuredDatagramTransport(session, registry())  # type: ignore[arg-type]
    await dg.send(Chat("hi"))
    dg.send_nowait({"k": 1})
    assert session.sent == [b'\x00\x01{"text":"hi","room":"lobby"}', b'\x00\x07{"k":1}']
    session.limit = 10
    with pytest.raises(MessageTooLarge, match="datagram limit of 10"):
        await dg.send(Chat("longer"))
    assert dg.sent == 2 and dg.max_message_size == 10
    session.push(registry().dumps(Join("a")), b"\x00\x09bad", registry().dumps({"x": 2}))
    assert await dg.receive(timeout=TIMEOUT) == Join("a")
    with pytest.raises(UnknownMessageType):
        await dg.receive(timeout=TIMEOUT)
    assert await dg.receive(timeout=TIMEOUT) == {"x": 2}
    with pytest.raises(TimeoutError):
        await dg.receive(timeout=0.01)
    await dg.close()  # stops taking datagrams; the session stays
    with pytest.raises(SessionClosed, match="transport was closed"):
        await dg.receive()
    session.push(b"[1]")
    session.close()
    plain = StructuredDatagramTransport(session)  # type: ignore[arg-type]
    assert [m async for m in plain] == [[1]]  # what was queued, then the end
    with pytest.raises(SessionClosed, match="closed"):
        await plain.receive()


async def test_datagram_skip_malformed_counts() -> None:
    session = FakeSession([b"1", b"{", b"\xff", b"2"])
    dg = StructuredDatagramTransport(session, TypedSerializer(int), skip_malformed=True)  # type: ignore[arg-type]
    session.push(b'"str"')
    session.close()
    assert [m async for m in dg] == [1, 2]
    assert dg.malformed == 3


def _flood_datagrams(n: int, drop: str) -> tuple[list[int], int, int]:
    """``n`` datagrams arrive while the application reads nothing; (what it then reads,
    dropped, bytes retained while queued)."""
    payloads = [b'{"seq":%d,"pad":"%s"}' % (i, b"x" * 100) for i in range(n)]

    async def run() -> tuple[list[int], int, int]:
        session = FakeSession()
        dg = StructuredDatagramTransport(session, queue_size=64, drop=drop)  # type: ignore[arg-type]
        dg.start()
        await asyncio.sleep(0)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for start in range(0, n, 500):  # arrive in bursts: the pump takes them
                session.push(*payloads[start : start + 500])
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            retained = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert dg.queued == 64 and dg.received + dg.dropped >= n
        session.close()
        got = [m["seq"] async for m in dg]
        return got, dg.dropped, retained

    return asyncio.run(run())


@pytest.mark.parametrize("drop", ["oldest", "newest"])
def test_scale_datagram_queue_bounded(drop: str) -> None:
    """N and 4N datagrams nobody reads: the queue keeps 64 either way (the newest 64
    with drop="oldest", the first 64 with drop="newest"), the rest is counted, and the
    memory held does not grow with N."""
    results = {}
    for n in (2_000, 8_000):
        got, dropped, retained = _flood_datagrams(n, drop)
        assert dropped == n - 64
        assert got == (list(range(n - 64, n)) if drop == "oldest" else list(range(64)))
        results[n] = retained
    assert results[8_000] < 1.5 * results[2_000] + 30_000, results


async def test_datagram_queue_byte_bound() -> None:
    session = FakeSession()
    dg = StructuredDatagramTransport(session, queue_size=100, queue_bytes=1000)  # type: ignore[arg-type]
    dg.start()
    session.push(*(b'"%s"' % (b"a" * 298) for _ in range(10)))  # 300 bytes each
    await asyncio.sleep(0)
    assert dg.queued == 3 and dg.dropped == 7
    newest = StructuredDatagramTransport(  # type: ignore[arg-type]
        FakeSession([b"1" * 600, b"2", b"3" * 600]), queue_bytes=1000, drop="newest"
    )
    newest.start()
    await asyncio.sleep(0)
    assert newest.queued == 2 and newest.dropped == 1
    with pytest.raises(ValueError):
        StructuredDatagramTransport(session, drop="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StructuredDatagramTransport(session, queue_size=0)  # type: ignore[arg-type]
    await dg.close()
    await newest.close()
    assert dg.queued == 0


# ======================================================================================
# over real sessions
# ======================================================================================


async def _serve_structured(request: Any, results: asyncio.Queue[Any], **kwargs: Any) -> None:
    """Accept; read each bidi stream with a StructuredStream, answer each message; put
    each message or error into ``results``."""
    session = await request.accept()
    async for raw in session.incoming_bidirectional_streams():
        stream = StructuredStream(raw, **kwargs)
        while True:
            try:
                message = await stream.receive()
            except EOFError:
                await stream.close()
                break
            except (MessageTooLarge, TruncatedMessage) as exc:
                results.put_nowait(exc)
                break
            except SerializationError as exc:
                results.put_nowait(exc)
                continue
            results.put_nowait(message)
            await stream.send(message)


@pytest.mark.parametrize("draft", DRAFTS)
async def test_real_session_typed_messages(draft: str) -> None:
    results: asyncio.Queue[Any] = asyncio.Queue()
    async with running() as harness:
        harness.handler = lambda r: _serve_structured(r, results, serializer=registry())
        async with WebTransportClient(client_config(draft)) as client:
            session = await client.connect(harness.url("/typed"))
            async with asyncio.timeout(TIMEOUT):
                stream = await StructuredStream.open(session, registry())
                sent = [
                    Chat("hello"),
                    Join("ann", ["x"]),
                    wrappers_pb2.StringValue(value="proto"),
                    {"big": "b" * 100_000},
                ]
                for message in sent:
                    await stream.send(message)
                    assert await stream.receive() == message
                await stream.close()
                assert [m async for m in stream] == []
                assert stream.messages_sent == stream.messages_received == 4
            await session.close()
    assert [results.get_nowait() for _ in range(4)] == sent


@pytest.mark.parametrize(
    "serializer",
    [MsgPackSerializer(), ProtobufSerializer(struct_pb2.Struct)],
    ids=["msgpack", "protobuf"],
)
async def test_real_session_extras(serializer: Any) -> None:
    results: asyncio.Queue[Any] = asyncio.Queue()
    if isinstance(serializer, ProtobufSerializer):
        message: Any = struct_pb2.Struct()
        message.update({"a": 1.0, "b": ["x", True]})
    else:
        message = {"bin": b"\x00\xff", "n": [1, 2]}
    async with running() as harness:
        harness.handler = lambda r: _serve_structured(r, results, serializer=serializer)
        async with WebTransportClient(client_config()) as client:
            session = await client.connect(harness.url("/extras"))
            async with asyncio.timeout(TIMEOUT):
                stream = await StructuredStream.open(session, serializer)
                await stream.send(message, end_stream=True)
                assert [m async for m in stream] == [message]
            await session.close()
    assert results.get_nowait() == message


async def test_real_session_bad_frames_from_peer() -> None:
    """A peer writes raw bytes: a malformed payload (that message only), an oversized
    length (the stream is stopped with MESSAGE_ERROR_CODE: the peer's writes fail),
    and a stream that ends inside a frame."""
    results: asyncio.Queue[Any] = asyncio.Queue()
    async with running() as harness:
        harness.handler = lambda r: _serve_structured(r, results, max_message_size=1024)
        async with WebTransportClient(client_config()) as client:
            session = await client.connect(harness.url("/bad"))
            async with asyncio.timeout(TIMEOUT):
                raw = await session.create_bidirectional_stream()
                await raw.write(encode_frame(b"{not json") + encode_frame(b'{"ok":1}'))
                assert isinstance(await results.get(), SerializationError)
                assert await results.get() == {"ok": 1}
                await raw.write(struct.pack("!I", 1 << 30) + b"y" * 5000)
                too_large = await results.get()
                assert isinstance(too_large, MessageTooLarge) and too_large.size == 1 << 30
                with pytest.raises(StopReceiving) as info:
                    for _ in range(200):  # until the STOP_SENDING arrives
                        await raw.write(b"y" * 1000)
                        await asyncio.sleep(0.01)
                assert info.value.code == MESSAGE_ERROR_CODE

                cut = await session.create_bidirectional_stream()
                await cut.write(struct.pack("!I", 100) + b"only part", end_stream=True)
                truncated = await results.get()
                assert isinstance(truncated, TruncatedMessage)
                assert (truncated.received, truncated.expected) == (9, 100)
            await session.close()


async def test_real_session_datagrams() -> None:
    """Typed datagrams echoed by a StructuredDatagramTransport; a malformed datagram
    is skipped and counted; a message above max_datagram_size is refused."""
    server_side: list[StructuredDatagramTransport[Any]] = []

    async def handler(request: Any) -> None:
        session = await request.accept()
        async with StructuredDatagramTransport(session, registry(), skip_malformed=True) as dg:
            server_side.append(dg)
            async for message in dg:
                await dg.send(message)

    async with running() as harness:
        harness.handler = handler
        async with WebTransportClient(client_config()) as client:
            session = await client.connect(harness.url("/dgram"))
            dg = StructuredDatagramTransport(session, registry())
            async with asyncio.timeout(TIMEOUT):
                session.send_datagram(b"\x00\x63junk")  # unknown tag: skipped by the server
                got = None
                for attempt in range(20):  # datagrams may be lost: retry
                    await dg.send(Chat(f"ping {attempt}"))
                    try:
                        got = await dg.receive(timeout=0.5)
                        break
                    except TimeoutError:
                        continue
                assert isinstance(got, Chat) and got.text.startswith("ping")
                with pytest.raises(MessageTooLarge, match="datagram limit"):
                    await dg.send(Chat("x" * (session.max_datagram_size + 1)))
                for _ in range(100):
                    if server_side and server_side[0].malformed:
                        break
                    await asyncio.sleep(0.01)
                assert server_side[0].malformed == 1
            await session.close()
            async with asyncio.timeout(TIMEOUT):
                async for _ in dg:  # late echoes of the retries, then the end
                    pass
            with pytest.raises(SessionClosed):
                await dg.receive(timeout=TIMEOUT)
            await dg.close()
