"""A WebTransport session for asyncio: streams, datagrams, close, events, diagnostics.

Theory of operation
-------------------
A :class:`WebTransportSession` is the asyncio face of one session of the protocol
core, on one :class:`~pywebtransport._link.WtLink` (one QUIC connection). Client and
server sessions are the same class once established. The session uses only the link's
public interface; the link calls it back through the ``on_*`` methods of
:class:`~pywebtransport._link.SessionEndpoint`, and its streams call
:meth:`check_usable`, :meth:`wait_credit` and :meth:`stream_ended`.

* Streams: ``create_*_stream`` opens one through the core; while the draft-16 session
  limit (``FlowControlBlocked``) or the QUIC stream limit forbids it, it waits for new
  credit. Streams the peer opens arrive through ``on_stream_opened`` and are queued for
  ``incoming_bidirectional_streams()`` / ``incoming_unidirectional_streams()`` and
  emitted as ``stream`` events; at most ``stream_backlog`` wait to be taken, further
  ones are refused (WT_BUFFERED_STREAM_REJECTED, draft-16 §4.7). A stream handler
  (``set_stream_handler``) takes them instead, inside the loop callback that read the
  stream's opening: nothing is queued, and a task it starts runs before that read's
  transmit, so what the task writes at once leaves with the ACK of the request.
* Datagrams: queued for ``receive_datagram()`` (bounded by count and bytes, the oldest
  dropped) and emitted as ``datagram`` events. ``send_datagram`` is synchronous; its
  result may also be awaited, so ``await session.send_datagram(data)`` works too.
* End: ``close(code, reason)`` sends WT_CLOSE_SESSION and FIN (draft-16 §6) and waits
  until they are acknowledged; the peer's close, a reset CONNECT stream or a lost
  connection arrive through ``on_closed``. Either way every stream is failed with
  :class:`~pywebtransport.exceptions.SessionClosed` (streams that already ended
  keep their unread data), the incoming iterators end, the ``closed`` event fires
  and ``wait_closed()`` returns the reason.
* Idle memory (issue 10): the incoming-stream queues are :class:`_Inbox` es (an item
  deque and waiter futures made on first use, not ``asyncio.Queue`` s), the datagram
  deque, the credit Event and the set of unacknowledged finished streams are made on
  first use, and the attributes live in ``__slots__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from h3.datagrams import max_h3_datagram_payload
from pywebtransport.config import draft_name
from pywebtransport.events import EventEmitter, EventType
from pywebtransport.exceptions import (
    DatagramTooLarge,
    SessionClosed,
    WebTransportError,
)
from pywebtransport.protocol import Draft, FlowControlBlocked
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.stream import (
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
    _StreamBase,
)
from quic.stream_manager import StreamLimitReached

if TYPE_CHECKING:
    from pywebtransport._link import WtLink

__all__ = ["DatagramSent", "WebTransportSession"]

AnyStream = WebTransportStream | WebTransportReceiveStream | WebTransportSendStream
PeerStream = WebTransportStream | WebTransportReceiveStream  # what the peer opens
_CLOSE_FLUSH_TIMEOUT = 3.0
_UNACKED_PRUNE = 64  # finished-but-unacknowledged streams kept before pruning acked ones
_DATAGRAM = EventType.DATAGRAM  # per datagram: an Enum class attribute costs ~10x a global
_STREAM = EventType.STREAM


class DatagramSent:
    """What :meth:`WebTransportSession.send_datagram` returns: already done, and
    awaitable for code that writes ``await session.send_datagram(data)``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_SENT = DatagramSent()

T = TypeVar("T")


class _Inbox(Generic[T]):
    """A FIFO of what the peer opened, awaited by any number of tasks: what an
    ``asyncio.Queue`` would do here, without its four deques and Event per session.
    Nothing is allocated until the first item or waiter; the item deque goes once empty."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    def take_waiting(self) -> list[T]:
        """The items queued before the end marker (None), which stays queued."""
        items = self._items
        taken: list[T] = []
        while items and items[0] is not None:
            taken.append(items.popleft())
        if not items:
            self._items = None
        return taken

    def qsize(self) -> int:
        items = self._items
        return 0 if items is None else len(items)

    def put_nowait(self, item: T) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        waiters = self._waiters
        if waiters:  # each waiter looks again; the ones that find nothing wait again
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def get(self) -> T:
        while True:
            items = self._items
            if items:
                item = items.popleft()
                if not items:
                    self._items = None
                return item
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = []
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done() or waiter.cancelled():
                    waiters = self._waiters
                    if waiters is not None and waiter in waiters:
                        waiters.remove(waiter)


class WebTransportSession:
    """One established WebTransport session; see the module docstring."""

    # one per session (thousands per server): the attributes in slots (issue 10, memory);
    # ``__dict__`` keeps other attributes possible (``path_params`` of the app, the
    # application's own), a dict made only when one is set
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_closed",
        "_closing",
        "_credit",
        "_datagram_bytes",
        "_datagram_handler",
        "_datagram_waiter",
        "_datagrams",
        "_incoming_bidi",
        "_incoming_uni",
        "_link",
        "_on_end",
        "_stream_handler",
        "_streams",
        "_unacked",
        "authority",
        "bytes_received",
        "bytes_sent",
        "close_info",
        "datagrams_dropped",
        "datagrams_received",
        "datagrams_sent",
        "draft",
        "draft_version",
        "draining",
        "events",
        "headers",
        "is_client",
        "path",
        "protocol",
        "remote_address",
        "session_id",
        "streams_accepted",
        "streams_opened",
    )

    def __init__(
        self,
        link: WtLink,
        session_id: int,
        *,
        path: str,
        authority: str,
        headers: dict[str, str],
        draft: Draft,
        protocol: str | None = None,
        remote_address: tuple[str, int] | None = None,
    ) -> None:
        self._link = link
        self.session_id = session_id
        self.path = path
        self.authority = authority
        self.headers = headers
        self.draft = draft_name(draft)
        self.draft_version = draft
        self.protocol = protocol
        self.remote_address = remote_address
        self.is_client = link.is_client
        self.events = EventEmitter(self)
        self._streams: dict[int, _StreamBase] = {}
        # what an idle session does not use is made on first use (issue 10, memory)
        self._incoming_bidi: _Inbox[WebTransportStream | None] = _Inbox()
        self._incoming_uni: _Inbox[WebTransportReceiveStream | None] = _Inbox()
        self._datagrams: deque[bytes] | None = None
        self._datagram_bytes = 0
        self._unacked: set[int] | None = None  # finished streams whose data is not acked
        self._datagram_waiter: asyncio.Future[bytes | None] | None = None
        self._datagram_handler: Callable[[bytes], object] | None = None
        self._stream_handler: Callable[[PeerStream], object] | None = None
        self._credit: asyncio.Event | None = None  # made by wait_credit, set by on_credit
        # a future per wait_closed() waiter before the end (an idle session has none),
        # resolved directly: a shielded shared one costs its waiter two loop iterations
        self._closed: list[asyncio.Future[SessionClosed]] | None = None
        #: told first when the session ends (the server's bookkeeping: one shared method,
        #: not a handler per session on ``events``)
        self._on_end: Callable[[WebTransportSession], None] | None = None
        self.close_info: SessionClosed | None = None
        self.draining = False
        self._closing = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_dropped = 0
        self.streams_opened = 0
        self.streams_accepted = 0

    def __repr__(self) -> str:
        return (
            f"<WebTransportSession id={self.session_id} path={self.path!r} "
            f"draft={self.draft} state={self.state}>"
        )

    # -- state --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.close_info is not None:
            return "closed"
        if self._closing:
            return "closing"
        return "draining" if self.draining else "connected"

    @property
    def is_closed(self) -> bool:
        return self.close_info is not None

    @property
    def link(self) -> WtLink:
        """The connection this session runs on (its streams talk to it)."""
        return self._link

    @property
    def open_streams(self) -> int:
        """Streams of this session that are not finished yet."""
        return len(self._streams)

    def check_usable(self) -> None:
        """Raise SessionClosed / ConnectionFailed unless streams and datagrams can be
        sent on this session."""
        info = self.close_info
        if info is not None:
            raise info
        if self._closing:
            raise SessionClosed(0, "the session is closing")
        self._link.check_open()

    # -- streams ------------------------------------------------------------------------

    async def create_bidirectional_stream(self) -> WebTransportStream:
        """Open a bidirectional stream (waits while a stream limit forbids it)."""
        # _open()'s first pass inline: no coroutine of its own when nothing forbids it
        self.check_usable()
        link = self._link
        try:
            sid = link.open_stream(self.session_id, True)
        except (ProtocolApiError, StreamLimitReached):  # a limit (waits) or an error:
            sid = await self._open(True)  # _open() asks again and deals with it
        else:
            link.flush()
            self.streams_opened += 1
        stream = WebTransportStream(self, sid)
        self._streams[sid] = stream  # _adopt(), inline
        link.add_stream(stream)
        return stream

    async def create_unidirectional_stream(self) -> WebTransportSendStream:
        """Open a unidirectional stream (waits while a stream limit forbids it)."""
        sid = await self._open(False)
        stream = WebTransportSendStream(self, sid)
        self._adopt(stream)
        return stream

    async def _open(self, bidirectional: bool) -> int:
        link = self._link
        while True:
            self.check_usable()
            try:
                sid = link.open_stream(self.session_id, bidirectional)
            except FlowControlBlocked:
                link.flush()  # WT_STREAMS_BLOCKED (draft-16 §5.6.3)
                await self.wait_credit()
                continue
            except StreamLimitReached:
                link.flush()  # STREAMS_BLOCKED (RFC 9000 §4.6)
                await link.wait_progress()
                continue
            except ProtocolApiError as exc:
                self.check_usable()
                raise WebTransportError(str(exc)) from exc
            link.flush()
            self.streams_opened += 1
            return sid

    def _adopt(self, stream: _StreamBase) -> None:
        self._streams[stream.stream_id] = stream
        self._link.add_stream(stream)

    def stream_ended(self, stream_id: int) -> None:
        """A stream of this session finished (both halves): it leaves the table (and
        is remembered by :meth:`wait_flushed` while its data is not acknowledged)."""
        self._streams.pop(stream_id, None)
        link = self._link
        if link.send_buffered(stream_id):
            unacked = self._unacked
            if unacked is None:
                unacked = self._unacked = set()
            elif len(unacked) >= _UNACKED_PRUNE:
                unacked.difference_update([s for s in unacked if not link.send_buffered(s)])
            unacked.add(stream_id)

    async def wait_credit(self) -> None:
        """Wait for a FlowCreditAvailable (or any progress) of this session."""
        event = self._credit = asyncio.Event()  # only credit from now on counts
        credit = asyncio.ensure_future(event.wait())
        progress = asyncio.ensure_future(self._link.wait_progress())
        try:
            await asyncio.wait({credit, progress}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            credit.cancel()
            progress.cancel()
        self.check_usable()

    async def incoming_bidirectional_streams(self) -> AsyncIterator[WebTransportStream]:
        """Bidirectional streams opened by the peer, until the session ends."""
        while (stream := await self._incoming_bidi.get()) is not None:
            yield stream
        self._incoming_bidi.put_nowait(None)  # later iterators end too

    async def incoming_unidirectional_streams(self) -> AsyncIterator[WebTransportReceiveStream]:
        """Unidirectional streams opened by the peer, until the session ends."""
        while (stream := await self._incoming_uni.get()) is not None:
            yield stream
        self._incoming_uni.put_nowait(None)

    def set_stream_handler(self, handler: Callable[[PeerStream], object] | None) -> None:
        """Have ``handler(stream)`` take each stream the peer opens (a
        :class:`WebTransportStream`, or a :class:`WebTransportReceiveStream` for a
        unidirectional one) instead of the incoming iterators and ``accept_*`` (None:
        they are queued for those again); streams already waiting are handed to it
        first, here (bidirectional ones, then unidirectional ones). It runs inside the
        event loop callback that read the stream's opening, so it must not block; the
        bytes that came with the opening are readable right after it returns. A task it
        starts (``asyncio.ensure_future(echo(stream))``) runs before that read's
        transmit (asyncio's loops): what the task writes without waiting leaves with the
        ACK of the request, one loop iteration sooner than through the iterator. No
        backlog applies (``stream_backlog`` bounds only queued streams). An exception it
        raises is logged and the stream is aborted (STOP_SENDING, and RESET_STREAM on a
        bidirectional one, code 0)."""
        self._stream_handler = handler
        if handler is None:
            return
        for waiting in (*self._incoming_bidi.take_waiting(), *self._incoming_uni.take_waiting()):
            if waiting is not None:  # (take_waiting stops at the end marker)
                self._hand_stream(handler, waiting)

    def _hand_stream(self, handler: Callable[[PeerStream], object], stream: PeerStream) -> None:
        try:
            handler(stream)
        except Exception:
            if isinstance(stream, WebTransportStream):
                stream.reset(0)
            stream.stop_receiving(0)
            raise  # the link logs it

    async def accept_bidirectional_stream(self) -> WebTransportStream:
        """The next bidirectional stream of the peer; SessionClosed at the end."""
        stream = await self._incoming_bidi.get()
        if stream is None:
            self._incoming_bidi.put_nowait(None)
            raise self.close_info or SessionClosed(0, "session closed")
        return stream

    async def accept_unidirectional_stream(self) -> WebTransportReceiveStream:
        """The next unidirectional stream of the peer; SessionClosed at the end."""
        stream = await self._incoming_uni.get()
        if stream is None:
            self._incoming_uni.put_nowait(None)
            raise self.close_info or SessionClosed(0, "session closed")
        return stream

    # -- datagrams ----------------------------------------------------------------------

    @property
    def max_datagram_size(self) -> int:
        """Largest datagram payload that fits one QUIC packet now (0: none).

        It follows the path MTU (docs/datagrams.md): it grows once path MTU discovery
        has proved a larger packet size and drops back when the path shrinks (a black
        hole, a migration). Read it when sizing each datagram; a datagram accepted
        by :meth:`send_datagram` but still queued when the size drops is discarded and
        counted (``diagnostics()["datagrams_dropped_too_large"]``)."""
        return max_h3_datagram_payload(self._link.max_datagram_payload, self.session_id)

    def send_datagram(self, data: bytes | bytearray | memoryview) -> DatagramSent:
        """Send an unreliable datagram; DatagramTooLarge if it cannot fit a packet."""
        if self.close_info is not None or self._closing:  # check_usable(), inline
            self.check_usable()  # raises
        try:
            # the link checks that the connection is open (ConnectionFailed), the layers
            # below the size (QUIC: it must fit one packet, ValueError)
            self._link.send_datagram(self.session_id, data)
        except ValueError as exc:
            raise DatagramTooLarge(len(data), self.max_datagram_size) from exc
        except ProtocolApiError as exc:
            self.check_usable()
            raise WebTransportError(str(exc)) from exc
        self.datagrams_sent += 1
        return _SENT

    def set_datagram_handler(self, handler: Callable[[bytes], object] | None) -> None:
        """Have ``handler(data)`` take each datagram as it arrives instead of
        :meth:`receive_datagram` (None: they are queued for it again); those already
        queued are handed to it first, here. It runs inside the event loop callback
        that read the datagram, so it must not block; what it sends leaves without
        waiting for another loop iteration (asyncio's loops: the reply to a datagram
        goes with its ACK, no task is woken). An exception it raises is logged; the
        datagram is gone."""
        self._datagram_handler = handler
        queue = self._datagrams
        while handler is not None and queue:
            data = queue.popleft()
            self._datagram_bytes -= len(data)
            handler(data)

    async def receive_datagram(self, timeout: float | None = None) -> bytes:
        """The next datagram; SessionClosed once the session ended, TimeoutError."""
        if timeout is not None:  # else no timeout scope to enter and leave per datagram
            async with asyncio.timeout(timeout):
                return await self.receive_datagram()
        while not self._datagrams:  # one coroutine per datagram, no helper's
            if self.close_info is not None:
                raise self.close_info
            waiter: asyncio.Future[bytes | None] = self._link.loop.create_future()
            self._datagram_waiter = waiter
            try:
                handed = await waiter  # the datagram itself (on_datagram), or None
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._hand_back(waiter.result())  # cancelled after it came: kept
                raise
            finally:
                self._datagram_waiter = None
            if handed is not None:
                return handed
        queue = self._datagrams
        data = queue.popleft()
        self._datagram_bytes -= len(data)
        return data

    def _hand_back(self, data: bytes | None) -> None:
        """A datagram handed to a :meth:`receive_datagram` cancelled before it returned
        it: first in the queue, as if it had been queued (``on_datagram``)."""
        if data is None:
            return
        queue = self._datagrams
        if queue is None:
            queue = self._datagrams = deque()
        queue.appendleft(data)
        self._datagram_bytes += len(data)

    # -- closing ------------------------------------------------------------------------

    async def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close the session with WT_CLOSE_SESSION (code, reason) and wait until it
        was acknowledged (a few seconds at most)."""
        if self.close_info is not None or self._closing:
            await self.wait_closed()
            return
        link = self._link
        self._closing = True
        if not link.is_closed:
            link.close_session(self.session_id, error_code, reason)  # routes SessionClosed
        if self.close_info is None:
            self.on_closed(error_code, reason, False, None)
        await link.wait_stream_flushed(self.session_id, _CLOSE_FLUSH_TIMEOUT)

    async def drain(self) -> bool:
        """Ask the peer to wind the session down (WT_DRAIN_SESSION, draft-16 §4.6);
        False when the draft has no such capsule or the session is over."""
        if self.close_info is not None:
            return False
        try:
            return self._link.drain_session(self.session_id)
        except ProtocolApiError:
            return False

    async def wait_closed(self) -> SessionClosed:
        """Wait until the session ended; returns why (code, reason, by_peer)."""
        info = self.close_info
        if info is not None:
            return info
        waiter: asyncio.Future[SessionClosed] = self._link.loop.create_future()
        waiters = self._closed
        if waiters is None:
            self._closed = [waiter]
        else:  # cancelled waiters leave (a loop of timed waits keeps the list short)
            waiters[:] = [other for other in waiters if not other.done()]
            waiters.append(waiter)
        return await waiter  # cancelling it cancels this waiter only

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        """A TLS exporter value bound to this session (draft-16 §4.8)."""
        self.check_usable()
        return self._link.export_keying_material(self.session_id, label, context, length)

    async def wait_flushed(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) until what was written on this session's streams
        was acknowledged by the peer."""
        stream_ids = [*(self._unacked or ()), *self._streams]
        try:
            async with asyncio.timeout(timeout):
                for stream_id in stream_ids:
                    await self._link.wait_stream_flushed(stream_id, timeout)
        except TimeoutError:
            pass
        left = self._unacked
        if left:
            left.difference_update([s for s in left if not self._link.send_buffered(s)])

    async def __aenter__(self) -> WebTransportSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- diagnostics --------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """Negotiated parameters and counters of this session and its connection."""
        info = self.close_info
        return {
            "session_id": self.session_id,
            "draft": self.draft,
            "state": self.state,
            "path": self.path,
            "protocol": self.protocol,
            "is_client": self.is_client,
            "streams_open": len(self._streams),
            "streams_opened": self.streams_opened,
            "streams_accepted": self.streams_accepted,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "datagrams_sent": self.datagrams_sent,
            "datagrams_received": self.datagrams_received,
            "datagrams_dropped": self.datagrams_dropped,
            "max_datagram_size": self.max_datagram_size,
            "flow_control": self._link.flow_control,
            **self._link.connection_info(),
            "close_code": None if info is None else info.code,
            "close_reason": None if info is None else info.reason,
        }

    # -- fed by the link (SessionEndpoint) ----------------------------------------------

    def on_stream_opened(self, stream_id: int, bidirectional: bool) -> None:
        """The peer opened a stream: to the stream handler, else queued; beyond
        ``stream_backlog`` queued ones it is refused."""
        handler = self._stream_handler
        if (
            handler is None
            and self._incoming_bidi.qsize() + self._incoming_uni.qsize()
            >= self._link.stream_backlog
        ):
            self._link.refuse_stream(stream_id)  # draft-16 §4.7
            return
        stream: PeerStream
        self.streams_accepted += 1
        if bidirectional:
            stream = WebTransportStream(self, stream_id)
            self._streams[stream_id] = stream  # _adopt(), inline: per peer stream
            self._link.add_stream(stream)
            if handler is None:
                self._incoming_bidi.put_nowait(stream)
        else:
            stream = WebTransportReceiveStream(self, stream_id)
            self._adopt(stream)
            if handler is None:
                self._incoming_uni.put_nowait(stream)
        if handler is not None:
            self._hand_stream(handler, stream)
        if self.events.listens(_STREAM):  # no Event built for nobody: once per stream
            self.events.emit(_STREAM, stream)

    def on_datagram(self, data: bytes) -> None:
        """A datagram arrived: to the datagram handler, else to a waiting
        :meth:`receive_datagram` itself (nothing is queued then), else queued; the
        oldest queued ones go beyond the count/byte limits."""
        self.datagrams_received += 1
        handler = self._datagram_handler
        if handler is not None:  # set_datagram_handler: taken, not queued
            handler(data)  # raises: the link logs it (and keeps going)
            events = self.events
            if events.handlers.get(_DATAGRAM):  # listens(), inline: per datagram
                events.emit(_DATAGRAM, data)
            return
        waiter = self._datagram_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(data)  # a ping-pong's every datagram: no queue
        else:
            queue = self._datagrams
            if queue is None:
                queue = self._datagrams = deque()
            queue.append(data)
            self._datagram_bytes += len(data)
            link = self._link
            while len(queue) > link.datagram_queue or (
                self._datagram_bytes > link.datagram_queue_bytes and len(queue) > 1
            ):
                self._datagram_bytes -= len(queue.popleft())
                self.datagrams_dropped += 1
        events = self.events
        if events.handlers.get(_DATAGRAM):  # listens(), inline: no Event nobody listens to
            events.emit(_DATAGRAM, data)

    def on_credit(self) -> None:
        credit = self._credit
        if credit is not None:
            credit.set()

    def on_draining(self) -> None:
        if not self.draining:
            self.draining = True
            self.events.emit(EventType.DRAINING, None)

    def on_closed(self, code: int, reason: str, by_peer: bool, http_code: int | None) -> None:
        if self.close_info is not None:
            return
        info = self.close_info = SessionClosed(code, reason, by_peer=by_peer, http_code=http_code)
        for stream in list(self._streams.values()):
            stream.on_failed(info)
            self._link.remove_stream(stream.stream_id)
        self._streams.clear()
        self._incoming_bidi.put_nowait(None)
        self._incoming_uni.put_nowait(None)
        waiter = self._datagram_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.on_credit()
        waiters, self._closed = self._closed, None  # later waiters: close_info
        if waiters is not None:
            for closed in waiters:
                if not closed.done():
                    closed.set_result(info)
        on_end = self._on_end
        if on_end is not None:
            self._on_end = None
            on_end(self)
        with contextlib.suppress(Exception):
            self.events.emit(EventType.CLOSED, info)
