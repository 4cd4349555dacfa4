"""Pacing on real connections (RFC 9002 §7.7): the send path spreads ack-eliciting
datagrams at the controller's rate instead of sending each window in one burst, the
connection's timer carries the pacing deadline, and ACK-only packets are not held."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from quic.pacing import PACING_QUANTUM, Pacer
from tests.support.netsim import Link
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

MDS = 1200


def _record(pair: Pair) -> list[tuple[float, int]]:
    """(time, size) of every datagram the client sends from now on."""
    link: Link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    sent: list[tuple[float, int]] = []
    schedule = link.schedule

    def recording(data: bytes, now: float, rng: Any) -> list[tuple[float, bytes]]:
        sent.append((now, len(data)))
        return schedule(data, now, rng)

    link.schedule = recording  # type: ignore[method-assign]
    return sent


class Unpaced(Pacer):
    """A pacer that never holds anything back (what the send path did before)."""

    def set_rate(self, rate: float | None, congestion_window: int, now: float) -> None:
        super().set_rate(None, congestion_window, now)


def _bulk(
    name: str = "newreno", size: int = 1_500_000, paced: bool = True
) -> tuple[Pair, list[tuple[float, int]]]:
    kwargs = {"congestion_control": name}
    pair = make_pair(seed=3, client_kwargs=kwargs, server_kwargs=kwargs, delay=0.05)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    if not paced:
        pair.client.sender.pacer = Unpaced(MDS)
    sent = _record(pair)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(size), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    return pair, sent


def _largest_burst(sent: list[tuple[float, int]]) -> int:
    per_instant = Counter(t for t, n in sent if n > 1000)  # data, not ACK-only
    return max(per_instant.values())


@pytest.mark.parametrize("name", ["newreno", "cubic", "bbr"])
def test_pacing_spreads_datagrams(name: str) -> None:
    _, sent = _bulk(name)
    big = [t for t, n in sent if n > 1000]
    # Paced, at most a burst leaves at once: ten datagrams, or 2 ms at the pacing
    # rate when that is more (here at most 2 * 1.5 MB / 100 ms = 30 MB/s: 50).
    assert _largest_burst(sent) <= 50
    assert len(set(big)) > len(big) // 3  # data left at many distinct instants
    # Unpaced, the sender releases a window at the instant its ACKs arrive (the
    # in-memory link has no bandwidth limit to spread them).
    _, unpaced = _bulk(name, paced=False)
    assert _largest_burst(unpaced) > 2 * _largest_burst(sent)


def test_bursts_stay_within_the_bucket() -> None:
    pair, sent = _bulk("newreno")
    big = [(t, n) for t, n in sent if n > 1000]
    # In any 5 ms, no more than a burst plus what the pacing rate allows: the rate is
    # at most 2 * cwnd / srtt (slow start) — with a 100 ms RTT and windows < 1.5 MB,
    # far less than the whole window at once.
    cc = pair.client.recovery.congestion
    srtt = pair.client.recovery.rtt.smoothed_rtt
    peak_rate = 2 * 1_500_000 / srtt
    window = 0.005
    j = 0
    total = 0
    for i, (t, n) in enumerate(big):
        total += n
        while big[j][0] < t - window:
            total -= big[j][1]
            j += 1
        assert total <= 12 * MDS + peak_rate * (window + PACING_QUANTUM), (i, total)
    assert cc.congestion_window > 0


def test_timer_carries_the_pacing_deadline() -> None:
    pair = make_pair(seed=3, delay=0.05)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    client = pair.client
    now = pair.net.now
    client.recovery.congestion.congestion_window = 400 * MDS  # room: only the pacer limits
    sid = client.create_stream()
    client.send_stream_data(sid, bytes(200 * MDS))
    out = client.datagrams_to_send(now)
    assert 1 <= len(out) <= 12
    deadline = client.sender.pacing_deadline
    assert deadline is not None and deadline > now
    timer = client.get_timer()
    assert timer is not None and timer <= deadline
    assert client.datagrams_to_send(now) == []  # nothing more before the deadline
    more = client.datagrams_to_send(deadline)
    assert len(more) >= 1


def test_ack_only_packets_are_not_paced() -> None:
    pair = make_pair(seed=3, delay=0.05)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    client = pair.client
    now = pair.net.now
    client.sender.pacer.set_rate(1.0, 12000, now)  # 1 byte/s
    client.sender.pacer.on_packet_sent(10**6, now)  # and the bucket is in debt
    # an ACK is owed: it still goes out
    client.acks.trackers[2].deadline = now
    client.acks.trackers[2].fresh = True
    out = client.datagrams_to_send(now)
    assert len(out) == 1


def test_pacer_set_rate_quantum_and_window() -> None:
    pacer = Pacer(MDS)
    pacer.set_rate(100_000_000.0, 10_000_000, 0.0)  # 100 MB/s: 2 ms = 200 kB burst
    assert pacer.capacity == pytest.approx(100_000_000 * PACING_QUANTUM)
    pacer.set_rate(100_000_000.0, 50_000, 0.0)  # never more than the window
    assert pacer.capacity == 50_000
    pacer.set_rate(None, 50_000, 0.0)
    assert pacer.rate is None and pacer.next_send_time(0.0) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_allowance_counts_what_packet_by_packet_pacing_allows(seed: int) -> None:
    """Pacer.allowance (the bulk send loop's count) equals the number of packets that
    next_send_time / on_packet_sent let out one after the other at the same instant."""
    import random

    rng = random.Random(seed)
    for _ in range(200):
        pacer = Pacer(MDS)
        window = rng.randrange(2 * MDS, 400 * MDS)
        pacer.set_rate(rng.uniform(1e5, 1e9), window, 0.0)
        now = 0.0
        for _ in range(rng.randrange(0, 30)):  # some history: sends and refills
            pacer.on_packet_sent(rng.choice((MDS, 1452, 60)), now)
            now += rng.uniform(0, 0.002)
        size = rng.choice((MDS, 1452, 1500))
        allowed = pacer.allowance(now, size)
        one_by_one = 0
        while pacer.next_send_time(now, size) <= now and one_by_one < 10_000:
            pacer.on_packet_sent(size, now)
            one_by_one += 1
        assert allowed == one_by_one


def test_unpaced_allowance_does_not_limit() -> None:
    pacer = Pacer(MDS)
    assert pacer.allowance(0.0, MDS) >= 1 << 20
