"""Connection migration, NAT rebinding and path validation (RFC 9000 §8.2, §9), in memory
on the fake clock (tests/support/netsim.py: ``Network.rebind``, ``Network.tap``)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from quic.conn_migrate import MigrationRefused
from quic.conn_paths import PathManager
from tests.support.netsim import Addr
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

NEW_PORT = ("127.0.0.2", 50001)  # the client's NAT gave it another port
NEW_HOST = ("127.0.0.9", 40000)  # ... or another address
ATTACKER = ("192.0.2.66", 6666)  # nobody answers there


def _established(**server_kwargs: Any) -> Pair:
    pair = make_pair(server_kwargs=server_kwargs)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.5)  # connection IDs issued and acknowledged
    pair.pump()
    return pair


def _echo(pair: Pair, payload: bytes, side_from: str = "client") -> int:
    """Send ``payload`` on a new stream from ``side_from`` and wait until it arrived."""
    conn = pair.client if side_from == "client" else pair.server
    sid = conn.create_stream()
    conn.send_stream_data(sid, payload, end_stream=True)
    other = "server" if side_from == "client" else "client"
    pair.run(lambda: pair.stream_done(sid, other), max_time=20)
    assert bytes(pair.data[other][sid]) == payload
    return sid


@pytest.mark.parametrize("new_addr", [NEW_PORT, NEW_HOST])
def test_nat_rebinding_data_flows_both_ways(new_addr: Addr) -> None:
    pair = _established()
    server = pair.server
    _echo(pair, b"before" * 100)
    congestion = server.recovery.congestion
    pair.net.rebind(CLIENT_ADDR, new_addr)
    _echo(pair, b"c2s after rebinding" * 2000)
    assert server.peer_address == new_addr  # RFC 9000 §9.3: the server follows
    _echo(pair, b"s2c after rebinding" * 2000, side_from="server")
    pair.net.settle(5)
    assert server.paths.address_validated  # RFC 9000 §8.2: the new address validated
    assert server.paths.migrations == 1
    # RFC 9000 §9.4: a port change keeps congestion state; a new host resets it
    assert (server.recovery.congestion is congestion) == (new_addr == NEW_PORT)
    # RFC 9000 §9.5: same connection ID from the client (a rebinding): ours is kept
    assert server.cids.peer_active_sequence == 0
    assert server.state.value == "connected" and pair.client.state.value == "connected"


def test_active_migration_uses_new_connection_ids() -> None:
    pair = _established()
    client, server = pair.client, pair.server
    _echo(pair, b"x" * 3000)
    old_client_dcid, old_server_dcid = client.cids.peer_cid, server.cids.peer_cid
    client.migrate(pair.net.now)
    pair.net.rebind(CLIENT_ADDR, NEW_HOST)  # the client's new socket
    assert client.cids.peer_cid != old_client_dcid  # RFC 9000 §9.5
    _echo(pair, b"after migration" * 3000)
    _echo(pair, b"reply" * 3000, side_from="server")
    pair.net.settle(5)
    assert server.peer_address == NEW_HOST
    assert server.cids.peer_cid != old_server_dcid  # the server moved to a new ID too
    assert server.paths.address_validated
    assert not client.paths.current.validating  # the client's path check succeeded
    # the retired IDs were retired and replaced
    assert old_client_dcid not in server.cids.local_reset_tokens()
    pair.net.settle(2)
    assert len(client.cids.peer) >= 2 and len(server.cids.peer) >= 2


def test_migration_refused_when_not_allowed() -> None:
    pair = make_pair(server_kwargs={"disable_active_migration": True})
    with pytest.raises(MigrationRefused):
        pair.client.migrate(pair.net.now)  # handshake not confirmed
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    with pytest.raises(MigrationRefused):
        pair.client.migrate(pair.net.now)  # RFC 9000 §9: disable_active_migration
    with pytest.raises(MigrationRefused):
        pair.server.migrate(pair.net.now)  # only clients migrate


def test_disable_active_migration_drops_active_migration_but_follows_rebinding() -> None:
    pair = _established(disable_active_migration=True)
    client, server = pair.client, pair.server
    # a NAT rebinding keeps the connection ID: followed (RFC 9000 §9)
    pair.net.rebind(CLIENT_ADDR, NEW_PORT)
    _echo(pair, b"rebound" * 500)
    assert server.peer_address == NEW_PORT
    # a client that migrates anyway (new connection ID, new address): dropped silently
    assert client.cids.rotate_peer_cid()
    pair.net.rebind(CLIENT_ADDR, NEW_HOST)
    sid = client.create_stream()
    client.send_stream_data(sid, b"refused", end_stream=True)
    pair.net.settle(0.5)
    pair.pump()
    assert server.migration.refused > 0
    assert server.peer_address == NEW_PORT
    assert not pair.stream_done(sid)
    assert pair.server_endpoint.resets_sent == 0  # never a Stateless Reset (RFC 9000 §9)


def _spoof_first(pair: Pair, block_client: bool) -> dict[tuple[Addr, Addr], int]:
    """An on-path attacker copies the client's next datagram from ATTACKER, ahead of the
    original (RFC 9000 §9.3.2); with ``block_client`` the client is cut off after it.
    Returns bytes per (src, dst) seen since."""
    seen: dict[tuple[Addr, Addr], int] = {}
    state = {"spoofed": False}

    def tap(src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        seen[(src, dst)] = seen.get((src, dst), 0) + len(data)
        if src == CLIENT_ADDR and not data[0] & 0x80:
            if not state["spoofed"]:
                state["spoofed"] = True
                seen[(ATTACKER, dst)] = len(data)
                return [(ATTACKER, dst, data), (src, dst, data)]
            if block_client:
                return []
        return [(src, dst, data)]

    pair.net.tap = tap
    return seen


def test_failed_validation_reverts_to_the_last_validated_path() -> None:
    pair = _established()
    client, server = pair.client, pair.server
    seen = _spoof_first(pair, block_client=True)
    sid = client.create_stream()
    client.send_stream_data(sid, b"spoofed copy goes first", end_stream=False)
    pair.net.settle(0.05)
    assert server.peer_address == ATTACKER  # the spoofed copy looked like a migration
    server.send_stream_data(server.create_stream(), b"z" * 50_000)  # data for the attacker
    pair.net.settle(5)  # > 3 PTO: validation abandoned (RFC 9000 §8.2.4)
    assert server.paths.validations_failed >= 1
    assert server.peer_address == CLIENT_ADDR  # RFC 9000 §9.3.2: reverted
    received = seen.get((ATTACKER, SERVER_ADDR), 0)
    # RFC 9000 §9.3, §8.1: at most three times what came from the unvalidated address
    assert 0 < seen.get((SERVER_ADDR, ATTACKER), 0) <= 3 * received
    pair.net.tap = None
    client.send_stream_data(sid, b" and the rest", end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=20)
    assert server.state.value == "connected"


def test_old_path_challenge_brings_the_connection_back() -> None:
    """RFC 9000 §9.3.3: after a spoofed migration the old path is challenged; the
    genuine client answers there with newer packets and the server moves back."""
    pair = _established()
    client, server = pair.client, pair.server
    _spoof_first(pair, block_client=False)
    sid = client.create_stream()
    client.send_stream_data(sid, b"first", end_stream=False)
    pair.net.settle(0.015)  # the spoofed copy arrived first
    assert server.peer_address == ATTACKER
    pair.net.settle(0.1)  # the challenge on the old path was answered with newer packets
    assert server.peer_address == CLIENT_ADDR
    assert server.paths.migrations == 2
    client.send_stream_data(sid, b" second", end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=20)
    assert server.peer_address == CLIENT_ADDR
    assert bytes(pair.data["server"][sid]) == b"first second"


def test_amplification_limit_on_a_new_path_scales_with_what_it_received() -> None:
    """N vs 4N: bytes sent to an unvalidated address stay below 3x what came from it."""

    def sent_to_attacker(copies: int) -> tuple[int, int]:
        pair = _established()
        client, server = pair.client, pair.server
        seen: dict[tuple[Addr, Addr], int] = {}
        count = {"n": 0}

        def tap(src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
            seen[(src, dst)] = seen.get((src, dst), 0) + len(data)
            if src == CLIENT_ADDR and not data[0] & 0x80:
                count["n"] += 1
                if count["n"] <= copies:
                    seen[(ATTACKER, dst)] = seen.get((ATTACKER, dst), 0) + len(data)
                    return [(ATTACKER, dst, data)]  # the attacker relays, the client is cut
                return []
            return [(src, dst, data)]

        pair.net.tap = tap
        sid = client.create_stream()
        for _ in range(copies):
            client.send_stream_data(sid, b"d" * 1000)
            pair.net.settle(0.02)
        server.send_stream_data(server.create_stream(), b"z" * 500_000)
        pair.net.settle(0.5)
        return seen.get((ATTACKER, SERVER_ADDR), 0), seen.get((SERVER_ADDR, ATTACKER), 0)

    small_in, small_out = sent_to_attacker(2)
    big_in, big_out = sent_to_attacker(8)
    assert 0 < small_out <= 3 * small_in
    assert 0 < big_out <= 3 * big_in
    assert big_out / small_out < 6  # linear in what the address sent, not unbounded


def test_path_response_goes_to_the_path_of_the_challenge() -> None:
    """RFC 9000 §8.2.2: a probe from a new address is answered there; a probing packet
    does not move the connection (§9.1)."""
    paths = PathManager(False, 1500, 8, token_bytes=lambda n: b"\x07" * n)
    paths.peer_address = CLIENT_ADDR
    paths.validate_address()
    paths.handshake_done()
    paths.receiving = NEW_HOST
    paths.on_path_challenge(b"12345678")
    assert paths.on_authenticated_from(NEW_HOST, 1200, False, 0.0, 0.1) is None
    assert paths.peer_address == CLIENT_ADDR
    assert not paths.wants_send()  # nothing for the current path
    pending = paths.off_path_pending()
    assert [p.addr for p in pending] == [NEW_HOST]
    assert paths.path_budget(pending[0]) == 1500  # 3 x 1200 received, capped by the MTU


def test_known_paths_are_bounded() -> None:
    """N vs 4N probing addresses: the connection keeps at most max_known_paths."""
    for n in (8, 32):
        paths = PathManager(False, 1500, 8, max_paths=4)
        paths.peer_address = CLIENT_ADDR
        paths.validate_address()
        for i in range(n):
            paths.receiving = ("198.51.100.1", 1000 + i)
            paths.on_path_challenge(i.to_bytes(8, "big"))
            paths.on_authenticated_from(paths.receiving, 100, False, 0.0, 0.1)
        assert len(paths.others) == 4
        assert paths.pending_responses == 8
        assert len(paths.off_path_pending()) <= 4
        assert paths.pending_responses <= 4


def test_challenges_are_retransmitted_then_abandoned() -> None:
    """RFC 9000 §8.2.1, §8.2.4: fresh challenges at growing intervals, abandoned after
    three PTOs (at least three initial PTOs); a client's own path is kept."""
    values = iter(range(100))
    paths = PathManager(True, 1500, 8, token_bytes=lambda n: next(values).to_bytes(n, "big"))
    paths.peer_address = SERVER_ADDR
    paths.restart_current(0.0, 0.1)
    sent: list[float] = []
    now = 0.0
    while paths.get_timer() is not None:
        if paths.current.challenge_owed:
            paths.current.challenge_owed = False
            sent.append(now)
        now = paths.get_timer() or now
        assert paths.handle_timer(now)
    assert sent[0] == 0.0 and len(sent) >= 3
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(b > a for a, b in itertools.pairwise(gaps))  # backing off
    assert now == pytest.approx(3 * (0.333 + 4 * 0.1665))
    assert paths.validations_failed == 1
    assert paths.address_validated  # the client keeps its path


PREFERRED = ("127.0.0.1", 4434)


def _preferred_pair(reachable: bool, **client_kwargs: Any) -> Pair:
    pair = make_pair(
        server_kwargs={"preferred_address": PREFERRED}, client_kwargs=client_kwargs or None
    )
    if reachable:  # the server endpoint listens on its preferred address too
        pair.net.add(PREFERRED, pair.net.endpoints[SERVER_ADDR])
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    return pair


def test_client_migrates_to_the_servers_preferred_address() -> None:
    """RFC 9000 §9.6: the client validates the preferred address after confirmation,
    then sends there with the preferred_address connection ID (sequence 1)."""
    pair = _preferred_pair(reachable=True)
    client, server = pair.client, pair.server
    params = client.peer_params
    assert params is not None and params.preferred_address is not None
    assert params.preferred_address.ipv4 == PREFERRED
    # the preferred CID is routed to the server connection (sequence 1, RFC 9000 §5.1.1)
    assert server.cids.local[1].cid == params.preferred_address.connection_id
    seen: list[tuple[Addr, Addr]] = []

    def tap(src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        seen.append((src, dst))
        return [(src, dst, data)]

    pair.net.tap = tap
    pair.net.settle(3)
    assert client.peer_address == PREFERRED
    assert client.cids.peer_active_sequence == 1
    assert client.paths.address_validated
    seen.clear()
    _echo(pair, b"via the preferred address" * 1000)
    _echo(pair, b"and back" * 1000, side_from="server")
    assert (CLIENT_ADDR, PREFERRED) in seen and (CLIENT_ADDR, SERVER_ADDR) not in seen


def test_unreachable_preferred_address_keeps_the_original() -> None:
    """RFC 9000 §9.6.1: if validation fails the client keeps the server's original
    address."""
    pair = _preferred_pair(reachable=False)
    client = pair.client
    pair.net.settle(6)  # > 3 PTO: the validation is abandoned
    assert client.peer_address == SERVER_ADDR
    assert client.paths.validations_failed == 1
    assert client.paths.preferred is None and not client.paths.others
    _echo(pair, b"still here" * 1000)


def test_preferred_address_can_be_declined() -> None:
    pair = _preferred_pair(reachable=True, use_preferred_address=False)
    pair.net.settle(3)
    assert pair.client.peer_address == SERVER_ADDR
    _echo(pair, b"stayed" * 100)


def _download_across_a_rebinding(size: int) -> tuple[Pair, int, int]:
    """The server sends ``size`` bytes; mid-way the client's NAT moves it to another
    port, so what the server sent to the old one is lost. Returns the pair and the
    server's congestion window just before and after the rebinding settled."""
    pair = make_pair(delay=0.015)
    pair.handshake()
    server, client = pair.server, pair.client
    sid = client.create_stream()
    client.send_stream_data(sid, b"GET", end_stream=True)
    pair.net.settle(0.1)
    server.send_stream_data(sid, b"x" * size, end_stream=True)
    pair.net.settle(0.15)
    before = server.recovery.congestion.congestion_window
    pair.net.rebind(CLIENT_ADDR, NEW_PORT)
    pair.net.settle(0.3)  # the server follows, and detects the old path's packets lost
    assert server.peer_address == NEW_PORT and server.paths.migrations == 1
    after = server.recovery.congestion.congestion_window
    pair.run(lambda: pair.stream_done(sid, "client"), max_time=30)
    return pair, before, after


def test_old_path_losses_do_not_shrink_the_window_after_a_port_change() -> None:
    """RFC 9000 §9.4: packets sent on the old path MUST NOT contribute to congestion
    control for the new one. A port-only change keeps the controller (its MAY), but the
    packets lost to the dead NAT binding are not a congestion signal: the window is not
    cut (before: halved at least once, about 1/3 of it gone)."""
    pair, before, after = _download_across_a_rebinding(3_000_000)
    lost = pair.net.link(SERVER_ADDR, CLIENT_ADDR).sent > 0
    assert lost  # something did go to the old binding
    assert after >= before
    assert pair.server.recovery.losses.path_changed_at is not None
