"""A client's 0-RTT packets (RFC 9001 §4.6.1, RFC 9000 §17.2.3): the application space's
packet while 0-RTT keys are held and 1-RTT keys are not. The scheduler takes
``write_zero_rtt`` as its method ``_write_zero_rtt`` (see :mod:`quic.conn_send`): PINGs,
flow-control and stream-state frames, DATAGRAM and STREAM frames — never ACK, CRYPTO,
NEW_TOKEN, HANDSHAKE_DONE, PATH_RESPONSE or RETIRE_CONNECTION_ID (RFC 9000 §12.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION
from quic.packet import PacketType

if TYPE_CHECKING:
    from quic.conn_send import SendScheduler
    from quic.packet_builder import PacketAssembler

__all__ = ["write_zero_rtt"]


def write_zero_rtt(sched: SendScheduler, asm: PacketAssembler, version: int) -> None:
    """A client's 0-RTT packet (RFC 9001 §4.6.1, RFC 9000 §17.2.3), when the window has
    room for a datagram and something it may carry is owed."""
    if sched._recovery.congestion.available() < sched._paths.max_datagram_size:
        return
    streams, datagrams, pings = sched._streams, sched._datagrams, sched._pings
    if not (streams.has_data() or streams.wants_control() or datagrams.pending or pings):
        return
    keys = sched._keys
    write = keys.zero_rtt_write
    assert write is not None
    space = keys.spaces[APPLICATION]
    if not asm.begin_packet(
        PacketType.ZERO_RTT,
        version,
        sched._cids.peer_cid,
        sched._host_cid,
        write,
        APPLICATION,
        space.next_pn,
        sched._recovery.spaces[APPLICATION].largest_acked,
    ):
        return
    space.next_pn += 1
    sched._write_pings(asm)
    if streams.wants_control():
        streams.write_control(asm)
    datagrams.write(asm)
    streams.write_streams(asm)
    asm.end_packet()
