"""Resting keys (quic.conn_keys): a quiet connection lets its packet protection's AEAD
contexts go and builds them again for the next packet, with the same bytes on the wire;
the header-protection contexts stay."""

from __future__ import annotations

import itertools
import os

import pytest

from quic.conn_keys import APPLICATION, OneRttReadKeys
from quic.connection import QuicConnection
from quic.protection import (
    CipherSuite,
    HeaderProtection,
    PacketProtector,
    PacketUnprotector,
)
from tests.support.quicpair import Pair, make_pair

SECRET = bytes(range(32))
VERSION = 1


def _pair(**client: object) -> Pair:
    pair = make_pair(seed=3, client_kwargs=dict(client), server_kwargs=dict(client))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed and pair.server.handshake.confirmed, 5)
    return pair


def _keys(conn: QuicConnection) -> list[PacketProtector | PacketUnprotector]:
    space = conn.keys.spaces[APPLICATION]
    read = space.read
    assert isinstance(read, OneRttReadKeys) and space.write is not None
    return [space.write, read.current]


def _contexts(conn: QuicConnection) -> list[object]:
    """The AEAD contexts the connection's 1-RTT keys hold right now."""
    return [k._aead for k in _keys(conn) if k._aead is not None]


def _masks(conn: QuicConnection) -> list[object]:
    """The header-protection mask functions of the connection's 1-RTT keys."""
    return [k._hp for k in _keys(conn)]


def test_a_rested_protector_writes_the_same_bytes() -> None:
    for suite in (
        CipherSuite.TLS_AES_128_GCM_SHA256,
        CipherSuite.TLS_AES_256_GCM_SHA384,
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
    ):
        fresh = PacketProtector(suite, SECRET[: 48 if suite == 0x1302 else 32], VERSION)
        rested = PacketProtector(suite, SECRET[: 48 if suite == 0x1302 else 32], VERSION)
        mask = rested.header_protection.mask
        rested.rest()
        assert not rested.resident and rested.header_protection.mask is mask
        payload = os.urandom(64)
        args = (b"\x01" * 8, 2, 0x1234, 0, payload, 0x1234)
        assert rested.encrypt_short(*args) == fresh.encrypt_short(*args)
        assert rested.resident
        reader = PacketUnprotector(suite, SECRET[: 48 if suite == 0x1302 else 32], VERSION)
        reader.rest()
        packet = fresh.encrypt_short(b"\x01" * 8, 2, 0x1235, 0, payload, 0x1235)
        _, pn, plain = reader.decrypt_packet(memoryview(packet), 9, 0x1234)
        assert (pn, plain) == (0x1235, payload)


def test_a_rest_keeps_the_header_protection_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resting drops the AEAD context only: the next packet builds no header-protection
    context (no Cipher), and the mask stays RFC 9001's AES-ECB(hp_key, sample)."""
    import quic.protection

    made: list[object] = []
    real = quic.protection.Cipher

    def counting(*args: object) -> object:
        made.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(quic.protection, "Cipher", counting)
    protector = PacketProtector(CipherSuite.TLS_AES_128_GCM_SHA256, SECRET, VERSION)
    reader = PacketUnprotector(CipherSuite.TLS_AES_128_GCM_SHA256, SECRET, VERSION)
    assert len(made) == 2
    payload = os.urandom(64)
    for pn in range(0x1234, 0x1237):
        protector.rest()
        reader.rest()
        assert not protector.resident and not reader.resident
        packet = protector.encrypt_short(b"\x01" * 8, 2, pn, 0, payload, pn)
        assert reader.decrypt_packet(memoryview(packet), 9, pn - 1)[1:] == (pn, payload)
        assert protector.resident and reader.resident
    assert len(made) == 2  # no header-protection context built again
    hp_key = quic.protection.derive_packet_keys(
        CipherSuite.TLS_AES_128_GCM_SHA256, SECRET, VERSION
    )[2]
    hp = HeaderProtection(CipherSuite.TLS_AES_128_GCM_SHA256, hp_key)
    sample = bytes(range(16))
    expected = real(quic.protection.algorithms.AES(hp_key), quic.protection.modes.ECB())
    assert hp.mask(sample)[:16] == expected.encryptor().update(sample)
    assert protector.header_protection.mask(sample) == hp.mask(sample)


def test_a_quiet_connection_rests_its_keys_and_wakes_them_for_the_next_packet() -> None:
    pair = _pair(key_rest_delay=1.0)
    client, server = pair.client, pair.server
    assert _contexts(client) and _contexts(server)
    masks = _masks(client), _masks(server)
    pair.net.settle(2.0)  # quiet for longer than the delay: both sides rest
    assert _contexts(client) == [] and _contexts(server) == []
    assert not client.keys.resident and not server.keys.resident
    assert (_masks(client), _masks(server)) == masks  # header protection kept
    sid = client.create_stream()
    client.send_stream_data(sid, b"after the rest" * 100, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), 5)
    assert bytes(pair.data["server"][sid]) == b"after the rest" * 100
    assert _contexts(client) and _contexts(server)  # built again for the exchange
    pair.net.settle(2.0)
    assert _contexts(client) == [] and _contexts(server) == []


def test_keys_rest_at_most_once_per_delay() -> None:
    pair = _pair(key_rest_delay=1.0)
    client = pair.client
    rests: list[float] = []
    # keep waking the client's write keys with packets that do not count as activity
    # (nothing received in between): it still rests no more than once per delay
    for _ in range(80):
        pair.net.settle(0.125)
        if client.idle.rested_at not in rests and client.idle.rested_at:
            rests.append(client.idle.rested_at)
        client.keys.spaces[APPLICATION].write.encrypt_short(  # type: ignore[union-attr]
            b"\x00" * 8, 1, 0, 0, bytes(32), 10**6
        )
    assert 5 <= len(rests) <= 11
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(rests))


def test_no_rest_when_disabled_or_before_the_handshake_is_confirmed() -> None:
    pair = _pair(key_rest_delay=None)
    pair.net.settle(5.0)
    assert _contexts(pair.client) and pair.client.idle.rest_deadline(pair.client) is None
    lone = make_pair(seed=4, client_kwargs={"key_rest_delay": 0.01}, loss=1.0)
    lone.net.settle(0.5)  # the handshake cannot finish: Initial keys are never rested
    assert not lone.client.handshake.confirmed
    assert lone.client.idle.rest_deadline(lone.client) is None


def test_a_rest_alone_owes_no_send() -> None:
    """handle_timer is False when the keys' rest was all that was due: the endpoint
    then serves no build for it (an empty one per idle connection before)."""
    pair = _pair(key_rest_delay=1.0)
    client = pair.client
    pair.net.settle(0.5)  # the handshake's ACKs gone; only the rest ahead
    deadline = client.get_timer()
    assert deadline is not None and deadline == client.idle.rest_deadline(client)
    assert client.keys.resident
    assert client.handle_timer(deadline) is False
    assert not client.keys.resident
    assert client.datagrams_to_send(deadline) == []  # indeed nothing to send
    later = client.get_timer()
    assert later is not None and later > deadline  # the idle timeout, say
    assert client.handle_timer(deadline) is True  # nothing rested: the usual answer


def test_the_endpoint_builds_nothing_for_a_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _pair(key_rest_delay=1.0)
    client, endpoint = pair.client, pair.client_endpoint
    pair.net.settle(0.5)
    deadline = client.idle.rest_deadline(client)
    assert deadline is not None and endpoint.get_timer() == deadline
    builds: list[float] = []
    original = client.routed_datagrams_to_send

    def counted(now: float) -> list[tuple[bytes, object, int]]:
        builds.append(now)
        return original(now)

    monkeypatch.setattr(client, "routed_datagrams_to_send", counted)
    endpoint.handle_timer(deadline)
    assert not client.keys.resident  # the rest fired...
    assert endpoint.datagrams_to_send(deadline) == [] and builds == []  # ...no build
    assert endpoint.get_timer() is not None and endpoint.get_timer() > deadline  # re-filed
    client.send_ping(1)  # an application act wakes it as before
    endpoint.wake(client)
    assert endpoint.datagrams_to_send(deadline) and builds == [deadline]
