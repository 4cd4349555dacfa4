"""Arbitrary frames inside authenticated 1-RTT packets: the connection either accepts
them or closes with a typed transport error — never an internal error (a Python bug).

Each example completes a handshake in memory, then the client's 1-RTT keys seal a packet
whose payload is the fuzzed bytes (and, for the frame variant, a sequence of valid frame
types with fuzzed bodies), and the server processes it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.buffer import encode_varint
from quic.errors import TransportErrorCode
from quic.frames import FRAME_INFO
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler
from tests.support.quicpair import CLIENT_ADDR, Pair, make_pair

_FRAME_TYPES = sorted(FRAME_INFO)
_KNOWN_CODES = {int(code) for code in TransportErrorCode}


def _established() -> Pair:
    pair = make_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    return pair


def _inject(pair: Pair, payload: bytes) -> None:
    client = pair.client
    space = client.spaces[2]
    assert space.write is not None
    asm = PacketAssembler(1452)
    asm.begin_datagram(1452)
    assert asm.begin_packet(
        PacketType.ONE_RTT,
        client.version,
        client.cids.peer_cid,
        client.host_cid,
        space.write,
        2,
        space.next_pn,
        None,
    )
    space.next_pn += 1
    asm.push(payload[: asm.room])
    asm.end_packet()
    asm.end_datagram(pad_initial=False)
    pair.server.receive_datagram(asm.datagrams[0], CLIENT_ADDR, pair.net.now)


def _check(pair: Pair) -> None:
    server = pair.server
    assert server.last_internal_error is None, repr(server.last_internal_error)
    close = server._close_frame
    if close is not None:
        application, code, _frame_type, _reason = close
        assert not application
        assert code in _KNOWN_CODES or 0x100 <= code <= 0x1FF


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=300))
def test_random_payload(payload: bytes) -> None:
    pair = _established()
    _inject(pair, payload)
    _check(pair)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_FRAME_TYPES), st.binary(max_size=40)), min_size=1, max_size=6
    )
)
def test_valid_frame_types_with_fuzzed_bodies(frames: list[tuple[int, bytes]]) -> None:
    pair = _established()
    _inject(pair, b"".join(encode_varint(t) + body for t, body in frames))
    _check(pair)
