"""Keys made ahead when the loop is idle (:mod:`quic.aio.ahead`): after a handshake the
pump refills the key reserve once nothing else waits to run, and the next handshake
takes its keys there instead of making them on its critical path."""

from __future__ import annotations

import asyncio
import time

import pytest

import quic.aio.ahead as ahead
from quic.aio import connect, serve
from quic.aio.udp import ready_queue
from quic.tls.groups import KEYS_AHEAD, KeyReserve
from tests.quic.test_aio import client_config, server_config
from tests.support.keys_ahead import record_takes


@pytest.fixture
def refills(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order of events: ``refill`` where the reserve was refilled."""
    order: list[str] = []
    real = KeyReserve.refill

    def refill(self: KeyReserve) -> int:
        order.append("refill")
        return real(self)

    monkeypatch.setattr(KeyReserve, "refill", refill)
    monkeypatch.setattr(ahead, "_queued", None)
    KEYS_AHEAD.clear()
    return order


def _busy_chain(loop: asyncio.AbstractEventLoop, steps: int, order: list[str]) -> None:
    """Callbacks, each queueing the next: the loop is busy for ``steps`` x 0.2 ms."""

    def step(n: int) -> None:
        time.sleep(0.0002)
        order.append(f"step {n}")
        if n < steps:
            loop.call_soon(step, n + 1)

    loop.call_soon(step, 1)


async def test_the_refill_waits_until_the_loop_is_idle(
    refills: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    ready = ready_queue(loop)
    assert ready is not None  # asyncio's own loop
    monkeypatch.setattr(ahead, "IDLE_TRIES", 1000)  # patient, however slow the machine
    KEYS_AHEAD.x25519()  # a handshake took a key
    steps = 10  # 2 ms: past the first tries
    _busy_chain(loop, steps, refills)
    ahead.after_transmit(loop, ready)
    ahead.after_transmit(loop, ready)  # queued once only
    # on a timer, not in the ready queue (which the pump reads: "Replies made at once")
    assert all(getattr(handle, "_callback", None) is not ahead._refill for handle in ready)
    await asyncio.sleep(0.05)  # this task waits on a timer: the loop goes idle
    assert refills == [f"step {n}" for n in range(1, steps + 1)] + ["refill"]
    assert len(KEYS_AHEAD) == 1 and not KEYS_AHEAD.wanted and ahead._queued is None
    ahead.after_transmit(loop, ready)  # nothing taken since: nothing queued
    assert ahead._queued is None


async def test_a_loop_that_is_never_idle_makes_no_keys_ahead(
    refills: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    ready = ready_queue(loop)
    monkeypatch.setattr(ahead, "IDLE_TRIES", 3)  # tries at 0.5, 1.5 and 3.5 ms
    KEYS_AHEAD.mlkem()
    steps = int(2 * 0.0035 / 0.0002)  # busy for twice that
    _busy_chain(loop, steps, refills)
    ahead.after_transmit(loop, ready)
    await asyncio.sleep(0.05)
    assert len(refills) == steps and "refill" not in refills
    assert KEYS_AHEAD.wanted and ahead._queued is None  # the next transmit tries again
    ahead.after_transmit(loop, ready)
    await asyncio.sleep(0.02)
    assert refills[-1] == "refill" and len(KEYS_AHEAD) == 1


async def test_without_a_visible_ready_queue_the_refill_runs_at_its_timer(
    refills: list[str],
) -> None:
    loop = asyncio.get_running_loop()
    KEYS_AHEAD.x25519()
    ahead.after_transmit(loop, None)  # uvloop: no ready queue to look at
    await asyncio.sleep(0)
    assert refills == []
    await asyncio.sleep(ahead.IDLE_DELAY * 4)
    assert refills == ["refill"] and len(KEYS_AHEAD) == 1


async def test_a_refill_queued_on_a_closed_loop_does_not_block_the_next(
    refills: list[str],
) -> None:
    other = asyncio.new_event_loop()
    KEYS_AHEAD.x25519()
    ahead.after_transmit(other, None)  # queued there, and that loop never runs again
    other.close()
    loop = asyncio.get_running_loop()
    ahead.after_transmit(loop, ready_queue(loop))
    await asyncio.sleep(0.02)
    assert refills == ["refill"]


async def test_the_next_handshake_takes_keys_made_while_the_loop_was_idle(
    refills: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = record_takes(monkeypatch)  # per key taken: was one ready?
    server = await serve("127.0.0.1", 0, server_config())
    async with server:
        for _ in range(3):
            async with connect("127.0.0.1", server.port, client_config()) as session:
                assert session.alpn_protocol == "test"
            await asyncio.sleep(0.01)  # the loop goes idle
    # each handshake takes the client's X25519 and ML-KEM keys, then the server's X25519
    # key (one process: one reserve, one key of each kind in it); the first handshake
    # found none ready, the later ones found the client's (made while the loop was idle
    # after the handshake before)
    assert len(taken) == 9 and taken[:3] == [False, False, False]
    assert taken[3:5] == [True, True] and taken[6:8] == [True, True]
    assert len(refills) >= 2
