"""WebTransport streams for asyncio: bidirectional, send-only and receive-only.

Theory of operation
-------------------
A stream object belongs to one :class:`~pywebtransport.session.WebTransportSession`
and is named by its QUIC stream ID. It talks to the connection only through the
link's public interface (:class:`~pywebtransport._link.WtLink`), which feeds it
what the protocol core reports through the ``on_*`` methods of
:class:`~pywebtransport._link.StreamEndpoint`: ``on_data`` (bytes after the
WebTransport stream header, FIN), ``on_reset`` (the peer's RESET_STREAM, with the
WebTransport code), ``on_stop_sending`` (the peer's STOP_SENDING), ``on_failed``
(session or connection gone) and ``on_writable`` (the QUIC send buffer drained).

Receiving. Chunks are queued as received (``bytes`` objects, never copied until a
read needs to split or join them). Flow-control credit goes back only as the
application reads (:meth:`WtLink.consume`: QUIC stream and connection credit, and the
draft-16 session's WT_MAX_DATA), in batches of at most ``_CREDIT_BATCH`` bytes and
whenever the queue runs empty; so a reader that does not read holds at most the
stream window we advertised, and the peer's writer blocks (RFC 9000 §4.1). A peer reset
makes reads raise :class:`~pywebtransport.exceptions.StreamReset` at once (buffered
data is discarded, as RFC 9000 §3.2 allows).

Sending. ``write`` hands data to the core, which may accept less than all of it when
the draft-16 session data limit is reached (draft-ietf-webtrans-http3-16 §5.4); the
rest waits for credit. Then ``drain`` waits while QUIC holds more than its high mark
unacknowledged: that is the backpressure a fast writer feels from a slow network or
a slow reader. ``bytes`` are passed down without a copy; ``bytearray`` and
``memoryview`` are copied once by QUIC (they may change after ``write`` returns).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

from pywebtransport.exceptions import (
    StopReceiving,
    StreamClosed,
    StreamReset,
)
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from quic.errors import StreamResetError

if TYPE_CHECKING:
    from pywebtransport._link import WtLink
    from pywebtransport.session import WebTransportSession

__all__ = [
    "DEFAULT_LIMIT",
    "WebTransportReceiveStream",
    "WebTransportSendStream",
    "WebTransportStream",
]

Data = bytes | bytearray | memoryview

#: Default largest line ``readline``/``readuntil`` accept.
DEFAULT_LIMIT = 1 << 20
#: Read bytes are credited back in batches of at most this size (and when the queue
#: runs empty, so a waiting reader is never short of credit it released).
_CREDIT_BATCH = 1 << 14
#: More than the stream header QUIC may hold besides the data written (a signal or type
#: and a session ID: at most 10 bytes; draft-16 §4.2, §4.3).
_HEADER_MARGIN = 64


class _StreamBase:
    """State shared by both halves; see the module docstring."""

    # one per stream on each side of a burst of short exchanges: no instance dict (made
    # only if an application sets an attribute of its own) and no asyncio.Event (a
    # future exists only while a writer waits) — fewer objects per stream (issue 10)
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_chunks",
        "_credited",
        "_eof",
        "_link",
        "_reader",
        "_recv_exc",
        "_send_done",
        "_send_exc",
        "_session",
        "_size",
        "_stopped",
        "_taken",
        "_writer",
        "bytes_received",
        "bytes_sent",
        "stream_id",
    )

    def __init__(self, session: WebTransportSession, stream_id: int, *, readable: bool,
                 writable: bool) -> None:  # fmt: skip
        self._session = session
        self._link: WtLink = session.link
        self.stream_id = stream_id
        # receiving
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._taken = 0  # bytes handed to readers (net of bytes put back)
        self._credited = 0  # ... of which the link was told (credit returned)
        self._eof = not readable
        self._recv_exc: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._stopped = False  # stop_receiving() was called
        # sending
        self._send_done = not writable
        self._send_exc: BaseException | None = None
        self._writer: asyncio.Future[None] | None = None  # while drain() waits
        self.bytes_received = 0
        self.bytes_sent = 0

    @property
    def session(self) -> WebTransportSession:
        return self._session

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.stream_id} session={self._session.session_id}>"

    @property
    def unread(self) -> int:
        """Bytes received and not read yet (at most the stream's receive window)."""
        return self._size

    # -- fed by the link (StreamEndpoint) -------------------------------------------------

    def on_data(self, data: bytes, fin: bool) -> None:
        """Bytes of the stream (after its header); ``fin`` at its end."""
        if self._stopped or self._recv_exc is not None:
            if data:  # nobody reads them
                self._link.consume(self.stream_id, len(data))
            return
        if data:
            self._chunks.append(data)
            self._size += len(data)
            self.bytes_received += len(data)
            self._session.bytes_received += len(data)
        if fin:
            self._eof = True
            if self._send_done:  # _forget_if_done()'s other test first
                self._forget_if_done()
        self._wake_reader()

    def on_reset(self, code: int | None, http_code: int) -> None:
        """The peer reset its sending half (RESET_STREAM, §4.4)."""
        if self._eof and not self._chunks:
            return
        self._fail_receive(StreamReset(code, self.stream_id, http_code))

    def on_stop_sending(self, code: int | None, http_code: int) -> None:
        """The peer stopped reading (STOP_SENDING, §4.4)."""
        if not self._send_done:
            self._send_done = True
            self._send_exc = StopReceiving(code, self.stream_id, http_code)
        self._wake_writer()
        self._forget_if_done()

    def on_writable(self) -> None:
        """The QUIC send buffer drained below its high mark."""
        self._wake_writer()

    def on_failed(self, exc: BaseException) -> None:
        """The session or the connection is gone."""
        if not (self._eof and self._recv_exc is None):
            self._fail_receive(exc)
        if self._send_exc is None:
            self._send_exc = exc
            self._send_done = True
        self._wake_writer()

    def _fail_receive(self, exc: BaseException) -> None:
        # the core credited the rest of the stream already (reset, stop, session gone)
        self._recv_exc = exc
        self._eof = True
        self._chunks.clear()
        self._size = 0
        self._wake_reader()
        self._forget_if_done()

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            writer.set_result(None)

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _forget_if_done(self) -> None:
        if self._eof and self._send_done:
            self._link.remove_stream(self.stream_id)
            self._session.stream_ended(self.stream_id)


class _ReceiveMixin(_StreamBase):
    """The reading half."""

    __slots__ = ()

    def at_eof(self) -> bool:
        """True when the stream ended and every byte was read."""
        return self._eof and not self._chunks

    async def _wait_data(self) -> None:
        if self._chunks or self._eof:
            return
        reader = self._reader = self._link.loop.create_future()
        try:
            await reader
        finally:
            self._reader = None

    def _check_read(self) -> None:
        exc = self._recv_exc
        if exc is not None:
            raise exc
        if self._stopped:
            raise StreamClosed("stop_receiving() was called", self.stream_id)

    def _consumed(self, n: int) -> None:
        """``n`` bytes left the queue for a reader: their credit goes back (batched)."""
        self._size -= n
        self._taken += n
        due = self._taken - self._credited
        if due > 0 and (due >= _CREDIT_BATCH or not self._chunks):
            self._credited = self._taken
            self._link.consume(self.stream_id, due)

    def _take_chunk(self, max_size: int) -> bytes:
        chunks = self._chunks
        first = chunks[0]
        if len(first) <= max_size:
            chunks.popleft()
        else:
            chunks[0] = first[max_size:]
            first = first[:max_size]
        self._consumed(len(first))
        return first

    def _take_all(self) -> list[bytes]:
        parts = list(self._chunks)
        self._chunks.clear()
        self._consumed(self._size)
        return parts

    def _unread(self, data: bytes) -> None:
        if data:  # already taken (and maybe credited): not counted again when re-read
            self._chunks.appendleft(data)
            self._size += len(data)
            self._taken -= len(data)

    async def read(self, max_size: int = -1) -> bytes:
        """Up to ``max_size`` bytes as soon as any are available (b"" at the end);
        ``max_size < 0`` reads everything until the end of the stream."""
        if max_size < 0:
            return await self.read_all()
        if self._recv_exc is not None or self._stopped:  # _check_read()'s tests first
            self._check_read()
        if max_size == 0:
            return b""
        if not self._chunks and not self._eof:  # no coroutine when data is waiting
            # _wait_data(), inline: no coroutine of its own for the read that waits
            reader = self._reader = self._link.loop.create_future()
            try:
                await reader
            finally:
                self._reader = None
            if self._recv_exc is not None or self._stopped:
                self._check_read()
        chunks = self._chunks
        if not chunks:
            return b""
        first = chunks[0]
        n = len(first)
        if n > max_size or len(chunks) > 1:
            return self._take_chunk(max_size)
        # _take_chunk() and _consumed() inline for a read that takes the one chunk
        # queued (a short message): the queue runs empty, so its credit goes back now
        chunks.popleft()
        self._size -= n
        taken = self._taken = self._taken + n
        due = taken - self._credited
        if due > 0:
            self._credited = taken
            self._link.consume(self.stream_id, due)
        return first

    async def read_all(self) -> bytes:
        """Everything until the end of the stream."""
        parts: list[bytes] = []
        while True:
            self._check_read()
            parts.extend(self._take_all())
            if self._eof:
                self._check_read()
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._wait_data()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`asyncio.IncompleteReadError` if the stream ends
        first (its ``partial`` holds what was read)."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        parts: list[bytes] = []
        have = 0
        while have < n:
            self._check_read()
            if self._chunks:
                chunk = self._take_chunk(n - have)
                parts.append(chunk)
                have += len(chunk)
                continue
            if self._eof:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            await self._wait_data()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def readuntil(self, separator: bytes = b"\n", limit: int = DEFAULT_LIMIT) -> bytes:
        """Bytes up to and including ``separator``. At the end of the stream without
        it: :class:`asyncio.IncompleteReadError`; more than ``limit`` bytes without it:
        :class:`asyncio.LimitOverrunError` (the data stays unread)."""
        if not separator:
            raise ValueError("separator should be at least one-byte string")
        acc = bytearray()
        searched = 0
        while True:
            self._check_read()
            for part in self._take_all():
                acc += part
            index = acc.find(separator, max(0, searched - len(separator) + 1))
            if index >= 0 and index + len(separator) <= limit:
                end = index + len(separator)
                self._unread(bytes(acc[end:]))
                return bytes(acc[:end])
            searched = len(acc)
            if len(acc) > limit:
                self._unread(bytes(acc))
                raise asyncio.LimitOverrunError("separator not found within the limit", limit)
            if self._eof:
                self._check_read()
                raise asyncio.IncompleteReadError(bytes(acc), None)
            await self._wait_data()

    async def readline(self) -> bytes:
        """One line including ``\\n``; at the end of the stream, what is left (b"")."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks_iter()

    async def _chunks_iter(self) -> AsyncIterator[bytes]:
        while True:
            self._check_read()
            await self._wait_data()
            self._check_read()
            if not self._chunks:
                return
            while self._chunks:
                yield self._take_chunk(1 << 62)

    def stop_receiving(self, error_code: int = 0) -> None:
        """Ask the peer to stop sending (STOP_SENDING with a WebTransport code);
        buffered data is discarded and further reads raise StreamClosed."""
        if self._stopped or (self._eof and self._recv_exc is None and not self._chunks):
            self._stopped = True
            return
        self._stopped = True
        if self._recv_exc is None:
            with contextlib.suppress(ProtocolApiError):  # already finished below us
                self._link.stop_sending(self.stream_id, error_code)
        self._chunks.clear()
        self._size = 0
        self._eof = True
        self._wake_reader()
        self._forget_if_done()


class _SendMixin(_StreamBase):
    """The writing half."""

    __slots__ = ()

    @property
    def is_write_closed(self) -> bool:
        return self._send_done

    def _check_write(self) -> None:
        exc = self._send_exc
        if exc is not None:
            raise exc
        if self._send_done:
            raise StreamClosed("the stream's sending half is finished", self.stream_id)

    async def write(self, data: Data = b"", end_stream: bool = False) -> None:
        """Send ``data`` (FIN after it with ``end_stream``), then wait while the send
        buffer is above its high mark (backpressure)."""
        if self._send_exc is not None or self._send_done:  # _check_write()'s tests first
            self._check_write()
        self._session.check_usable()
        link = self._link
        remaining = len(data)
        view: Data = data
        while True:
            try:
                sent = link.send_stream_data(self.stream_id, view, end_stream)
            except (ProtocolApiError, StreamResetError, ValueError, RuntimeError) as exc:
                self._raise_send_failure(exc)
            link.flush()
            self.bytes_sent += sent
            self._session.bytes_sent += sent
            if sent >= remaining:
                break
            view = memoryview(view)[sent:]
            remaining -= sent
            await self._session.wait_credit()
            self._check_write()
        if end_stream:
            self._send_done = True
            if self._eof:  # _forget_if_done()'s other test first
                self._forget_if_done()
        # drain()'s first test inline: no coroutine per write when nothing waits; and no
        # call below while all this stream ever wrote (its header too) stays under the
        # mark: what QUIC holds is part of it (a short exchange asks nothing)
        high = link.send_buffer_high
        if self._send_exc is not None or (
            self.bytes_sent + _HEADER_MARGIN > high and link.send_buffered(self.stream_id) > high
        ):
            await self.drain()

    def _raise_send_failure(self, exc: Exception) -> NoReturn:
        self._session.check_usable()
        self._check_write()
        raise StreamClosed(f"cannot send on stream {self.stream_id}: {exc}", self.stream_id)

    async def write_all(self, data: Data = b"") -> None:
        """Send ``data`` and end the stream."""
        await self.write(data, end_stream=True)

    async def drain(self) -> None:
        """Wait until the stream's unacknowledged bytes are below the high mark."""
        link = self._link
        high = link.send_buffer_high
        while link.send_buffered(self.stream_id) > high:
            if self._send_exc is not None:
                raise self._send_exc
            link.check_open()
            waiter = self._writer = link.loop.create_future()
            progress = asyncio.ensure_future(link.wait_progress())
            try:
                await asyncio.wait({waiter, progress}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._writer = None
                waiter.cancel()
                progress.cancel()
        if self._send_exc is not None and not isinstance(self._send_exc, StopReceiving):
            raise self._send_exc

    async def close(self) -> None:
        """End the sending half (FIN) if it is not finished yet."""
        if not self._send_done and self._send_exc is None:
            # write(b"", end_stream=True) without its coroutine: a FIN alone takes no
            # credit, so it never waits for any (tests/pwt/test_stream.py checks both)
            self._session.check_usable()
            link = self._link
            try:
                link.send_stream_data(self.stream_id, b"", True)
            except (ProtocolApiError, StreamResetError, ValueError, RuntimeError) as exc:
                self._raise_send_failure(exc)
            link.flush()
            self._send_done = True
            if self._eof:
                self._forget_if_done()
            high = link.send_buffer_high  # write()'s backpressure test
            if self._send_exc is not None or (
                self.bytes_sent + _HEADER_MARGIN > high
                and link.send_buffered(self.stream_id) > high
            ):
                await self.drain()

    def answer_stop_sending_with(self, error_code: int) -> None:
        """If the peer sends STOP_SENDING, reset this stream with ``error_code`` (a
        WebTransport application code) instead of the peer's own code, which is what
        happens otherwise (RFC 9000 §3.5: any code may answer it)."""
        if self._send_done:
            return
        with contextlib.suppress(ProtocolApiError):  # finished below us already
            self._link.set_stop_sending_answer(self.stream_id, error_code)

    def reset(self, error_code: int = 0) -> None:
        """Abandon sending (RESET_STREAM with a WebTransport application code)."""
        if self._send_done:
            return
        with contextlib.suppress(ProtocolApiError):  # finished below us already
            self._link.reset_stream(self.stream_id, error_code)
        self._send_done = True
        self._send_exc = StreamClosed("the stream was reset", self.stream_id)
        self._wake_writer()
        self._forget_if_done()

    async def wait_flushed(self, timeout: float = 5.0) -> None:
        """Wait until everything written was acknowledged by the peer."""
        await self._link.wait_stream_flushed(self.stream_id, timeout)


class WebTransportReceiveStream(_ReceiveMixin):
    """A unidirectional stream opened by the peer: read only."""

    __slots__ = ()

    def __init__(self, session: WebTransportSession, stream_id: int) -> None:
        super().__init__(session, stream_id, readable=True, writable=False)


class WebTransportSendStream(_SendMixin):
    """A unidirectional stream we opened: write only."""

    __slots__ = ()

    def __init__(self, session: WebTransportSession, stream_id: int) -> None:
        super().__init__(session, stream_id, readable=False, writable=True)


class WebTransportStream(_ReceiveMixin, _SendMixin):
    """A bidirectional stream: read and write."""

    __slots__ = ()

    def __init__(self, session: WebTransportSession, stream_id: int) -> None:
        # _StreamBase.__init__(readable=True, writable=True) inline: one per stream of
        # a burst (tests/pwt/test_stream.py checks that both make the same state)
        self._session = session
        self._link = session.link
        self.stream_id = stream_id
        self._chunks = deque()
        self._size = self._taken = self._credited = 0
        self._eof = self._stopped = self._send_done = False
        self._recv_exc = self._reader = self._send_exc = self._writer = None
        self.bytes_received = self.bytes_sent = 0
