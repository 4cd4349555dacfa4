"""The pump's GRO reads and the bulk turns inside a long read (see "Bulk transfers" in
:mod:`quic.aio.pump`).

:class:`~quic.aio.pump.QuicEndpointProtocol` feeds the datagrams of one GRO read
(:func:`quic.aio.offload.split_coalesced`) with :func:`receive_glued`, its
``_receive_glued`` method. A wake-up that reads a long run of them would leave every
ACK and every reply until its end: after each ``ACK_WITHIN_BATCH`` datagrams of one
wake-up the connections the endpoint marked busy (fed long runs) are served first, and
once the wake-up is ``LATE_ACKS`` old every connection fed so far is, so a peer's
ACK-eliciting packets are not left unacknowledged for the whole read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["ACK_WITHIN_BATCH", "LATE_ACKS", "receive_glued"]

#: GRO datagrams fed in one wake-up after which its busy connections are served (see
#: "Bulk transfers"): 256 measured faster than 64, 128 and 512.
ACK_WITHIN_BATCH = 256
#: A wake-up this old serves every connection fed at the next mark ("Bulk transfers").
LATE_ACKS = 0.02


def receive_glued(
    self: QuicEndpointProtocol, datagrams: list[bytes], addr: Any, now: float, ecn: int
) -> None:
    """The datagrams of one GRO read, read at ``now``; every ``ACK_WITHIN_BATCH``
    of them in one wake-up, the connections fed long runs are served before it goes
    on (see "Bulk transfers")."""
    endpoint = self.endpoint
    endpoint.receive_datagrams(datagrams, addr, now, ecn)
    glued = self._glued + len(datagrams)
    if glued < ACK_WITHIN_BATCH:
        self._glued = glued
        return
    self._glued = 0
    busy = endpoint.take_busy()
    if busy:
        self.busy_turns += 1
        self._send_out(busy)
        self._after_send()
    elif self.clock() - self._read_at >= LATE_ACKS:  # many connections' ACKs are due
        self.late_ack_turns += 1
        self._send_out(None)
        self._after_send()
