"""A UDP impairment proxy between a QUIC client and server (the runner's simulator, here).

Theory of operation
-------------------
:class:`ImpairmentProxy` listens on one UDP address for clients and forwards to one
server; each direction goes through a seeded :class:`~quic.interop.impair.LinkModel`
(delay, loss with a burst cap, corruption of one byte in the first 50, drop lists by
index, blackhole periods, path MTU, reordering, duplication, bandwidth and queue — see
:mod:`quic.interop.impair`). It acts like the NAT of the runner's ``rebind`` scenario:
each client address (a *flow*; a client that opens one socket per connection makes
several) gets its own socket towards the server, and :meth:`ImpairmentProxy.rebind`
replaces the socket of every flow with one on a new port — and, with
``address=True``, on a new 127.0.0.x address — so the server sees the client move. What
the server sends to an old binding is lost, as behind a real NAT.

Timing: the link's epoch is the arrival of the first datagram; blackhole periods and
the :class:`~quic.interop.impair.Rebinding` schedule count from it. Deliveries are
scheduled on the event loop (``call_at``) at the times the models decide. Sockets are
non-blocking and read with ``loop.add_reader``; a datagram the kernel refuses to send
(buffer full) is counted in ``send_errors`` and lost.

Capture: every datagram is recorded (:class:`CaptureRecord`: direction, flow, times
after the epoch, fate, the bytes that arrived and, if corrupted, the bytes delivered,
and the addresses on both sides), so tests can replay the runner's checks on the
traffic (:mod:`quic.interop.trace`). Long-header datagrams are kept whole; of
short-header ones only the first ``SHORT_CAPTURE`` bytes (enough for the header and the
header protection sample) unless ``capture_payload``. At most ``max_records`` records
are kept (then ``capture_overflow`` counts the rest). At most ``max_flows`` client
addresses are remembered; a new one beyond that evicts the oldest (``flows_evicted``).
:func:`write_pcap` writes the capture as a pcap file (raw IP) for Wireshark, seen from
the server's or the client's side.

Command line (by hand; prints ``LISTENING <port>``, then a ``SUMMARY {json}`` line at
exit)::

    python -m quic.interop.proxy --server 127.0.0.1:4433 --scenario transferloss --seed 7
    python -m quic.interop.proxy --server [::1]:4433 --listen [::1]:0 --delay 50ms \\
        --loss 5 --burst 2 --reorder 10 --reorder-delay 20ms --pcap /tmp/run.pcap
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import random
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from quic.interop.impair import (
    SCENARIOS,
    Decision,
    Fate,
    Impairment,
    LinkModel,
    Rebinding,
    Scenario,
    parse_duration,
)

__all__ = [
    "SHORT_CAPTURE",
    "TO_CLIENT",
    "TO_SERVER",
    "CaptureRecord",
    "ImpairmentProxy",
    "build_parser",
    "main",
    "parse_address",
    "scenario_from_args",
    "write_pcap",
]

Addr = tuple[str, int]

TO_SERVER = "to_server"
TO_CLIENT = "to_client"
#: bytes kept of a short-header datagram: first byte, a 20-byte DCID at most, 4-byte
#: packet number and the 16-byte header protection sample, with room to spare
SHORT_CAPTURE = 64
_RECV_SIZE = 65535


@dataclass(slots=True)
class CaptureRecord:
    """One datagram as the proxy saw it."""

    index: int  # 1-based, per direction (the drop lists count these)
    direction: str  # TO_SERVER or TO_CLIENT
    flow: int  # which client address
    arrived: float  # seconds after the epoch
    fate: Fate
    size: int  # UDP payload size
    data: bytes  # what arrived (maybe truncated, see SHORT_CAPTURE)
    client: Addr  # the client's address as the proxy sees it
    nat: Addr  # the address the server sees for this client (at arrival)
    delivered: tuple[float, ...] = ()  # delivery times after the epoch (copies)
    corrupted: bytes | None = None  # what was delivered instead, when corrupted

    @property
    def delivered_data(self) -> bytes:
        return self.data if self.corrupted is None else self.corrupted

    @property
    def from_client(self) -> bool:
        return self.direction == TO_SERVER


@dataclass(slots=True)
class _Flow:
    ident: int
    client: Addr
    sock: socket.socket
    nat: Addr


def parse_address(text: str) -> Addr:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    return host, int(port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class ImpairmentProxy:
    """Forwards datagrams between clients and one server through impaired links."""

    def __init__(
        self,
        server: Addr,
        scenario: Scenario | None = None,
        *,
        seed: int = 0,
        listen: Addr = ("127.0.0.1", 0),
        capture: bool = True,
        capture_payload: bool = False,
        max_records: int = 200_000,
        max_flows: int = 1024,
    ) -> None:
        self.server = server
        self.scenario = scenario if scenario is not None else Scenario("none")
        self.seed = seed
        self.listen = listen
        # distinct, reproducible streams of random numbers per direction
        self.models = {
            TO_SERVER: LinkModel(self.scenario.to_server, seed * 2 + 1),
            TO_CLIENT: LinkModel(self.scenario.to_client, seed * 2 + 2),
        }
        self._rebind_rng = random.Random(seed * 2 + 3)
        self.capture = capture
        self.capture_payload = capture_payload
        self.max_records = max_records
        self.records: list[CaptureRecord] = []
        self.capture_overflow = 0
        self.flows: dict[Addr, _Flow] = {}
        self.max_flows = max_flows
        self.flows_evicted = 0
        self._flow_ids = 0
        self.rebinds = 0
        self.send_errors = 0
        self.epoch: float | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rebind_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._nat_host = "::1" if _family(server[0]) == socket.AF_INET6 else "127.0.0.1"

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        sock = socket.socket(_family(self.listen[0]), socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self.listen)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._on_client_readable)

    @property
    def address(self) -> Addr:
        assert self._sock is not None, "start() first"
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    async def close(self) -> None:
        self._closed = True  # deliveries still scheduled do nothing
        if self._rebind_timer is not None:
            self._rebind_timer.cancel()
        loop = self._loop
        sockets = [flow.sock for flow in self.flows.values()]
        if self._sock is not None:
            sockets.append(self._sock)
        self._sock = None
        for sock in sockets:
            if loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()

    async def __aenter__(self) -> ImpairmentProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- NAT ----------------------------------------------------------------------------

    def _new_binding(self, address: bool) -> tuple[socket.socket, Addr]:
        host = self._nat_host
        if address and host == "127.0.0.1":
            # any 127.0.0.0/8 address reaches loopback; pick one the flow did not have
            host = f"127.0.0.{self._rebind_rng.randint(2, 254)}"
        sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((host, 0))
        name = sock.getsockname()
        return sock, (str(name[0]), int(name[1]))

    def _flow_for(self, client: Addr) -> _Flow:
        flow = self.flows.get(client)
        if flow is None:
            if len(self.flows) >= self.max_flows:
                self._evict_oldest_flow()
            sock, nat = self._new_binding(False)
            flow = _Flow(self._flow_ids, client, sock, nat)
            self._flow_ids += 1
            self.flows[client] = flow
            self._watch(flow, sock)
        return flow

    def _evict_oldest_flow(self) -> None:
        """Forget the oldest client address (a NAT's table is bounded too): its binding
        closes, and a datagram for it still in flight is not delivered."""
        assert self._loop is not None
        oldest = next(iter(self.flows))
        flow = self.flows.pop(oldest)
        self._loop.remove_reader(flow.sock.fileno())
        flow.sock.close()
        self.flows_evicted += 1

    def _watch(self, flow: _Flow, sock: socket.socket) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_server_readable, flow, sock)

    def rebind(self, address: bool = False) -> None:
        """Move every flow to a new port (and 127.0.0.x address with ``address``, IPv4
        only) towards the server; the old bindings are closed."""
        assert self._loop is not None
        for flow in self.flows.values():
            old = flow.sock
            while True:
                sock, nat = self._new_binding(address)
                if nat != flow.nat:
                    break
                sock.close()
            self._loop.remove_reader(old.fileno())
            old.close()
            flow.sock, flow.nat = sock, nat
            self._watch(flow, sock)
        self.rebinds += 1

    def _schedule_rebinding(self, rebinding: Rebinding, at: float) -> None:
        assert self._loop is not None and self.epoch is not None

        def fire() -> None:
            self._rebind_timer = None
            if self._closed:
                return
            self.rebind(rebinding.address)
            if rebinding.every:
                self._schedule_rebinding(rebinding, at + rebinding.every)

        self._rebind_timer = self._loop.call_at(self.epoch + at, fire)

    # -- datagrams ----------------------------------------------------------------------

    def _on_client_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error reported on the socket
            client = (str(addr[0]), int(addr[1]))
            self._arrive(TO_SERVER, self._flow_for(client), data)

    def _on_server_readable(self, flow: _Flow, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if sock is not flow.sock:
                return  # an old binding: the NAT has forgotten it
            if addr[1] != self.server[1]:
                continue  # not from the server
            self._arrive(TO_CLIENT, flow, data)

    def _arrive(self, direction: str, flow: _Flow, data: bytes) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if self.epoch is None:
            self.epoch = now
            for model in self.models.values():
                model.epoch = now
            if self.scenario.rebinding is not None:
                self._schedule_rebinding(self.scenario.rebinding, self.scenario.rebinding.first)
        decision = self.models[direction].process(data, now)
        record = self._record(direction, flow, data, now, decision)
        for deliver_at, payload in decision.deliveries:
            loop.call_at(deliver_at, self._deliver, direction, flow, payload)
            if record is not None:
                record.delivered += (deliver_at - self.epoch,)

    def _record(
        self, direction: str, flow: _Flow, data: bytes, now: float, decision: Decision
    ) -> CaptureRecord | None:
        if not self.capture:
            return None
        if len(self.records) >= self.max_records:
            self.capture_overflow += 1
            return None
        keep = data
        corrupted = decision.deliveries[0][1] if decision.fate is Fate.CORRUPTED else None
        if not self.capture_payload and data and not data[0] & 0x80:
            keep = data[:SHORT_CAPTURE]
            if corrupted is not None:
                corrupted = corrupted[:SHORT_CAPTURE]
        assert self.epoch is not None
        record = CaptureRecord(
            decision.index,
            direction,
            flow.ident,
            now - self.epoch,
            decision.fate,
            len(data),
            keep,
            flow.client,
            flow.nat,
            corrupted=corrupted,
        )
        self.records.append(record)
        return record

    def _deliver(self, direction: str, flow: _Flow, payload: bytes) -> None:
        if self._closed:
            return
        if flow.sock.fileno() < 0:
            return  # the flow was evicted while the datagram was in flight
        try:
            if direction == TO_SERVER:
                flow.sock.sendto(payload, self.server)  # the flow's binding of this moment
            elif self._sock is not None:
                self._sock.sendto(payload, flow.client)
        except OSError:  # buffer full (BlockingIOError), ICMP error reported...
            self.send_errors += 1

    # -- reporting ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts per direction and fate, flows, rebinds and send errors."""
        return {
            "flows": self._flow_ids,
            "flows_evicted": self.flows_evicted,
            "rebinds": self.rebinds,
            "send_errors": self.send_errors,
            "capture_overflow": self.capture_overflow,
            **{
                direction: {f.value: n for f, n in model.fates.items() if n}
                for direction, model in self.models.items()
            },
        }


# -- pcap -------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip_udp(src: Addr, dst: Addr, payload: bytes, size: int) -> bytes:
    """An IPv4 or IPv6 + UDP header and ``payload`` (maybe truncated from ``size``)."""
    src_ip = ipaddress.ip_address(src[0])
    dst_ip = ipaddress.ip_address(dst[0])
    udp_len = 8 + size
    if src_ip.version == 4 and dst_ip.version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0,
            src_ip.packed, dst_ip.packed,
        )  # fmt: skip
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)  # IPv4: checksum optional
        return header + udp + payload
    src6, dst6 = src_ip.packed, dst_ip.packed
    header = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, src6, dst6)
    udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
    if len(payload) == size:  # IPv6 needs the UDP checksum (RFC 8200 §8.1)
        pseudo = src6 + dst6 + struct.pack("!IxxxB", udp_len, 17)
        udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp + payload) or 0xFFFF)
    return header + udp + payload


def write_pcap(
    records: Sequence[CaptureRecord], path: str | Path, server: Addr, view: str = "server"
) -> int:
    """Write the capture as pcap (LINKTYPE_RAW) as seen at the server (``view="server"``:
    what it received after the link, what it sent before) or at the client; returns the
    number of packets written."""
    packets: list[tuple[float, bytes, int]] = []
    for r in records:
        towards_viewer = r.from_client == (view == "server")
        if towards_viewer:  # received by the viewer: only what was delivered
            times = r.delivered
            data = r.delivered_data
        else:
            times = (r.arrived,)
            data = r.data
        if view == "server":
            ends = (r.nat, server) if r.from_client else (server, r.nat)
        else:
            proxy = server  # the client talks to the proxy, shown as the server
            ends = (r.client, proxy) if r.from_client else (proxy, r.client)
        packets.extend((t, _ip_udp(ends[0], ends[1], data, r.size), r.size + 8) for t in times)
    packets.sort(key=lambda p: p[0])
    with open(path, "wb") as fp:
        fp.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for t, frame, udp_len in packets:
            ip_header = 20 if frame[0] >> 4 == 4 else 40
            orig = ip_header + udp_len
            seconds = int(t)
            micros = int((t - seconds) * 1e6)
            fp.write(struct.pack("<IIII", seconds, micros, len(frame), orig))
            fp.write(frame)
    return len(packets)


# -- command line -----------------------------------------------------------------------


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not a percentage")
    return value / 100.0


def _bandwidth(text: str) -> float:
    value = text.strip().lower().removesuffix("bps")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(value[-1:], 1.0)
    return float(value.rstrip("kmg")) * scale


def _indices(text: str) -> frozenset[int]:
    return frozenset(int(i) for i in text.split(",") if i.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quic.interop.proxy",
        description="UDP impairment proxy between one QUIC client and one server.",
        epilog=f"Scenarios (the interop runner's): {', '.join(SCENARIOS)}.",
    )
    add = parser.add_argument
    add("--server", required=True, help="HOST:PORT of the server ([v6]:port for IPv6)")
    add("--listen", default="127.0.0.1:0", help="HOST:PORT for clients (default 127.0.0.1:0)")
    add("--scenario", choices=sorted(SCENARIOS), help="start from a runner scenario")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--no-bandwidth", action="store_true", help="drop the scenario's bandwidth limit")
    add("--only", choices=("toserver", "toclient"), help="impair one direction only")
    add("--delay", type=parse_duration, help="one-way delay, e.g. 15ms")
    add("--loss", type=_percent, help="random loss, percent")
    add("--corrupt", type=_percent, help="corrupt one of the first 50 bytes, percent")
    add("--burst", type=int, help="at most N losses or corruptions in a row")
    add("--duplicate", type=_percent, help="duplicate, percent")
    add("--reorder", type=_percent, help="hold back, percent (see --reorder-delay)")
    add("--reorder-delay", type=parse_duration, help="extra delay of held-back datagrams")
    add("--bandwidth", type=_bandwidth, help="link rate, e.g. 10Mbps")
    add("--queue", type=int, help="datagrams waiting for the link before tail drop")
    add("--drops-to-server", type=_indices, help="1-based indices to drop, e.g. 2,3,4")
    add("--drops-to-client", type=_indices, help="1-based indices to drop")
    add("--blackhole", help="ON,OFF[,REPEAT] seconds: up ON, down OFF, REPEAT times")
    add("--mtu", type=int, help="drop datagrams with a UDP payload above this (both ways)")
    add("--mtu-from", type=parse_duration, help="apply --mtu only after this long")
    add("--rebind-first", type=parse_duration, help="first NAT rebinding after this long")
    add("--rebind-every", type=parse_duration, help="then rebind this often")
    add("--rebind-addr", action="store_true", help="rebinding also changes the address")
    add("--pcap", help="write the capture (server's view) to this pcap file at exit")
    return parser


def _direction(base: Impairment, args: argparse.Namespace, impaired: bool) -> Impairment:
    changes: dict[str, Any] = {}
    if args.delay is not None:
        changes["delay"] = args.delay
    if args.bandwidth is not None:
        changes["bandwidth"] = args.bandwidth
    if args.queue is not None:
        changes["queue"] = args.queue
    if args.mtu is not None:  # a path property: both directions, impaired or not
        changes["mtu"] = args.mtu
        changes["mtu_from"] = args.mtu_from or 0.0
    if impaired:
        for name in ("loss", "corrupt", "duplicate", "reorder", "reorder_delay"):
            value = getattr(args, name)
            if value is not None:
                changes[name] = value
        if args.burst is not None:
            changes["max_burst"] = args.burst
        if args.blackhole:
            parts = [float(p) for p in args.blackhole.split(",")]
            on, off = parts[0], parts[1]
            repeat = int(parts[2]) if len(parts) > 2 else 1
            changes["blackholes"] = tuple(
                ((on + off) * i + on, (on + off) * (i + 1)) for i in range(repeat)
            )
    return replace(base, **changes)


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the command line describes (a runner scenario, then overrides)."""
    scenario = SCENARIOS[args.scenario] if args.scenario else Scenario("custom")
    if args.no_bandwidth:
        scenario = scenario.scaled(bandwidth=False)
    to_server = _direction(scenario.to_server, args, args.only != "toclient")
    to_client = _direction(scenario.to_client, args, args.only != "toserver")
    if args.drops_to_server is not None:
        to_server = replace(to_server, drops=args.drops_to_server)
    if args.drops_to_client is not None:
        to_client = replace(to_client, drops=args.drops_to_client)
    rebinding = scenario.rebinding
    if args.rebind_first is not None:
        rebinding = Rebinding(args.rebind_first, args.rebind_every, args.rebind_addr)
    return replace(scenario, to_server=to_server, to_client=to_client, rebinding=rebinding)


async def _run(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    server = parse_address(args.server)
    proxy = ImpairmentProxy(
        server, scenario, seed=args.seed, listen=parse_address(args.listen), capture=bool(args.pcap)
    )
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {proxy.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await proxy.close()
        if args.pcap:
            write_pcap(proxy.records, args.pcap, server)
        print("SUMMARY " + json.dumps(proxy.summary()), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_address(args.server)
        parse_address(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    with contextlib.suppress(KeyboardInterrupt):
        status = asyncio.run(_run(args))
    return status


if __name__ == "__main__":
    sys.exit(main())
