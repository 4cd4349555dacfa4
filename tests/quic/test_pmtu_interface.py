"""MAX_PLPMTU from the local interface (RFC 8899 §5.1.2): :meth:`PmtuDiscovery.
set_local_limit`, the driver's reading of the route's MTU (:mod:`quic.aio.mtu`) and a
loopback transfer that searches up to it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from quic.aio import QuicSession, connect, serve
from quic.aio.mtu import CACHE_SIZE, InterfaceMtu, interface_payload_limit
from quic.conn_pmtu import MAX_PROBES, PmtuDiscovery, PmtuState
from tests.quic.test_aio import client_config, echo_stream, server_config
from tests.quic.test_pmtu import _fate, _probe

LINUX = sys.platform.startswith("linux")


def _pmtu(
    start: int = 1200, ceiling: int = 1452, interface: bool = True
) -> tuple[PmtuDiscovery, list[int]]:
    applied: list[int] = []
    return PmtuDiscovery(start, ceiling, 600.0, applied.append, interface), applied


def _loopback_mtu() -> int:
    """The loopback route's MTU: the interface's, at most an IPv4 packet's 65,535 bytes."""
    return min(int(Path("/sys/class/net/lo/mtu").read_text()), 65535)


# -- PmtuDiscovery ----------------------------------------------------------------------


def test_the_local_limit_replaces_the_configured_ceiling() -> None:
    pmtu, applied = _pmtu()
    assert pmtu.wants_local_limit
    pmtu.set_local_limit(65507)
    pmtu.start(0.0)
    size, packet = _probe(pmtu)
    assert size == 1452  # the configured size first: it passes at once on most paths
    _fate(packet, True)
    size, packet = _probe(pmtu)
    assert size == 65507  # then the interface's maximum (RFC 8899 §5.3: the maximum)
    _fate(packet, True)
    assert applied == [1452, 65507] and pmtu.state is PmtuState.SEARCH_COMPLETE
    lower, _ = _pmtu()
    lower.set_local_limit(1300)  # a narrow interface lowers it too
    lower.start(0.0)
    assert lower.probe_size() == 1300


def test_a_lost_interface_probe_bisects_above_the_configured_size() -> None:
    pmtu, _ = _pmtu()
    pmtu.set_local_limit(9000)
    pmtu.start(0.0)
    _fate(_probe(pmtu)[1], True)  # 1452
    for _ in range(MAX_PROBES):
        size, packet = _probe(pmtu)
        assert size == 9000
        _fate(packet, False)
    size, _ = _probe(pmtu)
    assert 1452 < size < 9000 and pmtu.plpmtu == 1452


def test_the_peer_limit_caps_the_local_limit_in_either_order() -> None:
    for peer_first in (True, False):
        pmtu, applied = _pmtu()
        if peer_first:
            pmtu.set_peer_limit(9000)
        pmtu.set_local_limit(65507)
        if not peer_first:
            pmtu.set_peer_limit(9000)
        pmtu.start(0.0)
        for _ in range(2):
            _fate(_probe(pmtu)[1], True)
        assert applied == [1452, 9000] and pmtu.state is PmtuState.SEARCH_COMPLETE


def test_the_local_limit_is_not_heard_when_off_or_late() -> None:
    off, _ = _pmtu(interface=False)  # pmtud_interface_mtu=False
    assert not off.wants_local_limit
    off.set_local_limit(65507)
    off.start(0.0)
    assert off.probe_size() == 1452
    no_discovery, _ = _pmtu(1200, 1200)  # pmtud_max_datagram_size=1200: discovery off
    assert not no_discovery.wants_local_limit
    no_discovery.set_local_limit(65507)
    no_discovery.start(0.0)
    assert no_discovery.state is PmtuState.DISABLED and no_discovery.plpmtu == 1200
    started, _ = _pmtu()
    started.start(0.0)  # the search began: its bounds stay
    assert not started.wants_local_limit
    started.set_local_limit(65507)
    assert started.probe_size() == 1452


def test_a_local_limit_at_the_start_disables_the_search() -> None:
    pmtu, _ = _pmtu()
    pmtu.set_local_limit(1200)
    pmtu.start(0.0)
    assert pmtu.state is PmtuState.DISABLED and pmtu.probe_size() is None


def test_a_new_peer_host_goes_back_to_the_configured_ceiling() -> None:
    pmtu, _ = _pmtu()
    pmtu.set_local_limit(65507)
    pmtu.start(0.0)
    pmtu.reset(1.0, confirmed=True)  # RFC 9000 §14.3: nobody read the new route
    assert pmtu.probe_size() == 1452


# -- quic.aio.mtu -------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="IP_MTU is Linux's")
def test_the_loopback_route_gives_its_mtu_less_the_headers() -> None:
    assert interface_payload_limit(socket.AF_INET, ("127.0.0.1", 4433)) == _loopback_mtu() - 28


def test_no_answer_where_nothing_can_be_read() -> None:
    assert interface_payload_limit(socket.AF_UNIX, "/nowhere") is None
    assert interface_payload_limit(socket.AF_INET, ("not an address", 1)) is None
    assert InterfaceMtu(0).limit(("127.0.0.1", 1)) is None  # family unknown
    assert InterfaceMtu(socket.AF_INET).limit("garbage") is None


@pytest.mark.skipif(not LINUX, reason="IP_MTU is Linux's")
def test_answers_are_kept_per_host_in_a_bounded_table() -> None:
    table = InterfaceMtu(socket.AF_INET)
    assert table.limit(("127.0.0.1", 1000)) == table.limit(("127.0.0.1", 2000))
    assert table.lookups == 1  # another port of the same host: not asked again
    for i in range(CACHE_SIZE + 10):  # hosts a peer could make up
        table.limit((f"127.0.{1 + i // 250}.{1 + i % 250}", 443))
    assert len(table) <= CACHE_SIZE
    assert table.lookups == CACHE_SIZE + 11


# -- over loopback --------------------------------------------------------------------------


async def _transfer(interface: bool) -> tuple[int, int]:
    """A 2 MB echo over loopback: the client's and the server's PLPMTU after it."""
    servers: list[QuicSession] = []

    async def on_session(session: QuicSession) -> None:
        servers.append(session)

    scfg, ccfg = server_config(), client_config()
    scfg.pmtud_interface_mtu = ccfg.pmtud_interface_mtu = interface
    server = await serve("127.0.0.1", 0, scfg, on_session, stream_handler=echo_stream)
    async with server, connect("127.0.0.1", server.port, ccfg) as session:
        reader, writer = await session.create_stream()
        payload = os.urandom(2_000_000)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 30) == payload
        # the search begins START_DELAY_PTOS PTOs after confirmation and goes on while
        # the connection idles: a loaded machine may have echoed the 2 MB before it
        pmtus = session.connection.pmtu, servers[0].connection.pmtu
        for _ in range(500):
            if all(p.state in (PmtuState.SEARCH_COMPLETE, PmtuState.DISABLED) for p in pmtus):
                break
            await asyncio.sleep(0.01)
        return pmtus[0].plpmtu, pmtus[1].plpmtu


@pytest.mark.skipif(not LINUX, reason="IP_MTU is Linux's")
async def test_a_loopback_transfer_searches_up_to_the_interface() -> None:
    client, server = await _transfer(True)
    assert client > 1452 and server > 1452
    assert max(client, server) <= _loopback_mtu() - 28


async def test_without_the_option_the_configured_ceiling_holds() -> None:
    assert await _transfer(False) == (1452, 1452)


def test_the_interface_limit_is_opt_in() -> None:
    from quic.configuration import QuicConfiguration

    assert QuicConfiguration().pmtud_interface_mtu is False
    pmtu, _ = _pmtu(interface=False)
    assert not pmtu.wants_local_limit


@pytest.mark.skipif(not LINUX, reason="IP_MTU is Linux's")
def test_the_host_table_stays_bounded_for_n_and_4n_hosts() -> None:
    """N and 4N made-up peer hosts: the table holds at most CACHE_SIZE either way, and
    the kernel is asked once per new host (work linear in the hosts, nothing kept)."""
    sizes = []
    for n in (CACHE_SIZE, 4 * CACHE_SIZE):
        table = InterfaceMtu(socket.AF_INET)
        for i in range(n):
            table.limit((f"127.{1 + i // 62500}.{1 + i // 250 % 250}.{1 + i % 250}", 443))
        assert table.lookups == n
        sizes.append(len(table))
    assert max(sizes) <= CACHE_SIZE
