"""The pump keeps a bulk transfer flowing (quic/aio/pump.py): a transmit that left a
connection with more to send (its build stopped at the datagram cap) is followed by
another flush with nothing else to trigger it, and a long read wake-up sends the ACKs
that came due every ``ACK_WITHIN_BATCH`` GRO datagrams instead of at its end."""

from __future__ import annotations

import asyncio
from typing import Any

from quic.aio import QuicEndpointProtocol
from quic.aio.pump import ACK_WITHIN_BATCH


class _Endpoint:
    """What the pump's transmit and GRO feed read; ``capped`` transmits leave output."""

    def __init__(self, capped: int = 0) -> None:
        self.capped = capped
        self.serves = 0
        self.fed = 0
        self.last_flushed: list[Any] = []

    def next_event(self) -> None:
        return None

    def datagrams_to_send(self, now: float, *only: Any) -> list[tuple[bytes, Any]]:
        self.serves += 1
        return []

    @property
    def has_pending_output(self) -> bool:
        return self.serves <= self.capped

    def receive_datagrams(self, datagrams: list[bytes], *args: Any) -> None:
        self.fed += len(datagrams)

    def get_timer(self) -> None:
        return None


async def test_a_capped_transmit_is_followed_by_another_flush() -> None:
    endpoint = _Endpoint(capped=3)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._transmit()
    for _ in range(10):
        await asyncio.sleep(0)
    assert endpoint.serves == 4  # three capped transmits, each followed by one more
    assert protocol.transmits == 4 and not protocol._flush_scheduled


async def test_a_transmit_with_nothing_left_schedules_nothing() -> None:
    endpoint = _Endpoint(capped=0)
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    protocol._transmit()
    for _ in range(5):
        await asyncio.sleep(0)
    assert endpoint.serves == 1 and protocol.transmits == 1


async def test_a_long_gro_wake_up_sends_its_acks_every_ack_within_batch_datagrams() -> None:
    endpoint = _Endpoint()
    protocol = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    per_read = ACK_WITHIN_BATCH // 2 - 1  # three GRO reads pass the mark, two do not
    glued = [b"x" * 1200] * per_read
    for _ in range(6):
        protocol._receive_glued(glued, ("127.0.0.1", 1), 2)
    assert endpoint.fed == 6 * per_read
    assert endpoint.serves == protocol.early_transmits == 2  # after the 3rd and 6th read
    protocol._glued = 0  # what a new wake-up does (_read_ready)
    protocol._receive_glued(glued, ("127.0.0.1", 1), 2)
    protocol._receive_glued(glued, ("127.0.0.1", 1), 2)
    assert endpoint.serves == 2  # a batch short of the mark sends at its flush only
