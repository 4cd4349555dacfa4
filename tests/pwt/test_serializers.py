"""Serializers (JSON, MessagePack, Protobuf) and message framing on streams/datagrams."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from google.protobuf import struct_pb2, wrappers_pb2  # the extras are installed (dev): no skip
from hypothesis import given, settings
from hypothesis import strategies as st

from pywebtransport.serializers import (
    FRAME_HEADER_SIZE,
    FrameDecoder,
    JSONSerializer,
    MsgPackSerializer,
    ProtobufSerializer,
    SerializationError,
    Serializer,
    SerializerUnavailable,
    encode_frame,
    iter_messages,
    read_message,
    receive_datagram_message,
    send_datagram_message,
    write_message,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


class FakeStream:
    """In-memory stream: ``write`` appends, ``read(n)`` hands out at most ``chunk`` bytes."""

    def __init__(self, data: bytes = b"", chunk: int = 1 << 30) -> None:
        self.data = bytearray(data)
        self.chunk = chunk
        self.ended = False
        self.writes = 0

    async def write(self, data: bytes | bytearray | memoryview, end_stream: bool = False) -> None:
        assert not self.ended
        self.data += data
        self.ended = end_stream
        self.writes += 1

    async def read(self, max_size: int = -1) -> bytes:
        n = len(self.data) if max_size < 0 else min(max_size, len(self.data))
        n = min(n, self.chunk)
        out = bytes(self.data[:n])
        del self.data[:n]
        return out


class FakeSession:
    def __init__(self, limit: int = 1200) -> None:
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []
        self._limit = limit

    @property
    def max_datagram_size(self) -> int:
        return self._limit

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    async def receive_datagram(self) -> bytes:
        return self.inbox.pop(0)


# ---------------------------------------------------------------------------- JSON


def test_json_round_trip_and_wire_form() -> None:
    s = JSONSerializer()
    assert isinstance(s, Serializer)
    obj = {"a": [1, 2.5, None, True], "é": "ü"}
    data = s.dumps(obj)
    assert data == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    assert s.loads(data) == obj
    assert s.loads(bytearray(data)) == obj
    assert s.loads(memoryview(data)) == obj
    assert JSONSerializer(sort_keys=True).dumps({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize("bad", [b"", b"{", b"\xff\xfe", b'{"a":1}x', b"[1,]"])
def test_json_bad_input_raises_typed_error(bad: bytes) -> None:
    with pytest.raises(SerializationError):
        JSONSerializer().loads(bad)


def test_json_unencodable_object() -> None:
    with pytest.raises(SerializationError):
        JSONSerializer().dumps({"x": object()})
    with pytest.raises(SerializationError):
        JSONSerializer(allow_nan=False).dumps(float("nan"))


@given(json_values)
def test_json_property_round_trip(value: Any) -> None:
    s = JSONSerializer()
    assert s.loads(s.dumps(value)) == value


@given(st.binary(max_size=64))
def test_json_any_bytes_decode_or_typed_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        JSONSerializer().loads(data)


# ---------------------------------------------------------------------------- MessagePack


def test_msgpack_round_trip() -> None:
    s = MsgPackSerializer()
    obj = {"s": "text", "b": b"\x00\x01", "l": [1, -2, 3.5, None, True], "n": {"k": 1}}
    assert s.loads(s.dumps(obj)) == obj
    assert isinstance(s.loads(s.dumps(b"x")), bytes)


def test_msgpack_bad_input() -> None:
    s = MsgPackSerializer()
    for bad in (b"", b"\x92\x01", b"\xc1", b"\x81\xa1a"):
        with pytest.raises(SerializationError):
            s.loads(bad)
    with pytest.raises(SerializationError):
        s.dumps(object())


@given(st.binary(max_size=64))
@settings(max_examples=200)
def test_msgpack_any_bytes_decode_or_typed_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        MsgPackSerializer().loads(data)


def _no_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr("importlib.import_module", fail)


def test_msgpack_missing_package_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_optional_packages(monkeypatch)
    s = MsgPackSerializer()  # construction is lazy: no import yet
    with pytest.raises(SerializerUnavailable, match=r"pywebtransport\[msgpack\]"):
        s.dumps({"a": 1})
    with pytest.raises(SerializerUnavailable):
        s.loads(b"\x01")


# ---------------------------------------------------------------------------- Protobuf


def test_protobuf_round_trip() -> None:

    s = ProtobufSerializer(wrappers_pb2.StringValue)
    message = wrappers_pb2.StringValue(value="héllo")
    data = s.dumps(message)
    assert data == b"\n\x06h\xc3\xa9llo"
    decoded = s.loads(data)
    assert isinstance(decoded, wrappers_pb2.StringValue)
    assert decoded.value == "héllo"

    st_s = ProtobufSerializer(struct_pb2.Struct)
    doc = struct_pb2.Struct()
    doc.update({"a": 1.0, "b": [True, "x"]})
    assert st_s.loads(st_s.dumps(doc)) == doc


def test_protobuf_errors() -> None:

    with pytest.raises(TypeError):
        ProtobufSerializer(dict)
    s = ProtobufSerializer(wrappers_pb2.StringValue)
    with pytest.raises(SerializationError):
        s.dumps(wrappers_pb2.Int32Value(value=3))
    for bad in (b"\n\x05ab", b"\xff", b"\n\x02\xff\xfe"):
        with pytest.raises(SerializationError):
            s.loads(bad)


def test_protobuf_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_optional_packages(monkeypatch)
    with pytest.raises(SerializerUnavailable, match="protobuf"):
        ProtobufSerializer(object)


# ---------------------------------------------------------------------------- framing


def test_encode_frame_layout() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(memoryview(b"xy")) == b"\x00\x00\x00\x02xy"


def test_frame_decoder_byte_by_byte() -> None:
    payloads = [b"", b"a", b"hello world", bytes(range(256))]
    wire = b"".join(encode_frame(p) for p in payloads) + b"\x00\x00"
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(wire)):
        out += decoder.feed(wire[i : i + 1])
    assert out == payloads
    assert decoder.pending == 2


def test_frame_decoder_rejects_oversize_before_payload() -> None:
    decoder = FrameDecoder(max_size=10)
    with pytest.raises(SerializationError):
        decoder.feed(struct.pack("!I", 11))
    assert FrameDecoder(max_size=10).feed(encode_frame(b"x" * 10)) == [b"x" * 10]


@given(st.lists(st.binary(max_size=50), max_size=10), st.integers(min_value=1, max_value=17))
def test_frame_decoder_property(payloads: list[bytes], step: int) -> None:
    wire = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(wire), step):
        out += decoder.feed(wire[i : i + step])
    assert out == payloads
    assert decoder.pending == 0


async def test_stream_messages_round_trip_small_reads() -> None:
    stream = FakeStream(chunk=3)
    await write_message(stream, {"n": 1})
    await write_message(stream, [1, 2, 3])
    await write_message(stream, "last", end_stream=True)
    assert stream.ended and stream.writes == 3
    assert bytes(stream.data[:FRAME_HEADER_SIZE]) == struct.pack("!I", len(b'{"n":1}'))
    assert await read_message(stream) == {"n": 1}
    assert [m async for m in iter_messages(stream)] == [[1, 2, 3], "last"]
    with pytest.raises(EOFError):
        await read_message(stream)


async def test_stream_messages_with_msgpack() -> None:
    s = MsgPackSerializer()
    stream = FakeStream()
    for obj in ({"b": b"\x00"}, 7, ["x"]):
        await write_message(stream, obj, s)
    assert [m async for m in iter_messages(stream, s)] == [{"b": b"\x00"}, 7, ["x"]]


async def test_stream_truncated_and_oversized() -> None:
    with pytest.raises(SerializationError, match="inside a message"):
        await read_message(FakeStream(b"\x00\x00"))
    with pytest.raises(SerializationError, match="inside a message"):
        await read_message(FakeStream(b"\x00\x00\x00\x05abc"))
    with pytest.raises(SerializationError, match="exceeds"):
        await read_message(FakeStream(encode_frame(b"x" * 100)), max_size=99)
    with pytest.raises(SerializationError):
        await read_message(FakeStream(encode_frame(b"{bad")))
    assert await read_message(FakeStream(encode_frame(b"null"))) is None


async def test_datagram_messages() -> None:
    session = FakeSession(limit=20)
    await send_datagram_message(session, {"k": "v"})
    assert session.sent == [b'{"k":"v"}']
    with pytest.raises(SerializationError, match="datagram limit"):
        await send_datagram_message(session, "x" * 30)
    session.inbox.append(b"[1,2]")
    assert await receive_datagram_message(session) == [1, 2]
    session.inbox.append(b"\xff")
    with pytest.raises(SerializationError):
        await receive_datagram_message(session)


async def test_datagram_send_may_be_async() -> None:
    sent: list[bytes] = []

    class AsyncSend(FakeSession):
        async def send_datagram(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
            sent.append(bytes(data))

    await send_datagram_message(AsyncSend(), 5)
    assert sent == [b"5"]
