"""The UDP impairment proxy (:mod:`quic.interop.proxy`) on real sockets, 127.0.0.1.

A tiny UDP server answers every datagram with ``b"re:" + data`` and records the
address it came from; clients send through the proxy. The decisions themselves are
tested without sockets in ``test_impair.py``; here: forwarding both ways, the drop
list, duplication, corruption, port and address rebinding (a NAT's old binding is
dead), the bounded flow table, the pcap writer and the command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quic.interop.impair import Fate, Impairment, Rebinding, Scenario
from quic.interop.proxy import (
    TO_CLIENT,
    TO_SERVER,
    ImpairmentProxy,
    build_parser,
    parse_address,
    scenario_from_args,
    write_pcap,
)

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
Addr = tuple[str, int]


class _Endpoint(asyncio.DatagramProtocol):
    """Records what it receives; answers ``re:<data>`` when ``echo``."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.received: list[tuple[bytes, Addr]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, (addr[0], addr[1])))
        self.arrived.set()
        if self.echo and self.transport is not None:
            self.transport.sendto(b"re:" + data, addr)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    @property
    def address(self) -> Addr:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


async def endpoint(echo: bool, host: str = "127.0.0.1") -> _Endpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: _Endpoint(echo), local_addr=(host, 0))
    return protocol


async def settle(seconds: float = 0.1) -> None:
    await asyncio.sleep(seconds)


class Rig:
    def __init__(self, server: _Endpoint, proxy: ImpairmentProxy) -> None:
        self.server = server
        self.proxy = proxy
        self.clients: list[_Endpoint] = []

    async def client(self) -> _Endpoint:
        c = await endpoint(echo=False)
        self.clients.append(c)
        return c

    def send(self, client: _Endpoint, data: bytes) -> None:
        assert client.transport is not None
        client.transport.sendto(data, self.proxy.address)

    def close(self) -> None:
        for e in (self.server, *self.clients):
            if e.transport is not None:
                e.transport.close()


async def rig(scenario: Scenario | None = None, **kwargs: Any) -> AsyncIterator[Rig]:
    server = await endpoint(echo=True)
    proxy = ImpairmentProxy(server.address, scenario, **kwargs)
    await proxy.start()
    r = Rig(server, proxy)
    try:
        yield r
    finally:
        await proxy.close()
        r.close()


def both(imp: Impairment, name: str = "test") -> Scenario:
    return Scenario(name, imp, imp)


async def test_forwards_both_ways_with_delay_and_records() -> None:
    async for r in rig(both(Impairment(delay=0.02))):
        c = await r.client()
        for i in range(5):
            r.send(c, b"ping %d" % i)
        await c.wait_for(5)
        assert sorted(d for d, _ in c.received) == [b"re:ping %d" % i for i in range(5)]
        # the server sees the proxy's binding for this client, not the client itself
        sources = {a for _, a in r.server.received}
        assert sources == {r.proxy.flows[c.address].nat} and c.address not in sources
        to_server = [x for x in r.proxy.records if x.direction == TO_SERVER]
        assert [x.index for x in to_server] == [1, 2, 3, 4, 5]
        for x in r.proxy.records:
            assert x.fate is Fate.FORWARDED
            (at,) = x.delivered
            assert at - x.arrived == pytest.approx(0.02)
        assert r.proxy.summary()[TO_CLIENT] == {"forwarded": 5}


async def test_drop_list_per_direction() -> None:
    scenario = Scenario(
        "droplist", Impairment(drops=frozenset({2, 3})), Impairment(drops=frozenset({1}))
    )
    async for r in rig(scenario):
        c = await r.client()
        for i in range(1, 6):
            r.send(c, b"%d" % i)
            await settle(0.02)  # keep the order: the indices count arrivals
        await settle()
        assert [d for d, _ in r.server.received] == [b"1", b"4", b"5"]
        assert sorted(d for d, _ in c.received) == [b"re:4", b"re:5"]  # re:1 was index 1
        assert r.proxy.summary()[TO_SERVER] == {"forwarded": 3, "listed": 2}


async def test_duplication_and_corruption() -> None:
    async for r in rig(Scenario("dup", Impairment(duplicate=1.0), Impairment())):
        c = await r.client()
        r.send(c, b"once")
        await r.server.wait_for(2)
        await settle()
        assert [d for d, _ in r.server.received] == [b"once", b"once"]
    payload = bytes(range(100))
    async for r in rig(Scenario("bad", Impairment(corrupt=1.0), Impairment()), seed=3):
        c = await r.client()
        r.send(c, payload)
        await r.server.wait_for(1)
        got = r.server.received[0][0]
        diff = [i for i in range(100) if got[i] != payload[i]]
        assert len(diff) == 1 and diff[0] <= 50
        (record,) = [x for x in r.proxy.records if x.direction == TO_SERVER]
        assert record.fate is Fate.CORRUPTED and record.corrupted == got[:64]  # short header


async def test_port_rebinding_moves_the_client_and_kills_the_old_binding() -> None:
    async for r in rig():
        c = await r.client()
        r.send(c, b"a")
        await c.wait_for(1)
        old = r.server.received[-1][1]
        r.proxy.rebind()
        r.send(c, b"b")
        await c.wait_for(2)
        new = r.server.received[-1][1]
        assert new != old and new[0] == old[0] == "127.0.0.1"
        # the server writes to the old binding: lost, as behind a NAT
        assert r.server.transport is not None
        r.server.transport.sendto(b"stale", old)
        r.send(c, b"c")
        await c.wait_for(3)
        await settle()
        assert [d for d, _ in c.received] == [b"re:a", b"re:b", b"re:c"]
        assert r.proxy.rebinds == 1


async def test_address_rebinding_uses_another_loopback_address() -> None:
    async for r in rig(seed=11):
        c = await r.client()
        r.send(c, b"a")
        await c.wait_for(1)
        r.proxy.rebind(address=True)
        r.send(c, b"b")
        await c.wait_for(2)
        first, second = r.server.received[0][1], r.server.received[1][1]
        assert first[0] == "127.0.0.1" and second[0].startswith("127.0.0.")
        assert second[0] != first[0]


async def test_scheduled_rebinding_counts_from_the_first_datagram() -> None:
    scenario = Scenario("rebind", rebinding=Rebinding(first=0.05, every=0.05))
    async for r in rig(scenario):
        c = await r.client()
        seen = set()
        for i in range(6):
            r.send(c, b"%d" % i)
            await c.wait_for(i + 1)
            seen.add(r.server.received[-1][1])
            await settle(0.06)
        assert r.proxy.rebinds >= 3
        assert len(seen) >= 3


async def test_flow_table_is_bounded() -> None:
    async def flows_held(n: int) -> tuple[int, int]:
        async for r in rig(max_flows=8):
            for i in range(n):
                c = await r.client()
                r.send(c, b"%d" % i)
                await c.wait_for(1)
            return len(r.proxy.flows), r.proxy.flows_evicted
        raise AssertionError

    small, large = await flows_held(10), await flows_held(40)
    assert small == (8, 2) and large == (8, 32)  # table at the cap, oldest evicted


async def test_capture_is_bounded_and_short_headers_truncated() -> None:
    async for r in rig(max_records=3):
        c = await r.client()
        r.send(c, bytes([0x40]) + bytes(500))  # short header: kept truncated
        r.send(c, bytes([0xC0]) + bytes(500))  # long header: kept whole
        await c.wait_for(2)
        assert len(r.proxy.records) == 3 and r.proxy.capture_overflow == 1
        sizes = sorted((x.size, len(x.data)) for x in r.proxy.records if x.from_client)
        assert sizes == [(501, 64), (501, 501)]


async def test_write_pcap(tmp_path: Path) -> None:
    async for r in rig(both(Impairment(drops=frozenset({2})))):
        c = await r.client()
        for i in range(3):
            r.send(c, bytes([0xC0]) + b"%d" % i)
            await settle(0.02)
        await settle()
        path = tmp_path / "cap.pcap"
        written = write_pcap(r.proxy.records, path, r.proxy.server)
        raw = path.read_bytes()
        magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", raw[:24])
        assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 101)
        # server view: the 2 of 3 client datagrams that got through and the 2 replies
        assert written == 4
        offset, count = 24, 0
        while offset < len(raw):
            _, _, caplen, _ = struct.unpack("<IIII", raw[offset : offset + 16])
            frame = raw[offset + 16 : offset + 16 + caplen]
            assert frame[0] >> 4 == 4 and frame[9] == 17  # IPv4, UDP
            offset += 16 + caplen
            count += 1
        assert count == written


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:4433") == ("127.0.0.1", 4433)
    assert parse_address("[::1]:443") == ("::1", 443)
    with pytest.raises(ValueError):
        parse_address("4433")


async def test_command_line(tmp_path: Path) -> None:
    server = await endpoint(echo=True)
    pcap = tmp_path / "cli.pcap"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quic.interop.proxy",
        "--server",
        f"127.0.0.1:{server.address[1]}",
        "--delay",
        "5ms",
        "--drops-to-server",
        "2",
        "--pcap",
        str(pcap),
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("LISTENING ")
        port = int(line.split()[1])
        client = await endpoint(echo=False)
        assert client.transport is not None
        for i in range(3):
            client.transport.sendto(b"%d" % i, ("127.0.0.1", port))
            await settle(0.05)
        await client.wait_for(2)
        assert sorted(d for d, _ in client.received) == [b"re:0", b"re:2"]
        proc.send_signal(signal.SIGTERM)
        out = (await asyncio.wait_for(proc.stdout.read(), 30)).decode()
        summary = json.loads(out.split("SUMMARY ", 1)[1])
        assert summary[TO_SERVER] == {"forwarded": 2, "listed": 1}
        assert pcap.stat().st_size > 24
        assert await proc.wait() == 0
        client.transport.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        assert server.transport is not None
        server.transport.close()


def test_command_line_path_mtu_applies_to_both_directions() -> None:
    args = build_parser().parse_args(
        ["--server", "127.0.0.1:1", "--only", "toserver", "--mtu", "1252", "--mtu-from", "2s"]
    )
    scenario = scenario_from_args(args)
    for one in (scenario.to_server, scenario.to_client):  # a path property, not an impairment
        assert (one.mtu, one.mtu_from) == (1252, 2.0)
    plain = scenario_from_args(build_parser().parse_args(["--server", "127.0.0.1:1"]))
    assert plain.to_server.mtu is None and plain.to_client.mtu is None
