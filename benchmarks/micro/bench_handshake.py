"""In-memory handshakes between two Sans-I/O endpoints, CPU timed per side.

Theory of operation
-------------------
No sockets and no event loop: one server :class:`~quic.endpoint.QuicEndpoint` (the
benchmark server's configuration; the certificate of ``--cert``/``--key``, else a fresh
self-signed ECDSA P-256 one, as the harness's) and, per handshake, a new client
endpoint with the benchmark client's default configuration (key shares X25519MLKEM768
+ x25519, no certificate verification; with ``--verify`` the server presents a
certificate issued by a root made for the run, and the client checks the chain against
that root as a default client does) exchange datagrams through lists on a fake
clock, stepped as in :mod:`benchmarks.micro.inmem` (its ``Side`` and ``_step``). Each
handshake runs until both sides report :class:`~quic.events.HandshakeCompleted` and no
datagram is in flight; then the client
closes and the close is delivered, as in the loopback ``handshake`` workload.
``process_time`` is accumulated per side (client endpoint creation and ``connect``
included), so the result is the protocol CPU cost of one handshake on each side,
without the I/O. ``--keys-ahead``: the ephemeral keys are made before each handshake,
untimed, as the event-loop driver makes them while its loop is idle
(:mod:`quic.aio.ahead`); without it every key is made in the handshake.
``--profile client|server|both`` prints a cProfile of that side.

``python -m benchmarks.micro.bench_handshake [--count 200] [--key-shares x25519]
[--verify] [--keys-ahead] [--cert C --key K] [--profile client|server|both]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import functools
import pstats
import statistics
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.micro.inmem import CLIENT_ADDR, SERVER_ADDR, Side, _step
from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from quic.tls.groups import KEYS_AHEAD, NamedGroup
from quic.tls.selfsigned import SelfSignedCertificate, generate_ca_and_leaf, generate_self_signed

ALPN = "bench"
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


@functools.cache
def _pki() -> tuple[SelfSignedCertificate, SelfSignedCertificate]:
    """``--verify``: a root and a server certificate it issued for ``localhost``."""
    return generate_ca_and_leaf(NOW, hostnames=("localhost",))


def _verify_clock() -> datetime.datetime:
    """The client's wall clock under ``--verify``: fixed, inside the chain's validity
    (the same work every run)."""
    return NOW + datetime.timedelta(hours=1)


def _config(is_client: bool, args: argparse.Namespace) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=30.0,
        max_datagram_frame_size=65536,
        max_datagram_size=1200,
    )
    verify = getattr(args, "verify", False)
    if is_client:
        config.verify_certificates = verify
        if verify:  # the chain checked against the root, as a default client does
            config.cadata = _pki()[0].certificate_pem
            config.server_name = "localhost"
            config.clock = _verify_clock
        if args.key_shares == "x25519":
            config.key_share_groups = (NamedGroup.x25519,)
    elif verify:
        leaf = _pki()[1]
        config.certificate_chain = [leaf.certificate]
        config.private_key = leaf.private_key
    elif args.cert:
        config.load_cert_chain(args.cert, args.key)
    else:
        cert = generate_self_signed(NOW)
        config.certificate_chain = [cert.certificate]
        config.private_key = cert.private_key
    return config


def handshake_once(
    server: Side,
    args: argparse.Namespace,
    now: float,
    profilers: dict[str, cProfile.Profile | None] | None = None,
) -> tuple[Side, float]:
    """One handshake of a new client endpoint with ``server`` starting at ``now``, then
    the client's close, delivered, and both sides past their draining periods; returns
    the client's side (its ``cpu``; the server's is in ``server.cpu``) and the time
    after it."""
    profilers = profilers or {}
    if args.keys_ahead:  # as each side's event-loop driver does while idle (quic.aio.ahead)
        KEYS_AHEAD.refill()
    start = time.process_time()
    client_cfg = _config(True, args)
    client = Side(QuicEndpoint(), CLIENT_ADDR)
    conn = client.endpoint.connect(SERVER_ADDR, client_cfg, now)
    client.cpu = time.process_time() - start
    server.cpu = 0.0
    server.connected = False
    while not (client.connected and server.connected) or client.inbox or server.inbox:
        _step(client, server, now, profilers.get("client"))
        _step(server, client, now, profilers.get("server"))
        now += 0.0001
    start = time.process_time()
    conn.close()
    client.endpoint.wake(conn)
    client.cpu += time.process_time() - start
    _step(client, server, now, profilers.get("client"))
    _step(server, client, now, profilers.get("server"))
    now += 1.0  # past the draining periods: both sides forget the connection
    _step(client, server, now, None)
    _step(server, client, now, None)
    return client, now


def new_server(args: argparse.Namespace) -> Side:
    """The benchmark server's endpoint (see :func:`_config`)."""
    return Side(QuicEndpoint(_config(False, args)), SERVER_ADDR)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with both_sides_ahead(args.keys_ahead):
        return _run(args)


@contextlib.contextmanager
def both_sides_ahead(keys_ahead: bool) -> Iterator[None]:
    """With ``keys_ahead``: room in the key reserve for a key of each kind per side (one
    process plays both sides, whose reserves would be their own), restored after."""
    size = KEYS_AHEAD.size
    if keys_ahead:
        KEYS_AHEAD.size = 2 * size
    try:
        yield
    finally:
        KEYS_AHEAD.size = size


def _run(args: argparse.Namespace) -> dict[str, Any]:
    server = new_server(args)
    profilers = {
        side: (cProfile.Profile() if args.profile in (side, "both") else None)
        for side in ("client", "server")
    }
    client_cpu: list[float] = []
    server_cpu: list[float] = []
    now = 0.0
    for index in range(args.warmup + args.count):
        client, now = handshake_once(server, args, now, profilers)
        if index >= args.warmup:
            client_cpu.append(client.cpu)
            server_cpu.append(server.cpu)
        if index == args.warmup - 1:
            for profiler in profilers.values():
                if profiler is not None:
                    profiler.disable()
                    profiler.__init__()  # type: ignore[misc]
    for name, profiler in profilers.items():
        if profiler is not None:
            print(f"--- {name}")
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
    return {
        "count": args.count,
        "client_ms_median": round(statistics.median(client_cpu) * 1000, 3),
        "server_ms_median": round(statistics.median(server_cpu) * 1000, 3),
        "client_ms_mean": round(statistics.fmean(client_cpu) * 1000, 3),
        "server_ms_mean": round(statistics.fmean(server_cpu) * 1000, 3),
        "server_connections_left": len(server.endpoint.connections),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.bench_handshake")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--key-shares", choices=("default", "x25519"), default="default")
    parser.add_argument("--cert", help="PEM certificate chain (default: self-signed)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="the client verifies the server's chain (a root and a leaf made for the run)",
    )
    parser.add_argument(
        "--keys-ahead",
        action="store_true",
        help="make the ephemeral keys before each handshake, untimed (quic.aio.ahead)",
    )
    parser.add_argument("--profile", choices=("client", "server", "both"))
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    return parser.parse_args(argv)


def main() -> None:
    print(run(parse_args()))


if __name__ == "__main__":
    main()
