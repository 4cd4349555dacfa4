"""The probe's connection: our own HTTP/3 or WebTransport core, with raw access.

Theory of operation
-------------------
A :class:`ProbeConnection` is one QUIC connection opened with :func:`quic.aio.connect`;
its ``session_setup`` hook installs :meth:`ProbeConnection._on_quic_event` as the
:class:`~quic.aio.QuicSession`'s event listener, which sees every QUIC event first:

* raw taps, before any layer interprets the event: the bytes of server-initiated
  unidirectional streams go to a :class:`~pywebtransport.probe.wire.ControlStreamSniffer`
  (the server's SETTINGS as sent); the end of each *watched* stream (FIN, RESET_STREAM,
  STOP_SENDING with its code) is recorded; ``ConnectionTerminated`` is kept;
* then the event goes to the layer of the connection's *mode*: ``"wt"`` feeds our
  Sans-I/O :class:`~pywebtransport.protocol.WebTransportConnection` (sessions, streams,
  datagrams), ``"h3"`` feeds a bare :class:`~h3.connection.H3Connection`, for
  requests the WebTransport core would never send (a CONNECT without ``:protocol``,
  more sessions than the server allows).

Output of the layers is drained into :class:`Observed` records: stream bytes per
stream (consumed at once, so flow-control credit returns, unless the stream is *held*
by a check that wants to see the server stop at our window), and the other events in
a bounded deque. Checks wait with :meth:`ProbeConnection.wait_until`, which wakes on
every event and gives up at the deadline the check set.

Injection goes through public names only: ``QuicConnection.send_stream_data`` on our
control stream (``H3Connection.control.control_id``), on a CONNECT stream, or on a new
stream (``QuicConnection.create_stream``), then :meth:`flush`.

Bounded: the event deque (``max_events``), the bytes captured per stream
(``capture_bytes``; beyond it only counted), the number of streams recorded
(``max_streams``; the server's streams beyond it are refused with
H3_REQUEST_CANCELLED), the sniffer (:data:`~pywebtransport.probe.wire.MAX_SETTINGS_BYTES`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from h3 import events as he
from h3.connection import H3Connection
from h3.errors import H3ErrorCode
from pywebtransport.config import ClientConfig
from pywebtransport.probe.wire import ControlStreamSniffer
from pywebtransport.protocol import WebTransportConnection, WebTransportError
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.connection import h3_configuration
from quic import events as qe
from quic.aio import QuicSession
from quic.aio import connect as quic_connect
from quic.connection import QuicConnection

__all__ = ["Mode", "ProbeConnection", "ProbeLimits", "StreamRecord", "open_probe_connection"]

Mode = Literal["wt", "h3"]


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """What one probe connection keeps, whatever the server sends."""

    max_events: int = 256
    capture_bytes: int = 256 * 1024
    max_streams: int = 64


@dataclass(slots=True)
class StreamRecord:
    """Stream bytes received on one stream (WT payload or HTTP/3 DATA)."""

    received: int = 0
    unconsumed: int = 0
    data: bytearray = field(default_factory=bytearray)
    fin: bool = False
    reset: int | None = None
    opened_by_peer: bool = False
    bidirectional: bool = True


class ProbeConnection:
    """One probe connection (see the module docstring)."""

    def __init__(
        self, session: QuicSession, mode: Mode, client: ClientConfig, limits: ProbeLimits
    ) -> None:
        self.session = session
        self.quic: QuicConnection = session.connection
        self.mode = mode
        self.limits = limits
        self.wt: WebTransportConnection | None = None
        if mode == "wt":
            self.wt = WebTransportConnection(self.quic, client.webtransport_configuration())
            self.h3 = self.wt.h3
        else:
            config = h3_configuration(client.webtransport_configuration(), is_client=True)
            self.h3 = H3Connection(self.quic, config)
        self.sniffer = ControlStreamSniffer()
        self.terminated: qe.ConnectionTerminated | None = None
        #: watched stream -> how the server ended it ("fin", "reset", "stop") and code
        self.ends: dict[int, tuple[str, int | None]] = {}
        self.watched: set[int] = set()
        self.answered: set[int] = set()  # watched streams the server sent data on
        self.streams: dict[int, StreamRecord] = {}
        self.held: set[int] = set()  # streams whose bytes are not consumed (credit kept)
        self.events: deque[object] = deque(maxlen=limits.max_events)
        self.dropped_events = 0
        self._changed = asyncio.Event()
        self._done = False  # our own close at the end is not recorded as the outcome
        session.event_listener = self._on_quic_event

    # -- driving ---------------------------------------------------------------------

    def flush(self) -> None:
        self.session.schedule_flush()

    @property
    def closed(self) -> bool:
        return self.terminated is not None

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        return True

    async def settle(self, seconds: float) -> None:
        """Let ``seconds`` pass with the connection pumping."""
        await asyncio.sleep(seconds)

    def find(self, predicate: Callable[[object], bool]) -> object | None:
        return next((e for e in self.events if predicate(e)), None)

    def watch(self, stream_id: int) -> None:
        self.watched.add(stream_id)

    def release(self, stream_id: int) -> None:
        """Stop holding ``stream_id``: consume what it holds (its credit goes back)."""
        self.held.discard(stream_id)
        record = self.streams.get(stream_id)
        if record is not None and record.unconsumed:
            self._consume(stream_id, record.unconsumed)
            record.unconsumed = 0
        self.flush()

    def inject(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Write raw bytes on ``stream_id`` (public QUIC API) and transmit."""
        self.quic.send_stream_data(stream_id, data, end_stream)
        self.flush()

    def new_uni_stream(self) -> int:
        return self.quic.create_stream(bidirectional=False)

    def close(self, code: int = H3ErrorCode.H3_NO_ERROR) -> None:
        """Close (the probe is done with it); what happened before stays recorded."""
        self._done = True
        if not self.closed:
            with contextlib.suppress(Exception):
                self.session.close(code, "probe done")

    # -- the listener ------------------------------------------------------------------

    def _on_quic_event(self, event: qe.QuicEvent) -> bool:
        self._tap(event)
        if self.wt is not None:
            self.wt.handle_event(event)
            while (wt_event := self.wt.next_event()) is not None:
                self._on_wt_event(wt_event)
        else:
            self.h3.handle_event(event)
            while (h3_event := self.h3.next_event()) is not None:
                self._on_h3_event(h3_event)
        self.flush()
        self._changed.set()
        return not isinstance(event, (qe.HandshakeCompleted, qe.ConnectionTerminated))

    def _tap(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.StreamDataReceived):
            sid = event.stream_id
            if sid % 4 == 3 and not self.sniffer.done:  # server unidirectional (§6.2)
                self.sniffer.feed(sid, event.data)
            if sid in self.watched:
                if event.data:
                    self.answered.add(sid)
                if event.end_stream:
                    self.ends.setdefault(sid, ("fin", None))
        elif isinstance(event, qe.StreamReset):
            if event.stream_id in self.watched:
                self.ends[event.stream_id] = ("reset", event.error_code)
        elif isinstance(event, qe.StopSendingReceived):
            if event.stream_id in self.watched:
                self.ends.setdefault(event.stream_id, ("stop", event.error_code))
        elif isinstance(event, qe.ConnectionTerminated) and not self._done:
            self.terminated = event

    def _record(self, stream_id: int) -> StreamRecord | None:
        record = self.streams.get(stream_id)
        if record is None and len(self.streams) < self.limits.max_streams:
            record = self.streams[stream_id] = StreamRecord()
        return record

    def _on_data(self, stream_id: int, data: bytes, fin: bool) -> None:
        record = self._record(stream_id)
        if record is None:  # beyond our table: read and dropped, credit returned
            self._consume(stream_id, len(data))
            return
        record.received += len(data)
        room = self.limits.capture_bytes - len(record.data)
        if room > 0:
            record.data += data[:room]
        record.fin = record.fin or fin
        if stream_id in self.held:
            record.unconsumed += len(data)
        else:
            self._consume(stream_id, len(data))

    def _consume(self, stream_id: int, nbytes: int) -> None:
        if self.wt is not None:
            self.wt.consume_stream_data(stream_id, nbytes)
        else:
            self.h3.consume_data(stream_id, nbytes)

    def _event(self, event: object) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped_events += 1
        self.events.append(event)

    def _on_wt_event(self, event: ev.WebTransportEvent) -> None:
        if isinstance(event, ev.StreamData):
            self._on_data(event.stream_id, event.data, event.fin)
        elif isinstance(event, ev.StreamOpened):
            record = self._record(event.stream_id)
            if record is None:  # beyond our table: refused (and its bytes dropped)
                assert self.wt is not None
                with contextlib.suppress(WebTransportError):
                    self.wt.abandon_stream(event.stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
                return
            record.opened_by_peer = True
            record.bidirectional = event.bidirectional
            self._event(event)
        elif isinstance(event, ev.StreamReset):
            record = self.streams.get(event.stream_id)
            if record is not None:
                record.reset = event.http_code
        else:
            self._event(event)

    def _on_h3_event(self, event: he.H3Event) -> None:
        if isinstance(event, he.DataReceived):
            self._on_data(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, he.WebTransportStreamDataReceived):
            self.h3.consume_data(event.stream_id, len(event.data))  # not ours to read
        else:
            self._event(event)


@contextlib.asynccontextmanager
async def open_probe_connection(
    host: str,
    port: int,
    client: ClientConfig,
    mode: Mode,
    limits: ProbeLimits | None = None,
) -> AsyncIterator[ProbeConnection]:
    """Connect (QUIC handshake within ``client.connect_timeout``) and yield the
    connection; it is closed on exit."""
    qconfig = client.quic_configuration(server_name=host)
    made: list[ProbeConnection] = []

    def setup(session: QuicSession) -> None:
        made.append(ProbeConnection(session, mode, client, limits or ProbeLimits()))

    stack = contextlib.AsyncExitStack()
    async with stack:
        async with asyncio.timeout(client.connect_timeout):
            await stack.enter_async_context(quic_connect(host, port, qconfig, session_setup=setup))
        conn = made[0]
        try:
            yield conn
        finally:
            conn.close()
