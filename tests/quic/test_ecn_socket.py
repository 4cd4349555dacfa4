"""ECN and Don't Fragment on real loopback sockets (quic.aio.udp, quic.aio.pump).

Linux delivers the TOS / Traffic Class byte of loopback datagrams as ancillary data, so
the codepoint set by ``sendmsg`` is the one ``recvmsg`` reads. The tests skip only where
the platform lacks ``IP_RECVTOS``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest

from quic.aio import QuicSession, QuicStreamReader, QuicStreamWriter, connect, serve
from quic.aio.mtu import interface_payload_limit
from quic.aio.udp import _set_dont_fragment, configure_path_options, read_batch_ecn, send_marked
from quic.conn_ecn import ECN_CE, ECN_ECT0, ECN_NOT_ECT, EcnState
from tests.quic.test_aio import client_config, server_config

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "IP_RECVTOS") or not sys.platform.startswith("linux"),
    reason="the platform cannot read the ECN field (no IP_RECVTOS)",
)


def _pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    a = socket.socket(family, socket.SOCK_DGRAM)
    b = socket.socket(family, socket.SOCK_DGRAM)
    for sock in (a, b):
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, 0))
        sock.setblocking(False)
    return a, b


def _received(sock: socket.socket) -> list[tuple[bytes, int]]:
    got: list[tuple[bytes, int]] = []
    read_batch_ecn(sock, lambda data, addr, _now, ecn: got.append((data, ecn)), pytest.fail)
    return got


@pytest.mark.parametrize(
    ("family", "bind", "dest"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
        (socket.AF_INET6, "::", "::1"),
        (socket.AF_INET6, "::", "::ffff:127.0.0.1"),  # IPv4 on a dual-stack socket
    ],
)
def test_codepoints_are_set_and_read_per_datagram(family: int, bind: str, dest: str) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        a, b = _pair(family, bind)
    except OSError:
        pytest.skip("no such socket here")
    with a, b:
        options = configure_path_options(b)
        assert options.ecn
        assert configure_path_options(a).ecn
        port = b.getsockname()[1]
        addr: Any = (dest, port) if family == socket.AF_INET else (dest, port, 0, 0)
        for ecn in (ECN_ECT0, ECN_NOT_ECT, ECN_CE):
            try:
                send_marked(a, b"x%d" % ecn, addr, ecn)
            except OSError:
                pytest.skip(f"cannot send to {dest}")
        a.sendto(b"plain", addr)
        for _ in range(50):
            got = _received(b)
            if got:
                break
        assert got == [(b"x2", ECN_ECT0), (b"x0", ECN_NOT_ECT), (b"x3", ECN_CE), (b"plain", 0)]


def test_dont_fragment_is_set() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert configure_path_options(sock).dont_fragment
        assert sock.getsockopt(socket.IPPROTO_IP, 10) == 3  # IP_MTU_DISCOVER: PROBE


def test_options_on_nothing_are_off() -> None:
    options = configure_path_options(None)
    assert not options.ecn and not options.dont_fragment
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert not configure_path_options(tcp).ecn


async def _echo(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()


async def _idle(session: QuicSession) -> None:
    await session.wait_closed()


async def test_our_client_and_server_validate_ecn_over_loopback() -> None:
    """ECT(0) goes through the sockets and both ends see counts: validation succeeds."""
    server = await serve("127.0.0.1", 0, server_config(), _idle, stream_handler=_echo)
    async with server, connect("127.0.0.1", server.port, client_config()) as session:
        reader, writer = await session.create_stream()
        payload = bytes(300_000)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 20) == payload
        client = session.connection
        (server_session,) = server.sessions
        peer = server_session.connection
        assert server.protocol.path_options.ecn and server.protocol.batched_reading
        for conn in (client, peer):
            assert conn.ecn.state is EcnState.CAPABLE
            counts = conn.ecn.counts(2)
            assert counts is not None and counts[0] > 0  # ECT(0) packets arrived
        assert peer.ecn_codepoint == ECN_ECT0


@pytest.mark.parametrize("interface", [True, False])
async def test_pmtu_discovery_over_loopback(interface: bool) -> None:
    """DF is set and a 1452-byte probe passes loopback (MTU 65536): with the default
    configuration (discovery on) the PLPMTU rises, and the DATAGRAM payload offered —
    up to the interface's size where the driver reads it (quic.aio.mtu), else 1452."""
    sconfig = server_config()
    cconfig = client_config()
    sconfig.pmtud_interface_mtu = cconfig.pmtud_interface_mtu = interface
    local = interface_payload_limit(socket.AF_INET, ("127.0.0.1", 443)) if interface else None
    expected = 1452 if local is None else local
    server = await serve("127.0.0.1", 0, sconfig, _idle, stream_handler=_echo)
    async with server, connect("127.0.0.1", server.port, cconfig) as session:
        reader, writer = await session.create_stream()
        writer.write(bytes(2_000_000))
        writer.write_eof()
        assert len(await asyncio.wait_for(reader.read(), 20)) == 2_000_000
        for _ in range(100):
            if session.connection.max_datagram_size == expected:
                break
            await asyncio.sleep(0.01)
        assert session.connection.max_datagram_size == expected
        frame = 3 if expected < 16384 else 5  # DATAGRAM type and Length (RFC 9000 §16)
        assert session.max_datagram_size == expected - (1 + 8 + 4 + 16 + frame)
        assert server.protocol.path_options.dont_fragment


def test_dont_fragment_is_set_on_ipv6() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        pytest.skip("no IPv6")
    with sock:
        assert configure_path_options(sock).dont_fragment
        assert sock.getsockopt(socket.IPPROTO_IPV6, 23) == 3  # IPV6_MTU_DISCOVER: PROBE
        assert sock.getsockopt(socket.IPPROTO_IP, 10) == 3  # v4-mapped datagrams too


class _RecordingSocket:
    """What DF setting needs of a socket: its family and setsockopt (recorded)."""

    def __init__(self, family: int, refuse: bool = False) -> None:
        self.family = family
        self.refuse = refuse
        self.calls: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if self.refuse:
            raise OSError("not supported")
        self.calls.append((level, option, value))


@pytest.mark.parametrize(
    ("platform", "family", "expected"),
    [
        ("linux", socket.AF_INET, [(socket.IPPROTO_IP, 10, 3)]),
        ("darwin", socket.AF_INET, [(socket.IPPROTO_IP, 28, 1)]),  # IP_DONTFRAG
        ("freebsd14", socket.AF_INET, [(socket.IPPROTO_IP, 67, 1)]),
        ("win32", socket.AF_INET, []),
    ],
)
def test_dont_fragment_per_platform(platform: str, family: int, expected: list[Any]) -> None:
    sock = _RecordingSocket(family)
    assert _set_dont_fragment(sock, platform) is bool(expected)  # type: ignore[arg-type]
    assert sock.calls == expected


def test_dont_fragment_falls_back_cleanly_when_refused() -> None:
    sock = _RecordingSocket(socket.AF_INET, refuse=True)
    assert _set_dont_fragment(sock, "linux") is False  # type: ignore[arg-type]
