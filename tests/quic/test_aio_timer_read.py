"""The pump's timer reads the socket first (quic/aio/pump.py, "One loop timer"): when a
datagram waits in the socket as the timer fires, it is read and its events handed up,
and the timer is handled once the tasks and the flush that read queued have run — an
ACK waiting there must not be answered by a PTO probe. Only once per firing: input that
keeps coming never holds the timer back. Real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from quic.aio import QuicEndpointProtocol


class _Endpoint:
    """What the pump's timer, read and transmit touch; records the order of calls."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.last_flushed: list[Any] = []

    def handle_timer(self, now: float) -> None:
        self.calls.append("timer")

    def next_event(self) -> None:
        return None

    def receive_datagram(self, data: bytes, *args: Any) -> None:
        self.calls.append("read")

    def datagrams_to_send(self, now: float, *only: Any) -> list[tuple[bytes, Any]]:
        return []

    @property
    def has_pending_output(self) -> bool:
        return False

    def get_timer(self) -> None:
        return None


@contextlib.contextmanager
def _pump() -> Iterator[tuple[list[str], QuicEndpointProtocol, Callable[[], None]]]:
    """(the calls made, a pump reading a socket of its own, a function that sends it a
    datagram)."""
    calls: list[str] = []
    protocol = QuicEndpointProtocol(_Endpoint(calls))  # type: ignore[arg-type]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx, rx:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        protocol._read_sock = rx
        address = rx.getsockname()

        def send() -> None:
            tx.sendto(b"\x40" + bytes(30), address)

        yield calls, protocol, send


async def test_a_timer_with_a_datagram_waiting_reads_it_first_then_fires() -> None:
    with _pump() as (calls, protocol, send):
        send()
        await asyncio.sleep(0.01)
        protocol._on_timer()
        assert calls == ["read"] and protocol.timer_reads == 1  # the timer waits its turn
        assert protocol._timer is not None  # ... queued behind what the read scheduled
        await asyncio.sleep(0)
        assert calls == ["read", "timer"] and protocol._timer is None


async def test_input_that_keeps_coming_never_holds_the_timer_back() -> None:
    with _pump() as (calls, protocol, send):
        for fired in range(1, 4):
            send()
            await asyncio.sleep(0.01)
            protocol._on_timer()  # reads first ...
            assert calls.count("timer") == fired - 1 and calls[-1] == "read"
            send()  # ... and more came since
            time.sleep(0.01)  # not the loop's: the queued firing has not run yet
            await asyncio.sleep(0)  # now it runs, with a datagram waiting: handled
            assert calls.count("timer") == fired and calls[-1] == "timer"
        assert protocol.timer_reads == 3


async def test_a_timer_with_nothing_waiting_fires_at_once() -> None:
    with _pump() as (calls, protocol, _send):
        protocol._on_timer()
        assert calls == ["timer"] and protocol.timer_reads == 0
