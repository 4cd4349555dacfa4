"""The interop runner's trace checks, replayed on the impairment proxy's capture.

Theory of operation
-------------------
The quic-interop-runner decides a test case from packet traces taken on both sides
of its simulator (decrypted with the endpoints' ``SSLKEYLOGFILE``). The proxy
(:mod:`quic.interop.proxy`) records the same traffic as :class:`CaptureRecord`\\ s:
what each endpoint sent (``data``, as it arrived at the proxy) and what was delivered to
the other. This module reads those records as the runner reads its traces:

* :func:`packets` parses every datagram into :class:`TracePacket`\\ s (coalesced long
  header packets are split with the codec's :func:`~quic.packet.parse_header`; only
  headers, never payloads, unless decrypting);
* :func:`count_handshakes`: the number of distinct Source Connection IDs of the
  server's Initial packets (the runner's ``_count_handshakes``);
* :func:`client_hellos`: ClientHellos the client sent (first transmissions and
  retransmissions), found by decrypting the client's Initial packets with the Initial
  keys (RFC 9001 §5.2: derived from the client's first Destination Connection ID) and
  looking for a CRYPTO frame at offset 0 — ``longrtt`` expects at least two;
  :func:`client_hello` reassembles and decodes the first one, or another connection's
  (``chacha20``: only TLS_CHACHA20_POLY1305_SHA256 offered; ``resumption``: the
  second connection's carries a pre_shared_key);
* :func:`amplification` replays ``amplificationlimit`` as seen at the server: each
  client Initial datagram the server received adds 3x its size to the budget, each
  datagram the server sent spends its size, until the server received a Handshake
  packet (the address is validated, RFC 9000 §8.1);
* :func:`handshake_crypto` decrypts one side's Handshake packets with the
  ``*_HANDSHAKE_TRAFFIC_SECRET`` of a key log and reassembles its CRYPTO stream
  (``amplificationlimit`` wants the server's to reach 7,500 bytes: the long chain was
  sent); :func:`server_transport_parameters` reads the server's transport parameters
  from its EncryptedExtensions there (``multiplexing``: at most 1,000 bidirectional
  streams);
* :func:`key_phases` counts the 1-RTT packets of each side by Key Phase bit, removing
  header protection (RFC 9001 §5.4) with the "quic hp" keys derived from the
  ``CLIENT_TRAFFIC_SECRET_0`` / ``SERVER_TRAFFIC_SECRET_0`` of a key log (the header
  protection key never changes with a key update, RFC 9001 §6.1) — ``keyupdate``
  expects packets with Key Phase 1 from both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from quic.errors import QuicProtocolError
from quic.frames_decode import decode_frames
from quic.frames_defs import CryptoFrame
from quic.interop.proxy import TO_CLIENT, TO_SERVER, CaptureRecord
from quic.packet import PacketType, parse_header
from quic.protection import (
    DecryptionError,
    HeaderProtection,
    PacketUnprotector,
    derive_packet_keys,
    initial_keys,
)
from quic.tls.messages import ClientHello, EncryptedExtensions, HandshakeReader, HandshakeType
from quic.tls.suites import CipherSuite
from quic.tparams import TransportParameters

__all__ = [
    "AmplificationReport",
    "TracePacket",
    "amplification",
    "client_hello",
    "client_hellos",
    "count_handshakes",
    "handshake_crypto",
    "key_phases",
    "packets",
    "read_keylog",
    "server_transport_parameters",
]


@dataclass(frozen=True, slots=True)
class TracePacket:
    """One QUIC packet of a captured datagram (header fields only)."""

    record: CaptureRecord
    packet_type: PacketType | None  # None: unparseable or unknown version
    version: int | None
    dcid: bytes
    scid: bytes
    start: int  # offset of the packet in the datagram
    end: int
    pn_offset: int  # offset of its packet number in the datagram

    @property
    def from_server(self) -> bool:
        return self.record.direction == TO_CLIENT


def _split(record: CaptureRecord, data: bytes, short_dcid_len: int) -> Iterator[TracePacket]:
    pos = 0
    while pos < len(data):
        try:
            header = parse_header(data, pos, short_dcid_len)
        except QuicProtocolError:
            yield TracePacket(record, None, None, b"", b"", pos, len(data), len(data))
            return
        end = max(header.end, pos + 1)
        yield TracePacket(
            record,
            header.packet_type,
            header.version,
            header.dcid,
            header.scid,
            pos,
            end,
            header.pn_offset,
        )
        if not header.is_long:
            return
        pos = end


def packets(
    records: Iterable[CaptureRecord], short_dcid_len: int = 8, *, delivered: bool = False
) -> list[TracePacket]:
    """Every packet of every datagram as sent (``delivered=True``: as delivered, which
    differs for corrupted datagrams). ``short_dcid_len`` is the length of the
    connection IDs in short headers (the runner's pcaps need it too)."""
    out: list[TracePacket] = []
    for record in records:
        data = record.delivered_data if delivered else record.data
        out.extend(_split(record, data, short_dcid_len))
    return out


def count_handshakes(records: Iterable[CaptureRecord]) -> int:
    """Distinct SCIDs of the Initial packets the server sent (runner: one per handshake)."""
    return len(
        {
            p.scid
            for p in packets(r for r in records if r.direction == TO_CLIENT)
            if p.packet_type is PacketType.INITIAL
        }
    )


def client_hellos(records: Sequence[CaptureRecord]) -> int:
    """ClientHellos (CRYPTO at offset 0 in a client Initial) the client sent, counting
    retransmissions; connections are told apart by the client's first DCID."""
    count = 0
    keys: dict[bytes, PacketUnprotector] = {}
    first_dcid: dict[bytes, bytes] = {}  # client SCID -> original DCID
    for p in packets(r for r in records if r.direction == TO_SERVER):
        if p.packet_type is not PacketType.INITIAL or p.version is None:
            continue
        odcid = first_dcid.setdefault(p.scid, p.dcid)
        unprotect = keys.get(odcid)
        if unprotect is None:
            unprotect = keys[odcid] = initial_keys(p.version, odcid, is_client=False)[1]
        data = p.record.data[p.start : p.end]
        try:
            _, _, payload = unprotect.decrypt_packet(data, p.pn_offset - p.start, -1)
            frames = decode_frames(payload)
        except (DecryptionError, QuicProtocolError):
            continue  # the original DCID changed (Retry) or the bytes were damaged
        if any(isinstance(f, CryptoFrame) and f.offset == 0 for f in frames):
            count += 1
    return count


@dataclass(frozen=True, slots=True)
class AmplificationReport:
    """The server's sending before address validation, as the runner counts it."""

    validated: bool  # the server received a Handshake packet from the client
    client_bytes: int  # UDP payload of client Initial datagrams received before that
    server_bytes: int  # UDP payload the server sent before that
    worst_excess: int  # largest (sent - 3 * received) seen, after each server datagram

    @property
    def within_limit(self) -> bool:
        return self.validated and self.worst_excess <= 0


def amplification(records: Sequence[CaptureRecord]) -> AmplificationReport:
    """Replay the runner's ``amplificationlimit`` check at the server's side."""
    events: list[tuple[float, int, CaptureRecord]] = []
    for r in records:
        if r.direction == TO_SERVER:  # what the server received: the delivered copies
            events.extend((t, 0, r) for t in r.delivered)
        else:  # what the server sent, when it sent it
            events.append((r.arrived, 1, r))
    events.sort(key=lambda e: (e[0], e[1]))
    client = server = 0
    worst = -(1 << 62)
    for _, _, r in events:
        data = r.delivered_data if r.direction == TO_SERVER else r.data
        kinds = {p.packet_type for p in _split(r, data, 8)}
        if r.direction == TO_SERVER:
            if PacketType.HANDSHAKE in kinds:
                return AmplificationReport(True, client, server, worst)
            if PacketType.INITIAL in kinds:
                client += r.size
        else:
            server += r.size
            worst = max(worst, server - 3 * client)
    return AmplificationReport(False, client, server, worst)


def read_keylog(path: str | Path) -> dict[str, bytes]:
    """``label -> secret`` of an NSS key log holding one connection."""
    secrets: dict[str, bytes] = {}
    for line in Path(path).read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 3:
            secrets[parts[0]] = bytes.fromhex(parts[2])
    return secrets


def key_phases(
    records: Sequence[CaptureRecord],
    keylog: dict[str, bytes],
    suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256,
) -> dict[str, dict[int, int]]:
    """``{"client": {0: n0, 1: n1}, "server": {...}}``: 1-RTT packets each side sent, by
    Key Phase bit (RFC 9000 §17.3.1), for one connection."""
    long = packets(records)
    version = next((p.version for p in long if p.version), 1)
    # short header DCID lengths: the CIDs each side chose in its long headers
    server_cid = next((len(p.scid) for p in long if p.from_server and p.version), 8)
    client_cid = next((len(p.scid) for p in long if not p.from_server and p.version), 8)
    sides = {
        TO_SERVER: ("client", keylog["CLIENT_TRAFFIC_SECRET_0"], server_cid),
        TO_CLIENT: ("server", keylog["SERVER_TRAFFIC_SECRET_0"], client_cid),
    }
    counts: dict[str, dict[int, int]] = {"client": {0: 0, 1: 0}, "server": {0: 0, 1: 0}}
    for direction, (side, secret, cid_len) in sides.items():
        mask = HeaderProtection(suite, derive_packet_keys(suite, secret, version)[2]).mask
        for r in records:
            if r.direction != direction:
                continue
            for p in _split(r, r.data, cid_len):
                if p.packet_type is not PacketType.ONE_RTT:
                    continue
                data = r.data[p.start :]
                sample = 1 + cid_len + 4  # RFC 9001 §5.4.2: pn_offset + 4
                if len(data) < sample + 16:
                    continue
                first = data[0] ^ (mask(data[sample : sample + 16])[0] & 0x1F)
                counts[side][(first >> 2) & 1] += 1
    return counts


def handshake_crypto(
    records: Sequence[CaptureRecord],
    keylog: dict[str, bytes],
    *,
    from_server: bool = True,
    suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256,
) -> tuple[bytes, int]:
    """``(stream, extent)``: the Handshake-level CRYPTO bytes one side sent, contiguous
    from offset 0, and the highest offset + length of any of its CRYPTO frames (the
    runner's ``max_handshake_offset``), for one connection."""
    label = "SERVER_HANDSHAKE_TRAFFIC_SECRET" if from_server else "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
    direction = TO_CLIENT if from_server else TO_SERVER
    unprotector: PacketUnprotector | None = None
    largest = -1
    pieces: dict[int, bytes] = {}
    for p in packets(r for r in records if r.direction == direction):
        if p.packet_type is not PacketType.HANDSHAKE or p.version is None:
            continue
        if unprotector is None:
            unprotector = PacketUnprotector(suite, keylog[label], p.version)
        data = p.record.data[p.start : p.end]
        try:
            _, pn, payload = unprotector.decrypt_packet(data, p.pn_offset - p.start, largest)
            frames = decode_frames(payload)
        except (DecryptionError, QuicProtocolError):
            continue
        largest = max(largest, pn)
        for f in frames:
            if isinstance(f, CryptoFrame):
                pieces[f.offset] = f.data
    return _contiguous(pieces)


def _contiguous(pieces: dict[int, bytes]) -> tuple[bytes, int]:
    """The bytes contiguous from offset 0 (retransmissions may overlap), and the extent."""
    extent = max((offset + len(data) for offset, data in pieces.items()), default=0)
    stream = bytearray()
    progress = True
    while progress:
        progress = False
        for offset, data in pieces.items():
            if offset <= len(stream) < offset + len(data):
                stream += data[len(stream) - offset :]
                progress = True
    return bytes(stream), extent


def client_hello(records: Sequence[CaptureRecord], index: int = 0) -> ClientHello | None:
    """The ClientHello of the client's ``index``-th connection (0: the first; connections
    told apart by the client's Source Connection ID, in order of their first Initial),
    from its Initial packets (their keys come from the client's first Destination
    Connection ID, RFC 9001 §5.2)."""
    pieces: dict[int, bytes] = {}
    initials = [
        p
        for p in packets(r for r in records if r.direction == TO_SERVER)
        if p.packet_type is PacketType.INITIAL and p.version is not None
    ]
    firsts: dict[bytes, TracePacket] = {}  # client SCID -> its first Initial, in order
    for p in initials:
        firsts.setdefault(p.scid, p)
    if index >= len(firsts):
        return None
    first = list(firsts.values())[index]
    assert first.version is not None
    unprotect = initial_keys(first.version, first.dcid, is_client=False)[1]
    for p in initials:
        if p.scid != first.scid:
            continue  # another connection
        try:
            data = p.record.data[p.start : p.end]
            _, _, payload = unprotect.decrypt_packet(data, p.pn_offset - p.start, -1)
            frames = decode_frames(payload)
        except (DecryptionError, QuicProtocolError):
            continue
        for f in frames:
            if isinstance(f, CryptoFrame):
                pieces[f.offset] = f.data
    reader = HandshakeReader()
    reader.feed(_contiguous(pieces)[0])
    message = reader.next_message()
    if message is None or message[0] != HandshakeType.client_hello:
        return None
    return ClientHello.decode_body(message[1])


def server_transport_parameters(
    records: Sequence[CaptureRecord],
    keylog: dict[str, bytes],
    suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256,
) -> TransportParameters | None:
    """The transport parameters of the server's EncryptedExtensions (RFC 9001 §8.2)."""
    stream, _ = handshake_crypto(records, keylog, suite=suite)
    reader = HandshakeReader()
    reader.feed(stream)
    while (message := reader.next_message()) is not None:
        msg_type, body, _ = message
        if msg_type == HandshakeType.encrypted_extensions:
            raw = EncryptedExtensions.decode_body(body).quic_transport_parameters
            if raw is None:
                return None
            return TransportParameters.decode(raw, is_client_sender=False)
    return None
