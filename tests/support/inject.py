"""Hand-built packets for hostile-peer tests: frames chosen by the test, protected with
real keys through the codec (``quic.packet`` headers, ``quic.protection`` AEAD).

* :func:`client_initial` builds a client Initial datagram for any DCID (Initial keys
  are derived from it, RFC 9001 §5.2), so a test can play a misbehaving client towards a
  server connection without a client connection object.
* :func:`one_rtt_from` builds a 1-RTT packet as if sent by an established connection
  (its current write keys, peer connection ID and next packet number), so a test can
  make the peer send frames the real sender never would, or leave out ACKs.
"""

from __future__ import annotations

from quic.connection import QuicConnection
from quic.packet import PacketType, encode_long_header, encode_short_header
from quic.protection import initial_keys, min_payload_length
from quic.versions import QuicVersion

__all__ = ["client_initial", "one_rtt_from"]

_PN_LENGTH = 4
_TAG = 16


def client_initial(
    dcid: bytes,
    scid: bytes,
    packet_number: int,
    frames: bytes,
    version: int = QuicVersion.VERSION_1,
    datagram_size: int = 1200,
) -> bytes:
    """A client Initial packet carrying ``frames``, padded to ``datagram_size``."""
    send, _ = initial_keys(version, dcid, is_client=True)

    def header(payload_length: int) -> bytes:
        return encode_long_header(
            PacketType.INITIAL,
            version,
            dcid,
            scid,
            b"",
            _PN_LENGTH + payload_length + _TAG,
            _PN_LENGTH,
            packet_number & 0xFFFFFFFF,
        )

    overhead = len(header(len(frames))) + _TAG
    payload = frames + bytes(max(0, datagram_size - overhead - len(frames)))
    return send.encrypt_packet(header(len(payload)), payload, packet_number)


def one_rtt_from(conn: QuicConnection, frames: bytes, skip: int = 0) -> bytes:
    """A 1-RTT packet carrying ``frames`` protected as ``conn`` would send it.

    ``skip`` packet numbers are left unused before this one (gaps at the receiver).
    Uses the connection's application space write keys, packet number counter and
    current peer connection ID.
    """
    space = conn.spaces[2]
    write = space.write
    assert write is not None, "1-RTT keys not installed yet"
    space.next_pn += skip
    pn = space.next_pn
    space.next_pn += 1
    payload = frames + bytes(max(0, min_payload_length(_PN_LENGTH) - len(frames)))
    header = encode_short_header(conn.cids.peer_cid, _PN_LENGTH, pn & 0xFFFFFFFF, write.key_phase)
    return write.encrypt_packet(header, payload, pn)
