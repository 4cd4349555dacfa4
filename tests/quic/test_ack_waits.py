"""An ACK frame that acknowledges every packet in flight waits for the reply (issue 10,
datagram ping-pong: the reply's build and sendmsg first, the ACK's RTT, congestion and
ECN work after, off the round trip's critical path): ``LossRecovery.waiting_ack``, set
by ``FrameDispatcher._may_wait``. It is processed before the next packet's frames,
before a build the window could limit, before a deadline or a timer, at its own
``now``; the state it leaves equals processing it at once."""

from __future__ import annotations

import random
from typing import Any

import pytest

from quic.congestion import NewReno
from quic.conn_keys import APPLICATION
from quic.connection import QuicConnection
from quic.errors import QuicProtocolError
from quic.events import PingAcknowledged
from quic.recovery import LossRecovery, SentPacket
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

_DGRAM = {"max_datagram_frame_size": 65536}


def _pair() -> Pair:
    pair = make_pair(seed=7, client_kwargs=dict(_DGRAM), server_kwargs=dict(_DGRAM))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    pair.run(max_time=1.0)  # the last ACKs settled
    return pair


def _send(sender: QuicConnection, receiver: QuicConnection, addr: Any, now: float) -> int:
    """What ``sender`` builds at ``now``, fed to ``receiver`` 1 ms later; datagrams."""
    out = sender.datagrams_to_send(now)
    for payload, _ in out:
        receiver.receive_datagram(payload, addr, now + 0.001)
    return len(out)


def _waiting(conn: QuicConnection) -> bool:
    return conn.recovery.waiting_ack is not None


def _ping_pong(pair: Pair, rounds: int, at_once: bool) -> dict[str, Any]:
    client, server = pair.client, pair.server
    now = pair.net.now + 0.01
    waited = 0
    for i in range(rounds):
        client.send_datagram(b"ping %d" % i)
        assert _send(client, server, CLIENT_ADDR, now) == 1
        now += 0.001
        if _waiting(server):
            waited += 1
        if at_once:
            server.recovery.process_waiting_ack()  # as if processed in the receive
        server.send_datagram(b"pong %d" % i)
        assert _send(server, client, SERVER_ADDR, now) == 1
        server.get_timer()  # the driver's next step after sending: the ACK processed
        assert not _waiting(server)
        client.get_timer()
        now += 0.001
    recovery = server.recovery
    rtt = recovery.rtt
    st = recovery.spaces[APPLICATION]
    return {
        "waited": waited,
        "counted": server.dispatcher.acks_waited,
        "cwnd": recovery.congestion.congestion_window,
        "in_flight": recovery.congestion.bytes_in_flight,
        "srtt": rtt.smoothed_rtt,
        "latest": rtt.latest_rtt,
        "min": rtt.min_rtt,
        "var": rtt.rttvar,
        "largest_acked": st.largest_acked,
        "tracked": sorted(st.sent),
        "pto_count": recovery.pto_count,
        "timer": server.get_timer(),
        "ecn": server.ecn.state,
    }


def _after_rounds(rounds: int = 3) -> tuple[Pair, float]:
    """A pair after ``rounds`` of ping-pong whose ACKs waited, and a time 1 s later."""
    pair = _pair()
    _ping_pong(pair, rounds, at_once=False)
    return pair, pair.net.now + 1.0


def _server_with_a_waiting_ack() -> tuple[QuicConnection, float]:
    """After three rounds, a ping reaches the server: its ACK of the last reply waits.
    Returns the server and the time the ping arrived."""
    pair, now = _after_rounds()
    pair.client.send_datagram(b"ping")
    assert _send(pair.client, pair.server, CLIENT_ADDR, now) == 1
    assert _waiting(pair.server)
    return pair.server, now


def test_the_ack_waits_for_the_reply_and_is_processed_before_the_deadline() -> None:
    pair, now = _after_rounds()  # a steady ping-pong
    client, server = pair.client, pair.server
    st = server.recovery.spaces[APPLICATION]
    tracked = sorted(st.sent)
    assert tracked  # the last reply, in flight
    sent_at = st.sent[tracked[-1]].time_sent
    waited = server.dispatcher.acks_waited
    client.send_datagram(b"ping")
    assert _send(client, server, CLIENT_ADDR, now) == 1
    assert _waiting(server)  # it acknowledges every tracked packet
    assert server.dispatcher.acks_waited == waited + 1
    assert sorted(st.sent) == tracked  # not yet released
    server.send_datagram(b"pong")
    assert _send(server, client, SERVER_ADDR, now + 0.002) == 1  # the reply goes first
    assert len(st.sent) == len(tracked) + 1
    server.get_timer()
    assert not _waiting(server)
    assert sorted(st.sent) == [st.largest_sent]  # the old ones released, the reply kept
    # the RTT sample at the ACK's own arrival (1 ms after the ping was built), not at
    # the reply's build 2 ms later or at get_timer()
    assert server.recovery.rtt.latest_rtt == pytest.approx(now + 0.001 - sent_at)


def test_waiting_leaves_the_state_that_processing_at_once_leaves() -> None:
    waited = _ping_pong(_pair(), 20, at_once=False)
    at_once = _ping_pong(_pair(), 20, at_once=True)
    assert waited.pop("waited") >= 19  # every round but perhaps the first
    assert waited.pop("counted") >= 19
    at_once.pop("waited")
    at_once.pop("counted")
    assert waited == at_once  # RTT sample, window, tracked packets, timer: the same


def test_the_next_packet_processes_a_waiting_ack_first() -> None:
    pair, now = _after_rounds()
    client, server = pair.client, pair.server
    client.send_datagram(b"one")
    assert _send(client, server, CLIENT_ADDR, now) == 1
    first = server.recovery.waiting_ack
    assert first is not None
    client.send_datagram(b"two")  # no reply in between: the same ACK again, or none
    _send(client, server, CLIENT_ADDR, now + 0.001)
    assert server.recovery.waiting_ack is not first  # the first one processed
    server.get_timer()
    assert not _waiting(server)
    assert not server.recovery.spaces[APPLICATION].sent  # everything acknowledged


def test_a_build_the_window_limits_processes_the_ack_first() -> None:
    """The ACK that frees the window is processed before a build that needs the room:
    the stream data blocked by the window goes out in that build, with no further
    input (a build that kept the ACK waiting would send nothing, and nothing would
    build again once it was processed)."""
    server, now = _server_with_a_waiting_ack()
    cc = server.recovery.congestion
    in_flight = cc.bytes_in_flight
    assert in_flight > 0  # the last reply, which the waiting ACK acknowledges
    mtu = server.max_datagram_size
    cc.congestion_window = in_flight + mtu - 1  # no room for a packet until it is processed
    assert cc.available() < mtu
    sid = server.get_next_available_stream_id()
    server.send_stream_data(sid, b"x" * 1000)
    out = server.datagrams_to_send(now + 0.002)
    assert not _waiting(server)
    assert len(out) == 1 and len(out[0][0]) > 1000  # sent now, not at a later event
    assert not server.streams.has_data()  # all of it in flight


def test_more_datagrams_than_the_window_holds_process_the_ack_first() -> None:
    server, now = _server_with_a_waiting_ack()
    cc = server.recovery.congestion
    # room for three packets of one datagram each until the ACK is processed, four after
    cc.congestion_window = cc.bytes_in_flight + 4 * server.max_datagram_size - 1
    for _ in range(4):
        server.send_datagram(b"y" * 1000)
    assert len(server.datagrams_to_send(now + 0.002)) == 4
    assert not _waiting(server)


def test_a_ping_in_flight_is_acknowledged_at_once() -> None:
    """An ACK whose packets carry an application PING is not set aside: its event
    is not left behind for a later wake-up."""
    pair, now = _after_rounds()
    client, server = pair.client, pair.server
    server.send_ping(42)
    server.send_datagram(b"pong")
    assert _send(server, client, SERVER_ADDR, now) == 1
    client.send_datagram(b"ping")
    client.acks.ack_at_once()
    assert _send(client, server, CLIENT_ADDR, now + 0.002) == 1
    assert not _waiting(server)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert PingAcknowledged(42) in events


def test_stats_see_a_waiting_ack_processed() -> None:
    server, _ = _server_with_a_waiting_ack()
    assert server.stats().bytes_in_flight == 0  # the reply it acknowledges released
    assert not _waiting(server)


def test_no_ack_waits_before_the_handshake_is_confirmed_or_with_qlog() -> None:
    pair = _pair()
    server = pair.server
    server.handshake.confirmed = False
    try:
        assert not server.dispatcher._may_wait(APPLICATION, ((0, 10**6),))
    finally:
        server.handshake.confirmed = True


def test_acks_all_agrees_with_the_path_on_ack_received_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``LossRecovery.acks_all`` (asked by the dispatcher) and the inline copy in
    ``on_ack_received`` that picks ``_on_ack_all`` say the same for every case."""
    taken: list[bool] = []
    real = LossRecovery._on_ack_all

    def spy(self: LossRecovery, *args: Any) -> Any:
        taken.append(True)
        return real(self, *args)

    monkeypatch.setattr(LossRecovery, "_on_ack_all", spy)
    rng = random.Random(5)
    seen = set()
    for _ in range(400):
        rec, sent, skip = _random_sends(rng)
        rec.handshake_confirmed = True
        if sent and not skip and rng.random() < 0.3:  # acknowledged already: fewer tracked
            rec.on_ack_received(APPLICATION, ((0, rng.randint(0, sent - 1)),), 0.0, 2.0)
        ranges = _random_ranges(rng, rec)
        if ranges is None:
            continue
        expected = rec.acks_all(APPLICATION, ranges)
        taken.clear()
        try:
            rec.on_ack_received(APPLICATION, ranges, 0.0, 3.0)
        except QuicProtocolError:
            assert not expected  # an ACK of a skipped number: never acks_all
            seen.add("error")
            continue
        assert bool(taken) == expected
        seen.add(expected)
    assert seen >= {True, False}


def test_the_waiting_ack_takes_the_prefix_path_after_the_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Processed after the reply left, the ACK that waited acknowledges every tracked
    packet but the reply: ``LossRecovery._on_ack_prefix``, not the general path."""
    server, now = _server_with_a_waiting_ack()
    calls: list[str] = []
    for name in ("_on_ack_prefix", "_on_ack_ranges", "_on_ack_all"):
        real = getattr(LossRecovery, name)

        def spy(self: LossRecovery, *args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(LossRecovery, name, spy)
    st = server.recovery.spaces[APPLICATION]
    server.send_datagram(b"pong")
    assert len(server.datagrams_to_send(now + 0.002)) == 1
    server.get_timer()
    assert calls == ["_on_ack_prefix"]
    assert sorted(st.sent) == [st.largest_sent]  # the reply, still in flight
    assert st.loss_time is None


def test_may_wait_asks_what_acks_all_says() -> None:
    """``FrameDispatcher._may_wait`` tests ``LossRecovery.acks_all`` inline: with the
    handshake confirmed, no qlog and packets without fates, it says yes exactly when
    ``acks_all`` does (and at most ``_MAX_WAITING`` packets are tracked)."""
    dispatcher = _pair().server.dispatcher
    rng = random.Random(9)
    seen = set()
    for _ in range(400):
        rec, sent, skip = _random_sends(rng)
        if sent > 1 and not skip and rng.random() < 0.3:
            rec.on_ack_received(APPLICATION, ((0, rng.randint(0, sent - 2)),), 0.0, 2.0)
        if sent > 3 and not skip and rng.random() < 0.2:  # a lost packet remembered
            rec.on_ack_received(APPLICATION, ((sent - 1, sent - 1),), 0.0, 2.0)
        ranges = _random_ranges(rng, rec)
        if ranges is None:
            continue
        dispatcher._recovery = rec
        expected = rec.acks_all(APPLICATION, ranges)
        assert dispatcher._may_wait(APPLICATION, ranges) == expected
        seen.add(expected)
    assert seen == {True, False}


def _random_sends(rng: random.Random) -> tuple[LossRecovery, int, bool]:
    """A server's recovery that sent 0-5 application packets, the third number
    skipped one time in five: ``(recovery, packets numbered, skipped)``."""
    rec = LossRecovery(NewReno(1200), is_client=False)
    sent = rng.randint(0, 5)
    skip = rng.random() < 0.2
    for pn in range(sent):
        if skip and pn == 2:
            rec.on_packet_number_skipped(APPLICATION, pn)
            continue
        rec.on_packet_sent(SentPacket(APPLICATION, pn, 100), 1.0 + pn / 1000)
    return rec, sent, skip


def _random_ranges(rng: random.Random, rec: LossRecovery) -> tuple[tuple[int, int], ...] | None:
    """An application-space ACK's ranges for ``rec``: one range within what it sent,
    and one time in five a second one below it; None if it sent nothing."""
    largest = rec.spaces[APPLICATION].largest_sent
    if largest < 0:
        return None
    lo = rng.randint(0, largest)
    ranges: tuple[tuple[int, int], ...] = ((lo, rng.randint(lo, largest)),)
    if rng.random() < 0.2 and lo > 1:
        ranges = (*ranges, (0, lo - 2))
    return ranges
