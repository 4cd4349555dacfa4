"""A timer wake-up of the pump reads what waits on the socket before the endpoint's
timers run: a PTO due while the ACK that would cancel it sits unread is not sent
(issue 10, the 1,000-session burst)."""

from __future__ import annotations

import asyncio
import select
import socket

from quic.aio import QuicEndpointProtocol, connect, serve
from tests.quic.test_aio import client_config, echo_datagrams, server_config


async def _on_timer_with(pump: QuicEndpointProtocol, waiting: bool) -> tuple[int, int]:
    """Call the pump's timer callback (a datagram waiting on its socket or not); returns
    (datagrams read before the endpoint's timers ran, reads before timers counted)."""
    raw = pump._raw
    assert raw is not None and pump.batched_reading
    if waiting:
        port = raw.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(b"\x40" + bytes(40), ("127.0.0.1", port))  # no connection's
        readable, _, _ = select.select([raw], [], [], 5)  # no loop iteration: unread
        assert readable
    if pump._timer is not None:
        pump._timer.cancel()
    seen: list[int] = []
    endpoint = pump.endpoint
    handle_timer = endpoint.handle_timer

    def recording(now: float) -> None:
        seen.append(pump.datagrams_read)
        handle_timer(now)

    before, reads = pump.datagrams_read, pump.reads_before_timer
    endpoint.handle_timer = recording  # type: ignore[method-assign]
    try:
        pump._on_timer()
    finally:
        del endpoint.handle_timer
    assert len(seen) == 1
    return seen[0] - before, pump.reads_before_timer - reads


def test_a_timer_wake_up_reads_the_waiting_datagram_first() -> None:
    async def main() -> tuple[tuple[int, int], tuple[int, int]]:
        config = client_config()
        config.max_datagram_frame_size = 65536
        server_cfg = server_config()
        server_cfg.max_datagram_frame_size = 65536
        server = await serve("127.0.0.1", 0, server_cfg, echo_datagrams)
        async with server, connect("127.0.0.1", server.port, config) as session:
            session.send_datagram(b"warm-up")
            await asyncio.wait_for(session.receive_datagram(), 5)
            await asyncio.sleep(0.05)  # the reader took the socket over
            pump = session._protocol
            idle = await _on_timer_with(pump, waiting=False)
            waiting = await _on_timer_with(pump, waiting=True)
            # the connection still works after the extra read
            session.send_datagram(b"after")
            assert await asyncio.wait_for(session.receive_datagram(), 5) == b"after"
        return idle, waiting

    idle, waiting = asyncio.run(main())
    assert idle == (0, 0)  # nothing waiting: no read, only a FIONREAD probe
    assert waiting == (1, 1)  # read, and before handle_timer


def test_a_long_wake_up_of_many_connections_serves_them_at_the_ack_mark() -> None:
    """GRO reads of many connections' datagrams (a peer's shared socket) fed for longer
    than ``LATE_ACKS``: at the ``ACK_WITHIN_BATCH`` mark every connection fed so far is
    served (their ACKs are due), not only those fed long runs; before that, or sooner
    than ``LATE_ACKS`` after the wake-up began, nothing is sent there."""
    from quic.aio.pump import ACK_WITHIN_BATCH, LATE_ACKS

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
                pump._receive_glued(junk, ("127.0.0.1", 9), 0)  # below the mark
                first = list(sent)
                pump._receive_glued(junk, ("127.0.0.1", 9), 0)  # at the mark
                results.append((pump.late_ack_turns - turns, [*first, "mark", *sent]))
        return results

    soon, late = asyncio.run(main())
    assert soon == (0, ["mark"])  # the wake-up is young: the flush will serve them
    assert late == (1, ["mark", None])  # every pending connection, not a busy set
