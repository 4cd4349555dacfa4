"""Property tests for packet protection: arbitrary input either decrypts or raises
DecryptionError; encrypt/decrypt round trips for every suite, version and pn length."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.packet_number import encode_packet_number
from quic.protection import (
    AEAD_TAG_LENGTH,
    DecryptionError,
    PacketProtector,
    PacketUnprotector,
    min_payload_length,
    verify_retry_integrity,
)
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion

SUITES = list(CipherSuite)
VERSIONS = [QuicVersion.VERSION_1, QuicVersion.VERSION_2]
SECRET = bytes(range(7, 7 + 48))


def _secret(suite: CipherSuite) -> bytes:
    return SECRET[: 48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32]


_UNPROTECTORS: dict[tuple[CipherSuite, int], PacketUnprotector] = {
    (suite, version): PacketUnprotector(suite, _secret(suite), version)
    for suite in SUITES
    for version in VERSIONS
}


@settings(max_examples=examples(300))
@given(
    data=st.binary(max_size=200),
    pn_offset=st.integers(-3, 220),
    largest_pn=st.integers(-1, (1 << 62) - 2),
    suite=st.sampled_from(SUITES),
    version=st.sampled_from(VERSIONS),
    as_view=st.booleans(),
)
def test_arbitrary_bytes_never_escape(
    data: bytes,
    pn_offset: int,
    largest_pn: int,
    suite: CipherSuite,
    version: int,
    as_view: bool,
) -> None:
    unprotector = _UNPROTECTORS[(suite, version)]
    packet: bytes | memoryview = memoryview(data) if as_view else data
    try:
        header, pn, payload = unprotector.decrypt_packet(packet, pn_offset, largest_pn)
    except DecryptionError:
        return
    # A random forgery passing a 128-bit tag is not expected; if it ever does, the
    # result must still be well formed.
    assert header == bytes(header[:1]) + data[1:pn_offset] + header[pn_offset:]
    assert pn >= 0
    assert len(payload) == len(data) - len(header) - AEAD_TAG_LENGTH


@settings(max_examples=examples(300))
@given(
    data=st.binary(min_size=1, max_size=200),
    pn_offset=st.integers(-3, 60),
    largest_pn=st.integers(-1, (1 << 62) - 2),
    suite=st.sampled_from(SUITES),
)
def test_open_short_agrees_with_the_two_step_path(
    data: bytes, pn_offset: int, largest_pn: int, suite: CipherSuite
) -> None:
    """open_short on arbitrary short-header bytes: the result or the DecryptionError of
    unprotect_header followed (for this key's phase) by decrypt_payload."""
    packet = bytes((data[0] & 0x7F,)) + data[1:]  # a short header's form bit
    unprotector = _UNPROTECTORS[(suite, QuicVersion.VERSION_1)]
    expected: tuple[bytes, int, bytes | None] | None
    try:
        header, pn = unprotector.unprotect_header(packet, pn_offset, largest_pn)
        payload = None
        if (header[0] >> 2) & 1 == unprotector.key_phase:
            payload = unprotector.decrypt_payload(header, pn, packet)
        expected = (header, pn, payload)
    except DecryptionError:
        expected = None
    try:
        got: tuple[bytes, int, bytes | None] | None = unprotector.open_short(
            packet, pn_offset, largest_pn
        )
    except DecryptionError:
        got = None
    assert got == expected


@settings(max_examples=examples(300))
@given(
    suite=st.sampled_from(SUITES),
    version=st.sampled_from(VERSIONS),
    short=st.booleans(),
    key_phase=st.integers(0, 1),
    dcid=st.binary(max_size=20),
    largest_acked=st.integers(0, 1 << 40),
    distance=st.integers(1, 1 << 20),
    payload=st.binary(max_size=300),
    generations=st.integers(0, 2),
)
def test_round_trip(
    suite: CipherSuite,
    version: int,
    short: bool,
    key_phase: int,
    dcid: bytes,
    largest_acked: int,
    distance: int,
    payload: bytes,
    generations: int,
) -> None:
    pn = largest_acked + distance
    truncated, pn_len = encode_packet_number(pn, largest_acked)
    payload += bytes(max(0, min_payload_length(pn_len) - len(payload)))
    if short:
        first = 0x40 | (key_phase << 2) | (pn_len - 1)
        prefix = bytes([first]) + dcid
    else:
        length = pn_len + len(payload) + AEAD_TAG_LENGTH
        prefix = (
            bytes([0xE0 | (pn_len - 1)])
            + version.to_bytes(4, "big")
            + bytes([len(dcid)])
            + dcid
            + b"\x00"
            + (0x4000 | length).to_bytes(2, "big")
        )
    header = prefix + truncated.to_bytes(pn_len, "big")
    protector = PacketProtector(suite, _secret(suite), version)
    unprotector = PacketUnprotector(suite, _secret(suite), version)
    for _ in range(generations):
        protector = protector.next_generation()
        unprotector = unprotector.next_generation()
    packet = protector.encrypt_packet(header, payload, pn)
    assert len(packet) == len(header) + len(payload) + AEAD_TAG_LENGTH
    assert packet[1 : len(prefix)] == prefix[1:]
    assert unprotector.decrypt_packet(packet, len(prefix), largest_acked) == (header, pn, payload)
    if short:  # the 1-RTT receive path's one-call form; None: the other key phase
        same_phase = key_phase == unprotector.key_phase
        opened = unprotector.open_short(packet, len(prefix), largest_acked)
        assert opened == (header, pn, payload if same_phase else None)


@settings(max_examples=examples(200))
@given(
    version=st.sampled_from([*VERSIONS, 0x0A0A0A0A]),
    odcid=st.binary(max_size=300),
    packet=st.binary(max_size=100),
)
def test_retry_verify_never_raises(version: int, odcid: bytes, packet: bytes) -> None:
    assert verify_retry_integrity(version, odcid, packet) in (True, False)


_VALID_HEADER = bytes([0x41]) + b"\x5a" * 8 + b"\x12\x34"
_VALID_PAYLOAD = b"\x01" + bytes(40)


@settings(max_examples=examples(300))
@given(
    suite=st.sampled_from(SUITES),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 80),
    extra=st.binary(max_size=8),
)
def test_mutated_valid_packet(
    suite: CipherSuite, edits: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    version = QuicVersion.VERSION_1
    packet = bytearray(
        PacketProtector(suite, _secret(suite), version).encrypt_packet(
            _VALID_HEADER, _VALID_PAYLOAD, 0x1234
        )
    )
    for position, flip in edits:
        packet[position % len(packet)] ^= flip
    mutated = bytes(packet[: len(packet) - cut]) + extra
    unprotector = _UNPROTECTORS[(suite, version)]
    try:
        result = unprotector.decrypt_packet(mutated, 9, 0x1233)
    except DecryptionError:
        assert edits or cut or extra
        return
    # Only an unchanged packet authenticates.
    assert mutated == bytes(
        PacketProtector(suite, _secret(suite), version).encrypt_packet(
            _VALID_HEADER, _VALID_PAYLOAD, 0x1234
        )
    )
    assert result == (_VALID_HEADER, 0x1234, _VALID_PAYLOAD)
