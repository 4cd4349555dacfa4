"""RTT estimation (RFC 9002 §5)."""

from __future__ import annotations

import pytest

from quic.rtt import K_GRANULARITY, K_INITIAL_RTT, RttEstimator


def test_initial_values() -> None:
    # RFC 9002 §5.3, §6.2.2: smoothed = 333 ms, rttvar = 166.5 ms before any sample.
    rtt = RttEstimator()
    assert rtt.smoothed_rtt == K_INITIAL_RTT == 0.333
    assert rtt.rttvar == pytest.approx(0.1665)
    assert rtt.min_rtt == 0.0 and rtt.latest_rtt == 0.0
    assert not rtt.has_sample and rtt.first_rtt_sample is None
    # PTO base = 333 + 4 * 166.5 = 999 ms: "handshakes starting with a PTO of 1 second".
    assert rtt.pto_base() == pytest.approx(0.999)


def test_first_sample_replaces_initial_estimate_and_ignores_ack_delay() -> None:
    rtt = RttEstimator()
    rtt.update(0.100, ack_delay=0.050, now=5.0)
    assert rtt.latest_rtt == 0.100
    assert rtt.min_rtt == 0.100
    assert rtt.smoothed_rtt == 0.100
    assert rtt.rttvar == pytest.approx(0.050)
    assert rtt.first_rtt_sample == 5.0 and rtt.has_sample


def test_subsequent_sample_ewma() -> None:
    rtt = RttEstimator()
    rtt.update(0.100, 0.0, now=1.0)
    rtt.update(0.200, 0.0, now=2.0)
    # rttvar = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 ms; smoothed = 7/8*100 + 1/8*200 = 112.5
    assert rtt.rttvar == pytest.approx(0.0625)
    assert rtt.smoothed_rtt == pytest.approx(0.1125)
    assert rtt.min_rtt == 0.100
    assert rtt.latest_rtt == 0.200
    assert rtt.first_rtt_sample == 1.0


def test_ack_delay_subtracted_when_plausible() -> None:
    rtt = RttEstimator()
    rtt.update(0.100, 0.0, now=1.0)
    rtt.update(0.150, 0.030, now=2.0)  # 150 >= 100 + 30 -> adjusted 120
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.120)
    assert rtt.rttvar == pytest.approx(0.75 * 0.050 + 0.25 * 0.020)


def test_ack_delay_not_subtracted_below_min_rtt() -> None:
    # RFC 9002 §5.3: MUST NOT subtract if the result would be smaller than min_rtt.
    rtt = RttEstimator()
    rtt.update(0.100, 0.0, now=1.0)
    rtt.update(0.120, 0.050, now=2.0)  # 120 < 100 + 50 -> sample used unadjusted
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.120)


def test_ack_delay_capped_by_max_ack_delay_only_when_passed() -> None:
    # Before handshake confirmation (max_ack_delay=None) the full delay is used.
    before = RttEstimator()
    before.update(0.100, 0.0, now=1.0)
    before.update(0.300, 0.150, now=2.0)  # adjusted = 150 ms
    assert before.smoothed_rtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.150)
    # After confirmation the delay is capped at max_ack_delay = 25 ms.
    after = RttEstimator()
    after.update(0.100, 0.0, now=1.0)
    after.update(0.300, 0.150, now=2.0, max_ack_delay=0.025)  # adjusted = 275 ms
    assert after.smoothed_rtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.275)


def test_min_rtt_tracks_minimum_without_ack_delay() -> None:
    rtt = RttEstimator()
    rtt.update(0.100, 0.0, now=1.0)
    rtt.update(0.080, 0.070, now=2.0)
    assert rtt.min_rtt == 0.080  # local observation only, no delay subtracted
    rtt.update(0.300, 0.0, now=3.0)
    assert rtt.min_rtt == 0.080


def test_persistent_congestion_resets_min_rtt_to_latest() -> None:
    rtt = RttEstimator()
    rtt.update(0.050, 0.0, now=1.0)
    rtt.update(0.400, 0.0, now=2.0)
    rtt.on_persistent_congestion()
    assert rtt.min_rtt == 0.400


def test_pto_base_granularity_floor() -> None:
    rtt = RttEstimator()
    for i in range(200):  # identical samples drive rttvar towards zero
        rtt.update(0.010, 0.0, now=float(i))
    assert 4 * rtt.rttvar < K_GRANULARITY
    assert rtt.pto_base() == pytest.approx(rtt.smoothed_rtt + K_GRANULARITY)


def test_loss_delay() -> None:
    rtt = RttEstimator()
    assert rtt.loss_delay() == pytest.approx(9 / 8 * 0.333)
    rtt.update(0.100, 0.0, now=1.0)
    rtt.update(0.200, 0.0, now=2.0)  # latest 200 > smoothed 112.5
    assert rtt.loss_delay() == pytest.approx(9 / 8 * 0.200)
    tiny = RttEstimator(initial_rtt=0.0001)
    assert tiny.loss_delay() == K_GRANULARITY


def test_reset_and_custom_initial_rtt() -> None:
    rtt = RttEstimator(initial_rtt=0.1)
    assert rtt.smoothed_rtt == 0.1 and rtt.rttvar == 0.05
    rtt.update(0.02, 0.0, now=1.0)
    rtt.reset()
    assert rtt.smoothed_rtt == 0.1 and not rtt.has_sample and rtt.min_rtt == 0.0
    rtt.reset(initial_rtt=0.2)
    assert rtt.smoothed_rtt == 0.2 and rtt.rttvar == 0.1
    with pytest.raises(ValueError):
        RttEstimator(initial_rtt=0.0)
    with pytest.raises(ValueError):
        rtt.reset(initial_rtt=-1.0)


def test_negative_sample_clamped() -> None:
    rtt = RttEstimator()
    rtt.update(-0.5, 0.0, now=0.0)
    assert rtt.latest_rtt == 0.0 and rtt.smoothed_rtt == 0.0
    assert rtt.pto_base() == K_GRANULARITY


def test_the_pto_attribute_follows_every_sample_and_reset() -> None:
    """RttEstimator.pto is kept with each sample (the deadline reads it after every
    build, issue 10): always smoothed_rtt + max(4 * rttvar, kGranularity)."""

    def expected(rtt: RttEstimator) -> float:
        return rtt.smoothed_rtt + max(4 * rtt.rttvar, K_GRANULARITY)

    rtt = RttEstimator(initial_rtt=0.1)
    assert rtt.pto == pytest.approx(expected(rtt)) and rtt.pto_base() == rtt.pto
    for i, (sample, delay) in enumerate([(0.05, 0.0), (0.2, 0.01), (0.001, 0.0), (0.03, 0.5)]):
        rtt.update(sample, delay, now=float(i), max_ack_delay=0.025)
        assert rtt.pto == pytest.approx(expected(rtt))
    rtt.reset(initial_rtt=0.2)
    assert rtt.pto == pytest.approx(expected(rtt))
    assert rtt.pto == pytest.approx(0.2 + 4 * 0.1)  # rttvar starts at initial_rtt / 2
