"""The endpoint's stateless path as a component (quic.endpoint_stateless): what it
answers, what it drops, what it hands back for admission, and its one bounded queue."""

from __future__ import annotations

import os
from typing import Any

from quic.endpoint_stateless import StatelessReplies
from quic.packet import PacketType, encode_short_header, parse_header, parse_version_negotiation
from quic.versions import QuicVersion
from tests.support.inject import client_initial
from tests.support.quicpair import server_config

ADDR = ("192.0.2.7", 4433)
UNKNOWN_VERSION = 0x0A0A0A0A


def _replies(**kwargs: Any) -> StatelessReplies:
    config = server_config(**kwargs)
    return StatelessReplies(config, 8, os.urandom, None)


def _unknown_version(size: int = 1200) -> bytes:
    head = (
        bytes((0xC0,))
        + UNKNOWN_VERSION.to_bytes(4, "big")
        + bytes((8,))
        + b"D" * 8
        + bytes((8,))
        + b"S" * 8
    )
    return head + bytes(size - len(head))


def _short(dcid: bytes, size: int = 60) -> bytes:
    head = encode_short_header(dcid, 2, 7)
    return head + os.urandom(size - len(head))


def test_an_unknown_version_gets_one_version_negotiation_listing_ours() -> None:
    replies = _replies()
    assert replies.unknown(_unknown_version(), ADDR, 0.0) is None
    (vn, addr), *rest = replies.take()
    assert addr == ADDR and not rest and not replies.pending
    header = parse_version_negotiation(vn)
    assert header.dcid == b"S" * 8 and header.scid == b"D" * 8  # RFC 9000 §17.2.1
    assert int(QuicVersion.VERSION_1) in header.supported_versions


def test_a_small_datagram_of_an_unknown_version_is_dropped_not_answered() -> None:
    replies = _replies()
    assert replies.unknown(_unknown_version(1199), ADDR, 0.0) is None  # RFC 9000 §14.1
    assert replies.take() == [] and replies.dropped == 1


def test_garbage_is_counted_and_never_raises() -> None:
    replies = _replies()
    for data in (b"", b"\xc0", b"\xc0\x00\x00\x00\x01\xff", os.urandom(3)):
        assert replies.unknown(data, ADDR, 0.0) is None
    assert replies.dropped == 4 and not replies.pending


def test_an_admissible_initial_is_returned_with_its_header() -> None:
    replies = _replies()
    dcid, scid = os.urandom(8), os.urandom(8)
    header = replies.unknown(client_initial(dcid, scid, 0, b"\x01"), ADDR, 0.0)
    assert header is not None and header.packet_type is PacketType.INITIAL
    assert header.dcid == dcid and header.scid == scid
    assert not replies.pending and replies.dropped == 0


def test_initials_too_small_or_with_a_short_dcid_are_dropped() -> None:
    replies = _replies()
    small = client_initial(os.urandom(8), os.urandom(8), 0, b"\x01", datagram_size=1100)
    short_cid = client_initial(os.urandom(7), os.urandom(8), 0, b"\x01")
    assert replies.unknown(small, ADDR, 0.0) is None  # RFC 9000 §14.1
    assert replies.unknown(short_cid, ADDR, 0.0) is None  # RFC 9000 §7.2
    assert replies.dropped == 2


def test_validation_with_retry_always_answers_with_a_retry_and_admits_nothing() -> None:
    replies = _replies(retry="always")
    initial = client_initial(os.urandom(8), os.urandom(8), 0, b"\x01")
    header = replies.unknown(initial, ADDR, 0.0)
    assert header is not None
    assert replies.validate(header, initial, ADDR, 0, 0.0) is None
    ((retry, addr),) = replies.take()
    assert addr == ADDR
    assert parse_header(retry, 0, 8).packet_type is PacketType.RETRY


def test_validation_without_retry_admits_the_initial() -> None:
    replies = _replies(retry="never")
    initial = client_initial(os.urandom(8), os.urandom(8), 0, b"\x01")
    header = replies.unknown(initial, ADDR, 0.0)
    assert header is not None
    verdict = replies.validate(header, initial, ADDR, 0, 0.0)
    assert verdict is not None and verdict.admit and not replies.pending


def test_a_short_header_of_a_forgotten_connection_gets_a_reset_with_its_token() -> None:
    replies = _replies()
    dcid = os.urandom(8)
    replies.unknown(_short(dcid), ADDR, 0.0)
    ((reset, _),) = replies.take()
    assert reset[-16:] == replies.reset_token(dcid)  # RFC 9000 §10.3
    assert len(reset) < 60 and replies.resets_sent == 1


def _flood(count: int, take_every: int | None) -> tuple[int, int, int]:
    """``count`` unknown-version Initials and short headers; the largest queue seen."""
    replies = _replies(max_pending_stateless_packets=32, stateless_reset_burst=8)
    largest = sent = 0
    for i in range(count):
        replies.unknown(_unknown_version(), ADDR, i * 1e-3)
        replies.unknown(_short(os.urandom(8)), ADDR, i * 1e-3)
        largest = max(largest, len(replies._queue))
        if take_every is not None and i % take_every == 0:
            sent += len(replies.take())
    return largest, sent + len(replies.take()), replies.dropped


def test_the_reply_queue_is_bounded_and_a_flood_costs_linear_work() -> None:
    # nobody transmits: the queue stops at its limit, the rest is dropped and counted
    for n in (500, 2_000):
        largest, sent, dropped = _flood(n, None)
        assert largest == 32 and sent == 32 and dropped == 2 * n - 32
    # transmitting as it goes: VN answers every unknown version; resets stay rate limited
    small = _flood(500, 4)
    large = _flood(2_000, 4)
    assert small[0] <= 32 and large[0] <= 32
    assert small[1] >= 500 and large[1] >= 2_000
    resets_small, resets_large = small[1] - 500, large[1] - 2_000
    # 32 per second over 0.5 s and 2 s (plus the burst of 8): rate, not input, bounds them
    assert resets_small <= 8 + 32 * 0.5 + 1 and resets_large <= 8 + 32 * 2 + 1
