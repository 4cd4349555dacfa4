"""The small-packet (datagram ping-pong) shortcuts of the send path against the general
computations they stand for, on random states: same results, bit for bit.

- :meth:`quic.recovery.LossRecovery.get_loss_detection_timer` with only Application
  Data in flight computes the PTO inline (RFC 9002 §6.2.1, A.8) rather than through
  ``_pto_time_and_space``;
- :meth:`quic.pacing.Pacer.set_rate` without ``min``/``max`` calls (RFC 9002 §7.7);
- :meth:`quic.endpoint.QuicEndpoint.marked_datagrams_to_send` without the routed list;
- the DATAGRAM payload limits of QUIC and HTTP/3 without ``min``/``max`` calls."""

from __future__ import annotations

import random
from typing import Any

import pytest

from quic.congestion import NewReno, initial_window
from quic.endpoint import QuicEndpoint
from quic.pacing import PACING_QUANTUM, Pacer
from quic.recovery import LossRecovery
from quic.rtt import RttEstimator


def general_loss_detection_timer(rec: LossRecovery) -> float | None:
    """RFC 9002 A.8 as the general path computes it (GetLossTimeAndSpace, then
    GetPtoTimeAndSpace for every space)."""
    loss_time = None
    for st in rec.spaces:
        if st.loss_time is not None and (loss_time is None or st.loss_time < loss_time):
            loss_time = st.loss_time
    if loss_time is not None:
        return loss_time
    if rec.amplification_limited:
        return None
    if not rec.ack_eliciting_in_flight and rec.peer_completed_address_validation:
        return None
    return rec._pto_time_and_space()[0]


def random_recovery(rng: random.Random) -> LossRecovery:
    rtt = RttEstimator()
    if rng.random() < 0.9:
        rtt.update(rng.uniform(1e-5, 0.5), rng.uniform(0, 0.03), 0.0, None)
        for _ in range(rng.randrange(4)):
            rtt.update(rng.uniform(1e-5, 0.5), rng.uniform(0, 0.03), 0.0, 0.025)
    rec = LossRecovery(
        NewReno(1200),
        rtt,
        rng.choice((0.0, 0.025, rng.uniform(0, 0.3))),
        is_client=rng.random() < 0.5,
    )
    rec.pto_count = rng.choice((0, 0, 1, 2, 5, 29, 30, 31, 40))
    rec.handshake_confirmed = rng.random() < 0.7
    rec.has_handshake_keys = rng.random() < 0.5
    rec.amplification_limited = rng.random() < 0.1
    rec._handshake_acked = rng.random() < 0.5
    rec._pto_anchor = rng.choice((None, rng.uniform(0, 100)))
    for st in rec.spaces:
        st.ack_eliciting_in_flight = rng.choice((0, 0, 1, 3))
        st.time_of_last_ack_eliciting = rng.uniform(0, 100)
        st.loss_time = rng.uniform(0, 100) if rng.random() < 0.1 else None
    return rec


def test_loss_detection_timer_matches_the_general_path() -> None:
    rng = random.Random(9002)
    inline = 0
    for _ in range(30000):
        rec = random_recovery(rng)
        s = rec.spaces
        if (
            not s[0].ack_eliciting_in_flight
            and not s[1].ack_eliciting_in_flight
            and s[2].ack_eliciting_in_flight
            and all(st.loss_time is None for st in s)
            and not rec.amplification_limited
        ):
            inline += 1
        assert rec.get_loss_detection_timer() == general_loss_detection_timer(rec)
    assert inline > 1000  # the shortcut was exercised


def general_set_rate(
    pacer: Pacer, rate: float | None, congestion_window: int, now: float
) -> tuple[float, float]:
    """RFC 9002 §7.7 bucket after ``set_rate``, with the builtins: (capacity, tokens)."""
    tokens = pacer._tokens
    last = pacer._last
    if (last is None or now > last) and last is not None and pacer._rate is not None:
        tokens = min(tokens + (now - last) * pacer._rate, pacer._capacity)
    mds = pacer.max_datagram_size
    capacity = float(max(min(congestion_window, initial_window(mds)), 2 * mds))
    if rate:
        capacity = max(capacity, min(rate * PACING_QUANTUM, float(congestion_window)))
    return capacity, min(tokens, capacity)


def test_set_rate_matches_the_general_arithmetic() -> None:
    rng = random.Random(77)
    for _ in range(3000):
        pacer = Pacer(rng.choice((1200, 1252, 1452, 1500, 9000, 65527)))
        now = 0.0
        for _ in range(20):
            rate = rng.choice((None, 0.0, rng.uniform(1e3, 1e10)))
            window = rng.choice((2400, 14720, rng.randrange(1, 1 << 24)))
            if rng.random() < 0.5:
                now += rng.uniform(0, 0.01)
            expected = general_set_rate(pacer, rate, window, now)
            pacer.set_rate(rate, window, now)
            assert (pacer._capacity, pacer._tokens) == expected
            if rng.random() < 0.5:
                pacer.on_packet_sent(rng.choice((60, 1200, 1452)), now)


def test_marked_datagrams_are_the_routed_ones_without_the_local_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QuicEndpoint.marked_datagrams_to_send builds its triples directly (one datagram
    per connection: no list copied): the same as routed_datagrams_to_send's, in order."""
    rng = random.Random(5)
    for _ in range(500):
        stateless = [
            (rng.randbytes(3), ("10.0.0.1", rng.randrange(9)))
            for _ in range(rng.choice((0, 0, 1, 3)))
        ]
        served = [
            (
                [
                    (rng.randbytes(4), ("10.0.0.2", i), rng.randrange(2))
                    for i in range(rng.choice((1, 1, 2, 5)))
                ],
                rng.choice((0, 2)),
            )
            for _ in range(rng.choice((0, 1, 1, 3)))
        ]
        results: list[list[Any]] = []
        for method in (
            QuicEndpoint.routed_datagrams_to_send,
            QuicEndpoint.marked_datagrams_to_send,
        ):
            endpoint = QuicEndpoint()
            endpoint._replies._queue = list(stateless)
            endpoint._replies.pending = bool(stateless)
            monkeypatch.setattr(
                endpoint, "_serve", lambda now, only=None, s=served: [(list(d), c) for d, c in s]
            )
            results.append(method(endpoint, 0.0))
            assert not endpoint._replies.pending
        routed, marked = results
        assert marked == [(data, addr, ecn) for data, addr, ecn, _ in routed]


def test_datagram_payload_limits_match_min_max() -> None:
    """DatagramChannel.max_payload and h3's max_h3_datagram_payload without min/max
    calls (RFC 9221 §3, §5; RFC 9297 §2.1): the same limits."""
    from h3.datagrams import max_h3_datagram_payload
    from quic.buffer import varint_size
    from quic.conn_datagrams import _SHORT_HEADER_FIXED, DatagramChannel

    rng = random.Random(9221)
    channel = DatagramChannel.__new__(DatagramChannel)
    for _ in range(20000):
        peer_max = rng.choice((0, 1, 2, 3, 4, 65536, rng.randrange(1 << 16)))
        channel.peer_max_frame_size = peer_max
        cid, mds = rng.randrange(21), rng.choice((0, 20, 30, 1200, 1452, rng.randrange(1 << 16)))
        # the largest payload whose frame (type, Length of at least 2 bytes) fits both
        frame = min(peer_max, mds - (_SHORT_HEADER_FIXED + cid))
        expected = frame - 3
        while expected > 0 and 1 + max(2, varint_size(expected)) + expected > frame:
            expected -= 1  # a 4-byte Length above 16,383
        expected = max(0, expected)
        assert channel.max_payload(cid, mds) == (expected if peer_max else 0)
        quic_max, sid = rng.randrange(-5, 1 << 14), 4 * rng.randrange(1 << rng.choice((4, 20, 40)))
        assert max_h3_datagram_payload(quic_max, sid) == max(0, quic_max - varint_size(sid >> 2))
