"""Structured messaging: typed objects over WebTransport streams and datagrams.

Theory of operation
-------------------
The byte-level pieces are in :mod:`pywebtransport.serializers` (serializers, the 4-byte
length framing, :class:`~pywebtransport.serializers.FrameReader`); this module puts typed
objects on top of them.

Codecs. Anything with ``dumps(obj) -> bytes`` and ``loads(data) -> obj`` is a
:class:`~pywebtransport.serializers.Serializer`; two more are defined here and can be
used wherever a serializer can:

- :class:`TypedSerializer` — one expected type: a dataclass is sent as its fields
  (``dataclasses.asdict``) and rebuilt on receipt, a protobuf message class gets the
  protobuf serializer, any other class is checked with ``isinstance``. A message of
  another type is a :class:`~pywebtransport.serializers.MessageTypeMismatch`.
- :class:`MessageRegistry` — several types on one stream: each message starts with a
  2-byte type tag (below); an unknown tag is an
  :class:`~pywebtransport.serializers.UnknownMessageType`.

Wire format (what a browser has to speak; every integer is unsigned big-endian)::

    stream frame   = length:uint32  payload[length]      (length counts the payload)
    datagram       = payload                              (one message per datagram)
    payload        = body                                 (one type: serializer bytes)
                   | tag:uint16  body                     (MessageRegistry)

``body`` is the serializer's output (JSON: compact UTF-8 JSON text). In JavaScript a
frame reads as ``len = view.getUint32(0)``, ``tag = view.getUint16(4)``, body from byte 6;
docs/messaging.md has the whole reader and writer.

:class:`StructuredStream` wraps one stream. ``send`` serializes, refuses a message above
``max_message_size`` before anything is written, and writes the frame under a lock (a
write can wait for flow-control credit halfway, so two senders must not interleave).
``receive`` reads one frame under a lock with the stream's
:class:`~pywebtransport.serializers.FrameReader`: the length is checked against
``max_message_size`` before a byte of the payload is read, and a partly read frame
stays in the reader when a ``receive`` is cancelled (``asyncio.timeout`` around it
loses nothing; the next ``receive`` goes on with it). A frame the framing cannot
get past (a length above the limit, a stream that ends inside a frame) breaks the
stream: its receiving half is stopped (STOP_SENDING with :data:`MESSAGE_ERROR_CODE`,
draft-ietf-webtrans-http3-16 §4.4) so the peer stops sending and what was buffered is
released, and every later ``receive`` raises the same error. A well-framed payload
that does not decode raises :class:`~pywebtransport.serializers.SerializationError`
for that message only; the next ``receive`` reads the next frame. A stream that ends
between two frames ends the messages: ``receive`` raises ``EOFError`` and ``async for``
stops. ``close`` ends the sending half (FIN); ``abort`` resets it and stops reading.

:class:`StructuredDatagramTransport` sends one message per datagram (refused with
:class:`~pywebtransport.serializers.MessageTooLarge` above the session's
``max_datagram_size``, RFC 9297 §5 / RFC 9221 §5: a datagram is never fragmented).
Receiving starts a small task on first use that takes the session's datagrams into the
transport's own queue, bounded by ``queue_size`` messages and ``queue_bytes`` bytes;
beyond them the oldest (``drop="oldest"``) or the arriving one (``drop="newest"``) is
dropped and counted in ``dropped``. Payloads are decoded when the application takes
them; a malformed one raises for that datagram (or is skipped and counted in
``malformed`` with ``skip_malformed=True``). When the session ends the queue still
yields what it holds, then ``receive`` raises the session's
:class:`~pywebtransport.exceptions.SessionClosed` and ``async for`` stops. ``close``
(or leaving ``async with``) stops the task and empties the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from pywebtransport.exceptions import SessionClosed, WebTransportError
from pywebtransport.serializers import (
    MAX_MESSAGE_SIZE,
    Bytes,
    FrameReader,
    JSONSerializer,
    MessageTooLarge,
    MessageTypeMismatch,
    ProtobufSerializer,
    SerializationError,
    Serializer,
    TruncatedMessage,
    UnknownMessageType,
    encode_frame,
)

if TYPE_CHECKING:
    from pywebtransport.session import WebTransportSession

__all__ = [
    "DATAGRAM_QUEUE_BYTES",
    "DATAGRAM_QUEUE_SIZE",
    "MESSAGE_ERROR_CODE",
    "TAG_SIZE",
    "MessageRegistry",
    "StructuredDatagramTransport",
    "StructuredStream",
    "TypedSerializer",
]

T = TypeVar("T")
C = TypeVar("C", bound=type)

#: WebTransport application error code of the STOP_SENDING / RESET_STREAM sent when a
#: stream's framing is broken (it fits draft-02's 8-bit application codes too).
MESSAGE_ERROR_CODE = 0x4D
#: Size of the type tag a :class:`MessageRegistry` puts before each body.
TAG_SIZE = 2
_TAG = struct.Struct("!H")
#: Default bound of a datagram transport's receive queue (messages / bytes).
DATAGRAM_QUEUE_SIZE = 256
DATAGRAM_QUEUE_BYTES = 1 << 20

_JSON = JSONSerializer()


# ======================================================================================
# codecs
# ======================================================================================


def _is_protobuf_class(cls: type) -> bool:
    return hasattr(cls, "DESCRIPTOR") and hasattr(cls, "SerializeToString")


class TypedSerializer(Generic[T]):
    """A serializer for one expected type ``message_type``.

    ``encode`` turns an object into what ``serializer`` can write and ``decode`` turns
    what it read back into an object (both default by kind: a dataclass travels as
    its fields — nested values stay as the serializer decodes them — a protobuf
    message class uses :class:`~pywebtransport.serializers.ProtobufSerializer`, any
    other type travels as is). After ``decode`` the object must be a ``message_type``.
    """

    def __init__(
        self,
        message_type: type[T],
        serializer: Serializer | None = None,
        *,
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> None:
        self.message_type = message_type
        self._dataclass = dataclasses.is_dataclass(message_type)
        if serializer is None:
            serializer = (
                ProtobufSerializer(message_type) if _is_protobuf_class(message_type) else _JSON
            )
        self.serializer = serializer
        self._encode = encode
        self._decode = decode

    def __repr__(self) -> str:
        return f"<TypedSerializer {self.message_type.__name__}>"

    def to_value(self, obj: Any) -> Any:
        """What the serializer writes for ``obj`` (checks its type)."""
        if not isinstance(obj, self.message_type):
            raise MessageTypeMismatch(
                f"expected a {self.message_type.__name__} message, got {type(obj).__name__}"
            )
        if self._encode is not None:
            return self._encode(obj)
        if self._dataclass:
            return dataclasses.asdict(obj)  # type: ignore[call-overload]
        return obj

    def from_value(self, value: Any) -> T:
        """The ``message_type`` object for a decoded ``value``."""
        name = self.message_type.__name__
        if self._decode is not None:
            try:
                obj: Any = self._decode(value)
            except Exception as exc:  # the hook sees bytes from the network: any failure
                raise MessageTypeMismatch(f"not a valid {name} message: {exc!r}") from exc
        elif self._dataclass and isinstance(value, dict):
            try:
                obj = self.message_type(**value)
            except Exception as exc:  # missing/unknown fields, a __post_init__ check
                raise MessageTypeMismatch(f"not a valid {name} message: {exc!r}") from exc
        else:
            obj = value
        if not isinstance(obj, self.message_type):
            raise MessageTypeMismatch(f"expected a {name} message, got {type(obj).__name__}")
        return obj

    def dumps(self, obj: Any) -> bytes:
        return self.serializer.dumps(self.to_value(obj))

    def loads(self, data: Bytes) -> T:
        return self.from_value(self.serializer.loads(data))


class MessageRegistry:
    """Several message types on one stream or datagram flow, told apart by a 2-byte tag.

    ::

        registry = MessageRegistry()

        @registry.register(1)
        @dataclass
        class Chat:
            text: str

        registry.register(2, Join, serializer=MsgPackSerializer())

    ``dumps`` writes ``tag:uint16`` then the type's body; ``loads`` reads the tag and
    decodes the body with that type's :class:`TypedSerializer`. An object is sent with
    the tag of its class (or of the nearest registered base class).
    """

    def __init__(self, serializer: Serializer | None = None) -> None:
        self.serializer = serializer or _JSON
        self._by_tag: dict[int, TypedSerializer[Any]] = {}
        self._by_type: dict[type, tuple[bytes, TypedSerializer[Any]]] = {}

    @overload
    def register(
        self,
        tag: int,
        message_type: None = None,
        *,
        serializer: Serializer | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> Callable[[C], C]: ...
    @overload
    def register(
        self,
        tag: int,
        message_type: C,
        *,
        serializer: Serializer | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> C: ...
    def register(
        self,
        tag: int,
        message_type: C | None = None,
        *,
        serializer: Serializer | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> C | Callable[[C], C]:
        """Give ``message_type`` the tag ``tag`` (0..65535); a class decorator without it.

        ``serializer`` defaults to the registry's (protobuf classes get their own).
        """
        if not 0 <= tag <= 0xFFFF:
            raise ValueError(f"a message type tag is 0..65535, got {tag}")

        def add(cls: C) -> C:
            if tag in self._by_tag:
                raise ValueError(f"tag {tag} is already {self._by_tag[tag].message_type!r}")
            if cls in self._by_type:
                raise ValueError(f"{cls!r} is already registered")
            chosen = serializer
            if chosen is None and not _is_protobuf_class(cls):
                chosen = self.serializer
            codec: TypedSerializer[Any] = TypedSerializer(cls, chosen, encode=encode, decode=decode)
            self._by_tag[tag] = codec
            self._by_type[cls] = (_TAG.pack(tag), codec)
            return cls

        return add if message_type is None else add(message_type)

    @property
    def tags(self) -> dict[int, type]:
        """Registered tags and their types."""
        return {tag: codec.message_type for tag, codec in self._by_tag.items()}

    def tag_of(self, obj: Any) -> int:
        """The tag ``obj`` is sent with (:class:`UnknownMessageType` if none)."""
        return int(_TAG.unpack(self._entry(obj)[0])[0])

    def _entry(self, obj: Any) -> tuple[bytes, TypedSerializer[Any]]:
        for cls in type(obj).__mro__:
            entry = self._by_type.get(cls)
            if entry is not None:
                return entry
        raise UnknownMessageType(f"{type(obj).__name__} is not a registered message type")

    def dumps(self, obj: Any) -> bytes:
        tag, codec = self._entry(obj)
        return tag + codec.dumps(obj)

    def loads(self, data: Bytes) -> Any:
        if len(data) < TAG_SIZE:
            raise SerializationError(f"message of {len(data)} bytes has no type tag")
        (tag,) = _TAG.unpack_from(data)
        codec = self._by_tag.get(tag)
        if codec is None:
            raise UnknownMessageType(f"unknown message type tag {tag}")
        return codec.loads(memoryview(data)[TAG_SIZE:])


# ======================================================================================
# streams
# ======================================================================================


class StructuredStream(Generic[T]):
    """Typed messages over one WebTransport stream; see the module docstring.

    ``stream`` is a bidirectional stream, or a send-only / receive-only one (then only
    ``send`` / ``receive`` work). ``serializer`` is JSON by default; a
    :class:`TypedSerializer` or a :class:`MessageRegistry` adds types.
    """

    def __init__(
        self,
        stream: Any,
        serializer: Serializer | None = None,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        error_code: int = MESSAGE_ERROR_CODE,
    ) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        self.stream = stream
        self.serializer: Serializer = serializer or _JSON
        self.max_message_size = max_message_size
        self.error_code = error_code
        self._send_lock = asyncio.Lock()
        self._receive_lock = asyncio.Lock()
        self._reader = FrameReader(stream, max_message_size)
        self._framing_lost = False
        self.messages_sent = 0
        self.messages_received = 0
        self.messages_rejected = 0  # well-framed payloads that did not decode

    def __repr__(self) -> str:
        return f"<StructuredStream {self.stream!r} {type(self.serializer).__name__}>"

    @classmethod
    async def open(
        cls,
        session: WebTransportSession,
        serializer: Serializer | None = None,
        *,
        bidirectional: bool = True,
        max_message_size: int = MAX_MESSAGE_SIZE,
        error_code: int = MESSAGE_ERROR_CODE,
    ) -> StructuredStream[Any]:
        """Open a new stream on ``session`` (bidirectional by default) and wrap it."""
        if bidirectional:
            stream: Any = await session.create_bidirectional_stream()
        else:
            stream = await session.create_unidirectional_stream()
        return cls(stream, serializer, max_message_size=max_message_size, error_code=error_code)

    # -- sending ------------------------------------------------------------------------

    def _frame(self, obj: Any) -> bytes:
        payload = self.serializer.dumps(obj)
        if len(payload) > self.max_message_size:
            raise MessageTooLarge(len(payload), self.max_message_size)
        return encode_frame(payload)

    async def send(self, obj: Any, *, end_stream: bool = False) -> None:
        """Serialize ``obj`` and write it as one frame (FIN after it with ``end_stream``).

        A message above ``max_message_size`` raises
        :class:`~pywebtransport.serializers.MessageTooLarge` and nothing is written.
        """
        frame = self._frame(obj)
        async with self._send_lock:
            await self.stream.write(frame, end_stream=end_stream)
        self.messages_sent += 1

    async def send_many(self, objs: Iterable[Any], *, end_stream: bool = False) -> None:
        """Send several messages in one write (all are serialized and checked first)."""
        frames = [self._frame(obj) for obj in objs]
        async with self._send_lock:
            await self.stream.write(b"".join(frames), end_stream=end_stream)
        self.messages_sent += len(frames)

    async def close(self) -> None:
        """End the sending half (FIN): the peer's ``async for`` ends after the last
        message."""
        async with self._send_lock:
            await self.stream.close()

    def abort(self, error_code: int | None = None) -> None:
        """Reset the sending half and stop receiving (``error_code`` or
        :attr:`error_code`)."""
        code = self.error_code if error_code is None else error_code
        reset = getattr(self.stream, "reset", None)
        if reset is not None:
            reset(code)
        self._stop(code)

    # -- receiving ----------------------------------------------------------------------

    def _stop(self, code: int) -> None:
        stop = getattr(self.stream, "stop_receiving", None)
        if stop is not None:
            stop(code)

    async def receive(self) -> T:
        """The next message. ``EOFError`` when the stream ended between two messages;
        :class:`~pywebtransport.serializers.SerializationError` for a bad one."""
        async with self._receive_lock:
            reader = self._reader
            reader.max_size = self.max_message_size
            try:
                payload = await reader.read()  # a cancelled receive loses nothing
            except (MessageTooLarge, TruncatedMessage):
                # the framing is lost: nothing after it can be read (raised again by
                # every later receive); draft-16 §4.4: the peer stops sending
                if not self._framing_lost:
                    self._framing_lost = True
                    self._stop(self.error_code)
                raise
            if payload is None:
                raise EOFError("end of messages")
        try:
            message: T = self.serializer.loads(payload)
        except SerializationError:
            self.messages_rejected += 1
            raise
        self.messages_received += 1
        return message

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                message = await self.receive()
            except EOFError:
                return
            yield message

    # -- context ------------------------------------------------------------------------

    async def __aenter__(self) -> StructuredStream[T]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """A clean exit ends the sending half (FIN); an exception aborts the stream."""
        with contextlib.suppress(WebTransportError):
            if exc_type is not None:
                self.abort()
            elif getattr(self.stream, "is_write_closed", True) is False:
                await self.close()


# ======================================================================================
# datagrams
# ======================================================================================


class StructuredDatagramTransport(Generic[T]):
    """Typed messages as datagrams of one session; see the module docstring."""

    def __init__(
        self,
        session: WebTransportSession,
        serializer: Serializer | None = None,
        *,
        queue_size: int = DATAGRAM_QUEUE_SIZE,
        queue_bytes: int = DATAGRAM_QUEUE_BYTES,
        drop: Literal["oldest", "newest"] = "oldest",
        skip_malformed: bool = False,
    ) -> None:
        if queue_size < 1 or queue_bytes < 1:
            raise ValueError("queue_size and queue_bytes must be positive")
        if drop not in ("oldest", "newest"):
            raise ValueError(f"drop is 'oldest' or 'newest', not {drop!r}")
        self.session = session
        self.serializer: Serializer = serializer or _JSON
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.drop = drop
        self.skip_malformed = skip_malformed
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._end: BaseException | None = None  # why no more datagrams will come
        self.sent = 0
        self.received = 0  # taken into the queue
        self.dropped = 0  # dropped by the queue bound
        self.malformed = 0  # skipped with skip_malformed

    def __repr__(self) -> str:
        return f"<StructuredDatagramTransport queued={len(self._queue)} dropped={self.dropped}>"

    @property
    def max_message_size(self) -> int:
        """The largest payload a datagram can carry now (the session's
        ``max_datagram_size``; it follows the path MTU)."""
        return int(self.session.max_datagram_size)

    @property
    def queued(self) -> int:
        """Messages received and not taken yet."""
        return len(self._queue)

    # -- sending ------------------------------------------------------------------------

    def send_nowait(self, obj: Any) -> None:
        """Serialize ``obj`` into one datagram and send it.

        :class:`~pywebtransport.serializers.MessageTooLarge` when it does not fit
        (a datagram is never fragmented: RFC 9221 §5)."""
        payload = self.serializer.dumps(obj)
        limit = self.max_message_size
        if len(payload) > limit:
            raise MessageTooLarge(len(payload), limit, bound="datagram limit")
        self.session.send_datagram(payload)
        self.sent += 1

    async def send(self, obj: Any) -> None:
        """:meth:`send_nowait` (datagrams never wait for flow control)."""
        self.send_nowait(obj)

    # -- receiving ----------------------------------------------------------------------

    def start(self) -> None:
        """Start taking the session's datagrams (done by the first ``receive``)."""
        if self._pump is None and self._end is None:
            self._pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._put(await self.session.receive_datagram())
        except Exception as exc:  # SessionClosed at the end, or a broken connection
            self._end = exc
            self._ready.set()

    def _put(self, data: bytes) -> None:
        """Queue one datagram within the bounds (RFC 9221 §5: datagrams may be dropped)."""
        queue = self._queue
        size = len(data)
        if self.drop == "newest" and (
            len(queue) >= self.queue_size or self._queued_bytes + size > self.queue_bytes
        ):
            self.dropped += 1
            return
        queue.append(data)
        self._queued_bytes += size
        self.received += 1
        while len(queue) > self.queue_size or (
            self._queued_bytes > self.queue_bytes and len(queue) > 1
        ):
            self._queued_bytes -= len(queue.popleft())
            self.dropped += 1
        self._ready.set()

    async def receive(self, timeout: float | None = None) -> T:
        """The next message (``TimeoutError`` after ``timeout`` s); the session's
        :class:`~pywebtransport.exceptions.SessionClosed` once it ended and the queue
        is empty."""
        self.start()
        async with asyncio.timeout(timeout):
            while True:
                queue = self._queue
                while queue:
                    data = queue.popleft()
                    self._queued_bytes -= len(data)
                    try:
                        message: T = self.serializer.loads(data)
                    except SerializationError:
                        if not self.skip_malformed:
                            raise
                        self.malformed += 1
                        continue
                    return message
                if self._end is not None:
                    raise self._end
                self._ready.clear()
                await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                message = await self.receive()
            except SessionClosed:
                return
            yield message

    async def close(self) -> None:
        """Stop taking datagrams and drop what is queued (the session stays open)."""
        pump, self._pump = self._pump, None
        if self._end is None:
            self._end = SessionClosed(0, "the datagram transport was closed")
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        self._queue.clear()
        self._queued_bytes = 0
        self._ready.set()

    async def __aenter__(self) -> StructuredDatagramTransport[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
