"""Connection IDs on several paths (RFC 9000 §9.5), in memory on the fake clock.

§9.5: "an endpoint MUST NOT reuse a connection ID when sending to more than one
destination address" (nor from more than one local address); after a NAT rebinding
(same connection ID from the peer) the current ID MAY follow the peer to its new
address. So once a path changes, what is sent to the old address and what is sent to
the new one never share a Destination Connection ID; each ID used on another path is
retired when that path is abandoned; with no spare ID the other path is not sent to.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from quic.conn_migrate import MigrationRefused
from tests.support.netsim import Addr
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

NEW_PORT = ("127.0.0.2", 50001)
OTHER_PORT = ("127.0.0.2", 50002)
NEW_HOST = ("127.0.0.9", 40000)


def _established(**kwargs: Any) -> Pair:
    pair = make_pair(**kwargs)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.5)  # connection IDs issued and acknowledged
    pair.pump()
    return pair


def _echo(pair: Pair, payload: bytes, side_from: str = "client") -> None:
    conn = pair.client if side_from == "client" else pair.server
    sid = conn.create_stream()
    conn.send_stream_data(sid, payload, end_stream=True)
    other = "server" if side_from == "client" else "client"
    pair.run(lambda: pair.stream_done(sid, other), max_time=30)
    assert bytes(pair.data[other][sid]) == payload


class DcidLog:
    """Records the Destination Connection ID of every 1-RTT packet the server sends
    once it has moved to a new path (``pair.server.paths.migrations`` grew), by
    destination address."""

    def __init__(self, pair: Pair) -> None:
        self.by_dst: dict[Addr, set[bytes]] = defaultdict(set)
        self.datagrams: dict[Addr, int] = defaultdict(int)
        self._server = pair.server
        self._migrations = pair.server.paths.migrations
        self._cid_length = pair.client.cids.cid_length
        pair.net.tap = self

    def __call__(self, src: Addr, dst: Addr, data: bytes) -> list[tuple[Addr, Addr, bytes]]:
        moved = self._server.paths.migrations > self._migrations
        if moved and src == SERVER_ADDR and data and data[0] & 0xC0 == 0x40:  # short header
            self.by_dst[dst].add(data[1 : 1 + self._cid_length])
            self.datagrams[dst] += 1
        return [(src, dst, data)]


def test_nat_rebinding_old_path_challenge_has_its_own_connection_id() -> None:
    """A NAT rebinding (the client keeps its connection ID): the server follows with
    its current ID and challenges the old address (§9.3.3) with another one; that ID
    is retired once the old path's validation is over."""
    pair = _established()
    server = pair.server
    _echo(pair, b"before" * 100)
    log = DcidLog(pair)
    in_use = server.cids.peer_cid
    pair.net.rebind(CLIENT_ADDR, NEW_PORT)
    _echo(pair, b"after the rebinding" * 500)
    pair.net.settle(5)  # the old path never answers: its validation is abandoned
    assert server.peer_address == NEW_PORT
    assert log.datagrams[CLIENT_ADDR] > 0  # the old path was challenged ...
    assert log.by_dst[CLIENT_ADDR].isdisjoint(log.by_dst[NEW_PORT])  # ... with another ID
    assert log.by_dst[NEW_PORT] == {in_use}  # the rebinding keeps the ID in use (§9.5 MAY)
    (old_path_cid,) = log.by_dst[CLIENT_ADDR]
    # abandoned: its ID retired (RETIRE_CONNECTION_ID reached the client) and replaced
    assert server.cids.reserved_peer_cids == 0
    assert old_path_cid not in [e.cid for e in server.cids.peer.values()]
    assert old_path_cid not in pair.client.cids.local_reset_tokens()
    _echo(pair, b"still fine" * 100, side_from="server")


def test_active_migration_each_path_keeps_its_own_connection_id() -> None:
    """The client migrates with a new connection ID: the server moves to an unused ID
    for the new path and challenges the old one with the ID it used there; that one is
    retired afterwards."""
    pair = _established()
    client, server = pair.client, pair.server
    _echo(pair, b"x" * 3000)
    log = DcidLog(pair)
    old_cid = server.cids.peer_cid
    client.migrate(pair.net.now)
    pair.net.rebind(CLIENT_ADDR, NEW_HOST)
    _echo(pair, b"after migration" * 2000)
    _echo(pair, b"reply" * 2000, side_from="server")
    pair.net.settle(5)
    assert server.peer_address == NEW_HOST
    assert log.by_dst[CLIENT_ADDR] == {old_cid}  # the old path's challenge: its own ID
    assert old_cid not in log.by_dst[NEW_HOST]
    assert server.cids.peer_cid != old_cid
    assert server.cids.reserved_peer_cids == 0
    assert old_cid not in client.cids.local_reset_tokens()  # retired


def test_rebinding_without_a_spare_connection_id_skips_the_old_path_challenge() -> None:
    """The client offers a single spare ID (the server's active_connection_id_limit is
    2). A first rebinding spends it on the old path's challenge; a second one, while
    that challenge still holds it, has no ID for the old path: nothing is sent there,
    rather than reuse the ID of the new path (§9.5)."""
    pair = _established(server_kwargs={"active_connection_id_limit": 2})
    server = pair.server
    pair.net.rebind(CLIENT_ADDR, NEW_PORT)
    _echo(pair, b"first rebinding" * 100)
    assert server.peer_address == NEW_PORT
    assert server.cids.reserved_peer_cids == 1  # the old path's challenge holds the spare
    assert server.cids.unused_peer_cids() == 0
    log = DcidLog(pair)  # from the second migration on
    pair.net.rebind(CLIENT_ADDR, OTHER_PORT)
    _echo(pair, b"second rebinding" * 100)
    assert server.peer_address == OTHER_PORT
    assert server.migration.cid_skipped >= 1
    assert log.datagrams[OTHER_PORT] > 0
    assert log.datagrams[NEW_PORT] == 0  # the path left is not challenged: no ID for it
    assert log.by_dst[CLIENT_ADDR].isdisjoint(log.by_dst[OTHER_PORT])
    pair.net.settle(5)
    assert server.cids.reserved_peer_cids == 0
    _echo(pair, b"and on" * 100, side_from="server")


def test_active_migration_without_a_spare_connection_id_is_not_followed() -> None:
    """The client moves to a new connection ID and address while the server has no
    unused ID of the client's: the server cannot send on the new path (§9.5), so it
    does not follow — not for the first packet, nor for the later ones that repeat the
    new ID (they are no NAT rebinding: the ID differs from the one used on the current
    path). Following once an ID is free is test_active_migration_each_path_keeps_its_
    own_connection_id; here the ID the server frees can only be retired on the old
    path, which the client left."""
    pair = _established(server_kwargs={"active_connection_id_limit": 2})
    client, server = pair.client, pair.server
    assert server.cids.unused_peer_cids() == 1
    spare = server.cids.reserve_peer_cid()  # as if another path held it
    assert spare is not None
    client.migrate(pair.net.now)
    pair.net.rebind(CLIENT_ADDR, NEW_HOST)
    sid = client.create_stream()
    client.send_stream_data(sid, b"moved", end_stream=True)
    pair.net.settle(0.05)
    assert server.migration.cid_blocked >= 1
    assert server.peer_address == CLIENT_ADDR  # not followed
    assert pair.stream_done(sid)  # the packet itself was processed
    blocked = server.migration.cid_blocked
    for i in range(5):  # more packets with the new ID, non-probing, from the new address
        sid = client.create_stream()
        client.send_stream_data(sid, b"still moved %d" % i, end_stream=True)
        pair.net.settle(0.05)
        assert pair.stream_done(sid)
    assert server.peer_address == CLIENT_ADDR  # still not followed
    assert server.migration.cid_blocked > blocked
    server.cids.release_peer_cid(spare)  # the other path is abandoned: a RETIRE is owed
    assert server.cids.pending_retirements == 1


def test_client_migration_without_a_spare_connection_id_is_refused() -> None:
    """A client whose server gave no unused ID cannot migrate (§9.5): a clear error."""
    pair = _established(client_kwargs={"active_connection_id_limit": 2})
    client = pair.client
    client.migrate(pair.net.now)  # spends the one spare
    with pytest.raises(MigrationRefused, match="unused connection ID"):
        client.migrate(pair.net.now)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nat_rebinding_under_loss_keeps_connection_ids_apart(seed: int) -> None:
    """A NAT rebinding mid-transfer on a lossy path (10 % each way): the transfer
    completes byte-exact, no ID is sent to two addresses, and every ID lent to the
    old path is retired in the end."""
    pair = _established(seed=seed, loss=0.1, delay=0.01)
    server = pair.server
    log = DcidLog(pair)
    sid = server.create_stream()
    payload = bytes(range(256)) * 800
    server.send_stream_data(sid, payload, end_stream=True)
    pair.net.settle(0.05)
    pair.net.rebind(CLIENT_ADDR, NEW_PORT)
    _echo(pair, b"keepalive" * 50)  # the client speaks from its new port
    pair.run(lambda: pair.stream_done(sid, "client"), max_time=60)
    assert bytes(pair.data["client"][sid]) == payload
    pair.net.settle(5)
    assert server.peer_address == NEW_PORT
    assert log.datagrams[CLIENT_ADDR] > 0  # the old path was challenged
    assert log.by_dst[CLIENT_ADDR].isdisjoint(log.by_dst[NEW_PORT])
    assert server.cids.reserved_peer_cids == 0


def _rebind_many(n: int) -> tuple[int, int, int]:
    """``n`` NAT rebindings in a row, each followed by an exchange and a pause longer
    than the old path's validation. Returns the peak number of peer IDs the server
    held (in use, reserved, awaiting retirement), the peak number of known paths, and
    the 1-RTT datagrams the server sent to addresses it had left."""
    pair = _established(server_kwargs={"active_connection_id_limit": 4})
    server = pair.server
    peak_ids = peak_paths = 0
    old_path_datagrams = 0
    current = CLIENT_ADDR
    for i in range(n):
        log = DcidLog(pair)
        new = ("127.0.0.2", 51000 + i)
        pair.net.rebind(CLIENT_ADDR, new)
        _echo(pair, b"r" * 2000)
        pair.net.settle(3)
        assert server.peer_address == new
        assert log.by_dst[current].isdisjoint(log.by_dst[new])  # §9.5 each time
        old_path_datagrams += sum(c for a, c in log.datagrams.items() if a != new)
        cids = server.cids
        peak_ids = max(peak_ids, len(cids.peer) + cids.pending_retirements)
        peak_paths = max(peak_paths, len(server.paths.others))
        current = new
    assert server.cids.reserved_peer_cids == 0
    return peak_ids, peak_paths, old_path_datagrams


def test_connection_ids_across_rebindings_n_vs_4n() -> None:
    """N vs 4N rebindings: the IDs and paths the server holds stay bounded (the same
    peak), and the work on old paths (their challenges) grows linearly."""
    ids_n, paths_n, work_n = _rebind_many(3)
    ids_4n, paths_4n, work_4n = _rebind_many(12)
    assert ids_4n == ids_n <= 4 + 8  # active_connection_id_limit + retirements in flight
    assert paths_4n <= 4 and paths_n <= 4  # max_known_paths
    assert work_n > 0
    assert 3 <= work_4n / work_n < 6
