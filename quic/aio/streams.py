"""asyncio streams over QUIC streams: a reader that returns credit as it is read, and a
writer with backpressure.

Theory of operation
-------------------
:class:`QuicStreamReader` offers the reading methods of :class:`asyncio.StreamReader`
(``read``, ``readexactly``, ``readline``, ``readuntil``, ``at_eof``, ``exception``,
``async for line in reader``). Data the connection delivers is buffered here
*uncredited*: each read hands the bytes it returns back to the connection
(``consume(n)`` → :meth:`QuicConnection.consume_stream_data`, RFC 9000 §4.1), which
then extends the peer's window. So a stream the application does not read holds at
most its flow-control window, and a slow reader slows the sender instead of growing
memory. ``readuntil`` raises :class:`asyncio.LimitOverrunError` when ``limit`` bytes
hold no separator; the session chooses a limit no larger than the stream's initial
window, so the peer cannot stall a ``readline`` by filling the window without a
newline.

:class:`QuicStreamWriter` is the sending half: :meth:`QuicStreamWriter.drain` waits
while more than the configured number of bytes is buffered (unacknowledged), which is
what happens when flow control or congestion blocks the stream.

Reliable resets (draft-ietf-quic-reliable-stream-reset): ``writer.reset(code,
reliable_size=n)`` sends RESET_STREAM_AT, which still delivers the first ``n`` bytes
written. A reader whose peer did so gets those bytes first (they were delivered before
the reset was reported, and stay buffered); a read that needs more raises the reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.errors import StreamResetError

if TYPE_CHECKING:
    from quic.aio.session import QuicSession

__all__ = ["QuicStreamReader", "QuicStreamWriter"]


class QuicStreamReader:
    """Receiving half of a QUIC stream (see the module docstring)."""

    def __init__(
        self,
        stream_id: int,
        limit: int,
        consume: Callable[[int], None],
        on_done: Callable[[int], None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._limit = max(1, limit)
        self._consume = consume
        self._on_done = on_done
        self._buffer = bytearray()
        self._eof = False
        self._exception: BaseException | None = None
        self._keep = False  # a reliable reset: buffered bytes stay readable first
        self._waiter: asyncio.Future[None] | None = None

    # -- fed by the session -----------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._eof or self._exception is not None:
            return  # nothing follows a FIN; a reset stream is credited by the connection
        self._buffer += data
        self._wake()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake()
        self._check_done()

    def _fail(self, exc: BaseException, keep: bool = False) -> None:
        """The stream was reset or the connection closed: reads raise ``exc``. Buffered
        bytes are dropped (the connection credits a reset stream by itself), unless
        ``keep``: after a RESET_STREAM_AT they are the reliable bytes, read first."""
        self._exception = exc
        self._keep = keep
        if not keep:
            self._buffer.clear()
        self._wake()  # the waiting read re-checks and raises
        self._done()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self.stream_id)

    def _check_done(self) -> None:
        if self._eof and not self._buffer:
            self._done()

    # -- state --------------------------------------------------------------------------------

    def at_eof(self) -> bool:
        """True when the FIN was received and every byte was read."""
        return self._eof and not self._buffer

    def exception(self) -> BaseException | None:
        return self._exception

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet (at most the stream's window)."""
        return len(self._buffer)

    # -- reading ------------------------------------------------------------------------------

    def _raise_if_failed(self, wanted: bool = False) -> None:
        """Raise the failure, unless reliable bytes are buffered and the caller does
        not need more than them (``wanted``: it does)."""
        if self._exception is not None and (wanted or not self._keep or not self._buffer):
            raise self._exception

    async def _wait(self) -> None:
        if self._waiter is not None:
            raise RuntimeError("another coroutine is already waiting for this stream's data")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self, n: int) -> bytes:
        buffer = self._buffer
        data = bytes(buffer[:n])
        del buffer[:n]  # O(1) at the front of a bytearray
        if data:
            self._consume(len(data))
        self._check_done()
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n < 0``: everything up to the FIN); ``b""`` at EOF."""
        if n == 0:
            return b""
        if n < 0:
            parts = []
            while chunk := await self.read(self._limit):
                parts.append(chunk)
            return b"".join(parts)
        while not self._buffer and not self._eof:
            self._raise_if_failed()
            await self._wait()
        self._raise_if_failed()
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`asyncio.IncompleteReadError` if the FIN comes first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._buffer) < n and not self._eof:
            self._raise_if_failed(wanted=True)
            await self._wait()
        self._raise_if_failed()
        if len(self._buffer) < n:
            partial = self._take(len(self._buffer))
            raise asyncio.IncompleteReadError(partial, n)
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator`` (asyncio semantics)."""
        if not separator:
            raise ValueError("separator should be at least one-byte string")
        buffer = self._buffer
        start = 0
        while True:
            self._raise_if_failed()
            found = buffer.find(separator, start)
            if found >= 0:
                return self._take(found + len(separator))
            if len(buffer) >= self._limit:
                raise asyncio.LimitOverrunError(
                    "separator is not found, and chunk exceed the limit", len(buffer)
                )
            if self._eof:
                partial = self._take(len(buffer))
                raise asyncio.IncompleteReadError(partial, None)
            start = max(0, len(buffer) - len(separator) + 1)
            self._raise_if_failed(wanted=True)
            await self._wait()

    async def readline(self) -> bytes:
        """A line ending in ``\\n`` (or the rest at EOF); ValueError beyond the limit."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            self._take(exc.consumed)
            raise ValueError(exc.args[0]) from None

    def __aiter__(self) -> QuicStreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class QuicStreamWriter:
    """Sending half of a QUIC stream, with backpressure."""

    def __init__(
        self,
        session: QuicSession,
        stream_id: int,
        on_close: Callable[[QuicStreamWriter], None] | None = None,
    ) -> None:
        self._session = session
        self.stream_id = stream_id
        self._on_close = on_close
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self.reset_code: int | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._send(data, False)

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def write_eof(self) -> None:
        if not self._closed:
            self._send(b"", True)
            self._mark_closed()

    def close(self) -> None:
        self.write_eof()

    def is_closing(self) -> bool:
        return self._closed

    def can_write_eof(self) -> bool:
        return True

    def _mark_closed(self) -> None:
        self._closed = True
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    def _send(self, data: bytes | bytearray | memoryview, end: bool) -> None:
        session = self._session
        session.check_open()
        if self.reset_code is not None:
            raise StreamResetError(self.stream_id, self.reset_code, "stream was reset")
        if not session.connection.send_stream_data(self.stream_id, data, end):
            self._writable.clear()
        session.schedule_flush()

    async def drain(self) -> None:
        """Wait until the send buffer is below its high-water mark."""
        while not self._writable.is_set():
            self._session.check_open()
            if self.reset_code is not None:
                raise StreamResetError(self.stream_id, self.reset_code, "stream was reset")
            await self._writable.wait()
        self._session.check_open()

    async def wait_flushed(self) -> None:
        """Wait until everything written was acknowledged by the peer."""
        session = self._session
        while session.connection.send_buffered(self.stream_id):
            await session.wait_progress()

    def reset(self, error_code: int, reliable_size: int | None = None) -> None:
        """Abandon the stream with RESET_STREAM (RFC 9000 §19.4), or with
        ``reliable_size`` RESET_STREAM_AT: the first ``reliable_size`` bytes written are
        still delivered (draft-ietf-quic-reliable-stream-reset; ValueError if the peer
        does not accept it, see :attr:`QuicConnection.peer_accepts_reset_stream_at`)."""
        self._session.connection.reset_stream(self.stream_id, error_code, reliable_size)
        self.reset_code = error_code
        self._writable.set()
        self._session.schedule_flush()
        self._mark_closed()

    def _stopped(self, error_code: int) -> None:
        """The peer sent STOP_SENDING (RFC 9000 §19.5): writes raise from now on."""
        self.reset_code = error_code
        self._writable.set()
        self._mark_closed()

    def _wake(self) -> None:
        self._writable.set()
