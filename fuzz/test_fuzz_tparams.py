"""Property tests for transport parameters: arbitrary bytes either decode or raise
QuicProtocolError; decode(encode(p)) == p, with and without greasing."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from quic.buffer import VARINT_MAX, encode_varint
from quic.errors import QuicProtocolError
from quic.tparams import (
    PARAMETERS,
    PreferredAddress,
    TransportParameters,
    VersionInformation,
    is_reserved_parameter_id,
)

varints = st.integers(0, VARINT_MAX)
cids = st.binary(max_size=20)
tokens = st.binary(min_size=16, max_size=16)
versions = st.integers(1, 0xFFFFFFFF)
ports = st.integers(0, 0xFFFF)

preferred_addresses = st.builds(
    PreferredAddress,
    st.builds(IPv4Address, st.integers(0, (1 << 32) - 1)),
    ports,
    st.builds(IPv6Address, st.integers(0, (1 << 128) - 1)),
    ports,
    st.binary(min_size=1, max_size=20),
    tokens,
)


@st.composite
def version_information(draw: st.DrawFn) -> VersionInformation:
    available = draw(st.lists(versions, max_size=5))
    chosen = draw(st.sampled_from(available) if available else versions)
    return VersionInformation(chosen, tuple(available))


_KNOWN_IDS = frozenset(spec.id for spec in PARAMETERS)
extension_ids = varints.filter(
    lambda i: i > 0x20 and not is_reserved_parameter_id(i) and i not in _KNOWN_IDS
)

transport_parameters = (
    st.builds(
        TransportParameters,
        original_destination_connection_id=st.none() | cids,
        max_idle_timeout=varints,
        stateless_reset_token=st.none() | tokens,
        max_udp_payload_size=st.integers(1200, VARINT_MAX),
        initial_max_data=varints,
        initial_max_stream_data_bidi_local=varints,
        initial_max_stream_data_bidi_remote=varints,
        initial_max_stream_data_uni=varints,
        initial_max_streams_bidi=st.integers(0, 1 << 60),
        initial_max_streams_uni=st.integers(0, 1 << 60),
        ack_delay_exponent=st.integers(0, 20),
        max_ack_delay=st.integers(0, (1 << 14) - 1),
        disable_active_migration=st.booleans(),
        preferred_address=st.none() | preferred_addresses,
        active_connection_id_limit=st.integers(2, VARINT_MAX),
        initial_source_connection_id=st.none() | cids,
        retry_source_connection_id=st.none() | cids,
        version_information=st.none() | version_information(),
        max_datagram_frame_size=varints,
        reset_stream_at=st.booleans(),
        min_ack_delay=st.none() | st.integers(0, (1 << 14) * 1000 - 1),
        extensions=st.lists(
            st.tuples(extension_ids, st.binary(max_size=20)), max_size=3, unique_by=lambda e: e[0]
        ).map(tuple),
    )
    .filter(lambda p: p.preferred_address is None or p.initial_source_connection_id != b"")
    .filter(
        # draft-ietf-quic-ack-frequency §3: min_ack_delay (µs) <= max_ack_delay (ms)
        lambda p: p.min_ack_delay is None or p.min_ack_delay <= p.max_ack_delay * 1000
    )
)


def _decode_and_reencode(data: bytes, is_client_sender: bool) -> None:
    try:
        params = TransportParameters.decode(data, is_client_sender=is_client_sender)
    except QuicProtocolError:
        return
    # Whatever decodes is valid, so it re-encodes and decodes to the same value.
    again = TransportParameters.decode(params.encode(), is_client_sender=is_client_sender)
    assert again == params


@given(transport_parameters, st.booleans())
def test_round_trip(params: TransportParameters, grease: bool) -> None:
    data = params.encode(grease=grease)
    assert TransportParameters.decode(data, is_client_sender=False) == params


@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes(data: bytes, is_client_sender: bool) -> None:
    _decode_and_reencode(data, is_client_sender)


@given(
    st.lists(st.tuples(st.integers(0, 0x40), st.binary(max_size=60)), max_size=8),
    st.booleans(),
)
def test_structured_garbage(entries: list[tuple[int, bytes]], is_client_sender: bool) -> None:
    # Well-framed parameters with arbitrary values exercise the per-kind validators.
    data = b"".join(encode_varint(i) + encode_varint(len(v)) + v for i, v in entries)
    _decode_and_reencode(data, is_client_sender)
