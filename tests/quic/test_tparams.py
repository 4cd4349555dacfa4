"""Transport parameters (RFC 9000 §7.4, §18; RFC 9221 §3; RFC 9368 §3-4)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

import pytest

from quic.buffer import decode_varint, encode_varint
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.tparams import (
    PARAMETERS,
    PreferredAddress,
    TransportParameters,
    VersionInformation,
    is_reserved_parameter_id,
)

TPE = TransportErrorCode.TRANSPORT_PARAMETER_ERROR
V1, V2 = 0x00000001, 0x6B3343CF
TOKEN = bytes(range(16))

# The quic_transport_parameters extension body of the RFC 9001 A.2 ClientHello.
RFC9001_CLIENT_PARAMS = bytes.fromhex(
    "0408ffffffffffffffff0504"
    "8000ffff07048000ffff080110010480"
    "0075300901100f088394c8f03e515708"
    "06048000ffff"
)

PREFERRED = PreferredAddress(
    IPv4Address("192.0.2.1"), 4433, IPv6Address("2001:db8::1"), 4434, b"\x42" * 8, TOKEN
)

SERVER_PARAMS = TransportParameters(
    original_destination_connection_id=b"\x83" * 8,
    max_idle_timeout=30_000,
    stateless_reset_token=TOKEN,
    max_udp_payload_size=1452,
    initial_max_data=1 << 20,
    initial_max_stream_data_bidi_local=1 << 18,
    initial_max_stream_data_bidi_remote=1 << 17,
    initial_max_stream_data_uni=1 << 16,
    initial_max_streams_bidi=1 << 60,
    initial_max_streams_uni=3,
    ack_delay_exponent=20,
    max_ack_delay=(1 << 14) - 1,
    disable_active_migration=True,
    preferred_address=PREFERRED,
    active_connection_id_limit=8,
    initial_source_connection_id=b"\x05" * 4,
    retry_source_connection_id=b"\x07" * 20,
    version_information=VersionInformation(V1, (V2,)),
    max_datagram_frame_size=65535,
)

# preferred_address value (RFC 9000 §18.2 layout), hand-built.
PREFERRED_BODY = (
    bytes([192, 0, 2, 1]) + (4433).to_bytes(2, "big")
    + IPv6Address("2001:db8::1").packed + (4434).to_bytes(2, "big")
    + b"\x08" + b"\x42" * 8 + TOKEN
)  # fmt: skip

CLIENT_PARAMS = TransportParameters(
    max_idle_timeout=10,
    initial_max_data=100,
    initial_source_connection_id=b"\x01\x02",
    version_information=VersionInformation(V1, (V1, V2, 0x1A2A3A4A)),
    max_datagram_frame_size=1200,
    extensions=((0x2AB2, b""), (0xFF04DE2B, b"\x01")),
)


def _error(data: bytes, is_client_sender: bool = False) -> QuicProtocolError:
    with pytest.raises(QuicProtocolError) as info:
        TransportParameters.decode(data, is_client_sender=is_client_sender)
    assert info.value.error_code == TPE
    return info.value


def _param(parameter_id: int, value: bytes) -> bytes:
    return encode_varint(parameter_id) + encode_varint(len(value)) + value


def test_rfc9001_client_hello_parameters() -> None:
    params = TransportParameters.decode(RFC9001_CLIENT_PARAMS, is_client_sender=True)
    assert params == TransportParameters(
        max_idle_timeout=30000,
        initial_max_data=(1 << 62) - 1,
        initial_max_stream_data_bidi_local=65535,
        initial_max_stream_data_bidi_remote=65535,
        initial_max_stream_data_uni=65535,
        initial_max_streams_bidi=16,
        initial_max_streams_uni=16,
        initial_source_connection_id=bytes.fromhex("8394c8f03e515708"),
    )
    again = TransportParameters.decode(params.encode(), is_client_sender=True)
    assert again == params


def test_defaults() -> None:
    params = TransportParameters.decode(b"", is_client_sender=False)
    assert params == TransportParameters()
    assert params.max_udp_payload_size == 65527
    assert params.ack_delay_exponent == 3
    assert params.max_ack_delay == 25
    assert params.active_connection_id_limit == 2
    assert params.max_datagram_frame_size == 0
    assert params.initial_source_connection_id is None
    assert TransportParameters().encode() == b""


def test_table_matches_dataclass() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(TransportParameters)}
    assert fields.pop("extensions") == ()
    assert fields == {spec.name: spec.default for spec in PARAMETERS}
    assert len({spec.id for spec in PARAMETERS}) == len(PARAMETERS)
    server_only = {spec.id for spec in PARAMETERS if spec.server_only}
    assert server_only == {0x00, 0x02, 0x0D, 0x10}


def test_explicit_bytes() -> None:
    params = TransportParameters(max_idle_timeout=30000, initial_max_data=1 << 20)
    assert params.encode() == bytes.fromhex("010480007530040480100000")
    params = TransportParameters(disable_active_migration=True, initial_source_connection_id=b"")
    assert params.encode() == bytes.fromhex("0c000f00")
    params = TransportParameters(version_information=VersionInformation(V2, (V2, V1)))
    assert params.encode() == bytes.fromhex("110c6b3343cf6b3343cf00000001")


@pytest.mark.parametrize(("params", "client"), [(SERVER_PARAMS, False), (CLIENT_PARAMS, True)])
def test_round_trip(params: TransportParameters, client: bool) -> None:
    data = params.encode()
    assert TransportParameters.decode(data, is_client_sender=client) == params
    greased = params.encode(grease=True)
    first_id, _ = decode_varint(greased, 0)
    assert is_reserved_parameter_id(first_id)
    assert TransportParameters.decode(greased, is_client_sender=client) == params


def test_preferred_address_helpers() -> None:
    assert PREFERRED.ipv4 == ("192.0.2.1", 4433)
    assert PREFERRED.ipv6 == ("2001:db8::1", 4434)
    v6_only = dataclasses.replace(PREFERRED, ipv4_address=IPv4Address(0), ipv4_port=0)
    assert v6_only.ipv4 is None
    decoded = TransportParameters.decode(
        TransportParameters(preferred_address=v6_only).encode(), is_client_sender=False
    )
    assert decoded.preferred_address == v6_only


def test_truncated_at_every_position() -> None:
    data = SERVER_PARAMS.encode()
    boundaries = set()
    pos = 0
    while pos < len(data):
        boundaries.add(pos)
        _, pos = decode_varint(data, pos)
        length, pos = decode_varint(data, pos)
        pos += length
    for cut in range(len(data)):
        if cut in boundaries:
            TransportParameters.decode(data[:cut], is_client_sender=False)
        else:
            _error(data[:cut])


def test_duplicate_parameter() -> None:
    _error(_param(0x01, b"\x05") + _param(0x04, b"\x01") + _param(0x01, b"\x05"))
    _error(_param(0x2AB2, b"") + _param(0x2AB2, b""))  # unknown ids too (§7.4)


@pytest.mark.parametrize(
    ("parameter_id", "value"),
    [(0x00, b"\x01"), (0x02, TOKEN), (0x0D, PREFERRED_BODY), (0x10, b"\x02")],
)
def test_client_must_not_send_server_only(parameter_id: int, value: bytes) -> None:
    data = _param(parameter_id, value)
    TransportParameters.decode(data, is_client_sender=False)
    error = _error(data, is_client_sender=True)
    assert "server-only" in error.reason


@pytest.mark.parametrize(
    ("parameter_id", "good", "bad"),
    [
        (0x03, 1200, 1199),  # max_udp_payload_size
        (0x08, 1 << 60, (1 << 60) + 1),  # initial_max_streams_bidi
        (0x09, 1 << 60, (1 << 60) + 1),  # initial_max_streams_uni
        (0x0A, 20, 21),  # ack_delay_exponent
        (0x0B, (1 << 14) - 1, 1 << 14),  # max_ack_delay
        (0x0E, 2, 1),  # active_connection_id_limit
    ],
)
def test_integer_limits(parameter_id: int, good: int, bad: int) -> None:
    TransportParameters.decode(_param(parameter_id, encode_varint(good)), is_client_sender=False)
    _error(_param(parameter_id, encode_varint(bad)))


def test_malformed_values() -> None:
    _error(_param(0x01, b"\x05\x00"))  # integer followed by junk
    _error(_param(0x01, b""))  # empty integer
    _error(_param(0x01, b"\x40"))  # truncated varint inside the value
    _error(_param(0x0F, b"c" * 21))  # connection ID too long
    _error(_param(0x02, TOKEN[:15]))  # reset token not 16 bytes
    _error(_param(0x02, TOKEN + b"x"))
    _error(_param(0x0C, b"\x00"))  # disable_active_migration must be empty
    # Non-minimal integer encodings are legal (RFC 9000 §16).
    params = TransportParameters.decode(_param(0x01, b"\x40\x05"), is_client_sender=True)
    assert params.max_idle_timeout == 5


def test_malformed_preferred_address() -> None:
    body = PREFERRED_BODY
    assert TransportParameters(preferred_address=PREFERRED).encode() == _param(0x0D, body)
    _error(_param(0x0D, body[:-1]))
    _error(_param(0x0D, body + b"\x00"))
    zero_cid = body[:24] + b"\x00" + body[-16:]
    _error(_param(0x0D, zero_cid))  # RFC 9000 §18.2: zero-length CID forbidden
    long_cid = body[:24] + b"\x15" + b"c" * 21 + body[-16:]
    _error(_param(0x0D, long_cid))
    _error(_param(0x0D, b""))


def test_preferred_address_with_zero_length_server_cid() -> None:
    data = _param(0x0F, b"") + _param(0x0D, PREFERRED_BODY)
    assert "zero-length" in _error(data).reason
    ok = _param(0x0F, b"\x01") + _param(0x0D, PREFERRED_BODY)
    assert TransportParameters.decode(ok, is_client_sender=False).preferred_address == PREFERRED


def test_malformed_version_information() -> None:
    _error(_param(0x11, b""))
    _error(_param(0x11, b"\x00\x00\x00\x01\x00\x00"))  # not a multiple of 4
    _error(_param(0x11, b"\x00\x00\x00\x00"))  # chosen version 0
    _error(_param(0x11, b"\x00\x00\x00\x01\x00\x00\x00\x00"))  # available version 0
    # A client's chosen version must be among its available versions; a server's need not.
    data = _param(0x11, b"\x00\x00\x00\x01" + V2.to_bytes(4, "big"))
    _error(data, is_client_sender=True)
    params = TransportParameters.decode(data, is_client_sender=False)
    assert params.version_information == VersionInformation(V1, (V2,))
    only_chosen = TransportParameters.decode(
        _param(0x11, b"\x00\x00\x00\x01"), is_client_sender=False
    )
    assert only_chosen.version_information == VersionInformation(V1, ())


def test_grease_and_unknown_parameters() -> None:
    assert [n for n in (27, 58, 89, 31 * 1000 + 27) if is_reserved_parameter_id(n)] == [
        27,
        58,
        89,
        31027,
    ]
    assert not is_reserved_parameter_id(0x20)
    data = _param(27, b"anything") + _param(31 * 7 + 27, b"") + _param(0x01, b"\x09")
    data += _param(0x2AB2, b"") + _param(0x7777, b"raw")
    params = TransportParameters.decode(data, is_client_sender=True)
    assert params.max_idle_timeout == 9
    assert params.extensions == ((0x2AB2, b""), (0x7777, b"raw"))


def test_truncated_header_fields() -> None:
    _error(b"\x40")  # id varint truncated
    _error(b"\x01")  # missing length
    _error(b"\x01\x05\x00")  # value shorter than its length


@pytest.mark.parametrize(
    "params",
    [
        TransportParameters(max_udp_payload_size=1000),
        TransportParameters(ack_delay_exponent=21),
        TransportParameters(max_ack_delay=1 << 14),
        TransportParameters(active_connection_id_limit=1),
        TransportParameters(initial_max_streams_bidi=(1 << 60) + 1),
        TransportParameters(initial_max_data=1 << 62),
        TransportParameters(initial_source_connection_id=b"c" * 21),
        TransportParameters(stateless_reset_token=b"short"),
        TransportParameters(preferred_address=dataclasses.replace(PREFERRED, connection_id=b"")),
        TransportParameters(version_information=VersionInformation(0, (V1,))),
        TransportParameters(version_information=VersionInformation(V1, (0,))),
        TransportParameters(extensions=((0x01, b"\x00"),)),
        TransportParameters(preferred_address=PREFERRED, initial_source_connection_id=b""),
        TransportParameters(extensions=((0x2AB2, b""), (0x2AB2, b""))),
    ],
)
def test_encoder_rejects(params: TransportParameters) -> None:
    with pytest.raises(ValueError):
        params.encode()


def test_integer_codec_caches_stay_bounded_and_checked() -> None:
    """Encoded/decoded integer parameters are remembered (a bounded table): a value seen
    before round-trips the same; an out-of-range one still fails after valid ones."""
    from quic import tparams

    sizes = []
    limit = tparams._INT_CACHE_LIMIT
    for count in (limit, 4 * limit):  # N and 4N new values: the same bound
        for n in range(count):
            params = TransportParameters(initial_max_data=10**6 * count + n, max_idle_timeout=7)
            data = params.encode()
            assert data == params.encode()
            assert TransportParameters.decode(data, is_client_sender=True) == params
            assert TransportParameters.decode(data, is_client_sender=False) == params
        sizes.append((len(tparams._ENCODED_INTS), len(tparams._DECODED_INTS)))
    assert all(enc <= limit and dec <= limit for enc, dec in sizes)
    with pytest.raises(ValueError):
        TransportParameters(ack_delay_exponent=21).encode()
    bad = encode_varint(0x0A) + encode_varint(1) + encode_varint(21)  # ack_delay_exponent
    for _ in range(2):
        with pytest.raises(QuicProtocolError):
            TransportParameters.decode(bad, is_client_sender=True)
    good = encode_varint(0x0A) + encode_varint(1) + encode_varint(20)
    assert TransportParameters.decode(good, is_client_sender=True).ack_delay_exponent == 20


def test_one_byte_fast_path_and_truncation() -> None:
    """Ids and lengths under 64 take one byte; others (min_ack_delay's id) and a lone
    id byte at the end still parse or fail as before."""
    params = TransportParameters(max_idle_timeout=30_000, max_ack_delay=25, min_ack_delay=1000)
    data = params.encode()
    assert TransportParameters.decode(data, is_client_sender=True) == params
    for cut in (data[:1], data + b"\x01", data + b"\x40"):
        with pytest.raises(QuicProtocolError):
            TransportParameters.decode(cut, is_client_sender=True)


def _reference_encoding(params: TransportParameters) -> bytes:
    """Every non-default parameter in table order, each encoded on its own (RFC 9000 §18)."""
    out = b""
    for spec in PARAMETERS:
        value = getattr(params, spec.name)
        if value == spec.default:
            continue
        if spec.kind == "int":
            body = encode_varint(value)
        elif spec.kind == "flag":
            body = b""
        elif spec.kind == "preferred_address":
            body = PREFERRED_BODY
        elif spec.kind == "version_information":
            versions = (value.chosen_version, *value.available_versions)
            body = b"".join(v.to_bytes(4, "big") for v in versions)
        else:
            body = value
        out += _param(spec.id, body)
    for parameter_id, body in params.extensions:
        out += _param(parameter_id, body)
    return out


@pytest.mark.parametrize(
    "params",
    [
        SERVER_PARAMS,
        CLIENT_PARAMS,
        TransportParameters(),
        TransportParameters(reset_stream_at=True, min_ack_delay=1000, max_ack_delay=30),
        dataclasses.replace(SERVER_PARAMS, disable_active_migration=False, reset_stream_at=True),
        dataclasses.replace(SERVER_PARAMS, version_information=VersionInformation(V2, (V2,))),
    ],
)
def test_encoding_in_runs_matches_reference(params: TransportParameters) -> None:
    """The configuration's integers and flags, encoded once per set of values (runs
    between the per-connection parameters), give the bytes of encoding each parameter
    on its own in table order, the first time and from the kept runs."""
    assert params.encode() == _reference_encoding(params)
    assert params.encode() == _reference_encoding(params)
    other_cids = dataclasses.replace(
        params, initial_source_connection_id=b"\x09" * 8, max_idle_timeout=params.max_idle_timeout
    )
    assert other_cids.encode() == _reference_encoding(other_cids)


def test_encoded_runs_and_versions_stay_bounded_and_checked() -> None:
    """N and 4N distinct configurations (and version lists): the kept encodings stay
    within their bound, each still right; an invalid value is refused every time."""
    from quic import tparams

    limit = tparams._RUNS_CACHE_LIMIT
    sizes = []
    for count in (limit, 4 * limit):
        for n in range(count):
            params = TransportParameters(
                initial_max_streams_uni=count * 1000 + n,
                version_information=VersionInformation(V1, (V1, 0x1000 * count + n)),
            )
            assert params.encode() == _reference_encoding(params)
        sizes.append((len(tparams._ENCODED_RUNS), len(tparams._ENCODED_VERSIONS)))
    assert all(runs <= limit and versions <= limit for runs, versions in sizes)
    good = TransportParameters(ack_delay_exponent=20)
    assert good.encode() == _reference_encoding(good)
    for _ in range(2):
        with pytest.raises(ValueError):
            TransportParameters(ack_delay_exponent=21).encode()
        with pytest.raises(ValueError):
            TransportParameters(version_information=VersionInformation(0, (V1,))).encode()
