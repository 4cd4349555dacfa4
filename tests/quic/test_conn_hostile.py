"""A hostile peer against one connection: bounded state, linear cost, no oversize datagram.

Findings 6 and 7 of issue 8 and the limits they brought (``docs/limits.md``).
The attacker is the client of an in-memory pair: it seals arbitrary frames with its own
1-RTT keys (:mod:`tests.support.quicinject`) and hands them to the server directly; what
the server sends is collected and, unless a test says otherwise, never delivered — the
attacker withholds every acknowledgment. Work is measured with counters (function calls
in the server, entries in its tables, bytes retained), never with clocks, and compared
between N and 4N inputs.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from quic.connection import ConnectionState, QuicConnection
from quic.errors import TransportErrorCode
from quic.frames import (
    decode_frames,
    encode_new_connection_id_frame,
    encode_path_challenge_frame,
    encode_retire_connection_id_frame,
)
from quic.packet import PacketType, encode_long_header
from quic.packet_builder import PacketAssembler
from tests.support.quicinject import ack_everything, seal_1rtt
from tests.support.quicpair import CLIENT_ADDR, Pair, client_config, make_pair

TOKEN = bytes(16)


def _established(**server_kwargs: Any) -> Pair:
    pair = make_pair(server_kwargs=server_kwargs)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.2)  # let the handshake's last ACKs and NEW_CONNECTION_IDs settle
    return pair


class Attack:
    """Drives the server of an established pair as a hostile client."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.server = pair.server
        self.now = pair.net.now
        self.sent: list[bytes] = []  # every datagram the server sent during the attack

    def inject(self, payload: bytes) -> None:
        data = seal_1rtt(self.pair.client, payload, self.now)
        self.server.receive_datagram(data, CLIENT_ADDR, self.now)

    def collect(self) -> list[bytes]:
        out = [data for data, _ in self.server.datagrams_to_send(self.now)]
        self.sent += out
        return out

    def ack(self) -> None:
        frame = ack_everything(self.server)
        if frame:
            self.inject(frame)

    def step(self, seconds: float = 0.001) -> None:
        self.now += seconds
        timer = self.server.get_timer()
        if timer is not None and timer <= self.now:
            self.server.handle_timer(self.now)

    def server_frames(self, kind: str | None = None) -> list[Any]:
        """Decode what the server sent (the attacker holds the 1-RTT keys), optionally
        only the frames of one class (by name)."""
        client = self.pair.client
        frames: list[Any] = []
        cid_len = len(client.host_cid)
        largest = client.acks.largest(2)
        for data in self.sent:
            opened = client.keys.open(2, memoryview(data), 1 + cid_len, largest, self.now)
            assert opened is not None
            largest = max(largest, opened[1])
            frames += decode_frames(opened[2], PacketType.ONE_RTT)
        return [f for f in frames if kind is None or type(f).__name__ == kind]


@contextmanager
def counting_calls() -> Iterator[list[int]]:
    """Count Python function calls made while the block runs (a work counter)."""
    count = [0]

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            count[0] += 1

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)


def _cost(run: Callable[[int], None], n: int) -> int:
    with counting_calls() as count:
        run(n)
    return count[0]


# -- finding 6: NEW_CONNECTION_ID with Retire Prior To games (RFC 9000 §5.1.2) ------------


BASE = 100  # above the sequence numbers the client issued during the handshake


def _ncid(seq: int, retire_prior_to: int) -> bytes:
    return encode_new_connection_id_frame(seq, retire_prior_to, seq.to_bytes(8, "big"), TOKEN)


def test_retire_prior_to_games_with_acks_withheld_end_with_connection_id_limit_error() -> None:
    attack = Attack(_established())
    server = attack.server
    limit = server.cids.max_pending_retirements
    assert limit == 32  # the default, at least twice active_connection_id_limit (8)
    seen = []
    for seq in range(BASE, BASE + 4 * limit):
        attack.inject(_ncid(seq, seq))  # each frame retires every older connection ID
        attack.collect()  # ... and the attacker never acknowledges the retirements
        seen.append(server.queue_sizes()["cid_retirements"])
        if server.state is not ConnectionState.CONNECTED:
            break
    assert max(seen) <= limit
    assert server.state is ConnectionState.CLOSING
    assert server._close_frame is not None
    assert server._close_frame[1] == TransportErrorCode.CONNECTION_ID_LIMIT_ERROR
    assert all(len(d) <= server.max_datagram_size for d in attack.sent)


def test_retire_prior_to_games_cost_linear_and_datagrams_bounded() -> None:
    # The attacker acknowledges promptly, so the connection stays up: each
    # NEW_CONNECTION_ID retires the previous ID. Work per frame must stay constant and
    # the peer-ID and retirement tables bounded, whatever N.
    def run(n: int) -> None:
        attack = Attack(_established())
        server = attack.server
        known = set(server.cids.peer)  # what the client issued during the handshake
        for seq in range(BASE, BASE + n):
            attack.step()  # a millisecond between frames: the pacer lets each reply go
            attack.inject(_ncid(seq, seq))
            attack.collect()
            attack.ack()
            sizes = server.queue_sizes()
            assert sizes["peer_cids"] <= 2 and sizes["cid_retirements"] <= 2
        assert server.state is ConnectionState.CONNECTED
        assert all(len(d) <= server.max_datagram_size for d in attack.sent)
        retired = {f.sequence_number for f in attack.server_frames("RetireConnectionIdFrame")}
        expected = known | set(range(BASE, BASE + n - 1))
        assert retired == expected  # every older ID retired once, none forgotten

    n = 150
    ratio = _cost(run, 4 * n) / _cost(run, n)
    assert ratio < 6, ratio


def test_ids_arriving_below_retire_prior_to_are_bounded_and_deduplicated() -> None:
    # After Retire Prior To jumps to 10**6, every "new" ID below it must be retired at
    # once (RFC 9000 §5.1.2). The same sequence number sent again is not a new
    # retirement; distinct ones beyond the limit are CONNECTION_ID_LIMIT_ERROR.
    attack = Attack(_established())
    server = attack.server
    attack.inject(_ncid(10**6, 10**6))  # retires the client's IDs so far
    before = server.cids.pending_retirements
    for _ in range(50):  # a retransmitted frame: one retirement only
        attack.inject(_ncid(10**6 - 1, 0))
    assert server.cids.pending_retirements == before + 1
    assert server.state is ConnectionState.CONNECTED
    for seq in range(100, 200):
        attack.inject(_ncid(seq, 0))
    assert server.cids.pending_retirements <= server.cids.max_pending_retirements
    assert server._close_frame is not None
    assert server._close_frame[1] == TransportErrorCode.CONNECTION_ID_LIMIT_ERROR


def test_retirements_beyond_one_packet_wait_for_the_next_one() -> None:
    # 2,100 retirements owed at once (the limit raised to allow it): they leave in
    # several packets, none above max_datagram_size (the old code built one 267 kB
    # "datagram" from such a queue).
    attack = Attack(_established(max_pending_cid_retirements=4000))
    server = attack.server
    n = 2100  # a multiple of 30
    attack.inject(_ncid(10**6, 10**6))  # retire prior to 10**6 first
    before = server.cids.pending_retirements
    for start in range(10**6 - n, 10**6, 30):  # 30 frames per packet
        attack.inject(b"".join(_ncid(seq, 0) for seq in range(start, start + 30)))
    assert server.cids.pending_retirements == before + n
    for _ in range(20):
        attack.collect()
        attack.ack()
    retired = [f.sequence_number for f in attack.server_frames("RetireConnectionIdFrame")]
    assert len(retired) == len(set(retired)) == before + n
    assert len([d for d in attack.sent if len(d) > 1000]) >= 5  # spread over packets
    assert all(len(d) <= server.max_datagram_size for d in attack.sent)


def test_max_pending_cid_retirements_is_configurable_never_below_twice_the_id_limit() -> None:
    raised = Attack(_established(max_pending_cid_retirements=100)).server
    assert raised.cids.max_pending_retirements == 100
    floor = Attack(_established(max_pending_cid_retirements=1)).server
    assert floor.cids.max_pending_retirements == 2 * floor.configuration.active_connection_id_limit


# -- finding 7: PATH_CHALLENGE flood while ACKs are withheld (RFC 9000 §8.2.2, §21.9) -----


def _challenges(attack: Attack, n: int, per_packet: int = 50) -> None:
    for start in range(0, n, per_packet):
        count = min(per_packet, n - start)
        frames = b"".join(
            encode_path_challenge_frame((start + i).to_bytes(8, "big")) for i in range(count)
        )
        attack.inject(frames)
        attack.collect()


def test_path_challenge_flood_is_bounded_keeps_the_newest_and_costs_linear() -> None:
    peaks: dict[int, int] = {}
    retained: dict[int, int] = {}

    def run(n: int) -> None:
        attack = Attack(_established())
        server = attack.server
        limit = server.configuration.max_pending_path_responses
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        peak = 0
        for start in range(0, n, 50):
            _challenges_from(attack, start, 50)
            peak = max(peak, server.queue_sizes()["path_responses"])
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        peaks[n] = peak
        retained[n] = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert peak <= limit
        assert server.paths.responses_dropped >= n - 200  # most of the flood
        assert all(len(d) <= server.max_datagram_size for d in attack.sent)
        assert server.state is ConnectionState.CONNECTED
        # the responses still queued answer the newest challenges
        attack.step(5.0)  # a PTO: probes carry what is queued
        attack.collect()
        answered = [f.data for f in attack.server_frames("PathResponseFrame")]
        assert (n - 1).to_bytes(8, "big") in answered

    n = 1000
    ratio = _cost(run, 4 * n) / _cost(run, n)
    assert ratio < 6, ratio
    assert peaks[n] == peaks[4 * n]
    assert retained[4 * n] < 2 * max(retained[n], 64 * 1024)


def _challenges_from(attack: Attack, start: int, count: int) -> None:
    frames = b"".join(
        encode_path_challenge_frame((start + i).to_bytes(8, "big")) for i in range(count)
    )
    attack.inject(frames)
    attack.collect()


def test_path_responses_are_sent_once_each_in_expanded_datagrams() -> None:
    attack = Attack(_established())
    server = attack.server
    _challenges(attack, 5)
    responses = attack.server_frames("PathResponseFrame")
    assert sorted(f.data for f in responses) == [i.to_bytes(8, "big") for i in range(5)]
    assert all(len(d) >= 1200 for d in attack.sent)  # RFC 9000 §8.2.2
    assert server.queue_sizes()["path_responses"] == 0


def test_max_pending_path_responses_is_configurable() -> None:
    attack = Attack(_established(max_pending_path_responses=3))
    server = attack.server
    # fill the congestion window first, so that responses must wait
    sid = server.create_stream(False)
    server.send_stream_data(sid, os.urandom(200_000))
    attack.collect()
    assert server.recovery.congestion.available() < server.max_datagram_size
    _challenges(attack, 40, per_packet=10)
    assert server.queue_sizes()["path_responses"] == 3
    assert server.paths.responses_dropped == 37


# -- undecryptable packets buffered until their keys arrive (RFC 9001 §5.7) ---------------


def test_max_buffered_undecryptable_packets_is_configurable() -> None:
    for limit in (4, 16):
        client = QuicConnection(client_config(max_buffered_undecryptable_packets=limit))
        client.connect(("127.0.0.1", 4433), 0.0)
        body = bytes(40)
        header = encode_long_header(
            PacketType.HANDSHAKE, client.version, client.host_cid, b"\x01" * 8, b"", 42, 2, 0
        )
        for _ in range(100):  # Handshake packets before any Handshake key: buffered
            client.receive_datagram(header + body, ("127.0.0.1", 4433), 0.0)
        assert client.queue_sizes()["buffered_packets"] == limit
        assert client.dropped_packets == 100 - limit


def test_retire_connection_id_flood_from_the_peer_stays_bounded() -> None:
    # The peer retires what we issue as fast as we issue it (RFC 9000 §19.16): we issue
    # replacements, never more than the peer's limit at a time.
    attack = Attack(_established())
    server = attack.server
    for _ in range(30):
        attack.collect()
        newest = max(server.cids.local)
        for seq in list(server.cids.local):
            if seq != newest and seq != 0:
                attack.inject(encode_retire_connection_id_frame(seq))
        attack.ack()
        assert server.queue_sizes()["local_cids"] <= 8
    assert server.state is ConnectionState.CONNECTED
    events = [server.next_event() for _ in range(server.queue_sizes()["events"])]
    assert len(events) > 30  # routing updates for every issued and retired ID


def test_the_packet_assembler_refuses_a_frame_larger_than_the_room() -> None:
    # the safety net under every frame writer: no datagram ever exceeds its budget
    pair = _established()
    write = pair.client.spaces[2].write
    assert write is not None
    asm = PacketAssembler(1200)
    asm.begin_datagram(1200)
    assert asm.begin_packet(PacketType.ONE_RTT, 1, b"\x01" * 8, b"", write, 2, 0, None)
    room = asm.room
    asm.push(bytes(room - 1))
    with pytest.raises(ValueError):
        asm.push(b"\x01\x01")
    asm.push(b"\x01")
    asm.end_packet()
    assert asm.end_datagram(pad_initial=False) == 1200
