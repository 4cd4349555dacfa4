"""Transport-level error-handling rules, one table: each rule with its section and the
error code the endpoint must close with (RFC 9000 §10.2, §20.1).

Every row is played end to end against a real connection of an in-memory pair (fake
clock) and checks the CONNECTION_CLOSE the detecting endpoint sends — its error code
and, where the RFC ties the error to a frame, the frame type — and that no exception
escaped an entry point:

* ``TPARAM_RULES``: transport parameters sent by a client or a server that are invalid
  or not allowed from that role (RFC 9000 §7.3, §7.4, §18.2; RFC 9368 §4;
  draft-ietf-quic-reliable-stream-reset §3). The sender's encoded parameters are
  altered (raw bytes, so that values the encoder refuses can be sent);
* ``FRAME_RULES``: frames in authenticated 1-RTT packets (``tests/support/
  quicinject.py``) that break a stream-state, role, limit or encoding rule (§3, §4,
  §12.4, §19, RFC 9221 §3);
* ``INITIAL_RULES``: hand-built client Initial packets (``tests/support/inject.py``)
  with frames Initial packets may not carry (§12.4 Table 3) or reserved header bits
  set (§17.2); and a 1-RTT packet with reserved bits set (§17.3.1);
* ``HANDSHAKE_RULES``: Handshake packets sealed with a connection's own Handshake
  keys mid-handshake, in both directions, carrying frames Handshake packets may not
  carry (§12.4 Table 3, RFC 9221 §4, the drafts' frame tables);
* the §12.4 Table 3 matrix itself, written out here independently of the codec's table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from quic.buffer import encode_varint
from quic.conn_handshake import HandshakeDriver
from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.errors import QuicProtocolError
from quic.errors import TransportErrorCode as E
from quic.events import ConnectionTerminated
from quic.frames import (
    FRAME_INFO,
    check_frame_allowed,
    encode_ack_frame,
    encode_max_stream_data_frame,
    encode_new_connection_id_frame,
    encode_reset_stream_frame,
    encode_retire_connection_id_frame,
    encode_stop_sending_frame,
    encode_stream_data_blocked_frame,
    encode_stream_frame_header,
)
from quic.packet import PacketType, encode_long_header, encode_short_header
from quic.protection import initial_keys, min_payload_length
from quic.tls.engine import TlsEngine
from tests.quic.test_conn_hostile import _established
from tests.support.inject import client_initial
from tests.support.quicinject import seal_1rtt, seal_handshake
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair, server_config

V = encode_varint


def _param(parameter_id: int, value: bytes) -> bytes:
    """One raw transport parameter (RFC 9000 §18)."""
    return V(parameter_id) + V(len(value)) + value


def _stream(sid: int, data: bytes = b"x", offset: int = 0, fin: bool = False) -> bytes:
    return encode_stream_frame_header(sid, offset, len(data), fin) + data


def _closed_with(conn: QuicConnection) -> tuple[int, int | None]:
    """(error code, frame type) of the CONNECTION_CLOSE ``conn`` sent."""
    frame = conn.closer.frame
    assert frame is not None, "the connection did not close"
    application, code, frame_type, _reason = frame
    assert not application
    return code, frame_type


# -- transport parameters --------------------------------------------------------------------

_PREFERRED = (
    bytes(4) + bytes(2) + bytes(16) + bytes(2) + bytes([8]) + b"\x07" * 8 + b"\x05" * 16
)  # RFC 9000 §18.2, Preferred Address Format

#: (rule, section, sender, replaced fields, raw parameters appended, expected error)
TPARAM_RULES: list[tuple[str, str, str, dict[str, Any], bytes, int]] = [
    ("client sends original_destination_connection_id", "RFC 9000 §18.2", "client",
     {}, _param(0x00, bytes(8)), E.TRANSPORT_PARAMETER_ERROR),
    ("client sends preferred_address", "RFC 9000 §18.2", "client",
     {}, _param(0x0D, _PREFERRED), E.TRANSPORT_PARAMETER_ERROR),
    ("client sends retry_source_connection_id", "RFC 9000 §18.2", "client",
     {}, _param(0x10, bytes(8)), E.TRANSPORT_PARAMETER_ERROR),
    ("client sends stateless_reset_token", "RFC 9000 §18.2", "client",
     {}, _param(0x02, bytes(16)), E.TRANSPORT_PARAMETER_ERROR),
    ("max_udp_payload_size below 1200", "RFC 9000 §18.2", "client",
     {}, _param(0x03, V(1199)), E.TRANSPORT_PARAMETER_ERROR),
    ("max_udp_payload_size below 1200 (server)", "RFC 9000 §18.2", "server",
     {}, _param(0x03, V(1199)), E.TRANSPORT_PARAMETER_ERROR),
    ("ack_delay_exponent above 20", "RFC 9000 §18.2", "client",
     {}, _param(0x0A, V(21)), E.TRANSPORT_PARAMETER_ERROR),
    ("max_ack_delay of 2^14 or more", "RFC 9000 §18.2", "server",
     {}, _param(0x0B, V(1 << 14)), E.TRANSPORT_PARAMETER_ERROR),
    ("active_connection_id_limit below 2", "RFC 9000 §18.2", "client",
     {"active_connection_id_limit": 2}, _param(0x0E, V(1)), E.TRANSPORT_PARAMETER_ERROR),
    ("initial_max_streams_bidi above 2^60", "RFC 9000 §4.6", "client",
     {"initial_max_streams_bidi": 0}, _param(0x08, V((1 << 60) + 1)),
     E.TRANSPORT_PARAMETER_ERROR),
    ("initial_max_streams_uni above 2^60", "RFC 9000 §4.6", "server",
     {"initial_max_streams_uni": 0}, _param(0x09, V((1 << 60) + 1)),
     E.TRANSPORT_PARAMETER_ERROR),
    ("duplicate transport parameter", "RFC 9000 §7.4", "client",
     {}, _param(0x04, V(1000)), E.TRANSPORT_PARAMETER_ERROR),  # initial_max_data again
    ("initial_source_connection_id missing (client)", "RFC 9000 §7.3", "client",
     {"initial_source_connection_id": None}, b"", E.TRANSPORT_PARAMETER_ERROR),
    ("initial_source_connection_id missing (server)", "RFC 9000 §7.3", "server",
     {"initial_source_connection_id": None}, b"", E.TRANSPORT_PARAMETER_ERROR),
    ("initial_source_connection_id mismatch", "RFC 9000 §7.3", "client",
     {"initial_source_connection_id": b"\x01" * 8}, b"", E.TRANSPORT_PARAMETER_ERROR),
    ("original_destination_connection_id mismatch", "RFC 9000 §7.3", "server",
     {"original_destination_connection_id": b"\x02" * 8}, b"",
     E.TRANSPORT_PARAMETER_ERROR),
    ("original_destination_connection_id missing", "RFC 9000 §7.3", "server",
     {"original_destination_connection_id": None}, b"", E.TRANSPORT_PARAMETER_ERROR),
    ("retry_source_connection_id without a Retry", "RFC 9000 §7.3", "server",
     {}, _param(0x10, bytes(8)), E.TRANSPORT_PARAMETER_ERROR),
    ("stateless_reset_token not 16 bytes", "RFC 9000 §18.2", "server",
     {"stateless_reset_token": None}, _param(0x02, bytes(15)), E.TRANSPORT_PARAMETER_ERROR),
    ("preferred_address with a zero-length CID", "RFC 9000 §18.2", "server",
     {}, _param(0x0D, _PREFERRED[:24] + b"\x00" + b"\x05" * 16),
     E.TRANSPORT_PARAMETER_ERROR),
    ("disable_active_migration with a value", "RFC 9000 §18.2", "client",
     {"disable_active_migration": False}, _param(0x0C, b"\x01"), E.TRANSPORT_PARAMETER_ERROR),
    ("reset_stream_at with a value", "draft-ietf-quic-reliable-stream-reset §3", "server",
     {"reset_stream_at": False}, _param(0x1D, b"\x00"), E.TRANSPORT_PARAMETER_ERROR),
    ("version_information not a multiple of 4", "RFC 9368 §4", "client",
     {"version_information": None}, _param(0x11, b"\x00\x00\x00\x01\x00"),
     E.TRANSPORT_PARAMETER_ERROR),
    ("client's Chosen Version not in its Available Versions", "RFC 9368 §4", "client",
     {"version_information": None}, _param(0x11, bytes.fromhex("00000001 6b3343cf")),
     E.TRANSPORT_PARAMETER_ERROR),
    ("client's Chosen Version not the version of its Initial", "RFC 9368 §4", "client",
     {"version_information": None}, _param(0x11, bytes.fromhex("6b3343cf 6b3343cf")),
     E.VERSION_NEGOTIATION_ERROR),
    ("server's Chosen Version not the version in use", "RFC 9368 §4", "server",
     {"version_information": None}, _param(0x11, bytes.fromhex("6b3343cf 6b3343cf 00000001")),
     E.VERSION_NEGOTIATION_ERROR),
]  # fmt: skip


@pytest.fixture
def altered_parameters(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Make the client's or the server's TLS carry altered transport parameters."""
    real = HandshakeDriver._make_tls

    def install(sender: str, fields: dict[str, Any], raw: bytes) -> None:
        def make_tls(self: HandshakeDriver) -> TlsEngine:
            tls = real(self)
            if self.is_client == (sender == "client"):
                params = dataclasses.replace(self.local_params, **fields)
                tls.transport_parameters = params.encode() + raw
            return tls

        monkeypatch.setattr(HandshakeDriver, "_make_tls", make_tls)

    yield install


@pytest.mark.parametrize(
    ("rule", "section", "sender", "fields", "raw", "code"),
    TPARAM_RULES,
    ids=[row[0] for row in TPARAM_RULES],
)
def test_transport_parameter_rule(
    altered_parameters: Callable[..., None],
    rule: str,
    section: str,
    sender: str,
    fields: dict[str, Any],
    raw: bytes,
    code: int,
) -> None:
    altered_parameters(sender, fields, raw)
    pair = make_pair()
    peer = "server" if sender == "client" else "client"
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, sender)), max_time=10)
    detector = pair.server if peer == "server" else pair.client
    assert _closed_with(detector)[0] == code, (rule, section)
    term = pair.events_of(ConnectionTerminated, sender)[0]
    assert (term.error_code, term.by_peer) == (code, True), (rule, section)


# -- frames in 1-RTT packets -------------------------------------------------------------------

# Stream IDs seen from the server (RFC 9000 §2.1): client bidi 0, 4; server bidi 1, 5;
# client uni 2, 6; server uni 3, 7. The client may open 128 streams of each kind.
_LIMIT_BIDI = 4 * 128  # the first client bidi stream beyond initial_max_streams_bidi
_LIMIT_UNI = 4 * 128 + 2


def _server_uni(pair: Pair) -> int:
    sid = pair.server.create_stream(bidirectional=False)
    pair.server.send_stream_data(sid, b"from the server")
    return sid


def _client_uni(pair: Pair) -> int:
    sid = pair.client.create_stream(bidirectional=False)
    pair.client.send_stream_data(sid, b"from the client")
    pair.run(lambda: sid in pair.data["server"])
    return sid


def _unsent_pn(pair: Pair) -> bytes:
    largest = pair.server.recovery.spaces[2].largest_sent
    return encode_ack_frame([(0, largest + 1000)], 0)


def _ncid(seq: int, retire: int, cid: bytes) -> bytes:
    return encode_new_connection_id_frame(seq, retire, cid, bytes([seq & 0xFF]) * 16)


Payload = Callable[[Pair], bytes]

#: (rule, section, target, payload(pair), expected error, expected frame type or None,
#:  server configuration)
FRAME_RULES: list[tuple[str, str, str, Payload, int, int | None, dict[str, Any]]] = [
    # -- stream states (RFC 9000 §3, §19.x) -------------------------------------------
    ("STREAM on a locally initiated unidirectional stream", "RFC 9000 §19.8", "server",
     lambda p: _stream(_server_uni(p)), E.STREAM_STATE_ERROR, 0x0A, {}),
    ("STREAM on a local unidirectional stream not yet opened", "RFC 9000 §19.8", "server",
     lambda p: _stream(3), E.STREAM_STATE_ERROR, 0x0A, {}),
    ("STREAM on a local bidirectional stream not yet opened", "RFC 9000 §19.8", "server",
     lambda p: _stream(5), E.STREAM_STATE_ERROR, 0x0A, {}),
    ("RESET_STREAM on a send-only stream", "RFC 9000 §19.4", "server",
     lambda p: encode_reset_stream_frame(_server_uni(p), 1, 0), E.STREAM_STATE_ERROR, 0x04, {}),
    ("RESET_STREAM on a local stream not yet opened", "RFC 9000 §19.4", "server",
     lambda p: encode_reset_stream_frame(1, 1, 0), E.STREAM_STATE_ERROR, 0x04, {}),
    ("STREAM_DATA_BLOCKED on a send-only stream", "RFC 9000 §19.13", "server",
     lambda p: encode_stream_data_blocked_frame(_server_uni(p), 0), E.STREAM_STATE_ERROR,
     0x15, {}),
    ("MAX_STREAM_DATA on a receive-only stream", "RFC 9000 §19.10", "server",
     lambda p: encode_max_stream_data_frame(_client_uni(p), 10**6), E.STREAM_STATE_ERROR,
     0x11, {}),
    ("MAX_STREAM_DATA on a local stream not yet opened", "RFC 9000 §19.10", "server",
     lambda p: encode_max_stream_data_frame(5, 10**6), E.STREAM_STATE_ERROR, 0x11, {}),
    ("STOP_SENDING on a receive-only stream", "RFC 9000 §19.5", "server",
     lambda p: encode_stop_sending_frame(_client_uni(p), 1), E.STREAM_STATE_ERROR, 0x05, {}),
    ("STOP_SENDING on a local stream not yet opened", "RFC 9000 §19.5", "server",
     lambda p: encode_stop_sending_frame(1, 1), E.STREAM_STATE_ERROR, 0x05, {}),
    ("STREAM on a stream of the server's, at the client", "RFC 9000 §19.8", "client",
     lambda p: _stream(2), E.STREAM_STATE_ERROR, 0x0A, {}),
    # -- stream limits (RFC 9000 §4.6) -----------------------------------------------
    ("STREAM beyond the bidirectional stream limit", "RFC 9000 §4.6, §19.8", "server",
     lambda p: _stream(_LIMIT_BIDI), E.STREAM_LIMIT_ERROR, 0x0A, {}),
    ("STREAM beyond the unidirectional stream limit", "RFC 9000 §4.6, §19.8", "server",
     lambda p: _stream(_LIMIT_UNI), E.STREAM_LIMIT_ERROR, 0x0A, {}),
    ("RESET_STREAM beyond the stream limit", "RFC 9000 §4.6", "server",
     lambda p: encode_reset_stream_frame(_LIMIT_BIDI, 1, 0), E.STREAM_LIMIT_ERROR, 0x04, {}),
    ("MAX_STREAM_DATA beyond the stream limit", "RFC 9000 §4.6", "server",
     lambda p: encode_max_stream_data_frame(_LIMIT_BIDI, 5), E.STREAM_LIMIT_ERROR, 0x11, {}),
    ("MAX_STREAMS above 2^60", "RFC 9000 §19.11", "server",
     lambda p: b"\x12" + V((1 << 60) + 1), E.FRAME_ENCODING_ERROR, 0x12, {}),
    ("STREAMS_BLOCKED above 2^60", "RFC 9000 §19.14", "server",
     lambda p: b"\x17" + V((1 << 60) + 1), E.FRAME_ENCODING_ERROR, 0x17, {}),
    # -- flow control and final size (RFC 9000 §4) -------------------------------------
    ("STREAM beyond the stream's flow-control limit", "RFC 9000 §4.1", "server",
     lambda p: _stream(0, b"y", offset=5000), E.FLOW_CONTROL_ERROR, 0x0E,
     {"initial_max_stream_data": 1000}),
    ("STREAM beyond the connection's flow-control limit", "RFC 9000 §4.1", "server",
     lambda p: _stream(0, b"a" * 900) + _stream(4, b"b" * 900), E.FLOW_CONTROL_ERROR, 0x0A,
     {"initial_max_data": 1500}),
    ("RESET_STREAM final size beyond the flow-control limit", "RFC 9000 §4.5, §19.4",
     "server", lambda p: encode_reset_stream_frame(0, 1, 5000), E.FLOW_CONTROL_ERROR, 0x04,
     {"initial_max_stream_data": 1000}),
    ("STREAM data beyond the final size", "RFC 9000 §4.5", "server",
     lambda p: _stream(0, b"ab", fin=True) + _stream(0, b"c", offset=2), E.FINAL_SIZE_ERROR,
     0x0E, {}),
    ("FIN changing the final size", "RFC 9000 §4.5", "server",
     lambda p: _stream(0, b"ab", fin=True) + _stream(0, b"a", fin=True), E.FINAL_SIZE_ERROR,
     0x0B, {}),
    ("RESET_STREAM final size below the data received", "RFC 9000 §4.5", "server",
     lambda p: _stream(0, b"abc") + encode_reset_stream_frame(0, 1, 2), E.FINAL_SIZE_ERROR,
     0x04, {}),
    ("STREAM offset + length beyond 2^62-1", "RFC 9000 §19.8", "server",
     lambda p: b"\x0e\x00" + V((1 << 62) - 1) + b"\x01x", E.FRAME_ENCODING_ERROR, 0x0E, {}),
    # -- roles (RFC 9000 §19.7, §19.20) --------------------------------------------------
    ("NEW_TOKEN from a client", "RFC 9000 §19.7", "server",
     lambda p: b"\x07\x04abcd", E.PROTOCOL_VIOLATION, 0x07, {}),
    ("HANDSHAKE_DONE from a client", "RFC 9000 §19.20", "server",
     lambda p: b"\x1e", E.PROTOCOL_VIOLATION, 0x1E, {}),
    # -- frame encoding (RFC 9000 §12.4, §19) -------------------------------------------
    ("unknown frame type", "RFC 9000 §12.4", "server",
     lambda p: V(0x3F00), E.FRAME_ENCODING_ERROR, 0x3F00, {}),
    ("frame type not minimally encoded", "RFC 9000 §12.4", "server",
     lambda p: b"\x40\x01", E.PROTOCOL_VIOLATION, 0x01, {}),
    ("truncated frame", "RFC 9000 §12.4", "server",
     lambda p: b"\x0e\x00\x00\x05ab", E.FRAME_ENCODING_ERROR, 0x0E, {}),
    ("ACK range below packet number 0", "RFC 9000 §19.3.1", "server",
     lambda p: b"\x02\x02\x00\x00\x05", E.FRAME_ENCODING_ERROR, 0x02, {}),
    ("ACK of a packet never sent", "RFC 9000 §13.1", "server",
     _unsent_pn, E.PROTOCOL_VIOLATION, 0x02, {}),
    ("NEW_CONNECTION_ID with a zero-length ID", "RFC 9000 §19.15", "server",
     lambda p: b"\x18\x09\x00\x00" + bytes(16), E.FRAME_ENCODING_ERROR, 0x18, {}),
    ("NEW_CONNECTION_ID with a 21-byte ID", "RFC 9000 §19.15", "server",
     lambda p: b"\x18\x09\x00\x15" + bytes(21 + 16), E.FRAME_ENCODING_ERROR, 0x18, {}),
    ("NEW_CONNECTION_ID Retire Prior To above its sequence", "RFC 9000 §19.15", "server",
     lambda p: b"\x18\x09\x0a\x08" + bytes(8 + 16), E.FRAME_ENCODING_ERROR, 0x18, {}),
    ("NEW_CONNECTION_ID reusing a sequence number", "RFC 9000 §19.15", "server",
     lambda p: _ncid(40, 40, b"\x01" * 8) + _ncid(40, 40, b"\x02" * 8), E.PROTOCOL_VIOLATION,
     0x18, {}),
    ("more connection IDs than active_connection_id_limit", "RFC 9000 §5.1.1", "server",
     lambda p: b"".join(_ncid(40 + i, 0, bytes([i]) * 8) for i in range(9)),
     E.CONNECTION_ID_LIMIT_ERROR, 0x18, {}),
    ("RETIRE_CONNECTION_ID of a sequence never sent", "RFC 9000 §19.16", "server",
     lambda p: encode_retire_connection_id_frame(1000), E.PROTOCOL_VIOLATION, 0x19, {}),
    ("RETIRE_CONNECTION_ID of the packet's own connection ID", "RFC 9000 §19.16", "server",
     lambda p: encode_retire_connection_id_frame(p.client.cids.peer_active_sequence),
     E.PROTOCOL_VIOLATION, 0x19, {}),
    ("CRYPTO offset + length beyond 2^62-1", "RFC 9000 §19.6", "server",
     lambda p: b"\x06" + V((1 << 62) - 1) + b"\x01x", E.FRAME_ENCODING_ERROR, 0x06, {}),
    ("empty NEW_TOKEN", "RFC 9000 §19.7", "client",
     lambda p: b"\x07\x00", E.FRAME_ENCODING_ERROR, 0x07, {}),
    ("CRYPTO data beyond the 1-RTT buffer", "RFC 9000 §7.5", "server",
     lambda p: b"\x06" + V(1 << 20) + b"\x01x", E.CRYPTO_BUFFER_EXCEEDED, 0x06, {}),
    ("DATAGRAM without max_datagram_frame_size", "RFC 9221 §3", "server",
     lambda p: b"\x31\x01x", E.PROTOCOL_VIOLATION, 0x31, {"max_datagram_frame_size": None}),
    ("DATAGRAM larger than max_datagram_frame_size", "RFC 9221 §3", "server",
     lambda p: b"\x31" + V(200) + bytes(200), E.PROTOCOL_VIOLATION, 0x31,
     {"max_datagram_frame_size": 100}),
    ("RESET_STREAM_AT Reliable Size above Final Size",
     "draft-ietf-quic-reliable-stream-reset §4", "server",
     lambda p: b"\x24\x00\x00\x05\x06", E.FRAME_ENCODING_ERROR, 0x24, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "section", "target", "payload", "code", "frame_type", "server_kwargs"),
    FRAME_RULES,
    ids=[row[0] for row in FRAME_RULES],
)
def test_frame_rule(
    rule: str,
    section: str,
    target: str,
    payload: Payload,
    code: int,
    frame_type: int | None,
    server_kwargs: dict[str, Any],
) -> None:
    pair = _established(**server_kwargs)
    frames = payload(pair)
    now = pair.net.now
    if target == "server":
        sender, receiver, addr, back = pair.client, pair.server, CLIENT_ADDR, SERVER_ADDR
    else:
        sender, receiver, addr, back = pair.server, pair.client, SERVER_ADDR, CLIENT_ADDR
    receiver.receive_datagram(seal_1rtt(sender, frames, now), addr, now)  # never raises
    assert _closed_with(receiver) == (code, frame_type), (rule, section)
    # the peer learns the code from the CONNECTION_CLOSE
    receiver_out = receiver.datagrams_to_send(now)
    assert receiver_out
    for data, _ in receiver_out:
        sender.receive_datagram(data, back, now)  # from the receiver's address
    term = [e for e in _drain(sender) if isinstance(e, ConnectionTerminated)]
    assert term and (term[0].error_code, term[0].by_peer) == (code, True), (rule, section)


def _drain(conn: QuicConnection) -> list[Any]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


# -- packets (RFC 9000 §12.4 Table 3, §17.2, §17.3.1) ----------------------------------------


def _initial(frames: bytes, reserved: int = 0) -> bytes:
    """A client Initial to a fresh server, with ``reserved`` bits set in its first byte
    before header protection."""
    if not reserved:
        return client_initial(b"\x11" * 8, b"\x22" * 8, 0, frames)
    dcid, scid = b"\x11" * 8, b"\x22" * 8
    send, _ = initial_keys(1, dcid, is_client=True)
    payload = frames + bytes(1200)  # a datagram of at least 1200 bytes (§14.1)
    header = bytearray(
        encode_long_header(PacketType.INITIAL, 1, dcid, scid, b"", 4 + len(payload) + 16, 4, 0)
    )
    header[0] |= reserved
    return send.encrypt_packet(bytes(header), payload, 0)


#: (rule, section, Initial payload frames, reserved bits, error, frame type)
INITIAL_RULES: list[tuple[str, str, bytes, int, int, int | None]] = [
    ("STREAM in an Initial packet", "RFC 9000 §12.4", _stream(0), 0, E.PROTOCOL_VIOLATION, 0x0A),
    ("MAX_DATA in an Initial packet", "RFC 9000 §12.4", b"\x10\x05", 0,
     E.PROTOCOL_VIOLATION, 0x10),
    ("NEW_TOKEN in an Initial packet", "RFC 9000 §12.4", b"\x07\x01x", 0,
     E.PROTOCOL_VIOLATION, 0x07),
    ("HANDSHAKE_DONE in an Initial packet", "RFC 9000 §12.4", b"\x1e", 0,
     E.PROTOCOL_VIOLATION, 0x1E),
    ("PATH_CHALLENGE in an Initial packet", "RFC 9000 §12.4", b"\x1a" + bytes(8), 0,
     E.PROTOCOL_VIOLATION, 0x1A),
    ("DATAGRAM in an Initial packet", "RFC 9221 §4", b"\x31\x01x", 0,
     E.PROTOCOL_VIOLATION, 0x31),
    ("RESET_STREAM_AT in an Initial packet", "draft-ietf-quic-reliable-stream-reset §4",
     b"\x24\x00\x00\x01\x00", 0, E.PROTOCOL_VIOLATION, 0x24),
    ("long header reserved bits set", "RFC 9000 §17.2", b"\x01", 0x0C,
     E.PROTOCOL_VIOLATION, 0x00),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "section", "frames", "reserved", "code", "frame_type"),
    INITIAL_RULES,
    ids=[row[0] for row in INITIAL_RULES],
)
def test_initial_packet_rule(
    rule: str, section: str, frames: bytes, reserved: int, code: int, frame_type: int | None
) -> None:
    endpoint = QuicEndpoint(server_config())
    endpoint.receive_datagram(_initial(frames, reserved), CLIENT_ADDR, 0.0)
    (conn,) = endpoint.connections
    assert _closed_with(conn) == (code, frame_type), (rule, section)
    assert endpoint.datagrams_to_send(0.0)  # the CONNECTION_CLOSE goes out


#: (rule, section, Handshake packet payload, frame type); every one is PROTOCOL_VIOLATION
HANDSHAKE_RULES: list[tuple[str, str, bytes, int]] = [
    ("STREAM in a Handshake packet", "RFC 9000 §12.4", _stream(0), 0x0A),
    ("MAX_DATA in a Handshake packet", "RFC 9000 §12.4", b"\x10\x05", 0x10),
    ("MAX_STREAMS in a Handshake packet", "RFC 9000 §12.4", b"\x12\x05", 0x12),
    ("NEW_CONNECTION_ID in a Handshake packet", "RFC 9000 §12.4",
     _ncid(1, 0, b"\x33" * 8), 0x18),
    ("NEW_TOKEN in a Handshake packet", "RFC 9000 §12.4", b"\x07\x01x", 0x07),
    ("HANDSHAKE_DONE in a Handshake packet", "RFC 9000 §12.4", b"\x1e", 0x1E),
    ("PATH_CHALLENGE in a Handshake packet", "RFC 9000 §12.4", b"\x1a" + bytes(8), 0x1A),
    ("application CONNECTION_CLOSE in a Handshake packet", "RFC 9000 §12.4, §19.19",
     b"\x1d\x00\x00", 0x1D),
    ("DATAGRAM in a Handshake packet", "RFC 9221 §4", b"\x31\x01x", 0x31),
    ("RESET_STREAM_AT in a Handshake packet", "draft-ietf-quic-reliable-stream-reset §4",
     b"\x24\x00\x00\x01\x00", 0x24),
    ("IMMEDIATE_ACK in a Handshake packet", "draft-ietf-quic-ack-frequency §5", b"\x1f",
     0x1F),
]  # fmt: skip


def _mid_handshake() -> Pair:
    """A pair stopped where both sides hold Handshake keys: the client's Initial is at
    the server, the server's first flight at the client, nothing after that is sent."""
    pair = make_pair()
    now = pair.net.now
    for data, _ in pair.client.datagrams_to_send(now):
        pair.server_endpoint.receive_datagram(data, CLIENT_ADDR, now)
    for data, _ in pair.server_endpoint.datagrams_to_send(now):
        pair.client.receive_datagram(data, SERVER_ADDR, now)
    assert pair.client.spaces[1].write is not None
    assert pair.server.spaces[1].read is not None
    assert not pair.server.handshake_complete  # the client's Finished is not there yet
    return pair


@pytest.mark.parametrize("from_client", [True, False], ids=["client-sends", "server-sends"])
@pytest.mark.parametrize(
    ("rule", "section", "payload", "frame_type"),
    HANDSHAKE_RULES,
    ids=[row[0] for row in HANDSHAKE_RULES],
)
def test_handshake_packet_rule(
    rule: str, section: str, payload: bytes, frame_type: int, from_client: bool
) -> None:
    pair = _mid_handshake()
    sender, receiver = (pair.client, pair.server) if from_client else (pair.server, pair.client)
    addr = CLIENT_ADDR if from_client else SERVER_ADDR
    now = pair.net.now
    receiver.receive_datagram(seal_handshake(sender, payload, now), addr, now)
    assert receiver.last_internal_error is None
    assert _closed_with(receiver) == (E.PROTOCOL_VIOLATION, frame_type), (rule, section)


def test_a_handshake_packet_with_allowed_frames_is_processed() -> None:
    # the control for the rules above: PING and PADDING are fine in Handshake packets
    pair = _mid_handshake()
    now = pair.net.now
    processed = pair.server.packets_processed
    data = seal_handshake(pair.client, b"\x01" + bytes(20), now)
    pair.server.receive_datagram(data, CLIENT_ADDR, now)
    assert pair.server.packets_processed == processed + 1
    assert pair.server.closer.frame is None


def test_short_header_reserved_bits_are_protocol_violation() -> None:
    # RFC 9000 §17.3.1: reserved bits set after removing header protection
    pair = _established()
    client = pair.client
    write = client.spaces[2].write
    assert write is not None
    pn = client.spaces[2].next_pn
    client.spaces[2].next_pn += 1
    header = bytearray(encode_short_header(client.cids.peer_cid, 4, pn, write.key_phase))
    header[0] |= 0x18
    payload = b"\x01" + bytes(min_payload_length(4))
    data = write.encrypt_packet(bytes(header), payload, pn)
    pair.server.receive_datagram(data, CLIENT_ADDR, pair.net.now)
    assert _closed_with(pair.server) == (E.PROTOCOL_VIOLATION, 0)


# RFC 9000 §12.4 Table 3 ("Pkts": I Initial, H Handshake, 0 0-RTT, 1 1-RTT), RFC 9221 §4
# for DATAGRAM, draft-ietf-quic-reliable-stream-reset §4 for RESET_STREAM_AT,
# draft-ietf-quic-ack-frequency §3 for IMMEDIATE_ACK and ACK_FREQUENCY (never in 0-RTT:
# min_ack_delay is not remembered); written out here from the specs, not taken from the
# codec's table.
TABLE_3: dict[int, str] = {
    0x00: "IH01", 0x01: "IH01", 0x02: "IH1", 0x03: "IH1", 0x04: "01", 0x05: "01",
    0x06: "IH1", 0x07: "1", **dict.fromkeys(range(0x08, 0x10), "01"), 0x10: "01",
    0x11: "01", 0x12: "01", 0x13: "01", 0x14: "01", 0x15: "01", 0x16: "01", 0x17: "01",
    0x18: "01", 0x19: "01", 0x1A: "01", 0x1B: "1", 0x1C: "IH01", 0x1D: "01", 0x1E: "1",
    0x1F: "1", 0x24: "01", 0x30: "01", 0x31: "01", 0xAF: "1",
}  # fmt: skip
_LETTER = {
    PacketType.INITIAL: "I",
    PacketType.HANDSHAKE: "H",
    PacketType.ZERO_RTT: "0",
    PacketType.ONE_RTT: "1",
}


@pytest.mark.parametrize("frame_type", sorted(TABLE_3), ids=lambda t: f"0x{t:02x}")
def test_frames_allowed_per_packet_type_follow_table_3(frame_type: int) -> None:
    for packet_type, letter in _LETTER.items():
        if letter in TABLE_3[frame_type]:
            check_frame_allowed(frame_type, packet_type)
        else:
            with pytest.raises(QuicProtocolError) as info:
                check_frame_allowed(frame_type, packet_type)
            assert info.value.error_code == E.PROTOCOL_VIOLATION  # RFC 9000 §12.4
    assert set(FRAME_INFO) == set(TABLE_3)  # nothing the table does not list
