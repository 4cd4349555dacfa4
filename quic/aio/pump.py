"""The pump: one UDP socket ⇄ one Sans-I/O :class:`~quic.endpoint.QuicEndpoint`.

Theory of operation
-------------------
::

    datagram(s) received → endpoint.receive_datagram(data, addr, clock())
                         → drain events to sessions → send → re-arm one timer

Draining merges neighbouring :class:`~quic.events.StreamDataReceived` events of one
stream (:func:`quic.aio.merge.merge_stream_events`): a burst of packets read in one
batch reaches the layers above as one event, so their per-event work (HTTP/3,
WebTransport, the stream reader's wake-up) is paid per batch, not per packet. The
merged bytes are at most what the stream's advertised window let in, and credit still
returns on consumption.

Every datagram of a burst is fed before anything is transmitted. With the batched
reader (:func:`quic.aio.udp.take_over_reading` on asyncio's selector loop; on uvloop and
other loops the socket is our own, :mod:`quic.aio.owned`) up to ``RECEIVE_BATCH``
waiting datagrams are read per wake-up; their events are handed up at once and the
transmit follows at the flush (``call_soon``), after the tasks they woke: a reply leaves
with the ACK of what triggered it. With the fallback (the loop's transport calls
``datagram_received``: once per loop iteration on asyncio) the flush goes round the
loop again while full-sized datagrams keep arriving, up to ``RECEIVE_BATCH`` of them;
small ones (ACKs, ping-pong) do not delay it. The events of full-sized datagrams wait
for that flush too, so the fallback also hands a burst up as one merged event per
stream; those of small ones are handed up at once (a reply leaves with the ACK).

Replies made at once: when a read batch's events woke no task and left nothing else to
run (the application answered in its callback, or not at all), the transmit follows at
once: the flush would run first in the next iteration, nothing would join it. On
asyncio's own loops, whose ready queue the pump sees (:func:`quic.aio.udp.ready_queue`).
On uvloop: at once when the batch's events, all datagrams, woke a connection in their
callbacks (an echo), without the flush's loop iteration (no flush at all if
:meth:`transmit_now` sent it); tasks' output, and any with other events, at the flush.
The task of a session accepted in the batch (``on_session``'s coroutine) is started only
after that transmit: its handshake is not complete, so it has nothing to add to the
server's flight, which leaves without waiting for a loop iteration and the task's first
step (a client's handshake waits on that flight). A datagram a task sends after a read
(:meth:`wake` with ``reply``: WebTransport's ``send_datagram``) leaves at once, with
the read's ACK, before the task's next await, when it is the first since the read and
the read's flush is queued; the flush then finds nothing left unless something came
since (a wake, a read, an event: it transmits as before). Later ones wait for the flush
(a burst leaves together); no event is handed up there (an application's call).
A flush asked for while a read batch's events are handed up (:meth:`schedule_flush`;
WebTransport's, per stream event) is left to the read's end, after the tasks that all
of the batch's events woke: queued there, it sent the later ones' due ACKs alone.

Wake storms: when the application acts on many connections in one go — 1,000
client sessions each opening a stream at once, tasks woken together — every write
wakes the pump, which transmits at the flush, after all of them ran: the first
datagram would wait for the last task (150 ms for 1,000 echo tasks, while the peer
sits idle). So once more than ``WAKE_BATCH`` connections were woken since the last
transmit, the ones woken so far leave at once (:meth:`QuicEndpoint.marked_datagrams_to_send`
with ``only``), all but the latest, whose task may still be adding to what it wrote
(a FIN after the data); no event is handed up there (it runs inside the application's
call) and the flush still follows for the rest. A server's read batch (at most
``RECEIVE_BATCH`` connections) and a single busy connection never reach it: their
replies still leave with the ACKs of what triggered them.

Bulk transfers: a read wake-up may feed ~1,400 datagrams of one connection
(``RECEIVE_BATCH`` GRO reads of up to ~45 each); their ACKs would leave only at its end,
and the sender, its send buffer full of unacknowledged data, would wait that long. So
every ``ACK_WITHIN_BATCH`` GRO datagrams of a wake-up (:mod:`quic.aio.glued`), the
connections fed long runs (:meth:`QuicEndpoint.take_busy`: their ACKs are due) are
served before it reads on. A wake-up ends at such a mark instead when no connection was
fed a long run (a peer's shared socket glued many connections' requests: 1,000 sessions
at once) or once it is ``LATE_ACKS`` old: its events are handed up, the tasks they woke
answer, their replies leave at the flush with the ACKs, and the next wake-up reads on.
On the sending side, a transmit whose build stopped at its datagram cap
(:attr:`QuicEndpoint.has_pending_output`) schedules another flush, so the rest leaves
after the socket was read again rather than when the next ACK or write arrives.
Measured on loopback (raw QUIC, 200 MB, alternating, quiet machine): 101-140 MB/s
without either, 118-186 with both.

Idle time makes the ephemeral keys of the next handshakes (:mod:`quic.aio.ahead`).

One loop timer serves the endpoint's earliest deadline. It is re-created only when that
deadline moves earlier: a later deadline (the loss-detection timer moves on with every
packet sent) keeps the armed timer, which fires early, finds nothing due and re-arms —
one timer per deadline passed instead of a cancel and a new timer per transmit.
A timer that fires with a datagram waiting (:func:`quic.aio.udp.has_input`) reads it
first and is handled at the next step, after the tasks and flush the read queued (once
per firing, ``timer_reads``): no PTO probe for what an ACK waiting there answers.

The clock (:attr:`QuicEndpointProtocol.clock`): every ``now`` handed to the endpoint
comes from it: ``time.monotonic``, or an asyncio loop's ``time()`` where it is not asyncio's.
uvloop's ``loop.time()`` is libuv's cached millisecond clock (loopback RTT samples of 0
or 1 ms, pacer credit once per tick), and uvloop runs a timer due in under half a
millisecond at once: a pacing deadline fired early, found nothing due and re-armed until
the tick (100 to 1,400 timer wake-ups per 200 MB download of the server, 70 on
asyncio). There a timer due within :data:`COARSE_TIMER` is armed that far ahead, up to
a millisecond late, which the pacer's burst allowance absorbs (:mod:`quic.pacing`); one
already due runs at once. Timers go through ``call_later`` with this clock's delay.

Counters (for tests and benchmarks): ``read_wakeups``, ``datagrams_read``, ``transmits``,
``events_coalesced``, ``events_dispatched``, ``datagrams_sent``, ``timer_rearms``, ``timer_fires``,
``timer_datagrams``; ``socket_buffers`` is what the kernel granted of ``SOCKET_BUFFER``.

Only connections that have something to do are touched: the endpoint keeps the set of
connections with pending output (a session calls :meth:`QuicEndpointProtocol.wake` after
the application acts on its connection) and a heap of deadlines; after a transmit only
the sessions of the connections just flushed (:attr:`QuicEndpoint.last_flushed`) are
told (:meth:`QuicSession._after_flush`), and a session leaves :attr:`sessions` with its
connection's :class:`~quic.endpoint.ConnectionRemoved` event.

Client migration (RFC 9000 §9.2): :meth:`QuicEndpointProtocol.rebind` moves the pump
to a new UDP socket and closes the old one (:mod:`quic.aio.rebind`); the endpoint and
its connections stay.

A server with a preferred address (RFC 9000 §9.6) listens on a second socket
(:meth:`QuicEndpointProtocol.add_socket`) that feeds the same endpoint, telling it
which local address each datagram came to (``local``: 0 the main socket, 1 and up the
added ones); the connection decides which local address each of its datagrams
leaves from (§9.6.2: probes from the preferred address at once, everything else only
once the client sent a non-probing packet there and the path is validated), and the
pump sends it from that socket (:meth:`QuicEndpoint.routed_datagrams_to_send`). The
pump keeps no table per peer address: what a path needs lives in its connection,
bounded by ``max_known_paths``.

ECN and Don't Fragment (:func:`quic.aio.udp.configure_path_options`): when the socket
supports them, the batched reader feeds each datagram's ECN field to the endpoint and
the transmit sets each datagram's codepoint (:meth:`QuicEndpoint.
marked_datagrams_to_send`, :mod:`quic.aio.marked`); a marked datagram that
cannot go out that way (buffer full, an error) is handed to the transport unmarked.
With the fallback reader no ECN field is read (every datagram counts as Not-ECT).

UDP segmentation offload (:mod:`quic.aio.offload`, Linux): a transmit's runs of
equal-size datagrams to one peer leave in one ``sendmsg`` each (GSO), and, once our own
reader has taken the socket over, the kernel may glue received datagrams of one sender
(GRO), which the reader cuts apart before feeding them. Either falls back to one
datagram per system call where the kernel or the route refuses.

Workers on one port (:mod:`quic.aio.workers`): what the endpoint's worker routing
queued for another worker leaves at each transmit through :attr:`QuicEndpointProtocol.
forward`; datagrams forwarded to this worker come in through :meth:`feed_forwarded`.

ICMP hints (client pumps, ``icmp_hints=True``; Linux; :mod:`quic.aio.icmp`): an
unreachable for the address of a client connection that never heard from its peer ends
it at once; any other ICMP error is only counted (:attr:`icmp_errors`).

No exception escapes an asyncio callback: the endpoint never raises, each event is
handed to its session under a guard (a failing application callback closes that
connection with INTERNAL_ERROR and the batch goes on), and sending goes on datagram by
datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quic.aio.ahead import after_transmit
from quic.aio.glued import receive_glued
from quic.aio.icmp import read_errors
from quic.aio.marked import send_marked_out
from quic.aio.merge import Item, merge_stream_events
from quic.aio.mtu import InterfaceMtu
from quic.aio.offload import enable_gro, gso_available
from quic.aio.rebind import rebind
from quic.aio.routed import send_routed
from quic.aio.session import ConnectionClosed, QuicSession
from quic.aio.udp import (
    RECEIVE_BATCH,
    PathOptions,
    configure_path_options,
    ecn_messages,
    enable_error_queue,
    enlarge_buffers,
    has_input,
    raw_socket,
    read_batch,
    read_batch_ecn,
    ready_queue,
    send_plain,
    soon_caller,
    take_over_reading,
)
from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.endpoint import ConnectionAccepted, ConnectionRemoved, QuicEndpoint
from quic.errors import StreamResetError
from quic.events import DatagramReceived, HandshakeCompleted, StreamDataReceived

__all__ = ["QuicEndpointProtocol"]

logger = logging.getLogger("quic")


def _nothing_buffered() -> int:
    """A transport without ``get_write_buffer_size``: it queues nothing we can see."""
    return 0


#: More connections woken than this before a flush: those woken so far leave at once
#: (see "Wake storms"); one read batch's worth, so a server's replies are not split.
WAKE_BATCH = RECEIVE_BATCH
#: Only full-sized datagrams (bulk data, Initial flights) hold the transmit back; small
#: ones (ACKs, ping-pong) are answered in the same loop iteration, without extra latency.
_FULL_DATAGRAM = 1200
_BASE_TIME = asyncio.BaseEventLoop.time  # time.monotonic(), read without this call
#: Shortest timer delay on a loop other than asyncio's own (see "The clock"): uvloop
#: rounds delays to whole milliseconds and runs those under half of one at once.
COARSE_TIMER = 0.001
#: ICMP errors that say nobody can be reached at an address (see "ICMP hints").


class QuicEndpointProtocol(asyncio.DatagramProtocol):
    """The pump: UDP socket ⇄ Sans-I/O endpoint (see the module docstring)."""

    def __init__(
        self,
        endpoint: QuicEndpoint,
        on_session: Callable[[QuicSession], Any] | None = None,
        *,
        icmp_hints: bool = False,
    ) -> None:
        self.endpoint = endpoint
        loop = self.loop = asyncio.get_running_loop()
        own = isinstance(loop, asyncio.BaseEventLoop)  # "The clock" (module docstring):
        mono = not own or (type(loop).time is _BASE_TIME and "time" not in vars(loop))
        self.clock: Callable[[], float] = time.monotonic if mono else self.loop.time
        self._shortest_timer = 0.0 if own else COARSE_TIMER
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[QuicConnection, QuicSession] = {}
        self._on_session = on_session
        self._flush_scheduled = False
        #: connections the application woke since the last transmit (see "Wake storms")
        self._woken: dict[QuicConnection, None] = {}
        self._replied = -1  # datagrams_read when a reply last left at once (wake)
        self._reply_sent = False  # ... and the queued flush may find nothing left
        self._flush_soon = soon_caller(self.loop, self._flush)  # loop.call_soon(_flush)
        self._ready = ready_queue(self.loop)  # None: not asyncio's ("Replies made at once")
        self._reading = False  # handing a read batch's events up (_read_ready)
        self._flush_due = False  # ... and a flush was asked for meanwhile (schedule_flush)
        self._read_sock: socket.socket | None = None
        self._handshake_done = False  # a HandshakeCompleted was just handed up
        self._timer_read = False  # _on_timer read the socket first
        self._received = 0  # full-sized datagrams fed since the last transmit
        self._received_seen = 0  # ... as of the previous flush attempt
        self._read_at = 0.0  # when the batch being read was read (_read_ready)
        self._readers = (self.error_received, self._receive_glued)
        self._timer: asyncio.Handle | None = None  # a TimerHandle, or _on_timer's call_soon
        self._timer_at: float | None = None  # when it fires (at or before the deadline)
        self._glued = 0  # GRO datagrams fed since the wake-up or its last busy turn
        self.busy_turns = 0  # busy connections served mid-feed (see "Bulk transfers")
        self.reads_ended = 0  # wake-ups ended at a mark (quic.aio.glued)
        self.timer_rearms = 0  # loop timers created (see _arm_timer)
        # ... those fired, those that read the socket first, what they sent (probes, ACKs)
        self.timer_fires = self.timer_reads = self.timer_datagrams = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        #: the tasks of sessions a read batch accepted, started after its transmit
        self._accepted_runs: list[Awaitable[Any]] = []
        self.batched_reading = False  # True once take_over_reading succeeded
        self._sockets = 0  # transports open (two while moving to a new socket)
        self._on_switch: Callable[[], None] | None = None  # see rebind()
        self.extra_sockets: list[asyncio.DatagramTransport] = []  # see add_socket()
        self.path_options = PathOptions()  # ECN, Don't Fragment: what the socket allows
        self._raw: socket.socket | None = None  # for sendmsg: ECN marking, GSO
        self._family = 0  # the raw socket's address family
        self.interface_mtu = InterfaceMtu()  # MAX_PLPMTU per peer host (.tell)
        #: the ECN control messages of an IPv4 raw socket, per codepoint (ecn_messages)
        self._ecn_messages: tuple[list[tuple[int, int, bytes]], ...] | None = None
        #: the transport's get_write_buffer_size (what it still queues), looked up once
        self._buffered: Callable[[], int] = _nothing_buffered
        self._gso = False  # runs of datagrams in one sendmsg (quic.aio.offload)
        self.gro = False  # the kernel may glue received datagrams (split on reading)
        self.socket_buffers = (0, 0)  # SO_RCVBUF, SO_SNDBUF the kernel granted
        self._icmp_hints = icmp_hints  # a client pump: see "ICMP hints"
        self._errors: socket.socket | None = None  # the socket whose error queue we drain
        self.icmp_errors = 0  # errors taken off the error queue
        #: errno of the ICMP error that ended a connection before the peer answered
        self.unreachable = 0
        #: several client connections lease this socket (quic.aio.shared.SharedSockets)
        self.shared = False
        self.closed = self.loop.create_future()
        # counters (tests and benchmarks read them; see batching in the module docstring)
        self.read_wakeups = 0  # batched reader: times the socket was found readable
        self.datagrams_read = 0  # datagrams received, either reader (GRO: one per read)
        self.events_coalesced = 0  # stream events merged into a neighbour (quic.aio.merge)
        self.events_dispatched = 0  # events handed to sessions
        self.datagram_events = 0  # ... DatagramReceived events among them, or unheard
        self.transmits = 0  # transmit passes (each serves every connection with output)
        self.early_transmits = 0  # ... and sends before the flush (see "Wake storms")
        self.datagrams_sent = 0  # datagrams handed to the socket
        #: workers on one port (quic.aio.workers.Forwarder.send): takes what the
        #: endpoint's worker routing queued, at each transmit; None with one worker
        self.forward: Callable[[list[tuple[int, bytes]]], None] | None = None

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sockets += 1
        self.transport = transport  # type: ignore[assignment]  # a datagram transport
        switch, self._on_switch = self._on_switch, None
        if switch is not None:  # rebind(): from now on everything leaves the new socket
            try:
                switch()
            except Exception:
                logger.exception("QUIC socket switch failed")
        self.socket_buffers = enlarge_buffers(transport)
        raw = raw_socket(transport)
        self.path_options = configure_path_options(raw)
        self._gso = gso_available(raw)
        self._raw = raw if self.path_options.ecn or self._gso else None
        self._family = raw.family if raw is not None else 0  # the property is not free
        self.interface_mtu = InterfaceMtu(self._family)  # a new socket: asked again
        self._ecn_messages = ecn_messages(self._family)
        self._buffered = getattr(transport, "get_write_buffer_size", _nothing_buffered)
        self.gro = False
        # the transport registers its own reader right after this callback: replace it then
        self.loop.call_soon(self._take_over_reading, transport)

    def _take_over_reading(self, transport: asyncio.BaseTransport) -> None:
        self.batched_reading = take_over_reading(self.loop, transport, self._read_ready)
        if self.batched_reading and self._raw is not None:
            # only our recvmsg reader knows how to cut glued datagrams apart
            self.gro = enable_gro(self._raw)
        if self._icmp_hints and self.batched_reading:  # only our reader drains the queue
            raw = raw_socket(transport)
            self._errors = raw if enable_error_queue(raw) else None

    def _read_ready(self, sock: socket.socket) -> None:
        self.read_wakeups += 1
        self._read_sock = sock
        self._glued = 0
        try:
            self._read_at = now = self.clock()  # the batch's "now"
            if self._raw is not None:
                on_error, feed_many = self._readers  # bound once, not per wake-up
                # each datagram straight to the endpoint, with the batch's now and its
                # ECN field: no call of ours between, per datagram (issue 10)
                feed = self.endpoint.receive_datagram
                count = read_batch_ecn(sock, feed, on_error, feed_many=feed_many, now=now)
            else:
                count = read_batch(sock, self._receive_plain, self.error_received)
            self.datagrams_read += count
            if not count and self._errors is not None:
                # woken by a queued error whose report a send already took (EPOLLERR)
                self._read_errors()
        except Exception:
            logger.exception("QUIC receive failed")
        # Hand the batch's events up now and transmit at the flush: the tasks they wake
        # run first (they were scheduled first), so a reply leaves with the ACK of what
        # triggered it — one datagram each way per round trip, not a reply and an ACK.
        # Nothing woken, nothing else to run: now ("Replies made at once").
        self._reading = True  # wake() leaves the flush to the lines below
        woken, transmits = len(self._woken), self.transmits
        others = self.events_dispatched - self.datagram_events  # see "Replies made..."
        try:
            self._dispatch()
        finally:
            self._reading = False
        try:
            ready = self._ready
            if ready is not None and not ready:
                self._transmit()  # what the flush would do first in the next iteration
            elif (
                ready is None
                and len(self._woken) > woken
                and others == self.events_dispatched - self.datagram_events
            ):
                self._transmit()  # uvloop: datagrams' callbacks made output ("Replies ...")
            elif self._handshake_done:  # _flush_or_transmit(), inline: per wake-up
                self._flush_or_transmit()
            elif (
                ready is None
                and transmits != self.transmits
                and not self._woken
                and not self._flush_due
            ):
                pass  # uvloop: transmit_now() sent the callbacks' output and the ACKs
            elif not self._flush_scheduled:  # schedule_flush(), inline
                self._flush_scheduled = True
                self._flush_soon()
        finally:
            self._flush_due = False
            if self._accepted_runs:  # see "Replies made at once"
                self._start_accepted()

    def _receive_plain(self, data: bytes, addr: Any) -> None:
        """A datagram :meth:`_read_ready` read without its ECN field (a socket without
        recvmsg): to the endpoint, with the batch's time."""
        self.endpoint.receive_datagram(data, addr, self._read_at)

    # GRO reads, with the bulk turns of "Bulk transfers" (quic.aio.glued): no call more
    _receive_glued = receive_glued

    def _flush_or_transmit(self) -> None:
        """After events were handed up: transmit at the flush — or now when a handshake
        just completed, so its last flight (the client's Finished, RFC 9001 §4.1.2)
        leaves before application code runs (an application that closes at once would
        otherwise close before the handshake is complete on the peer's side)."""
        if self._handshake_done:
            self._handshake_done = False
            self._transmit()
        else:
            self.schedule_flush()

    def add_socket(self, transport: asyncio.DatagramTransport) -> int:
        """Another socket feeding this endpoint (a server's preferred address); returns
        its ``local`` index (RFC 9000 §9.6)."""
        self.extra_sockets.append(transport)
        return len(self.extra_sockets)

    def datagram_received_on(
        self, transport: asyncio.DatagramTransport, data: bytes, addr: Any
    ) -> None:
        """A datagram on one of the :attr:`extra_sockets`."""
        try:
            local = self.extra_sockets.index(transport) + 1  # a handful of sockets
        except ValueError:
            return  # a socket no longer ours
        self._feed(data, addr, local)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._feed(data, addr)

    def _feed(self, data: bytes, addr: Any, local: int = 0) -> None:
        self.endpoint.receive_datagram(data, addr, self.clock(), 0, local)  # never raises
        self.datagrams_read += 1
        if len(data) >= _FULL_DATAGRAM:
            # Part of a burst, probably (see _flush): its events wait for the burst's
            # transmit, which dispatches them first, merged per stream (quic.aio.merge).
            self._received += 1
        else:
            # Hand events to the application now: the tasks they wake run in the next
            # loop iteration *before* the flush scheduled below, so a reply (an echoed
            # datagram, a response) leaves in the same transmit as the ACK for what
            # triggered it.
            self._dispatch()
        self._flush_or_transmit()

    def feed_forwarded(self, batch: list[tuple[bytes, Any, int, int]]) -> None:
        """Datagrams another worker forwarded (``(data, peer address, ecn, local)``,
        :mod:`quic.aio.workers`): fed as if this pump's socket had read them."""
        now = self.clock()
        receive = self.endpoint.receive_forwarded
        for data, addr, ecn, local in batch:
            receive(data, addr, now, ecn, local)  # never raises
        self.datagrams_read += len(batch)
        self._dispatch()
        self._flush_or_transmit()

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP error: %s", exc)
        if self._errors is not None:
            try:
                self._read_errors()
            except Exception:
                logger.exception("reading the socket's error queue failed")

    # the error queue drained (quic.aio.icmp): a method, without a call more
    _read_errors = read_errors

    def connection_lost(self, exc: Exception | None) -> None:
        self._sockets -= 1
        if self._sockets > 0:
            return  # an old socket after rebind(): the pump goes on with the new one
        if self._timer is not None:
            self._timer.cancel()
        self.endpoint.close()  # qlog traces flushed and closed (never raises)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- pump ---------------------------------------------------------------------------------

    def wake(self, connection: QuicConnection, reply: bool = False) -> None:
        """The application acted on ``connection``: serve it at the next flush — or
        sooner when many connections were woken before that flush (see "Wake storms");
        ``reply``: a task queued a datagram, which may leave now ("Replies made...")."""
        self.endpoint.wake(connection)
        if (
            reply
            and self._flush_scheduled  # after a read (not while its events are handed up)
            and not self._reading
            and self._replied != self.datagrams_read  # the first since the read
            and self.forward is None
        ):
            self._replied = self.datagrams_read
            self._send_out({connection: None})
            self._after_send()
            self._reply_sent = True
            return
        if not self._flush_scheduled and not self._reading:  # schedule_flush(), inline
            self._flush_scheduled = True
            self._flush_soon()
        woken = self._woken
        if connection not in woken:
            woken[connection] = None
            if len(woken) > WAKE_BATCH:
                self._send_early(woken, connection)

    def _send_early(self, woken: dict[QuicConnection, None], latest: QuicConnection) -> None:
        """Serve the connections woken so far but ``latest`` (its task may still add to
        what it wrote, a FIN after the data) before the flush; no event is handed up
        here (this runs inside an application's call), the flush still follows."""
        del woken[latest]
        self._woken = {latest: None}
        self.early_transmits += 1
        self._send_out(woken)
        self._after_send()

    def transmit_now(self, connection: QuicConnection) -> None:
        """Send now unless a flush is already on its way (latency-sensitive callers: a
        lone datagram should not wait a loop iteration)."""
        self.endpoint.wake(connection)
        if not self._flush_scheduled and not (self._reading and self._ready is not None):
            self._transmit()  # else at the flush, or at the end of the read (_read_ready)

    def schedule_flush(self) -> None:
        self._reply_sent = False  # the flush transmits
        if self._reading:  # a read batch's events are being handed up: its end decides,
            self._flush_due = True  # after the tasks they woke ("Replies made at once")
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._flush_soon()

    def _flush(self) -> None:
        if self._reply_sent:  # a reply left at once: anything since? ("Replies made...")
            self._reply_sent = False
            endpoint = self.endpoint
            if not (
                self._woken
                or self._received
                or self._replied != self.datagrams_read
                or endpoint.has_pending_output
            ):
                self._flush_scheduled = False
                item = endpoint.next_event()
                if item is not None:
                    self._transmit(item)
                return
        received = self._received
        if received != self._received_seen and received < RECEIVE_BATCH:
            # Datagrams are still arriving (asyncio reads one per loop iteration): go
            # round the loop once more and transmit after the burst, so its ACKs and
            # data leave together (batch receive processing before transmitting).
            self._received_seen = received
            self._flush_soon()
            return
        self._flush_scheduled = False
        self._transmit()

    def _transmit(self, item: Item | None = None) -> None:
        """Hand the events up, send, re-arm (``item``: the first event, already taken)."""
        self._received = self._received_seen = 0
        if self._woken:
            self._woken.clear()  # kept: one connection woken per round trip, no new dict
        endpoint = self.endpoint
        if item is None:
            item = endpoint.next_event()  # _dispatch() only with an event: per transmit
        if item is not None:
            self._dispatch(item)
        self.transmits += 1
        self._send_out(None)
        if endpoint.has_pending_output:  # a build stopped at its cap: more may go now
            self.schedule_flush()  # after the socket is read again ("Bulk transfers")
        item = endpoint.next_event()
        if item is not None:
            self._dispatch(item)
        if self.forward is not None:  # workers on one port (quic.aio.workers)
            routing = endpoint.worker_routing
            if routing is not None and routing.pending:
                self.forward(routing.take())  # another worker's datagrams
        self._after_send()
        self._handshake_done = False  # whatever that handshake queued has just left

    def _send_out(self, only: dict[QuicConnection, None] | None) -> None:
        """Everything the endpoint has to send (``only``: these connections' datagrams,
        and stateless replies) onto the socket(s): the pump's one way out."""
        endpoint = self.endpoint
        now = self.clock()
        some = () if only is None else (only,)  # every pending connection, or these
        if self.extra_sockets:  # several local addresses (a preferred address)
            routed = endpoint.routed_datagrams_to_send(now, *some)
            self.datagrams_sent += len(routed)
            self._send_routed(routed)
        elif self._raw is not None:
            marked = endpoint.marked_datagrams_to_send(now, *some)
            self.datagrams_sent += len(marked)
            self._send_marked(marked)
        else:
            plain = endpoint.datagrams_to_send(now, *some)  # never raises
            self.datagrams_sent += len(plain)
            send_plain(self.transport, plain)

    def _after_send(self) -> None:
        """Tell the sessions just flushed (progress, finished closes); re-arm the timer."""
        sessions = self.sessions
        for conn in self.endpoint.last_flushed:
            session = sessions.get(conn)
            if session is not None:
                try:
                    session._after_flush()
                except Exception as exc:
                    session._internal_error("QUIC session", exc)
        self._arm_timer()
        after_transmit(self.loop, self._ready)  # keys for the next handshakes (quic.aio.ahead)

    def _send_routed(self, out: list[tuple[bytes, Any, int, int]]) -> None:
        """Each datagram from the socket of its ``local`` index (:mod:`quic.aio.routed`)."""
        marked = self._send_marked if self._raw is not None else None
        send_routed(out, self.transport, self.extra_sockets, marked)

    # the way out with ECN marks and GSO (quic.aio.marked): a method, without a call more
    _send_marked = send_marked_out

    def _dispatch(self, item: Item | None = None) -> None:
        """Hand the endpoint's events to their sessions (``item``: the first, already
        taken)."""
        endpoint = self.endpoint
        sessions = self.sessions
        if item is None:
            item = endpoint.next_event()
        while item is not None:
            conn, event = item
            item = endpoint.next_event()
            if type(event) is DatagramReceived:
                self.datagram_events += 1  # the ping-pong's event: no test below
                session = sessions.get(conn)
                if session is None:
                    continue
                self.events_dispatched += 1
                listener = session.event_listener  # QuicSession._on_event, inline: per datagram
                if listener is not None:
                    try:
                        consumed = listener(event)
                    except Exception as exc:
                        session._internal_error("QUIC event listener", exc)
                        continue
                    if consumed:
                        continue
                try:
                    session._on_datagram(event)
                except Exception as exc:
                    session._internal_error("QUIC session", exc)
                continue
            if type(event) is StreamDataReceived:
                if item is not None and not event.end_stream:
                    event, item, merged = merge_stream_events(endpoint, conn, event, item)
                    self.events_coalesced += merged
            elif type(event) is HandshakeCompleted:
                self._handshake_done = True  # see _flush_or_transmit
            elif isinstance(event, ConnectionAccepted):
                self._accepted(conn)
                continue
            elif isinstance(event, ConnectionRemoved):
                gone = sessions.pop(conn, None)
                if gone is not None:
                    try:
                        gone._on_removed()
                    except Exception:
                        logger.exception("QUIC session failed at removal")
                continue
            session = sessions.get(conn)
            if session is None:
                continue
            self.events_dispatched += 1
            try:
                session._on_event(event)
            except Exception as exc:  # the session guards its callbacks; a last resort
                session._internal_error("QUIC session", exc)

    def _accepted(self, conn: QuicConnection) -> None:
        self.interface_mtu.tell(conn, conn.peer_address)
        session = QuicSession(self, conn)
        self.sessions[conn] = session
        if self._on_session is None:
            return
        try:
            result = self._on_session(session)
        except Exception as exc:
            session._internal_error("session setup", exc)
            return
        if asyncio.iscoroutine(result):
            if self._reading:  # a read batch's: started after its transmit (_read_ready)
                self._accepted_runs.append(result)
            else:
                self.spawn(result)

    def _start_accepted(self) -> None:
        runs = self._accepted_runs
        self._accepted_runs = []
        for run in runs:
            self.spawn(run)

    def _arm_timer(self) -> None:
        """Have the loop call :meth:`_on_timer` by the endpoint's earliest deadline.

        The armed timer is replaced only when the deadline moved *earlier* (or went
        away): a later one — the loss-detection deadline moves on with every packet
        sent, so a ping-pong would cancel and re-create a timer per transmit — keeps
        the armed timer, which then fires early, finds nothing due (``handle_timer``
        is safe to call early) and re-arms at the real deadline. ``timer_rearms``
        counts the timers created, ``timer_fires`` those that fired."""
        when = self.endpoint.get_timer()
        armed = self._timer_at
        if when == armed or (when is not None and armed is not None and armed < when):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self.timer_rearms += 1
            delay = when - self.clock()
            if 0.0 < delay < self._shortest_timer:  # a loop that rounds to milliseconds
                delay = self._shortest_timer
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self.timer_fires += 1
        self._timer = None
        self._timer_at = None
        sock = self._read_sock
        if sock is not None and not self._timer_read and has_input(sock):
            # What came may answer what the timer would probe (a PTO whose ACK waits
            # in the socket): read it, let its tasks and flush run, then come back once.
            self._timer_read = True
            self.timer_reads += 1
            self._read_ready(sock)
            if self._timer is None:  # nothing re-armed it earlier meanwhile
                self._timer_at = self.clock()
                self._timer = self.loop.call_soon(self._on_timer)
            return
        self._timer_read = False
        self.endpoint.handle_timer(self.clock())  # never raises
        sent = self.datagrams_sent
        self._transmit()
        self.timer_datagrams += self.datagrams_sent - sent

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def runner() -> None:
            try:
                await coro
            except (ConnectionClosed, StreamResetError, asyncio.IncompleteReadError):
                pass
            except Exception:
                logger.exception("QUIC handler failed")

        task = self.loop.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- client -------------------------------------------------------------------------------

    @property
    def local_address(self) -> Any:
        transport = self.transport
        return transport.get_extra_info("sockname") if transport is not None else None

    async def rebind(
        self, host: str | None = None, port: int = 0, on_switch: Callable[[], None] | None = None
    ) -> None:
        """Move to a new UDP socket and close the old one (:func:`quic.aio.rebind.rebind`)."""
        await rebind(self, host, port, on_switch)

    def shutdown(self) -> None:
        """Close every connection (NO_ERROR), send the closes at once, close the socket."""
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                session.connection.close(0, "endpoint closed")
            self.endpoint.wake(session.connection)
        if self.transport is not None and not self.transport.is_closing():
            self._transmit()
        self.close_socket()

    def close_socket(self) -> None:
        """Close the socket: the pump ends once it is gone."""
        if self.transport is not None:
            self.transport.close()

    def hand_over(self, session: QuicSession, to: QuicEndpointProtocol) -> None:
        """Move ``session``'s client connection to the pump ``to`` (its own socket, see
        :mod:`quic.aio.shared`); the events already queued here are passed on first."""
        self._dispatch()
        conn = session.connection
        cids = self.endpoint.hand_over(conn)
        del self.sessions[conn]
        session._protocol = to
        to.sessions[conn] = session
        to.endpoint.take_over(conn, cids)
        self._arm_timer()

    def connect(self, addr: Any, configuration: QuicConfiguration) -> QuicSession:
        """A new client connection to ``addr``; its first flight leaves at the caller's
        :meth:`transmit_now` or :meth:`schedule_flush` (:func:`quic.aio.connect`)."""
        conn = self.endpoint.connect(addr, configuration, self.clock())
        self.interface_mtu.tell(conn, addr)
        session = QuicSession(self, conn)
        self.sessions[conn] = session
        self.endpoint.wake(conn)  # the first flight: quic.aio.connect sends it
        return session
