"""Unreliable DATAGRAM frames of a connection (RFC 9221).

Theory of operation
-------------------
DATAGRAM support is negotiated with the ``max_datagram_frame_size`` transport
parameter (RFC 9221 §3): ours bounds what we accept, the peer's what we may send.
:class:`DatagramChannel` owns both directions:

* Receiving: a DATAGRAM frame that was not negotiated, or larger than our limit, is a
  PROTOCOL_VIOLATION (RFC 9221 §3); otherwise it becomes a
  :class:`~quic.events.DatagramReceived` event on the connection's event queue (the one
  way out, drained with ``next_event()``).
* Sending: :meth:`DatagramChannel.send` queues a payload; the queue holds at most
  ``max_datagram_queue`` payloads and, being unreliable, drops the *oldest* when full
  (RFC 9221 §5 lets a sender drop datagrams) — fresh data is what a real-time
  application wants. The queue is made by the first send (a connection that sends no
  DATAGRAM holds none: issue 10, memory per idle session). :meth:`DatagramChannel.write`
  puts whole DATAGRAM frames into the open packet (a DATAGRAM frame is never split,
  RFC 9221 §5); one that can no longer fit even an empty packet (the path shrank) is
  dropped rather than blocking the queue.
  DATAGRAM frames are ack-eliciting and congestion controlled (RFC 9221 §5.2, §5.4)
  but never retransmitted, so their fate needs no handler.

Sizes and the path MTU (RFC 9221 §3, §5; RFC 9000 §14): the largest payload an
application may send, :meth:`DatagramChannel.max_payload`, is what fits one 1-RTT packet
of the path's current maximum datagram size, which DPLPMTUD (:mod:`quic.conn_pmtu`)
raises after an acknowledged probe and drops back to 1200 bytes when it detects a black
hole or the path changes. The size is read at every call, never cached: it grows and
shrinks with the path. :meth:`DatagramChannel.send` refuses (ValueError) a datagram
larger than the size *now*; one accepted when it fitted and still queued when the size
drops is discarded by :meth:`DatagramChannel.shrink` (or, if the connection ID length
grew, when its packet is built) and counted in ``dropped_too_large`` — RFC 9221 §5
lets a sender drop a datagram it cannot fit. ``dropped_queue_full`` counts the oldest
ones pushed out of a full queue. Nothing assumes the peer's path MTU equals ours: what
arrives is bounded only by our ``max_datagram_frame_size``.
"""

from __future__ import annotations

import struct
from collections import deque

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import DatagramReceived, QuicEvent
from quic.frames import (
    FrameType,
    datagram_frame_header_size,
    decode_datagram_frame,
    encode_datagram_frame_header,
)
from quic.packet_builder import PacketAssembler

__all__ = ["DatagramChannel"]

# DatagramReceived(data) without its dataclass __init__ (a Python call that sets the
# frozen slot through object.__setattr__): the object made bare and its slot set by
# the slot's own descriptor, per datagram received (tests/quic/test_hot_path_inlines.py)
_NEW_EVENT = object.__new__
_SET_DATA = vars(DatagramReceived)["data"].__set__  # the slot's member descriptor

#: DATAGRAM frame headers (type 0x31) with a one-byte Length, by Length; a two-byte one
_ONE_BYTE_LENGTH = tuple(bytes((0x31, n)) for n in range(0x40))
_pack_type_length = struct.Struct("!BH").pack

# 1-RTT packet overhead around a DATAGRAM frame: first byte, packet number (up to 4),
# AEAD tag (16); the frame's type and Length (3, or 5 above 16,383 bytes) come on top.
_SHORT_HEADER_FIXED = 1 + 4 + 16


class DatagramChannel:
    """Send queue and receive checks of DATAGRAM frames."""

    __slots__ = (
        "_events",
        "_local_max",
        "_max_queue",
        "_queue",
        "dropped_queue_full",
        "dropped_too_large",
        "peer_max_frame_size",
        "pending",
    )

    def __init__(
        self, local_max_frame_size: int | None, max_queue: int, events: list[QuicEvent]
    ) -> None:
        self._local_max = local_max_frame_size or 0
        self._events = events
        self._max_queue = max(1, max_queue)
        self._queue: deque[bytes] | None = None  # made by the first send (idle memory)
        self.peer_max_frame_size = 0  # the peer's transport parameter (0: not supported)
        self.dropped_queue_full = 0  # the oldest, pushed out of a full queue
        self.dropped_too_large = 0  # queued when they fitted, then the path shrank
        #: Datagrams queued (an attribute kept with the queue: read per build call).
        self.pending = 0

    @property
    def dropped(self) -> int:
        """Queued datagrams dropped before they were sent, for either reason."""
        return self.dropped_queue_full + self.dropped_too_large

    def set_peer_max_frame_size(self, size: int) -> None:
        """The peer's max_datagram_frame_size transport parameter (RFC 9221 §3)."""
        self.peer_max_frame_size = size

    # -- sizes ------------------------------------------------------------------------

    def max_payload(self, dcid_length: int, max_datagram_size: int) -> int:
        """Largest DATAGRAM payload that fits one packet now (0: not supported)."""
        peer_max = self.peer_max_frame_size
        if not peer_max:
            return 0
        frame = max_datagram_size - (_SHORT_HEADER_FIXED + dcid_length)  # the frame's room
        if peer_max < frame:
            frame = peer_max
        limit = frame - 3  # its type and a 2-byte Length
        if limit >= 0x4000:  # a 4-byte Length above 16,383 (RFC 9000 §16)
            limit = frame - 5 if frame - 5 >= 0x4000 else 0x3FFF
        return limit if limit > 0 else 0

    # -- receiving --------------------------------------------------------------------

    def on_frame(self, data: bytes) -> None:
        """A DATAGRAM frame arrived (RFC 9221 §3, §5)."""
        limit = self._local_max
        if not limit:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "DATAGRAM frames were not negotiated",
                FrameType.DATAGRAM_LEN,
            )  # RFC 9221 §3
        if 1 + len(data) > limit:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "DATAGRAM frame larger than max_datagram_frame_size",
                FrameType.DATAGRAM_LEN,
            )
        self._events.append(DatagramReceived(data))

    def on_frame_at(self, payload: bytes, pos: int) -> int:
        """:func:`~quic.frames.decode_datagram_frame` then :meth:`on_frame` for the
        DATAGRAM frame with a Length field (0x31) at ``pos`` of ``payload``, in one call
        (the datagram receive path, issue 10); returns the position after it. One- and
        two-byte Lengths are read here, longer ones and truncated frames by the decoder
        (its errors)."""
        size = len(payload)
        if pos + 2 < size:
            b = payload[pos + 1]
            if b < 0x40:
                start = pos + 2
                end = start + b
            elif b < 0x80:
                start = pos + 3
                end = start + ((b & 0x3F) << 8 | payload[pos + 2])
            else:
                start = end = size + 1  # a longer Length: the decoder below
            limit = self._local_max
            if end <= size and limit and end - start < limit:  # 1 + length <= limit
                event = _NEW_EVENT(DatagramReceived)  # DatagramReceived(...), inline
                _SET_DATA(event, payload[start:end])
                self._events.append(event)
                return end
        data, end = decode_datagram_frame(payload, pos)  # raises if truncated
        self.on_frame(data)  # raises if not negotiated or too large
        return end

    # -- sending ----------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview, dcid_length: int, mtu: int) -> None:
        """Queue a datagram; ValueError if the peer takes none or it cannot fit."""
        if not self.peer_max_frame_size:
            raise ValueError("the peer does not accept DATAGRAM frames")
        n = len(data)
        # fits when its frame (type, a 2-byte Length, the data) fits the packet's room
        # and the peer's limit, below 16,384 bytes: max_payload() is at least n then
        if not (
            n < 0x4000
            and n + 3 + _SHORT_HEADER_FIXED + dcid_length <= mtu
            and n + 3 <= self.peer_max_frame_size
        ) and n > self.max_payload(dcid_length, mtu):
            raise ValueError(f"datagram of {n} bytes does not fit in one packet")
        queue = self._queue
        if queue is None:
            queue = self._queue = deque(maxlen=self._max_queue)
        elif len(queue) == self._max_queue:
            self.dropped_queue_full += 1  # unreliable: the oldest gives way (RFC 9221 §5)
        queue.append(data if type(data) is bytes else bytes(data))
        self.pending = len(queue)

    def shrink(self, max_payload: int) -> None:
        """The largest payload that fits a packet dropped to ``max_payload`` (a black
        hole, a new path): queued datagrams above it are discarded now (RFC 9221 §5)
        rather than one by one at the head of the queue. O(queue), on a decrease only."""
        queue = self._queue
        if not queue or not any(len(data) > max_payload for data in queue):
            return
        kept = [data for data in queue if len(data) <= max_payload]
        self.dropped_too_large += len(queue) - len(kept)
        queue.clear()
        queue.extend(kept)
        self.pending = len(queue)

    def room_needed(self, room: int) -> int:
        """Room the next queued DATAGRAM frame takes if it fits ``room``, else 0.

        A piggybacked ACK that is not due gives way to it (see
        :meth:`quic.conn_acks.AckState.write`): it is repeated in every ack-eliciting
        packet until acknowledged, so a datagram sized to fill a whole packet would
        otherwise never fit behind it.
        """
        queue = self._queue
        if not queue:
            return 0
        n = len(queue[0])
        # datagram_frame_header_size(), inline for one- and two-byte Lengths
        need = (n + 2 if n < 0x40 else n + 3) if n < 0x4000 else datagram_frame_header_size(n) + n
        return need if need <= room else 0

    def write(self, asm: PacketAssembler) -> None:
        """Put whole DATAGRAM frames into the open packet (RFC 9221 §5)."""
        queue = self._queue
        if not queue:
            return
        packet = asm.packet
        while queue:
            data = queue[0]
            n = len(data)
            # encode_datagram_frame_header(), inline for one- and two-byte Lengths
            if n < 0x40:
                header = _ONE_BYTE_LENGTH[n]
            elif n < 0x4000:
                header = _pack_type_length(0x31, n | 0x4000)
            else:
                header = encode_datagram_frame_header(n)
            if len(header) + n > asm.room:
                if asm.payload_size <= 1 + 3:
                    queue.popleft()  # cannot fit even an empty packet: drop (RFC 9221 §5)
                    self.dropped_too_large += 1
                    continue
                break
            queue.popleft()
            asm.push(header + data)  # one chunk: the frame is small
            packet.ack_eliciting = packet.in_flight = True
        self.pending = len(queue)
