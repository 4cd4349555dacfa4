"""Our stack's adapter of the loopback benchmark harness (``quic.aio``).

Theory of operation
-------------------
``python -m benchmarks.ours_side server --cert C --key K [--port 0]`` binds the host,
prints ``LISTENING <port>`` and serves the bench protocol of :mod:`benchmarks` (UPLOAD /
DOWNLOAD request lines on bidi streams, DATAGRAM echo) until SIGTERM, SIGINT or EOF on
stdin.

``python -m benchmarks.ours_side client --port P --workload W [...]`` runs one workload
against such a server (ours or another stack's: the wire protocol is the same) and prints
one ``RESULT {json}`` line:

* ``upload`` / ``download``: one stream moves ``--size-mb`` * 10^6 bytes; the clock runs
  from the first byte written (or the request) to the server's ``OK`` (or the FIN of the
  data); value in MB/s (10^6 bytes per second);
* ``handshake``: ``--count`` sequential full handshakes (no resumption); each sample runs
  from the ``connect()`` call (socket creation included) to the client's handshake
  completion; value = median in ms;
* ``resume``: the same for ``--count`` resumed handshakes (PSK with (EC)DHE, no 0-RTT,
  RFC 9001 §4.5), each with the session ticket of the connection before it (a first,
  full handshake gets the first one; each connection stays open until its ticket came,
  outside the sample); a handshake that did not resume fails the run. The server needs
  ``--tickets`` (ticket keys: our server issues no tickets without them);
* ``pingpong``: one 64-byte DATAGRAM in flight at a time for ``--seconds``; a ping lost
  for 200 ms is counted and replaced; value = completed round trips per second.

Bulk data is written through :class:`quic.aio.QuicStreamWriter` in 64 KiB chunks with
``drain()`` backpressure; reads use large chunks so the per-read overhead stays small.
The CLI and output contract is the one of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

from benchmarks import (
    BENCH_ALPN,
    CHUNK_SIZE,
    PING_SIZE,
    REQUEST_LINE_LIMIT,
    WORKLOADS,
    parse_request,
    request_line,
    result_line,
)
from benchmarks.common import (
    KEY_SHARES,
    LOOPS,
    RESUME_TEXT,
    TICKET_WAIT,
    handshake_result,
    install_stats_handlers,
    loop_name,
    run,
    verify_text,
    wait_for_stop,
)
from quic.aio import (
    ConnectionClosed,
    QuicSession,
    QuicStreamReader,
    QuicStreamWriter,
    connect,
    serve,
)
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.tls.groups import NamedGroup
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicket, SessionTicketKeys

BAD_REQUEST = 0x1
PING_TIMEOUT = 0.2
READ_SIZE = 1 << 20
FILLER = os.urandom(CHUNK_SIZE)


def configuration(args: argparse.Namespace, *, is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[args.alpn],
        idle_timeout=30.0,
        max_datagram_frame_size=65536,
        max_datagram_size=args.packet_size,
    )
    if is_client:
        # the throwaway benchmark certificate is not verified, except with --cafile
        # (the handshake row's verified profile: the chain checked against that root)
        config.verify_certificates = bool(args.cafile)
        config.cafile = args.cafile
        if args.key_shares == "x25519":
            # the matched configuration: x25519 alone; our default adds an
            # X25519MLKEM768 share, whose 1.2 KB key makes the ClientHello span two
            # Initial datagrams
            config.key_share_groups = (NamedGroup.x25519,)
    else:
        config.load_cert_chain(args.cert, args.key)
        if args.tickets:
            config.ticket_keys = SessionTicketKeys()
    return config


async def write_bytes(writer: QuicStreamWriter, size: int) -> None:
    """Write ``size`` filler bytes then FIN, honouring backpressure."""
    full, rest = divmod(size, CHUNK_SIZE)
    write, drain = writer.write, writer.drain
    for _ in range(full):
        write(FILLER)
        await drain()
    if rest:
        write(FILLER[:rest])
    writer.write_eof()


async def count_until_eof(reader: QuicStreamReader) -> int:
    count = 0
    read = reader.read
    while chunk := await read(READ_SIZE):
        count += len(chunk)
    return count


# --------------------------------------------------------------------------- server


async def read_request_line(reader: QuicStreamReader) -> tuple[bytes, bytes] | None:
    """(line without ``\\n``, bytes after it); ``None`` if too long or EOF first."""
    head = bytearray()
    while True:
        newline = head.find(b"\n")
        if newline >= 0:
            return bytes(head[:newline]), bytes(head[newline + 1 :])
        if len(head) > REQUEST_LINE_LIMIT:
            return None
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            return None
        head += chunk


async def serve_stream(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    found = await read_request_line(reader)
    request = None if found is None else parse_request(found[0])
    if found is None or request is None:
        writer.reset(BAD_REQUEST)
        return
    kind, size = request
    if kind == "UPLOAD":
        count = len(found[1]) + await count_until_eof(reader)
        writer.write(b"OK %d\n" % count)
        writer.write_eof()
    else:
        await write_bytes(writer, size)


async def echo_datagrams(session: QuicSession) -> None:
    receive, send = session.receive_datagram, session.send_datagram
    with contextlib.suppress(ConnectionClosed):
        while True:
            send(await receive())


async def run_server(args: argparse.Namespace) -> None:
    server = await serve(
        args.host,
        args.port,
        configuration(args, is_client=False),
        echo_datagrams,
        stream_handler=serve_stream,
    )
    print(f"LISTENING {server.port}", flush=True)
    install_stats_handlers(args.stats_file)
    await wait_for_stop()  # SIGTERM, SIGINT, or EOF on the harness's stdin pipe
    server.close()


# --------------------------------------------------------------------------- client


async def upload(session: QuicSession, size: int) -> dict[str, Any]:
    reader, writer = await session.create_stream()
    start = time.perf_counter()
    writer.write(request_line("UPLOAD", size))
    await write_bytes(writer, size)
    reply = await reader.read()
    elapsed = time.perf_counter() - start
    if reply != b"OK %d\n" % size:
        raise RuntimeError(f"bad upload reply {reply[:REQUEST_LINE_LIMIT]!r}")
    return {"value": size / elapsed / 1e6, "unit": "MB/s", "bytes": size, "elapsed_s": elapsed}


async def download(session: QuicSession, size: int) -> dict[str, Any]:
    reader, writer = await session.create_stream()
    start = time.perf_counter()
    writer.write(request_line("DOWNLOAD", size))
    writer.write_eof()
    received = await count_until_eof(reader)
    elapsed = time.perf_counter() - start
    if received != size:
        raise RuntimeError(f"downloaded {received} bytes, expected {size}")
    return {"value": size / elapsed / 1e6, "unit": "MB/s", "bytes": size, "elapsed_s": elapsed}


async def pingpong(session: QuicSession, seconds: float) -> dict[str, Any]:
    payload = bytearray(os.urandom(PING_SIZE))
    send, receive = session.send_datagram, session.receive_datagram
    round_trips = lost = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        tag = round_trips.to_bytes(8, "big") + lost.to_bytes(8, "big")
        payload[:16] = tag
        send(bytes(payload))
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                while (await receive())[:16] != tag:  # a late echo of a lost ping
                    pass
        except TimeoutError:
            lost += 1
            continue
        round_trips += 1
    elapsed = time.perf_counter() - start
    return {
        "value": round_trips / elapsed,
        "unit": "rt/s",
        "round_trips": round_trips,
        "lost": lost,
        "elapsed_s": elapsed,
    }


async def handshakes(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[float] = []
    for _ in range(args.count):
        config = configuration(args, is_client=True)
        start = time.perf_counter()
        async with connect(args.host, args.port, config):  # returns once connected
            samples.append((time.perf_counter() - start) * 1000.0)
    return handshake_result(samples)


async def resumed_handshakes(args: argparse.Namespace) -> dict[str, Any]:
    """``--count`` resumed handshakes after a full one (see the module docstring)."""
    store = InMemorySessionTicketStore()
    samples: list[float] = []
    for index in range(args.count + 1):
        arrived = asyncio.Event()

        def on_ticket(_ticket: SessionTicket, arrived: asyncio.Event = arrived) -> None:
            arrived.set()

        config = configuration(args, is_client=True)
        config.session_ticket_store = store  # the ticket of the connection before
        config.session_ticket_handler = on_ticket
        start = time.perf_counter()
        async with connect(args.host, args.port, config) as session:
            elapsed = (time.perf_counter() - start) * 1000.0
            if index:
                if not session.connection.tls.session_resumed:
                    raise RuntimeError(f"handshake {index} did not resume")
                samples.append(elapsed)
            async with asyncio.timeout(TICKET_WAIT):
                await arrived.wait()  # this connection's ticket, for the next one
    return handshake_result(samples)


def describe(args: argparse.Namespace) -> str:
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else "default"
    resume = RESUME_TEXT if getattr(args, "workload", "") == "resume" else ""
    settings = f"key shares {shares}{resume}{verify_text(args)}"
    return f"ours: QuicConfiguration defaults + bench settings, {settings}"


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    if args.workload == "handshake":
        return await handshakes(args)
    if args.workload == "resume":
        return await resumed_handshakes(args)
    size = int(args.size_mb * 1_000_000)
    async with connect(args.host, args.port, configuration(args, is_client=True)) as session:
        if args.workload == "upload":
            return await upload(session, size)
        if args.workload == "download":
            return await download(session, size)
        return await pingpong(session, args.seconds)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ours_side")
    roles = parser.add_subparsers(dest="role", required=True)
    for name in ("server", "client"):
        role = roles.add_parser(name)
        role.add_argument("--host", default="127.0.0.1")
        role.add_argument("--port", type=int, default=0)
        role.add_argument("--packet-size", type=int, default=1200, help="UDP payload bytes")
        role.add_argument("--alpn", default=BENCH_ALPN)
        role.add_argument("--loop", choices=LOOPS, default="asyncio")
        if name == "server":
            role.add_argument("--cert", required=True)
            role.add_argument("--key", required=True)
            role.add_argument("--stats-file", default=None)
            role.add_argument(
                "--tickets", action="store_true", help="issue session tickets (resume)"
            )
        else:
            role.add_argument("--workload", choices=WORKLOADS, required=True)
            role.add_argument("--key-shares", choices=KEY_SHARES, default="default")
            role.add_argument("--cafile", default=None, help="verify the server against this root")
            role.add_argument("--size-mb", type=float, default=200.0)
            role.add_argument("--count", type=int, default=200)
            role.add_argument("--seconds", type=float, default=5.0)
            role.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    if args.role == "server":
        await run_server(args)
        return 0
    try:
        async with asyncio.timeout(args.timeout):
            result = await run_client(args)
    except (Exception, StreamResetError) as exc:  # one ERROR line instead of a traceback
        print(f"ERROR {args.workload}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    result["loop"] = loop_name()
    result["config"] = describe(args)
    print(result_line(args.workload, **result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(lambda: main_async(args), args.loop)


if __name__ == "__main__":
    sys.exit(main())
