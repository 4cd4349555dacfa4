"""Long feeds (quic.aio.pump, "Long feeds"): a wake-up whose GRO reads have been fed for
``ACK_TURN`` sends what is due before it feeds on, and the datagrams read after that
turn arrive at the turn's time (their ACK deadlines count from there); a feed shorter
than that sends nothing before the flush."""

from __future__ import annotations

from typing import Any

import pytest

from quic.aio.pump import ACK_TURN, QuicEndpointProtocol

_ADDR = ("127.0.0.1", 4433)


class _Endpoint:
    """What the pump asks of an endpoint on this path: the batches fed (with the time
    each was fed at) and the transmit passes."""

    def __init__(self) -> None:
        self.fed: list[tuple[list[bytes], float]] = []
        self.transmits: list[float] = []
        self.last_flushed: list[Any] = []

    def receive_datagrams(self, datagrams: list[bytes], addr: Any, now: float, ecn: int) -> None:
        self.fed.append((datagrams, now))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self.transmits.append(now)
        return []

    def get_timer(self) -> float | None:
        return None


async def test_a_long_feed_sends_what_is_due_at_each_ack_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = _Endpoint()
    pump = QuicEndpointProtocol(endpoint)  # type: ignore[arg-type]
    clock = [100.0]
    with monkeypatch.context() as patch:
        patch.setattr(pump.loop, "time", lambda: clock[0])
        pump._read_at = start = clock[0]  # as _read_ready sets it for its wake-up
        pump._receive_glued([b"a", b"b"], _ADDR, 0)
        clock[0] = start + ACK_TURN / 2
        pump._receive_glued([b"c"], _ADDR, 0)
        assert endpoint.transmits == [] and pump.ack_turns == 0  # not yet a turn
        clock[0] = turn = start + ACK_TURN
        pump._receive_glued([b"d"], _ADDR, 0)
        assert endpoint.transmits == [turn] and pump.ack_turns == 1  # what is due left
        clock[0] = turn + ACK_TURN / 2
        pump._receive_glued([b"e"], _ADDR, 0)
        assert endpoint.transmits == [turn]  # the next turn counts from the last one
    assert endpoint.fed == [
        ([b"a", b"b"], start),
        ([b"c"], start),
        ([b"d"], start),
        ([b"e"], turn),  # read after the turn: it arrived then
    ]
