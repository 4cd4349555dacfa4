"""The pump's GRO reads and the marks inside a long read (see "Bulk transfers" in
:mod:`quic.aio.pump`).

:class:`~quic.aio.pump.QuicEndpointProtocol` feeds the datagrams of one GRO read
(:func:`quic.aio.offload.split_coalesced`) with :func:`receive_glued`, its
``_receive_glued`` method. A wake-up that reads a long run of them would leave every
ACK and every reply until its end. So after each ``ACK_WITHIN_BATCH`` datagrams of one
wake-up (a mark):

* the connections the endpoint marked busy (fed long runs: a bulk transfer) are served
  first and the read goes on, unless the wake-up is ``LATE_ACKS`` old;
* otherwise — no connection busy (a peer's shared socket glued many connections'
  short packets: 1,000 sessions' requests at once), or the wake-up is that old — the
  wake-up ends there: its events are handed up, the tasks they woke run and the flush
  sends their replies with the ACKs of what triggered them, and the next wake-up reads
  the rest, which waited in the socket. Serving every connection at the mark instead
  (as before) sent each an ACK of its own ahead of its reply: one more datagram per
  request each way, and the replies all waited for the end of the read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["ACK_WITHIN_BATCH", "LATE_ACKS", "receive_glued"]

#: GRO datagrams fed in one wake-up after which its busy connections are served (see
#: "Bulk transfers"): 256 measured faster than 64, 128 and 512.
ACK_WITHIN_BATCH = 256
#: A wake-up this old ends at its next mark even with busy connections ("Bulk transfers").
LATE_ACKS = 0.02


def receive_glued(
    self: QuicEndpointProtocol, datagrams: list[bytes], addr: Any, now: float, ecn: int
) -> bool:
    """The datagrams of one GRO read, read at ``now``; at every ``ACK_WITHIN_BATCH``
    of them in one wake-up, the connections fed long runs are served; True (end the
    wake-up here) at a mark with none, or once the wake-up is ``LATE_ACKS`` old."""
    endpoint = self.endpoint
    endpoint.receive_datagrams(datagrams, addr, now, ecn)
    glued = self._glued + len(datagrams)
    if glued < ACK_WITHIN_BATCH:
        self._glued = glued
        return False
    self._glued = 0
    busy = endpoint.take_busy()
    if busy:
        self.busy_turns += 1
        self._send_out(busy)
        self._after_send()
        if self.clock() - self._read_at < LATE_ACKS:
            return False
    self.reads_ended += 1
    return True
