"""aioquic adapter of the loopback benchmark harness (test-only dependency).

Theory of operation
-------------------
``python -m benchmarks.aioquic_side server --cert C --key K [--port 0]`` binds
127.0.0.1, prints ``LISTENING <port>`` and serves the bench protocol of
:mod:`benchmarks` (UPLOAD / DOWNLOAD request lines on bidi streams, DATAGRAM echo) until
SIGTERM, SIGINT or EOF on stdin.

``python -m benchmarks.aioquic_side client --port P --workload W [...]`` runs one
workload against such a server and prints one ``RESULT {json}`` line:

* ``upload`` / ``download``: one stream moves ``--size-mb`` * 10^6 bytes; the clock runs
  from the first byte written (or the request) to the server's ``OK`` (or the FIN of the
  data); value in MB/s (10^6 bytes per second);
* ``handshake``: ``--count`` sequential full handshakes (no resumption); each sample runs
  from the ``connect()`` call (socket creation included) to the client's
  HandshakeCompleted; value = median in ms;
* ``resume``: the same for ``--count`` resumed handshakes (no 0-RTT: the client writes
  nothing early), each with the session ticket of the connection before it, as
  :mod:`benchmarks.ours_side` does; the server needs ``--tickets`` (aioquic's server
  issues tickets only with a ``session_ticket_handler``, and resumes only those its
  ``session_ticket_fetcher`` returns: a dict here, each ticket taken once);
* ``pingpong``: one 64-byte DATAGRAM in flight at a time for ``--seconds``; a ping lost
  for 200 ms is counted and replaced; value = completed round trips per second.

aioquic has no send-side backpressure, so bulk data is queued on the stream at once in
64 KiB chunks; flow and congestion control pace the wire. The same CLI and output
contract applies to every adapter (``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import SessionTicket

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
from benchmarks.aioquic_tweaks import default_key_shares, offer_x25519_only
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

BAD_REQUEST = 0x1
PING_TIMEOUT = 0.2
MAX_TICKETS = 1024  # tickets a --tickets server keeps for resumption
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
        if args.cafile:  # the handshake row's verified profile (see ours_side)
            config.load_verify_locations(cafile=args.cafile)
        else:
            config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(args.cert, args.key)
    return config


def queue_bytes(protocol: QuicConnectionProtocol, stream_id: int, size: int) -> None:
    """Queue ``size`` filler bytes then FIN on ``stream_id`` (no transmit)."""
    send = protocol._quic.send_stream_data
    full, rest = divmod(size, CHUNK_SIZE)
    for _ in range(full):
        send(stream_id, FILLER, False)
    send(stream_id, FILLER[:rest], True)


# --------------------------------------------------------------------------- server


class BenchServerProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads: dict[int, bytearray] = {}  # streams still reading their request line
        self._uploads: dict[int, int] = {}  # stream → bytes received after the line

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            sid = event.stream_id
            if sid in self._uploads:
                self._uploads[sid] += len(event.data)
            else:
                self._on_head(sid, event.data)
            if event.end_stream and sid in self._uploads:
                count = self._uploads.pop(sid)
                self._quic.send_stream_data(sid, b"OK %d\n" % count, True)
        elif isinstance(event, DatagramFrameReceived):
            self._quic.send_datagram_frame(event.data)

    def _on_head(self, sid: int, data: bytes) -> None:
        head = self._heads.setdefault(sid, bytearray())
        head += data
        newline = head.find(b"\n")
        if newline < 0:
            if len(head) > REQUEST_LINE_LIMIT:
                del self._heads[sid]
                self._quic.reset_stream(sid, BAD_REQUEST)
            return
        del self._heads[sid]
        request = parse_request(bytes(head[:newline]))
        if request is None:
            self._quic.reset_stream(sid, BAD_REQUEST)
        elif request[0] == "UPLOAD":
            self._uploads[sid] = len(head) - newline - 1
        else:
            queue_bytes(self, sid, request[1])


async def run_server(args: argparse.Namespace) -> None:
    tickets: dict[bytes, SessionTicket] = {}  # --tickets: issued, not yet used

    def keep(ticket: SessionTicket) -> None:
        tickets[ticket.ticket] = ticket
        while len(tickets) > MAX_TICKETS:  # bounded: the oldest goes first
            del tickets[next(iter(tickets))]

    def fetch(label: bytes) -> SessionTicket | None:
        return tickets.pop(label, None)  # unknown: a full handshake

    server = await serve(
        args.host,
        args.port,
        configuration=configuration(args, is_client=False),
        create_protocol=BenchServerProtocol,
        session_ticket_fetcher=fetch if args.tickets else None,
        session_ticket_handler=keep if args.tickets else None,
    )
    transport = server._transport  # aioquic has no public accessor for the bound port
    assert transport is not None
    print(f"LISTENING {transport.get_extra_info('sockname')[1]}", flush=True)
    install_stats_handlers(args.stats_file)
    await wait_for_stop()  # SIGTERM, SIGINT, or EOF on the harness's stdin pipe
    server.close()


# --------------------------------------------------------------------------- client


class BenchClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.streams: dict[int, tuple[list[int], bytearray, asyncio.Future[int]]] = {}
        self.pong: asyncio.Future[bytes] = loop.create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            entry = self.streams.get(event.stream_id)
            if entry is None:
                return
            counter, head, done = entry
            counter[0] += len(event.data)
            if len(head) < REQUEST_LINE_LIMIT:
                head += event.data[:REQUEST_LINE_LIMIT]
            if event.end_stream and not done.done():
                done.set_result(counter[0])
        elif isinstance(event, DatagramFrameReceived):
            if not self.pong.done():
                self.pong.set_result(event.data)
        elif isinstance(event, StreamReset | ConnectionTerminated):
            for _, _, done in self.streams.values():
                if not done.done():
                    done.set_exception(ConnectionError(repr(event)))

    def open_stream(self) -> tuple[int, bytearray, asyncio.Future[int]]:
        sid = self._quic.get_next_available_stream_id()
        head = bytearray()
        done: asyncio.Future[int] = self._loop.create_future()
        self.streams[sid] = ([0], head, done)
        return sid, head, done


async def upload(client: BenchClientProtocol, size: int) -> dict[str, Any]:
    sid, head, done = client.open_stream()
    start = time.perf_counter()
    client._quic.send_stream_data(sid, request_line("UPLOAD", size), False)
    queue_bytes(client, sid, size)
    client.transmit()
    await done
    elapsed = time.perf_counter() - start
    if bytes(head) != b"OK %d\n" % size:
        raise RuntimeError(f"bad upload reply {bytes(head)!r}")
    return {"value": size / elapsed / 1e6, "unit": "MB/s", "bytes": size, "elapsed_s": elapsed}


async def download(client: BenchClientProtocol, size: int) -> dict[str, Any]:
    sid, _, done = client.open_stream()
    start = time.perf_counter()
    client._quic.send_stream_data(sid, request_line("DOWNLOAD", size), True)
    client.transmit()
    received = await done
    elapsed = time.perf_counter() - start
    if received != size:
        raise RuntimeError(f"downloaded {received} bytes, expected {size}")
    return {"value": size / elapsed / 1e6, "unit": "MB/s", "bytes": size, "elapsed_s": elapsed}


async def pingpong(client: BenchClientProtocol, seconds: float) -> dict[str, Any]:
    payload = bytearray(os.urandom(PING_SIZE))
    loop = client._loop
    round_trips = lost = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        tag = round_trips.to_bytes(8, "big") + lost.to_bytes(8, "big")
        payload[:16] = tag
        client.pong = loop.create_future()
        client._quic.send_datagram_frame(bytes(payload))
        client.transmit()
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                while (await client.pong)[:16] != tag:  # a late echo of a lost ping
                    client.pong = loop.create_future()
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
    config = configuration(args, is_client=True)
    samples: list[float] = []
    for _ in range(args.count):
        start = time.perf_counter()
        async with connect(
            args.host, args.port, configuration=config, create_protocol=BenchClientProtocol
        ):
            samples.append((time.perf_counter() - start) * 1000.0)
    return handshake_result(samples)


async def resumed_handshakes(args: argparse.Namespace) -> dict[str, Any]:
    """``--count`` resumed handshakes after a full one (see the module docstring)."""
    samples: list[float] = []
    ticket: SessionTicket | None = None
    for index in range(args.count + 1):
        arrived: asyncio.Future[SessionTicket] = asyncio.get_running_loop().create_future()

        def on_ticket(new: SessionTicket, arrived: asyncio.Future[SessionTicket] = arrived) -> None:
            if not arrived.done():
                arrived.set_result(new)

        config = configuration(args, is_client=True)
        config.session_ticket = ticket  # the ticket of the connection before
        start = time.perf_counter()
        async with connect(
            args.host,
            args.port,
            configuration=config,
            create_protocol=BenchClientProtocol,
            session_ticket_handler=on_ticket,
        ) as client:
            elapsed = (time.perf_counter() - start) * 1000.0
            if index:
                if not client._quic.tls.session_resumed:
                    raise RuntimeError(f"handshake {index} did not resume")
                samples.append(elapsed)
            async with asyncio.timeout(TICKET_WAIT):
                ticket = await arrived  # this connection's ticket, for the next one
    return handshake_result(samples)


def describe(args: argparse.Namespace) -> str:
    library = sys.modules["aioquic"].__name__
    version = getattr(sys.modules["aioquic"], "__version__", "?")
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else None
    shares = shares or default_key_shares()
    resume = RESUME_TEXT if getattr(args, "workload", "") == "resume" else ""
    return (
        f"{library} {version}: QuicConfiguration defaults + bench settings, key shares"
        f" {shares}{resume}{verify_text(args)}"
    )


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    if args.key_shares == "x25519":
        offer_x25519_only()
    if args.workload == "handshake":
        return await handshakes(args)
    if args.workload == "resume":
        return await resumed_handshakes(args)
    size = int(args.size_mb * 1_000_000)
    async with connect(
        args.host,
        args.port,
        configuration=configuration(args, is_client=True),
        create_protocol=BenchClientProtocol,
    ) as client:
        assert isinstance(client, BenchClientProtocol)
        if args.workload == "upload":
            return await upload(client, size)
        if args.workload == "download":
            return await download(client, size)
        return await pingpong(client, args.seconds)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aioquic_side")
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
    except Exception as exc:  # one ERROR line instead of a traceback
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
