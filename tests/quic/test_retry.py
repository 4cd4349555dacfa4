"""Retry and address validation tokens end to end, in memory on a fake clock.

RFC 9000 §8.1 (address validation), §17.2.5 (Retry), §7.3 (connection ID transport
parameters), §19.7 (NEW_TOKEN); RFC 9001 §5.8 (integrity tag), RFC 9369 §3.3.3 (v2).
The integrity tag vectors of RFC 9001 A.4 and RFC 9369 A.4 are checked in
``test_protection.py`` (``test_retry_integrity_tag``); here the packets our server
makes are checked with the same verifier the client uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from quic.conn_handshake import HandshakeDriver
from quic.endpoint import QuicEndpoint
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated
from quic.frames import FrameType
from quic.packet import PacketHeader, PacketType, encode_retry, parse_header
from quic.packet_builder import PacketAssembler
from quic.protection import append_retry_integrity_tag, initial_keys, verify_retry_integrity
from quic.qlog import QlogMemorySink
from quic.retry import AddressValidator, InitialVerdict
from quic.tokens import TokenKind, TokenStore, token_kind
from quic.versions import QuicVersion
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pair,
    WakingEndpoint,
    client_config,
    make_pair,
    server_config,
)
from tests.support.spoof import client_initial_frames, random_address

V1, V2 = int(QuicVersion.VERSION_1), int(QuicVersion.VERSION_2)


def _header(data: bytes) -> PacketHeader:
    return parse_header(data, 0, 8)


def _is_initial(data: bytes) -> bool:
    return bool(data[0] & 0x80) and _header(data).packet_type is PacketType.INITIAL


def _is_retry(data: bytes) -> bool:
    return bool(data[0] & 0x80) and _header(data).packet_type is PacketType.RETRY


class _Filtered(WakingEndpoint):
    """An endpoint that drops incoming datagrams ``drop`` picks, and records all."""

    def __init__(self, endpoint: QuicEndpoint, drop: Callable[[bytes], bool]) -> None:
        super().__init__(endpoint)
        self.drop = drop
        self.received: list[bytes] = []
        self.dropped: list[bytes] = []

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.received.append(data)
        if self.drop(data):
            self.dropped.append(data)
            return
        super().receive_datagram(data, addr, now)


def _drop_first(n: int, pick: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    left = [n]

    def drop(data: bytes) -> bool:
        if left[0] > 0 and pick(data):
            left[0] -= 1
            return True
        return False

    return drop


def _filtered_pair(
    server_drop: Callable[[bytes], bool] = lambda d: False,
    client_drop: Callable[[bytes], bool] = lambda d: False,
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
) -> tuple[Pair, _Filtered, _Filtered]:
    pair = make_pair(
        client_kwargs=client_kwargs, server_kwargs={"retry": "always", **(server_kwargs or {})}
    )
    server = _Filtered(pair.server_endpoint, server_drop)
    client = _Filtered(pair.client_endpoint, client_drop)
    pair.net.add(SERVER_ADDR, server)
    pair.net.add(CLIENT_ADDR, client)
    return pair, server, client


def _validator(pair: Pair) -> AddressValidator:
    validator = pair.server_endpoint.address_validator
    assert validator is not None
    return validator


def _client_initial_pn(data: bytes) -> int:
    header = _header(data)
    _, read = initial_keys(header.version or V1, header.dcid, is_client=False)
    _, pn = read.unprotect_header(memoryview(data)[: header.end], header.pn_offset, -1)
    return pn


def _echo(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"after retry" * 100, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=5)
    assert bytes(pair.data["server"][sid]) == b"after retry" * 100


# -- the Retry handshake ----------------------------------------------------------------


@pytest.mark.parametrize("version", [V1, V2])
def test_retry_handshake(version: int) -> None:
    """Server always Retries; the client takes the Retry once, starts over with its
    connection ID and token, numbers its Initials on (§17.2.5.3), and both sides
    authenticate the connection IDs (§7.3)."""
    pair, server, client = _filtered_pair(client_kwargs={"supported_versions": (version,)})
    pair.handshake()
    validator = _validator(pair)
    assert validator.retries >= 1 and validator.retry_validated == 1
    retries = [d for d in client.received if _is_retry(d)]
    assert retries and all(_header(r).version == version for r in retries)
    assert all(verify_retry_integrity(version, pair.client.original_dcid, r) for r in retries)
    hs = pair.client.handshake
    assert hs.retry_received and hs.retry_scid == _header(retries[0]).scid
    assert pair.server.handshake.retry_scid == hs.retry_scid
    assert pair.server.original_dcid == pair.client.original_dcid
    assert pair.server.paths.address_validated  # RFC 9000 §8.1.2
    first, *rest = [d for d in server.received if _is_initial(d)]
    assert not _header(first).token
    after = [d for d in rest if _header(d).token]
    assert after and _header(after[0]).dcid == hs.retry_scid  # then the server's choice
    assert token_kind(_header(after[0]).token) is TokenKind.RETRY
    before = sum(1 for d in rest if not _header(d).token) + 1
    assert _client_initial_pn(after[0]) >= before  # RFC 9000 §17.2.5.3: PN goes on
    assert len(pair.server_endpoint.connections) == 1
    _echo(pair)


def test_retry_then_lost_initial() -> None:
    """The client's first Initial after the Retry is lost: loss recovery sends it again
    (with the token), and the handshake completes on the one Retry."""
    drop = _drop_first(1, lambda d: _is_initial(d) and bool(_header(d).token))
    pair, server, _ = _filtered_pair(server_drop=drop)
    pair.handshake()
    assert len(server.dropped) == 1
    assert _validator(pair).retry_validated == 1
    assert pair.client.handshake.retry_received
    _echo(pair)


def test_lost_retry() -> None:
    """Every Retry of the first flight is lost: the client's probe gets a new one."""
    pair, _, client = _filtered_pair(client_drop=_drop_first(2, _is_retry))
    pair.net.settle(0.05)
    dropped = len(client.dropped)
    assert dropped >= 1 and not pair.client.handshake.retry_received
    pair.handshake()
    assert _validator(pair).retries > dropped and _validator(pair).retry_validated == 1


def test_lost_server_initial_after_retry() -> None:
    pair, _, client = _filtered_pair(client_drop=_drop_first(1, _is_initial))
    pair.handshake()
    assert len(client.dropped) == 1 and pair.client.handshake.retry_received


def test_client_takes_one_retry_only() -> None:
    """A second Retry (another SCID, valid tag) is discarded (RFC 9000 §17.2.5.2)."""
    pair, _, _ = _filtered_pair()
    pair.net.settle(0.025)  # the Retry arrived (20 ms), no server Initial yet (40 ms)
    hs = pair.client.handshake
    assert hs.retry_received
    scid = hs.retry_scid
    second = append_retry_integrity_tag(
        V1,
        pair.client.original_dcid,
        encode_retry(V1, pair.client.host_cid, b"\x77" * 8, b"\x52other-token"),
    )
    pair.client.receive_datagram(second, SERVER_ADDR, pair.net.now)
    assert hs.retry_scid == scid and pair.client.cids.peer_cid == scid
    pair.handshake()


def test_client_ignores_tampered_retry() -> None:
    """A Retry whose integrity tag fails is discarded (RFC 9001 §5.8); the client
    goes on, and takes a genuine one (its probe gets a new Retry)."""
    tampered: list[bytes] = []
    pair = make_pair(server_kwargs={"retry": "always"})
    client = _Filtered(pair.client_endpoint, lambda d: False)

    def receive(data: bytes, addr: Any, now: float) -> None:
        if _is_retry(data) and len(tampered) < 2:  # the Retries of the first flight
            bad = bytearray(data)
            bad[-20] ^= 1  # a token byte
            tampered.append(bytes(bad))
            data = bytes(bad)
        pair.client_endpoint.receive_datagram(data, addr, now)

    client.receive_datagram = receive  # type: ignore[method-assign]
    pair.net.add(CLIENT_ADDR, client)
    pair.net.settle(0.025)
    assert tampered and not pair.client.handshake.retry_received
    pair.handshake()
    assert pair.client.handshake.retry_received
    assert pair.client.handshake.retry_scid not in {_header(t).scid for t in tampered}


# -- transport parameters (RFC 9000 §7.3) ------------------------------------------------


def _close_code(pair: Pair) -> int | None:
    pair.run(lambda: pair.client.is_closed, max_time=5)
    closes = pair.events_of(ConnectionTerminated, side="client")
    return closes[0].error_code if closes else None


def _patch_verdict(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[InitialVerdict, PacketHeader], Any]
) -> None:
    original = AddressValidator.check_initial

    def check(self: AddressValidator, header: PacketHeader, *args: Any) -> InitialVerdict:
        verdict = original(self, header, *args)
        return change(verdict, header) if verdict.admit else verdict

    monkeypatch.setattr(AddressValidator, "check_initial", check)


def test_wrong_original_dcid_is_a_transport_parameter_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch_verdict(monkeypatch, lambda v, h: replace(v, original_dcid=b"\x09" * 8))
    pair = make_pair(server_kwargs={"retry": "always"})
    assert _close_code(pair) == TransportErrorCode.TRANSPORT_PARAMETER_ERROR


def test_wrong_retry_scid_is_a_transport_parameter_error(monkeypatch: pytest.MonkeyPatch) -> None:
    original = HandshakeDriver.accept_retry

    def accept(self: HandshakeDriver, *args: Any) -> bool:
        ok = original(self, *args)
        if ok:
            self.retry_scid = b"\x0a" * 8  # not what the server will put in its parameters
        return ok

    monkeypatch.setattr(HandshakeDriver, "accept_retry", accept)
    pair = make_pair(server_kwargs={"retry": "always"})
    assert _close_code(pair) == TransportErrorCode.TRANSPORT_PARAMETER_ERROR


def test_retry_scid_without_retry_is_a_transport_parameter_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the server claims a Retry it never sent (the IDs keep the Initial keys right)
    _patch_verdict(monkeypatch, lambda v, h: replace(v, original_dcid=h.dcid, retry_scid=h.dcid))
    pair = make_pair(server_kwargs={"retry": "never"})
    assert _close_code(pair) == TransportErrorCode.TRANSPORT_PARAMETER_ERROR


def test_missing_retry_scid_after_retry_is_a_transport_parameter_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch_verdict(monkeypatch, lambda v, h: replace(v, retry_scid=None))
    # keys: with no retry_scid the server derives them from original_dcid; keep them right
    _patch_verdict(monkeypatch, lambda v, h: replace(v, original_dcid=h.dcid))
    pair = make_pair(server_kwargs={"retry": "always"})
    assert _close_code(pair) == TransportErrorCode.TRANSPORT_PARAMETER_ERROR


# -- invalid tokens on the server (RFC 9000 §8.1.2, §8.1.3) -----------------------------


def _initial_with_token(
    token: bytes, dcid: bytes, scid: bytes, version: int = V1, pn: int = 0
) -> bytes:
    write, _ = initial_keys(version, dcid, is_client=True)
    asm = PacketAssembler(1200)
    asm.begin_datagram(1200)
    assert asm.begin_packet(
        PacketType.INITIAL, version, dcid, scid, write, 0, pn, None, token=token
    )
    asm.push(client_initial_frames()[: asm.room])
    asm.end_packet()
    asm.end_datagram(pad_initial=True)
    return asm.datagrams[0]


def _retry_token(server: QuicEndpoint, addr: Any, now: float) -> tuple[bytes, bytes, bytes]:
    """Get a Retry from ``server``: (token, retry scid, client scid)."""
    rng = random.Random(11)
    odcid, scid = rng.randbytes(8), rng.randbytes(8)
    server.receive_datagram(_initial_with_token(b"", odcid, scid), addr, now)
    (retry, _), *_ = server.datagrams_to_send(now)
    header = _header(retry)
    assert header.packet_type is PacketType.RETRY
    return header.token, header.scid, scid


def _close_frames(server: QuicEndpoint, now: float, dcid: bytes) -> bytes:
    out = server.datagrams_to_send(now)
    assert len(out) == 1
    data = out[0][0]
    header = _header(data)
    assert header.packet_type is PacketType.INITIAL and len(data) < 1200
    _, read = initial_keys(V1, dcid, is_client=True)
    _, _, payload = read.decrypt_packet(memoryview(data)[: header.end], header.pn_offset, -1)
    return bytes(payload)


def _assert_invalid_token_close(server: QuicEndpoint, now: float, dcid: bytes) -> None:
    payload = _close_frames(server, now, dcid)
    assert payload[0] == FrameType.CONNECTION_CLOSE
    assert payload[1] == TransportErrorCode.INVALID_TOKEN
    assert not server.connections and server.half_open_connections == 0


ADDR = ("198.51.100.9", 5555)


@pytest.mark.parametrize(
    "case", ["other_ip", "other_port", "expired", "other_dcid", "tampered", "foreign_key"]
)
def test_bad_retry_token_gets_invalid_token_close(case: str) -> None:
    server = QuicEndpoint(server_config(retry="always"))
    token, rscid, cscid = _retry_token(server, ADDR, 0.0)
    addr, now, dcid = ADDR, 1.0, rscid
    if case == "other_ip":
        addr = ("198.51.100.10", 5555)
    elif case == "other_port":
        addr = ("198.51.100.9", 5556)
    elif case == "expired":
        now = 10.5  # RFC 9000 §8.1.4: Retry tokens are short-lived (10 s here)
    elif case == "other_dcid":
        dcid = b"\x42" * 8
    elif case == "tampered":
        token = token[:-1] + bytes((token[-1] ^ 1,))
    else:
        token = _retry_token(QuicEndpoint(server_config(retry="always")), ADDR, 0.0)[0]
    server.receive_datagram(_initial_with_token(token, dcid, cscid), addr, now)
    _assert_invalid_token_close(server, now, dcid)
    assert _validator_of(server).invalid_tokens == 1


def test_bad_retry_token_in_an_unauthenticated_initial_is_dropped() -> None:
    server = QuicEndpoint(server_config(retry="always"))
    token, rscid, cscid = _retry_token(server, ADDR, 0.0)
    data = bytearray(_initial_with_token(token, rscid, cscid))
    data[-1] ^= 1  # fails authentication
    server.receive_datagram(bytes(data), ("198.51.100.10", 5555), 1.0)
    assert server.datagrams_to_send(1.0) == [] and not server.connections


def test_valid_retry_token_admits_validated() -> None:
    server = QuicEndpoint(server_config(retry="always"))
    token, rscid, cscid = _retry_token(server, ADDR, 0.0)
    server.receive_datagram(_initial_with_token(token, rscid, cscid), ADDR, 9.0)
    (conn,) = server.connections
    assert conn.paths.address_validated and conn.handshake.retry_scid == rscid
    assert _validator_of(server).retry_validated == 1


def _validator_of(server: QuicEndpoint) -> AddressValidator:
    assert server.address_validator is not None
    return server.address_validator


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"garbage-token-from-someone-else" * 2,
        bytes((TokenKind.RETRY, 0x99)) + bytes(60),  # Retry's kind byte, a key we lack
        bytes((TokenKind.RETRY, 0)) + bytes(200),  # a key we hold, not a Retry's length
    ],
)
def test_unknown_token_is_treated_as_none(token: bytes) -> None:
    """§8.1.3: a token that is not ours gets a Retry (retry="always"), or is admitted
    unvalidated (retry="never")."""
    rng = random.Random(5)
    for mode, retried in (("always", True), ("never", False)):
        server = QuicEndpoint(server_config(retry=mode))
        _validator_of(server).issue_new_token(ADDR, 0.0)  # the server holds key id 0
        dcid, scid = rng.randbytes(8), rng.randbytes(8)
        server.receive_datagram(_initial_with_token(token, dcid, scid), ADDR, 0.0)
        if retried:
            assert not server.connections
            assert _is_retry(server.datagrams_to_send(0.0)[0][0])
        else:
            (conn,) = server.connections
            assert not conn.paths.address_validated


# -- NEW_TOKEN (RFC 9000 §8.1.3, §19.7) ----------------------------------------------


def _second_connection(
    pair: Pair, store: TokenStore, addr: tuple[str, int] = ("127.0.0.2", 50001)
) -> tuple[Any, _Filtered]:
    endpoint = QuicEndpoint()
    tap = _Filtered(endpoint, lambda d: False)
    pair.net.add(addr, tap)
    conn = endpoint.connect(SERVER_ADDR, client_config(token_store=store), pair.net.now)
    pair.net.run(lambda: conn.handshake_complete, max_time=5)
    return conn, tap


def _first_connection(**server_kwargs: Any) -> tuple[Pair, TokenStore]:
    store = TokenStore()
    pair = make_pair(
        server_kwargs={"retry": "always", **server_kwargs}, client_kwargs={"token_store": store}
    )
    pair.handshake()
    pair.run(lambda: len(store) > 0, max_time=5)
    return pair, store


def test_new_token_skips_retry_and_validates_the_address() -> None:
    pair, store = _first_connection()
    validator = _validator(pair)
    retries = validator.retries
    token = store._tokens["localhost|4433"][-1]
    assert token_kind(token) is TokenKind.NEW_TOKEN and store.count("localhost|4433") == 1
    conn, tap = _second_connection(pair, store)  # same IP, another port
    assert not conn.handshake.retry_received and validator.retries == retries
    assert validator.token_validated == 1
    server_conn = pair.server_endpoint.connections[-1]
    assert server_conn.paths.address_validated  # no anti-amplification limit
    assert not [d for d in tap.received if _is_retry(d)]
    assert store.count("localhost|4433") == 0  # the used one is gone
    pair.net.run(lambda: len(store) > 0, max_time=5)
    assert store.count("localhost|4433") == 1  # and a new one came
    assert store._tokens["localhost|4433"][-1] != token


def test_new_token_from_another_ip_gets_a_retry() -> None:
    pair, store = _first_connection()
    validator = _validator(pair)
    conn, _ = _second_connection(pair, store, ("127.0.0.3", 50000))
    assert conn.handshake.retry_received and validator.token_validated == 0


def test_expired_new_token_gets_a_retry() -> None:
    pair, store = _first_connection(new_token_lifetime=60.0)
    pair.net.now += 61.0
    conn, _ = _second_connection(pair, store)
    assert conn.handshake.retry_received and _validator(pair).token_validated == 0


def test_no_new_token_when_disabled() -> None:
    store = TokenStore()
    pair = make_pair(server_kwargs={"send_new_token": False}, client_kwargs={"token_store": store})
    pair.handshake()
    pair.net.settle(1.0)
    assert len(store) == 0 and pair.client.handshake.new_token == b""


def test_one_new_token_per_connection_resent_if_lost() -> None:
    """One NEW_TOKEN per connection; a lost one is sent again (RFC 9000 §13.3)."""
    resent = 0
    for seed in range(12):
        store = TokenStore(max_tokens_per_server=8)
        pair = make_pair(seed=seed, loss=0.3, client_kwargs={"token_store": store})
        pair.run(lambda s=store: len(s) > 0, max_time=30)  # type: ignore[misc]
        pair.net.settle(5.0)
        assert store.count("localhost|4433") == 1
        resent += pair.server.handshake.tokens_resent
    assert resent > 0  # some seed lost the first NEW_TOKEN packet


def test_server_rejects_new_token_frame_from_client() -> None:
    """A client sending NEW_TOKEN is a PROTOCOL_VIOLATION (RFC 9000 §19.7)."""
    pair = make_pair()
    pair.handshake()
    pair.client.handshake._owe_token(b"tok")  # a misbehaving client
    pair.client_endpoint.wake(pair.client)
    pair.run(lambda: pair.server.is_closed, max_time=5)
    closes = pair.events_of(ConnectionTerminated, side="server")
    assert closes[0].error_code == TransportErrorCode.PROTOCOL_VIOLATION


# -- automatic Retry (the endpoint's half-open count) -----------------------------------


def test_auto_retry_threshold() -> None:
    """retry="auto": Initials are admitted until ``retry_threshold`` handshakes are in
    flight, then Retried; admitted again once the half-open ones are gone."""
    server = QuicEndpoint(server_config(retry="auto", retry_threshold=3, handshake_timeout=2.0))
    rng = random.Random(9)

    def offer(now: float) -> bool:
        before = len(server.connections)
        dcid, scid = rng.randbytes(8), rng.randbytes(8)
        server.receive_datagram(_initial_with_token(b"", dcid, scid), random_address(rng), now)
        out = server.datagrams_to_send(now)
        retried = any(_is_retry(d) for d, _ in out)
        assert retried != (len(server.connections) == before + 1)
        return retried

    assert [offer(0.0) for _ in range(5)] == [False, False, False, True, True]
    assert server.half_open_connections == 3
    server.handle_timer(2.5)  # the three handshakes time out
    assert server.half_open_connections == 0
    assert not offer(3.0)


# -- qlog ---------------------------------------------------------------------------


def test_client_logs_the_retry_it_takes() -> None:
    """qlog quic-events: the accepted Retry is a packet_received of type "retry" with
    its token; a second one is a packet_dropped."""
    sink = QlogMemorySink()
    pair = make_pair(
        server_kwargs={"retry": "always"}, client_kwargs={"qlog_factory": lambda c, o: sink}
    )
    pair.handshake()
    received = [
        e["data"]
        for e in sink.events
        if e["name"] == "transport:packet_received"
        and e["data"]["header"]["packet_type"] == "retry"
    ]
    assert len(received) == 1
    hs = pair.client.handshake
    assert received[0]["header"]["scid"] == hs.retry_scid.hex()
    token = bytes.fromhex(received[0]["header"]["token"]["raw"]["data"])
    assert token_kind(token) is TokenKind.RETRY
    dropped = [
        e["data"]
        for e in sink.events
        if e["name"] == "transport:packet_dropped"
        and e["data"].get("header", {}).get("packet_type") == "retry"
    ]
    assert len(dropped) == _validator(pair).retries - 1  # later Retries: discarded


def test_client_learns_invalid_token_end_to_end() -> None:
    """The client's Retry token has expired when its Initial arrives (a lifetime under
    the 10 ms one-way delay): the server closes statelessly with INVALID_TOKEN and the
    client ends at once with that code instead of timing out (RFC 9000 §8.1.2)."""
    pair = make_pair(server_kwargs={"retry": "always", "retry_token_lifetime": 0.005})
    start = pair.net.now
    pair.run(lambda: bool(pair.events_of(ConnectionTerminated, side="client")), max_time=5)
    (closed,) = pair.events_of(ConnectionTerminated, side="client")
    assert closed.error_code == TransportErrorCode.INVALID_TOKEN and closed.by_peer
    assert pair.net.now - start < 0.1  # two round trips, no timeout
    assert not pair.server_endpoint.connections
    assert _validator(pair).invalid_tokens >= 1
