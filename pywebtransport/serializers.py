"""Serializers and message framing over WebTransport streams and datagrams.

Theory of operation
-------------------
A serializer turns an application object into bytes and back: ``dumps(obj) -> bytes``
and ``loads(data) -> obj``. Three are provided:

- :class:`JSONSerializer` — the standard library's :mod:`json`, UTF-8, compact
  separators (what a browser's ``JSON.parse(new TextDecoder().decode(bytes))`` reads);
- :class:`MsgPackSerializer` — the optional ``msgpack`` package (extra ``msgpack``),
  imported on first use; a clear :class:`SerializerUnavailable` names the extra to
  install when it is missing;
- :class:`ProtobufSerializer` — the optional ``protobuf`` package (extra ``protobuf``);
  the message class to decode is given to the constructor.

Every failure to decode (bad UTF-8, bad JSON, truncated msgpack, a protobuf parse error)
raises :class:`SerializationError`, never the library's own exception type, so an
application can treat bytes from the network uniformly.

A WebTransport stream is a byte stream, so messages on it are framed: each frame is a
4-byte unsigned big-endian length followed by that many bytes of serialized payload
(readable in a browser with ``DataView.getUint32(0)``). :func:`encode_frame` and the
incremental :class:`FrameDecoder` are the pure codec; :func:`write_message`,
:func:`read_frame`, :func:`read_message` and :func:`iter_messages` apply it to any
object with the stream methods ``write(data, end_stream=)`` and ``read(max_size)`` (the
:mod:`pywebtransport` streams). A frame longer than ``max_size`` is refused before its
payload is read (:class:`MessageTooLarge`). A
stream that ends exactly between two frames ends the message sequence (``EOFError`` from
:func:`read_message`, the end of :func:`iter_messages`); one that ends inside a frame is
a :class:`TruncatedMessage`. :mod:`pywebtransport.structured` builds typed message
streams and datagram transports on these.

A datagram is already delimited, so :func:`send_datagram_message` sends the serialized
payload as is and :func:`receive_datagram_message` decodes one received datagram. A
payload larger than the session's ``max_datagram_size`` is refused with
:class:`SerializationError` rather than silently dropped.
"""

from __future__ import annotations

import importlib
import json
import struct
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from pywebtransport.exceptions import WebTransportError

__all__ = [
    "FRAME_HEADER_SIZE",
    "MAX_MESSAGE_SIZE",
    "DatagramMessenger",
    "FrameDecoder",
    "FrameReader",
    "JSONSerializer",
    "MessageReader",
    "MessageTooLarge",
    "MessageTypeMismatch",
    "MessageWriter",
    "MsgPackSerializer",
    "ProtobufSerializer",
    "SerializationError",
    "Serializer",
    "SerializerUnavailable",
    "TruncatedMessage",
    "UnknownMessageType",
    "encode_frame",
    "iter_messages",
    "read_frame",
    "read_message",
    "receive_datagram_message",
    "send_datagram_message",
    "write_message",
]

Bytes = bytes | bytearray | memoryview

#: Length prefix of a framed message: 4-byte unsigned big-endian.
FRAME_HEADER_SIZE = 4
#: Default largest accepted framed message (16 MiB).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
_MAX_FRAME = 0xFFFFFFFF
_HEADER = struct.Struct("!I")


class SerializationError(WebTransportError, ValueError):
    """An object could not be serialized, or bytes could not be deserialized.

    The subclasses say which rule a bad frame broke: :class:`MessageTooLarge`,
    :class:`TruncatedMessage`, :class:`UnknownMessageType`, :class:`MessageTypeMismatch`;
    a payload the serializer cannot decode raises this class itself.
    """


class MessageTooLarge(SerializationError):
    """A message (or its announced length) is above the size limit."""

    def __init__(self, size: int, limit: int, what: str = "message", bound: str = "limit") -> None:
        super().__init__(f"{what} of {size} bytes exceeds the {bound} of {limit}")
        self.size = size
        self.limit = limit


class TruncatedMessage(SerializationError):
    """The stream ended inside a message (its header or payload)."""

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"stream ended inside a message ({received} of {expected} bytes)")
        self.received = received
        self.expected = expected


class UnknownMessageType(SerializationError):
    """A message carries a type tag no registered type has (or an object's type is
    not registered)."""


class MessageTypeMismatch(SerializationError):
    """A message decoded to an object that is not of the expected type."""


class SerializerUnavailable(ImportError):
    """The optional package a serializer needs is not installed."""


@runtime_checkable
class Serializer(Protocol):
    """What every serializer offers."""

    def dumps(self, obj: Any) -> bytes:
        """``obj`` as bytes; :class:`SerializationError` if it cannot be encoded."""
        ...

    def loads(self, data: Bytes) -> Any:
        """The object encoded in ``data``; :class:`SerializationError` if malformed."""
        ...


# ======================================================================================
# serializers
# ======================================================================================


class JSONSerializer:
    """JSON over UTF-8 (compact, ``ensure_ascii=False``)."""

    def __init__(self, *, sort_keys: bool = False, **dumps_options: Any) -> None:
        self._dumps_options: dict[str, Any] = {
            "separators": (",", ":"),
            "ensure_ascii": False,
            "sort_keys": sort_keys,
            **dumps_options,
        }

    def dumps(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj, **self._dumps_options).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot encode as JSON: {exc}") from exc

    def loads(self, data: Bytes) -> Any:
        try:
            return json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"invalid JSON: {exc}") from exc


def _import_optional(module: str, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SerializerUnavailable(
            f"{what} needs the optional package {extra!r}: "
            f"pip install 'pywebtransport[{extra}]' (or pip install {extra})"
        ) from exc


class MsgPackSerializer:
    """MessagePack via the optional ``msgpack`` package (imported on first use).

    ``bytes`` stay ``bytes`` (bin type) and strings stay ``str``; maps decode to dicts.
    """

    def __init__(self, **unpack_options: Any) -> None:
        self._unpack_options: dict[str, Any] = {"raw": False, **unpack_options}
        self._msgpack: ModuleType | None = None

    def _module(self) -> ModuleType:
        if self._msgpack is None:
            self._msgpack = _import_optional("msgpack", "msgpack", "MsgPackSerializer")
        return self._msgpack

    def dumps(self, obj: Any) -> bytes:
        msgpack = self._module()
        try:
            return bytes(msgpack.packb(obj, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot encode as MessagePack: {exc}") from exc

    def loads(self, data: Bytes) -> Any:
        msgpack = self._module()
        try:
            return msgpack.unpackb(bytes(data), **self._unpack_options)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise SerializationError(f"invalid MessagePack: {exc}") from exc


class ProtobufSerializer:
    """Protocol Buffers via the optional ``protobuf`` package.

    ``message_class`` is the generated message class that :meth:`loads` produces;
    :meth:`dumps` accepts any message instance of that class.
    """

    def __init__(self, message_class: type[Any]) -> None:
        self._module = _import_optional("google.protobuf.message", "protobuf", "ProtobufSerializer")
        if not (
            isinstance(message_class, type) and issubclass(message_class, self._module.Message)
        ):
            raise TypeError(f"{message_class!r} is not a protobuf message class")
        self.message_class = message_class

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, self.message_class):
            raise SerializationError(
                f"expected a {self.message_class.__name__} message, got {type(obj).__name__}"
            )
        try:
            return bytes(obj.SerializeToString())
        except self._module.EncodeError as exc:
            raise SerializationError(f"cannot encode protobuf message: {exc}") from exc

    def loads(self, data: Bytes) -> Any:
        message = self.message_class()
        try:
            message.ParseFromString(bytes(data))
        except Exception as exc:  # DecodeError, or RuntimeWarning-like errors on bad UTF-8
            raise SerializationError(f"invalid protobuf message: {exc}") from exc
        return message


# ======================================================================================
# framing codec
# ======================================================================================


def encode_frame(payload: Bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length prefix."""
    size = len(payload)
    if size > _MAX_FRAME:
        raise MessageTooLarge(size, _MAX_FRAME)
    return _HEADER.pack(size) + bytes(payload)


class FrameDecoder:
    """Incremental decoder of length-prefixed frames (feed bytes, get payloads)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: Bytes) -> list[bytes]:
        """Append ``data``; every payload now complete, in order.

        Raises :class:`SerializationError` for a frame longer than ``max_size``.
        """
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        pos = 0
        end = len(buffer)
        while end - pos >= FRAME_HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buffer, pos)
            if size > self.max_size:
                raise MessageTooLarge(size, self.max_size)
            stop = pos + FRAME_HEADER_SIZE + size
            if stop > end:
                break
            out.append(bytes(buffer[pos + FRAME_HEADER_SIZE : stop]))
            pos = stop
        if pos:
            del buffer[:pos]
        return out


# ======================================================================================
# streams
# ======================================================================================


class MessageWriter(Protocol):
    """The part of a send stream that :func:`write_message` uses."""

    async def write(self, data: Bytes, end_stream: bool = False) -> None: ...


class MessageReader(Protocol):
    """The part of a receive stream that :func:`read_message` uses (``b""`` at EOF)."""

    async def read(self, max_size: int = -1) -> bytes: ...


_JSON = JSONSerializer()


async def write_message(
    stream: MessageWriter,
    obj: Any,
    serializer: Serializer | None = None,
    *,
    end_stream: bool = False,
) -> None:
    """Serialize ``obj`` and write it as one length-prefixed frame (JSON by default)."""
    payload = (serializer or _JSON).dumps(obj)
    await stream.write(encode_frame(payload), end_stream=end_stream)


class FrameReader:
    """Reads length-prefixed frames from one stream, one :meth:`read` at a time.

    A frame read partly when a :meth:`read` is cancelled (a timeout around it) stays
    here and the next :meth:`read` goes on with it, so cancelling loses no byte: the
    stream's ``read`` takes bytes only when it returns them. After a framing error
    (:class:`MessageTooLarge`, :class:`TruncatedMessage`) every later :meth:`read`
    raises the same error.
    """

    __slots__ = ("_error", "_got", "_header", "_parts", "_size", "max_size", "stream")

    def __init__(self, stream: MessageReader, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.stream = stream
        self.max_size = max_size
        self._header = b""
        self._size = -1  # the payload length, once the header is complete
        self._parts: list[bytes] = []
        self._got = 0
        self._error: SerializationError | None = None

    @property
    def pending(self) -> int:
        """Bytes of a partly read frame held here."""
        return len(self._header) + self._got

    async def read(self) -> bytes | None:
        """The payload of the next frame; None when the stream ends cleanly before it.

        :class:`MessageTooLarge` when the announced length is above ``max_size`` (before
        a byte of the payload is read), :class:`TruncatedMessage` when the stream ends
        inside the frame.
        """
        if self._error is not None:
            raise self._error
        try:
            return await self._read()
        except (MessageTooLarge, TruncatedMessage) as exc:
            self._error = exc
            raise

    async def _read(self) -> bytes | None:
        stream = self.stream
        while self._size < 0:
            chunk = await stream.read(FRAME_HEADER_SIZE - len(self._header))
            if not chunk:
                if not self._header:
                    return None
                raise TruncatedMessage(len(self._header), FRAME_HEADER_SIZE)
            self._header += chunk
            if len(self._header) == FRAME_HEADER_SIZE:
                (size,) = _HEADER.unpack(self._header)
                if size > self.max_size:  # refused before a byte of the payload is read
                    raise MessageTooLarge(size, self.max_size)
                self._size = size
        size = self._size
        while self._got < size:
            chunk = await stream.read(size - self._got)
            if not chunk:
                raise TruncatedMessage(self._got, size)
            self._parts.append(chunk)
            self._got += len(chunk)
        parts = self._parts
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        self._header, self._size, self._parts, self._got = b"", -1, [], 0
        return payload


async def read_frame(stream: MessageReader, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes | None:
    """The payload of the next length-prefixed frame; None when the stream ends cleanly
    before it (one :meth:`FrameReader.read`; keep a :class:`FrameReader` to read
    frames under timeouts).

    Raises :class:`MessageTooLarge` when the announced length is above ``max_size``
    (before a byte of the payload is read) and :class:`TruncatedMessage` when the
    stream ends inside the frame.
    """
    return await FrameReader(stream, max_size).read()


async def read_message(
    stream: MessageReader,
    serializer: Serializer | None = None,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
) -> Any:
    """Read one length-prefixed frame and deserialize it (JSON by default).

    Raises ``EOFError`` when the stream ends cleanly before a frame, and
    :class:`SerializationError` for a truncated, oversized or malformed message.
    """
    payload = await read_frame(stream, max_size=max_size)
    if payload is None:
        raise EOFError("end of stream")
    return (serializer or _JSON).loads(payload)


async def iter_messages(
    stream: MessageReader,
    serializer: Serializer | None = None,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
) -> AsyncIterator[Any]:
    """Every framed message of ``stream`` until it ends cleanly."""
    while True:
        try:
            message = await read_message(stream, serializer, max_size=max_size)
        except EOFError:
            return
        yield message


# ======================================================================================
# datagrams
# ======================================================================================


class DatagramMessenger(Protocol):
    """The part of a session that the datagram helpers use."""

    @property
    def max_datagram_size(self) -> int: ...

    def send_datagram(self, data: Bytes) -> Any: ...

    async def receive_datagram(self) -> bytes: ...


async def send_datagram_message(
    session: DatagramMessenger, obj: Any, serializer: Serializer | None = None
) -> None:
    """Serialize ``obj`` into one datagram (refused if above ``max_datagram_size``)."""
    payload = (serializer or _JSON).dumps(obj)
    limit = session.max_datagram_size
    if limit and len(payload) > limit:
        raise MessageTooLarge(len(payload), limit, bound="datagram limit")
    result = session.send_datagram(payload)
    if hasattr(result, "__await__"):
        await result


async def receive_datagram_message(
    session: DatagramMessenger, serializer: Serializer | None = None
) -> Any:
    """The next datagram of ``session``, deserialized."""
    return (serializer or _JSON).loads(await session.receive_datagram())
