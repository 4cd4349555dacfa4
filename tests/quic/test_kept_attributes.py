"""Values read per packet that are attributes kept in step with the state they describe,
not properties computed at each read (issue 10: a property read costs a call): on
random sequences of the operations that change that state, each attribute always
equals what the property it replaced computed.

- :attr:`quic.packet_builder.PacketAssembler.room` and ``packet``;
- :attr:`quic.conn_datagrams.DatagramChannel.pending` (the queue's length);
- :attr:`quic.cid.ConnectionIdManager.peer_cid` and ``active_peer_reset_token`` (those
  of the peer ID in use);
- :attr:`quic.endpoint_stateless.StatelessReplies.pending`;
- :attr:`quic.conn_handshake.HandshakeDriver.tokens_pending`;
- :attr:`quic.connection.QuicConnection.ecn_codepoint` (the build's codepoint).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections import deque

import pytest

from quic.cid import ConnectionIdManager
from quic.conn_datagrams import DatagramChannel
from quic.errors import QuicProtocolError
from quic.events import QuicEvent
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler
from quic.protection import AEAD_TAG_LENGTH
from tests.quic.test_endpoint_stateless import _replies, _short, _unknown_version
from tests.support.quicpair import make_pair

APPLICATION = 2
DCID = bytes(8)


def test_assembler_room_and_packet_follow_the_open_packet() -> None:
    rng = random.Random(10)
    for _ in range(200):
        asm = PacketAssembler(1200)
        budget = rng.randrange(40, 1300)
        asm.begin_datagram(budget)
        used = 0
        budget = min(budget, 1200)
        assert asm.room == asm.datagram_room == budget
        for pn in range(rng.randrange(1, 4)):
            before = asm.room
            opened = asm.begin_packet(
                PacketType.ONE_RTT,
                1,
                DCID,
                b"",
                None,
                APPLICATION,
                pn,
                None,  # type: ignore[arg-type]
            )
            if not opened:
                assert asm.room == before  # nothing opened, nothing taken
                break
            overhead = 1 + len(DCID) + 1 + AEAD_TAG_LENGTH
            used += overhead
            assert asm.room == budget - used
            assert asm.packet.packet_number == pn
            for _ in range(rng.randrange(3)):
                frame = bytes(rng.randrange(1, 40))
                if len(frame) > asm.room:
                    with pytest.raises(ValueError):
                        asm.push(frame)
                    continue
                asm.push(frame)
                used += len(frame)
            assert asm.room == budget - used
            open_packet = asm.packet
            sent = asm.end_packet()
            if sent is None:  # empty: abandoned, its header's room given back
                used -= overhead
            else:
                assert sent is open_packet
                used = budget - asm.room  # PADDING up to the minimum payload
                assert used >= sum(p.size for p in asm.packets)
            assert asm.room == budget - used


def _channel_ops(rng: random.Random, channel: DatagramChannel) -> None:
    op = rng.randrange(4)
    if op <= 1:
        with contextlib.suppress(ValueError):  # too large for a packet
            channel.send(bytes(rng.randrange(0, 1300)), 8, 1200)
    elif op == 2:
        asm = PacketAssembler(1200)
        asm.begin_datagram(rng.randrange(100, 1200))
        if asm.begin_packet(PacketType.ONE_RTT, 1, DCID, b"", None, APPLICATION, 0, None):  # type: ignore[arg-type]
            channel.write(asm)
    else:
        channel.shrink(rng.randrange(0, 1200))


def test_datagram_pending_is_the_queue_length() -> None:
    rng = random.Random(9221)
    for _ in range(50):
        events: deque[QuicEvent] = deque()
        channel = DatagramChannel(1200, rng.choice((1, 3, 8)), events)
        channel.set_peer_max_frame_size(rng.choice((0, 600, 65535)))
        assert channel.pending == 0
        for _ in range(60):
            _channel_ops(rng, channel)
            assert channel.pending == len(channel._queue or ())


def _cid_ops(rng: random.Random, cids: ConnectionIdManager, seq: list[int]) -> None:
    op = rng.randrange(7)
    try:
        if op <= 2:
            seq[0] += 1
            prior = rng.randrange(0, seq[0] + 1) if rng.random() < 0.3 else 0
            cids.on_new_connection_id(seq[0], prior, os.urandom(8), os.urandom(16))
        elif op == 3:
            cids.rotate_peer_cid()
        elif op == 4:
            reserved = cids.reserve_peer_cid()
            if reserved is not None and rng.random() < 0.5:
                cids.hand_over(reserved)
        elif op == 5:
            for sequence in list(cids._reserved):
                cids.release_peer_cid(sequence)
        else:
            cids.set_peer_reset_token(rng.choice(list(cids.peer) or [0]), os.urandom(16))
    except QuicProtocolError:
        pass  # a limit: the peer misbehaved; the tables are what they are


def test_peer_cid_and_reset_token_are_those_of_the_id_in_use() -> None:
    rng = random.Random(5)
    for _ in range(40):
        cids = ConnectionIdManager(os.urandom(8), 8, rng.choice((2, 4, 8)))
        cids.set_initial_peer_cid(os.urandom(8), rng.choice((None, os.urandom(16))))
        seq = [0]
        for _ in range(80):
            _cid_ops(rng, cids, seq)
            entry = cids.peer.get(cids.peer_active_sequence)
            if entry is None:
                continue  # nothing is sent without a peer ID (the connection closes)
            assert cids.peer_cid == entry.cid
            assert cids.active_peer_reset_token == entry.reset_token


def test_stateless_replies_pending_follows_the_queue() -> None:
    rng = random.Random(3)
    replies = _replies(max_pending_stateless_packets=8, stateless_reset_burst=4)
    assert not replies.pending
    for i in range(300):
        if rng.random() < 0.5:
            replies.unknown(_unknown_version(), ("10.0.0.1", 4433), i * 1e-3)
        else:
            replies.unknown(_short(os.urandom(8)), ("10.0.0.1", 4433), i * 1e-3)
        if rng.random() < 0.3:
            replies.take()
        assert replies.pending == bool(replies._queue)


def test_tokens_pending_counts_the_new_token_frames_owed() -> None:
    pair = make_pair(seed=7)
    pair.handshake()
    server = pair.server
    handshake = server.handshake
    rng = random.Random(7)
    for _ in range(30):
        for _ in range(rng.randrange(3)):
            handshake.queue_new_token(os.urandom(rng.randrange(16, 600)))
        assert handshake.tokens_pending == len(handshake._tokens_out or ())
        asm = PacketAssembler(1200)
        asm.begin_datagram(rng.randrange(100, 1200))
        if asm.begin_packet(PacketType.ONE_RTT, 1, DCID, b"", None, APPLICATION, 0, None):  # type: ignore[arg-type]
            handshake.write_tokens(asm)
        assert handshake.tokens_pending == len(handshake._tokens_out or ())


@pytest.mark.parametrize("ecn", [False, True])
def test_ecn_codepoint_is_the_latest_builds(ecn: bool) -> None:
    pair = make_pair(seed=2, ecn=ecn)
    pair.handshake()
    for conn in (pair.client, pair.server):
        if conn.max_datagram_payload:
            conn.send_datagram(b"x")
        conn.datagrams_to_send(pair.net.now)
        assert conn.ecn_codepoint == conn.ecn.send_codepoint
