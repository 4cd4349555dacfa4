"""Packets *noted* in an :class:`~quic.ack.AckTracker` (a reader's run of in-order
ack-eliciting packets, no call per packet) end as :meth:`~quic.ack.AckTracker.on_packet`
one by one would: every method settles the noted run first, so frames handled between
the packets (an ACK of ours acknowledged, ACK_FREQUENCY, IMMEDIATE_ACK) see the same
tracker either way."""

from __future__ import annotations

import random

import pytest

from quic.ack import AckTracker
from tests.support.quicpair import make_pair


def _state(tracker: AckTracker) -> dict[str, object]:
    tracker.has_ranges()  # settles
    state = {n: getattr(tracker, n) for n in AckTracker.__slots__ if not n.startswith("noted_")}
    state["received"] = list(tracker.received)
    return state


def _note(tracker: AckTracker, pn: int, now: float) -> None:
    """What PacketReader.read_short_run does for a noted packet."""
    assert pn == tracker.largest + 1 or (tracker.noted_first >= 0 and pn == tracker.noted_stop)
    if tracker.noted_first < 0:
        tracker.noted_first = pn
        tracker.noted_time = now
    tracker.noted_stop = pn + 1


@pytest.mark.parametrize("seed", range(12))
def test_noted_packets_end_as_on_packet_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    noted = AckTracker(0.025, False, max_ranges=8)
    direct = AckTracker(0.025, False, max_ranges=8)
    pn = 0
    now = 1.0
    sequence = 0
    sent_acks: list[int] = []
    for _ in range(400):
        step = rng.random()
        if step < 0.55:  # the next packet in order, ack-eliciting: noted vs on_packet
            _note(noted, pn, now)
            direct.on_packet(pn, True, now)
            pn += 1
        elif step < 0.65:  # a gap, a late one, a non-eliciting one or a CE mark
            kind = rng.randrange(4)
            late = max(0, pn - rng.randrange(1, 6))
            args = [
                (pn + rng.randrange(1, 4), True, now, False),
                (late, True, now, False),
                (pn, False, now, False),
                (pn, True, now, True),
            ][kind]
            if kind != 1 or not direct.is_duplicate(late):
                for tracker in (noted, direct):
                    tracker.on_packet(*args)
            pn = max(pn, args[0] + 1)
        elif step < 0.72:
            for tracker in (noted, direct):
                tracker.request_immediate_ack()
        elif step < 0.77:
            sequence += 1
            threshold = rng.randrange(0, 6)
            reordering = rng.choice((0, 1))
            delay = 0.01 * rng.randrange(1, 5)
            for tracker in (noted, direct):
                tracker.on_ack_frequency(sequence, threshold, delay, reordering, now)
        elif step < 0.8:  # an ACK of ours sent
            largest = direct.largest
            for tracker in (noted, direct):
                tracker.on_ack_sent(largest)
            if largest >= 0:
                sent_acks.append(largest)
        elif step < 0.85 and sent_acks:  # one acknowledged, maybe with packets noted
            largest = sent_acks.pop(rng.randrange(len(sent_acks)))
            for tracker in (noted, direct):
                tracker.on_ack_fate(True, largest)
        elif step < 0.9:
            assert noted.is_duplicate(max(0, pn - 1)) == direct.is_duplicate(max(0, pn - 1))
        else:
            now += rng.choice((0.0, 0.001, 0.03))
            assert noted.wants_ack(now) == direct.wants_ack(now)
        if rng.random() < 0.2:
            assert _state(noted) == _state(direct)
        if noted.reordering_threshold > 1:  # a reader notes only with 0 or 1
            for tracker in (noted, direct):
                tracker.reordering_threshold = 1
    assert _state(noted) == _state(direct)
    assert noted.ranges() == direct.ranges() and noted.ack_delay(now) == direct.ack_delay(now)


def test_settle_records_the_run_as_one_range_and_makes_the_ack_due() -> None:
    tracker = AckTracker(0.025, False)
    tracker.on_packet(0, True, 1.0)
    tracker.on_ack_sent(0)
    for pn in range(1, 11):
        _note(tracker, pn, 2.0)
    assert tracker.largest == 0 and tracker.noted_first == 1  # not yet recorded
    assert tracker.wants_ack(2.0)  # settled: ten packets, above the threshold of 2
    assert (tracker.largest, tracker.largest_time, tracker.ack_eliciting_since_ack) == (
        10,
        2.0,
        10,
    )
    assert list(tracker.received) == [range(0, 11)] and tracker.noted_first == -1


def test_a_bulk_transfer_leaves_no_packet_noted() -> None:
    """After each batch the receiver's tracker is settled (the reader settles before it
    returns): what the send path reads directly is current."""
    pair = make_pair(seed=3)
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"n" * 200_000, True)
    pair.run(lambda: pair.stream_done(sid))
    tracker = pair.server.acks.trackers[2]
    assert tracker.noted_first == -1
    assert tracker.largest >= 100
