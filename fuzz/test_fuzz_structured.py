"""Property tests for structured messaging (pywebtransport.structured): typed messages
round-trip through a StructuredStream whatever the read chunking; arbitrary bytes from
a peer, chunked arbitrarily, only ever give messages, the clean end (EOFError) or the
module's SerializationError family — a framing error stops the stream and never reads
a payload above the limit; a stateful machine drives a StructuredDatagramTransport's
queue with arbitrary arrivals and reads and checks it stays bounded and accounted.
``FUZZ_PROFILE=deep`` runs each with at least 100,000 examples (fuzz/profiles.py)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fuzz.profiles import examples
from pywebtransport.serializers import (
    FRAME_HEADER_SIZE,
    MessageTooLarge,
    MsgPackSerializer,
    SerializationError,
    TruncatedMessage,
)
from pywebtransport.structured import (
    MESSAGE_ERROR_CODE,
    MessageRegistry,
    StructuredDatagramTransport,
    StructuredStream,
)

T = TypeVar("T")


@dataclass
class Chat:
    text: str
    room: str = "lobby"


@dataclass
class Join:
    user: str
    tags: list[str] = field(default_factory=list)


def _registry() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(1, Chat)
    registry.register(2, Join, serializer=MsgPackSerializer())
    registry.register(3, dict)
    return registry


REGISTRY = _registry()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the fake stream below never waits)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine waited")


class ChunkedStream:
    """The peer's bytes, handed out in the given chunk sizes; records what was done."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.pos = 0
        self.sizes = sizes or [1 << 30]
        self.turn = 0
        self.written = bytearray()
        self.stopped: list[int] = []

    async def read(self, max_size: int = -1) -> bytes:
        size = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        n = min(max_size, size, len(self.data) - self.pos)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    async def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        self.written += data

    def stop_receiving(self, code: int = 0) -> None:
        self.stopped.append(code)


texts = st.text(max_size=30)
messages = st.one_of(
    st.builds(Chat, texts, texts),
    st.builds(Join, texts, st.lists(texts, max_size=4)),
    st.dictionaries(texts, st.integers(-(2**53), 2**53) | texts | st.none(), max_size=4),
)
chunk_sizes = st.lists(st.integers(1, 64), max_size=6)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(messages, max_size=8), chunk_sizes)
def test_typed_messages_round_trip_any_chunking(sent: list[Any], sizes: list[int]) -> None:
    out = ChunkedStream(b"", [])
    run_sync(StructuredStream(out, REGISTRY).send_many(sent))
    stream = ChunkedStream(bytes(out.written), sizes)
    receiver = StructuredStream(stream, REGISTRY)
    got = []
    while True:
        try:
            got.append(run_sync(receiver.receive()))
        except EOFError:
            break
    assert got == sent
    assert not stream.stopped


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=400), chunk_sizes, st.integers(0, 64))
def test_peer_bytes_only_raise_serialization_errors(
    data: bytes, sizes: list[int], limit: int
) -> None:
    stream = ChunkedStream(data, sizes)
    receiver = StructuredStream(stream, REGISTRY, max_message_size=limit)
    consumed = 0
    for _ in range(len(data) + 1):
        before = stream.pos
        try:
            run_sync(receiver.receive())
        except EOFError:
            assert stream.pos == len(data)
            break
        except (MessageTooLarge, TruncatedMessage):
            # the framing is lost: stopped once; never a byte of an oversized payload
            assert stream.stopped == [MESSAGE_ERROR_CODE]
            assert stream.pos - before <= FRAME_HEADER_SIZE + limit
            break
        except SerializationError:
            pass  # a bad payload: the next frame is read
        consumed = stream.pos
        assert consumed - before <= FRAME_HEADER_SIZE + limit
    else:
        raise AssertionError("more messages than bytes")
    assert stream.pos <= len(data)


@settings(max_examples=examples(300), deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 16))
def test_announced_length_checked_before_the_payload(size: int, limit: int) -> None:
    data = struct.pack("!I", size) + bytes(min(size, 1 << 17))
    stream = ChunkedStream(data, [])
    receiver = StructuredStream(stream, max_message_size=limit)
    try:
        run_sync(receiver.receive())
    except MessageTooLarge as exc:
        assert size > limit and exc.size == size
        assert stream.pos == FRAME_HEADER_SIZE
        return
    except (TruncatedMessage, SerializationError):
        assert size <= limit
        return
    assert size <= limit


class FakeSession:
    """Datagrams arrive through the machine's ``arrive`` rule, never from here."""

    max_datagram_size = 1200

    async def receive_datagram(self) -> bytes:
        await asyncio.get_running_loop().create_future()  # waits until cancelled
        raise AssertionError("unreachable")


class DatagramQueue(RuleBasedStateMachine):
    """Arbitrary arrivals and reads on a transport's receive queue (both policies)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.transport: StructuredDatagramTransport[Any] | None = None
        self.arrived = 0
        self.taken = 0

    @rule(
        drop=st.sampled_from(["oldest", "newest"]),
        size=st.integers(1, 16),
        nbytes=st.integers(1, 400),
    )
    @precondition(lambda self: self.transport is None)
    def make(self, drop: str, size: int, nbytes: int) -> None:
        self.transport = StructuredDatagramTransport(
            FakeSession(),  # type: ignore[arg-type]
            queue_size=size,
            queue_bytes=nbytes,
            drop=drop,  # type: ignore[arg-type]
            skip_malformed=True,
        )

    @rule(payload=st.binary(max_size=120) | st.integers(0, 10**6).map(lambda n: b"%d" % n))
    @precondition(lambda self: self.transport is not None)
    def arrive(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport._put(payload)
        self.arrived += 1

    @rule()
    @precondition(lambda self: self.transport is not None and self.transport.queued > 0)
    def take(self) -> None:
        transport = self.transport
        assert transport is not None
        before = transport.queued + transport.malformed
        try:
            self.loop.run_until_complete(transport.receive(timeout=0))
            self.taken += 1
        except TimeoutError:  # everything queued was malformed
            assert transport.queued == 0
        assert transport.queued < before + 1

    @invariant()
    def bounded_and_accounted(self) -> None:
        transport = self.transport
        if transport is None:
            return
        assert transport.queued <= transport.queue_size
        held = transport._queued_bytes
        assert held == sum(len(d) for d in transport._queue)
        assert held <= transport.queue_bytes or transport.queued == 1
        assert self.arrived == (
            self.taken + transport.malformed + transport.queued + transport.dropped
        )

    def teardown(self) -> None:
        if self.transport is not None:
            self.loop.run_until_complete(self.transport.close())
            assert self.transport.queued == 0
        self.loop.close()


TestDatagramQueue = DatagramQueue.TestCase
TestDatagramQueue.settings = settings(
    max_examples=examples(100), stateful_step_count=40, deadline=None
)
