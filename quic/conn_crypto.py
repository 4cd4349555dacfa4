"""CRYPTO streams: the TLS handshake bytes of each encryption level (RFC 9000 §19.6).

Theory of operation
-------------------
Each packet number space carries its own CRYPTO byte stream in each direction
(RFC 9001 §4.1.3). :class:`CryptoStreams` owns the three send and three receive
halves. They reuse the stream machinery: a :class:`~quic.stream_send.SendStream` with
unlimited credit (CRYPTO is not flow controlled, RFC 9000 §4.1) and a
:class:`~quic.stream_recv.CryptoRecvStream` per level, which bounds the data held beyond
the first missing byte and the out-of-order holes (``buffers`` per level, ``fragments``);
exceeding either is CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5).

* Receiving: :meth:`CryptoStreams.receive` files a CRYPTO frame and returns the bytes
  that became contiguous, for the TLS engine.
* Sending: the TLS engine's output is queued with :meth:`CryptoStreams.queue`;
  :meth:`CryptoStreams.write` fills the open packet with CRYPTO frames (header from the
  codec's :func:`~quic.frames.encode_crypto_frame_header`) and registers each frame's
  fate: an acknowledged range is released, a lost one is sent again.
* A probe (RFC 9002 §6.2.4) or a Retry (RFC 9000 §17.2.5.3) retransmits everything
  not yet acknowledged: :meth:`CryptoStreams.requeue_unacked`.
* When a space is discarded (RFC 9001 §4.9) its buffers are released and whatever
  CRYPTO data still arrives at that level (a duplicate later in the same packet) is
  ignored; TLS output for it is dropped too (it could not be protected). Its two
  halves become the module's empty, inert ``_GONE_SEND`` / ``_GONE_RECV`` streams,
  shared by every connection: nothing writes to them (``receive`` and ``queue`` stop
  at the discarded flag first, ``write`` runs only when ``needs_send``), so an idle
  connection keeps no per-level stream objects (issue 10, memory per idle session).
* The 1-RTT halves are made on first use (``_LATER`` until then, as inert as the
  discarded ones): a server never receives 1-RTT CRYPTO data in a sound connection
  (RFC 9001 §4.1.3: nothing the client could send there is allowed) and a client
  never sends any, so each keeps one half fewer per connection.
"""

from __future__ import annotations

from quic.errors import QuicProtocolError
from quic.frames import FrameType, crypto_frame_header_size, encode_crypto_frame_header
from quic.packet_builder import PacketAssembler
from quic.stream_recv import (
    CRYPTO_MIN_BUFFER,
    DEFAULT_CRYPTO_BUFFERS,
    DEFAULT_MAX_CRYPTO_FRAGMENTS,
    CryptoRecvStream,
    RecvStream,
)
from quic.stream_send import SendStream

__all__ = ["CryptoStreams"]

_CRYPTO_CREDIT = (1 << 62) - 1
# the halves of every discarded level (see the module docstring): never written to
_GONE_SEND = SendStream(-1, _CRYPTO_CREDIT)
_GONE_RECV = RecvStream(-1, 0)
# the halves of a level not used yet (see the module docstring): never written to either
_LATER_SEND = SendStream(-1, _CRYPTO_CREDIT)
_LATER_RECV = RecvStream(-1, 0)


class CryptoStreams:
    """The CRYPTO send and receive streams of the three packet number spaces."""

    __slots__ = ("_buffers", "_discarded", "_fragments", "received", "recv", "send")

    def __init__(
        self,
        buffers: tuple[int, int, int] = DEFAULT_CRYPTO_BUFFERS,
        fragments: int = DEFAULT_MAX_CRYPTO_FRAGMENTS,
    ) -> None:
        # RFC 9000 §7.5: at least 4096 bytes must be accepted out of order
        self._buffers = tuple(max(CRYPTO_MIN_BUFFER, b) for b in buffers)
        self._fragments = fragments
        self.send = self._new_senders()
        self.recv: list[RecvStream] = self._new_receivers()
        self._discarded = [False, False, False]
        #: highest CRYPTO offset received per level (kept when the level is discarded)
        self.received = [0, 0, 0]

    def _new_senders(self) -> list[SendStream]:
        return [SendStream(-1, _CRYPTO_CREDIT), SendStream(-1, _CRYPTO_CREDIT), _LATER_SEND]

    def _new_receivers(self) -> list[RecvStream]:
        buffers, fragments = self._buffers, self._fragments
        return [
            CryptoRecvStream(buffers[0], fragments),
            CryptoRecvStream(buffers[1], fragments),
            _LATER_RECV,
        ]

    def reset(self) -> None:
        """Start over (a new first flight after Version Negotiation, RFC 9368 §2.1)."""
        self.send = self._new_senders()
        self.recv = self._new_receivers()
        self._discarded = [False, False, False]
        self.received = [0, 0, 0]

    # -- receiving --------------------------------------------------------------------

    def receive(self, index: int, offset: int, data: bytes) -> bytes:
        """File a CRYPTO frame; return the bytes now contiguous (possibly empty)."""
        if self._discarded[index]:
            return b""  # the level is gone (RFC 9001 §4.9)
        recv = self.recv[index]
        if recv is _LATER_RECV:
            recv = self.recv[index] = CryptoRecvStream(self._buffers[index], self._fragments)
        try:
            recv.on_stream_frame(offset, data, False)
        except QuicProtocolError as exc:
            # CryptoRecvStream raises CRYPTO_BUFFER_EXCEEDED itself (RFC 9000 §7.5)
            if exc.frame_type is None or not exc.frame_type:
                exc.frame_type = FrameType.CRYPTO
            raise
        self.received[index] = recv.highest_received
        return recv.read() if recv.readable else b""

    # -- sending ----------------------------------------------------------------------

    def queue(self, index: int, data: bytes) -> None:
        """Queue TLS output for the space ``index`` (dropped once it is discarded: no
        keys protect it any more, RFC 9001 §4.9)."""
        if self._discarded[index]:
            return
        send = self.send[index]
        if send is _LATER_SEND:
            send = self.send[index] = SendStream(-1, _CRYPTO_CREDIT)
        send.write(data)

    def needs_send(self, index: int) -> bool:
        return self.send[index].needs_send

    def write(self, asm: PacketAssembler, index: int) -> None:
        """Fill the open packet with CRYPTO frames of space ``index``."""
        send = self.send[index]
        packet = asm.packet
        handlers = packet.handlers
        fate = self._fate
        while send.needs_send:
            room = asm.room - crypto_frame_header_size(send.write_offset, asm.room)
            if room <= 0:
                break
            frame = send.next_frame(room, _CRYPTO_CREDIT)
            if frame is None:
                break
            offset, data, _fin = frame
            asm.push(encode_crypto_frame_header(offset, len(data)))
            asm.push(data)
            handlers.append((fate, (send, offset, len(data))))
            packet.ack_eliciting = packet.in_flight = packet.is_crypto = True

    @staticmethod
    def _fate(acked: bool, send: SendStream, offset: int, length: int) -> None:
        if acked:
            send.on_acked(offset, length, False)
        else:
            send.on_lost(offset, length, False)

    def requeue_unacked(self, index: int) -> None:
        """Send again whatever was sent and is not acknowledged (RFC 9002 §6.2.4)."""
        send = self.send[index]
        if send.highest_sent and not self._discarded[index]:
            send.on_lost(0, send.highest_sent, False)

    def discard(self, index: int) -> None:
        """The space's keys are gone: nothing more is sent or received in it."""
        self._discarded[index] = True
        self.send[index] = _GONE_SEND  # releases what was buffered
        self.recv[index] = _GONE_RECV
