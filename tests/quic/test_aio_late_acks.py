"""A long read wake-up feeding many connections' glued datagrams serves them all at the
``ACK_WITHIN_BATCH`` mark once it is ``LATE_ACKS`` old (issue 10, the 1,000-session
burst: their ACKs were due, their peers' PTOs near)."""

from __future__ import annotations

import asyncio

from quic.aio import serve
from tests.quic.test_aio import echo_datagrams, server_config


def test_a_long_wake_up_of_many_connections_serves_them_at_the_ack_mark() -> None:
    """GRO reads of many connections' datagrams (a peer's shared socket) fed for longer
    than ``LATE_ACKS``: at the ``ACK_WITHIN_BATCH`` mark every connection fed so far is
    served (their ACKs are due), not only those fed long runs; before that, or sooner
    than ``LATE_ACKS`` after the wake-up began, nothing is sent there."""
    from quic.aio.glued import ACK_WITHIN_BATCH, LATE_ACKS

    async def main() -> list[tuple[int, list[object]]]:
        server = await serve("127.0.0.1", 0, server_config(), echo_datagrams)
        results = []
        async with server:
            pump = server.protocol
            sent: list[object] = []
            original = pump._send_out
            pump._send_out = lambda only: (sent.append(only), original(only))[1]  # type: ignore[method-assign]
            junk = [b"\x40" + bytes(20)] * (ACK_WITHIN_BATCH // 2)  # no connection's
            for late in (0.0, 2 * LATE_ACKS):
                sent.clear()
                pump._glued, turns = 0, pump.late_ack_turns
                pump._read_at = pump.clock() - late
                pump._receive_glued(junk, ("127.0.0.1", 9), pump._read_at, 0)  # below the mark
                first = list(sent)
                pump._receive_glued(junk, ("127.0.0.1", 9), pump._read_at, 0)  # at the mark
                results.append((pump.late_ack_turns - turns, [*first, "mark", *sent]))
        return results

    soon, late = asyncio.run(main())
    assert soon == (0, ["mark"])  # the wake-up is young: the flush will serve them
    assert late == (1, ["mark", None])  # every pending connection, not a busy set
