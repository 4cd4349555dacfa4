#!/usr/bin/env python3
"""aioquic as an independent raw-QUIC interop peer (test-only; run as a separate process).

Theory of operation
-------------------
This script wraps aioquic's asyncio API in a small command-line peer so that our own
QUIC stack can be tested against an independent implementation over real UDP sockets on
127.0.0.1. It speaks raw QUIC (no HTTP/3) with one tiny application protocol per
server mode; the client side runs one scenario per process and reports it as JSON.

Server (``server --port 0 --cert C --key K --alpn A [--mode echo|sink|source]``):

* prints ``LISTENING <port>`` once the UDP socket is bound, then serves until SIGTERM,
  SIGINT or EOF on stdin;
* every DATAGRAM frame (RFC 9221) is echoed back, in every mode;
* ``echo``: the data of every client-initiated bidirectional stream is echoed back as it
  arrives and FIN is sent after the peer's FIN. A stream whose whole content is
  ``CLOSE <code> <reason>`` makes the server close the connection with that application
  error code and reason instead. RESET_STREAM / STOP_SENDING from the client are
  answered by resetting the server's sending side with the same error code;
* ``sink``: all bytes of each bidi stream are hashed; after FIN the server replies with
  the 64 ASCII hex digits of their SHA-256 and FIN;
* ``source``: the server reads one request line ``SEND <n>\\n`` and answers with
  :func:`source_payload` ``(n)`` and FIN;
* when a connection ends, one line ``CLOSED {json}`` is printed with ``error_code``,
  ``reason``, ``frame_type`` (``null`` for an application close), ``commanded``
  (true when this server closed it because of a ``CLOSE`` command; false for the
  peer's CONNECTION_CLOSE, an idle timeout or an error aioquic detected itself) and
  ``peer`` (``[host, port]`` of the client).

Client (``client --host H --port P --alpn A --insecure --scenario NAME [args]``) runs
one scenario from :data:`SCENARIOS` and prints one JSON object on a single stdout line;
the exit status is 0 when ``"ok"`` is true, 1 when the scenario failed, 3 on an
exception or timeout (the JSON line then carries ``"error"``).

Both roles enable DATAGRAM frames (max_datagram_frame_size 65536) and a 30 s idle
timeout; ``--quic-version 1|2`` restricts the offered versions (RFC 9000 / RFC 9369),
``--keylog FILE`` appends NSS key-log lines, ``--max-datagram-size`` sets the UDP
payload size and ``--cipher-suites 0x1303,...`` restricts the TLS 1.3 suites.
aioquic is imported only here and in the benchmarks, never by the library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import ssl
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicProtocolVersion
from aioquic.tls import CipherSuite

MAX_DATAGRAM_FRAME_SIZE = 65536
IDLE_TIMEOUT = 30.0
CLOSE_COMMAND = re.compile(rb"CLOSE (\d+)(?: (.*))?", re.DOTALL)
CLOSE_COMMAND_LIMIT = 1024  # longer streams are never a CLOSE command
REQUEST_LINE_LIMIT = 64
BAD_REQUEST_ERROR = 0x1  # application error code for a malformed SEND request
CHUNK = 1 << 16

VERSIONS = {"1": QuicProtocolVersion.VERSION_1, "2": QuicProtocolVersion.VERSION_2}
CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}


def source_payload(size: int) -> bytes:
    """The bytes a ``source`` server sends for ``SEND <size>``: SHAKE128("SEND <size>").

    Deterministic and aperiodic, so a client can verify order and content.
    """
    return hashlib.shake_128(b"SEND %d" % size).digest(size)


def is_client_bidi(stream_id: int) -> bool:
    # RFC 9000 §2.1: the two low bits are 0b00 for client-initiated bidirectional streams.
    return stream_id & 0x3 == 0


def emit(prefix: str, payload: dict[str, Any], out: TextIO | None = None) -> None:
    """Print one protocol line on stdout (``prefix`` may be empty) and flush it."""
    text = json.dumps(payload, sort_keys=True)
    print(f"{prefix} {text}" if prefix else text, file=out or sys.stdout, flush=True)


def build_configuration(args: argparse.Namespace, *, is_client: bool) -> QuicConfiguration:
    """One QuicConfiguration from the shared command-line options."""
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[a for a in args.alpn.split(",") if a],
        idle_timeout=IDLE_TIMEOUT,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_datagram_size=args.max_datagram_size,
    )
    if args.quic_version:
        config.supported_versions = [VERSIONS[args.quic_version]]
    if args.cipher_suites:
        config.cipher_suites = [CipherSuite(int(c, 0)) for c in args.cipher_suites.split(",")]
    if args.keylog:
        # Line-buffered so a live packet capture sees the keys; lives as long as the process.
        config.secrets_log_file = open(args.keylog, "a", buffering=1)  # noqa: SIM115
    if is_client:
        if args.insecure:
            config.verify_mode = ssl.CERT_NONE
        elif args.cafile:
            config.load_verify_locations(cafile=args.cafile)
        if args.server_name:
            config.server_name = args.server_name
    else:
        config.load_cert_chain(args.cert, args.key)
    return config


def negotiated(quic: QuicConnection) -> dict[str, Any]:
    """Version and cipher suite of an established connection.

    aioquic exposes neither publicly; both are read defensively from its internals.
    """
    version = getattr(quic, "_version", None)
    suite = getattr(getattr(getattr(quic, "tls", None), "key_schedule", None), "cipher_suite", None)
    return {
        "version": None if version is None else int(version),
        "cipher_suite": None if suite is None else CIPHER_NAMES.get(int(suite), hex(int(suite))),
    }


# --------------------------------------------------------------------------- server


class PeerServerProtocol(QuicConnectionProtocol):
    """One server connection; behaviour chosen by the class attribute ``mode``."""

    mode = "echo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefix: dict[int, bytearray] = {}  # head of each stream (CLOSE / SEND parsing)
        self._length: dict[int, int] = {}
        self._hashes: dict[int, Any] = {}
        self._answered: set[int] = set()
        self._closed_reported = False
        self._local_close: tuple[int, str] | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            if is_client_bidi(event.stream_id):
                self._on_stream_data(event)
        elif isinstance(event, DatagramFrameReceived):
            self._quic.send_datagram_frame(event.data)
        elif isinstance(event, StreamReset | StopSendingReceived):
            self._reset_sending(event.stream_id, event.error_code)
        elif isinstance(event, ConnectionTerminated):
            self._report_closed(event.error_code, event.reason_phrase, event.frame_type)

    def _on_stream_data(self, event: StreamDataReceived) -> None:
        sid = event.stream_id
        if self.mode == "sink":
            self._sink(sid, event.data, event.end_stream)
            return
        total = self._length.get(sid, 0) + len(event.data)
        self._length[sid] = total
        if total <= CLOSE_COMMAND_LIMIT:  # keep the head: CLOSE command or request line
            self._prefix.setdefault(sid, bytearray()).extend(event.data)
        else:
            self._prefix.pop(sid, None)
        if self.mode == "echo":
            self._echo(sid, event.data, event.end_stream)
        else:
            self._source(sid, event.end_stream)
        if event.end_stream:
            self._length.pop(sid, None)
            self._prefix.pop(sid, None)

    def _echo(self, sid: int, data: bytes, end_stream: bool) -> None:
        if end_stream:
            match = CLOSE_COMMAND.fullmatch(bytes(self._prefix.pop(sid, b"")))
            if match is not None:
                if data:
                    self._quic.send_stream_data(sid, data, False)
                code = int(match.group(1))
                reason = (match.group(2) or b"").decode("utf-8", "replace")
                self._local_close = (code, reason)
                self.close(error_code=code, reason_phrase=reason)
                self._report_closed(code, reason, None)
                return
        if data or end_stream:
            self._quic.send_stream_data(sid, data, end_stream)

    def _sink(self, sid: int, data: bytes, end_stream: bool) -> None:
        digest = self._hashes.get(sid)
        if digest is None:
            digest = self._hashes[sid] = hashlib.sha256()
        digest.update(data)
        if end_stream:
            del self._hashes[sid]
            self._quic.send_stream_data(sid, digest.hexdigest().encode("ascii"), True)

    def _source(self, sid: int, end_stream: bool) -> None:
        if sid in self._answered:
            return
        head = self._prefix.get(sid, bytearray())
        newline = head.find(b"\n")
        if newline < 0:
            if end_stream or self._length[sid] > REQUEST_LINE_LIMIT:
                self._answered.add(sid)
                self._reset_sending(sid, BAD_REQUEST_ERROR)
            return
        self._answered.add(sid)
        match = re.fullmatch(rb"SEND (\d+)", bytes(head[:newline]))
        if match is None:
            self._reset_sending(sid, BAD_REQUEST_ERROR)
            return
        payload = memoryview(source_payload(int(match.group(1))))
        send = self._quic.send_stream_data
        for offset in range(0, len(payload), CHUNK):
            send(sid, bytes(payload[offset : offset + CHUNK]), False)
        send(sid, b"", True)

    def _reset_sending(self, sid: int, error_code: int) -> None:
        # The sending side may already be finished or reset.
        with contextlib.suppress(Exception):
            self._quic.reset_stream(sid, error_code)

    def _report_closed(self, error_code: int, reason: str, frame_type: int | None) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        peer = self._quic.get_peer_address() if hasattr(self._quic, "get_peer_address") else None
        emit(
            "CLOSED",
            {
                "error_code": int(error_code),
                "reason": reason,
                "frame_type": None if frame_type is None else int(frame_type),
                "commanded": self._local_close is not None,
                "peer": None if peer is None else [peer[0], peer[1]],
            },
        )


async def run_server(args: argparse.Namespace) -> int:
    protocol = type("ModeServerProtocol", (PeerServerProtocol,), {"mode": args.mode})
    server = await serve(
        args.host,
        args.port,
        configuration=build_configuration(args, is_client=False),
        create_protocol=protocol,
    )
    # aioquic has no public accessor for the bound address of a QuicServer.
    transport = server._transport
    assert transport is not None
    port = transport.get_extra_info("sockname")[1]
    print(f"LISTENING {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if _stdin_is_pipe():  # the parent holds the other end: its exit stops this server
        loop.add_reader(sys.stdin.fileno(), _stop_on_eof, stop)
    await stop.wait()
    server.close()
    return 0


def _stdin_is_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _stop_on_eof(stop: asyncio.Event) -> None:
    try:
        data = os.read(sys.stdin.fileno(), 4096)
    except OSError:
        data = b""
    if not data:
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        stop.set()


# --------------------------------------------------------------------------- client


class PeerClientProtocol(QuicConnectionProtocol):
    """Client connection with awaitable helpers for whole-stream exchanges and datagrams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.handshake: HandshakeCompleted | None = None
        self.terminated: asyncio.Future[ConnectionTerminated] = (
            asyncio.get_running_loop().create_future()
        )
        self.local_port: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sockname = transport.get_extra_info("sockname")
        self.local_port = sockname[1] if sockname else None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            entry = self._streams.get(event.stream_id)
            if entry is not None:
                entry[0].extend(event.data)
                if event.end_stream and not entry[1].done():
                    entry[1].set_result(bytes(entry[0]))
        elif isinstance(event, DatagramFrameReceived):
            self.datagrams.put_nowait(event.data)
        elif isinstance(event, HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, StreamReset):
            entry = self._streams.get(event.stream_id)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(ConnectionError(f"stream reset {event.error_code}"))
        elif isinstance(event, ConnectionTerminated):
            if not self.terminated.done():
                self.terminated.set_result(event)
            for _, waiter in self._streams.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"connection closed: {event}"))

    def start_stream(self) -> tuple[int, asyncio.Future[bytes]]:
        sid = self._quic.get_next_available_stream_id()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_consume_exception)  # fire-and-forget streams stay quiet
        self._streams[sid] = (bytearray(), waiter)
        return sid, waiter

    def send(self, sid: int, data: bytes, end_stream: bool) -> None:
        view = memoryview(data)
        for offset in range(0, len(view), CHUNK):
            self._quic.send_stream_data(sid, bytes(view[offset : offset + CHUNK]), False)
        if end_stream:
            self._quic.send_stream_data(sid, b"", True)
        self.transmit()

    async def exchange(self, data: bytes) -> bytes:
        """Send ``data`` + FIN on a new bidi stream; return everything received until FIN."""
        sid, waiter = self.start_stream()
        self.send(sid, data, True)
        return await waiter

    def send_datagram(self, data: bytes) -> None:
        self._quic.send_datagram_frame(data)
        self.transmit()


def _consume_exception(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


Scenario = Callable[[PeerClientProtocol, argparse.Namespace], Awaitable[dict[str, Any]]]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def scenario_handshake(
    client: PeerClientProtocol, args: argparse.Namespace
) -> dict[str, Any]:
    hs = client.handshake
    return {
        "ok": hs is not None,
        "alpn": hs.alpn_protocol if hs else None,
        "session_resumed": bool(hs.session_resumed) if hs else None,
    }


async def scenario_bulk(client: PeerClientProtocol, args: argparse.Namespace) -> dict[str, Any]:
    data = os.urandom(args.size)
    start = time.perf_counter()
    echoed = await client.exchange(data)
    elapsed = time.perf_counter() - start
    return {
        "ok": echoed == data,
        "size": args.size,
        "sent_sha256": sha256_hex(data),
        "received_sha256": sha256_hex(echoed),
        "received_bytes": len(echoed),
        "elapsed_s": elapsed,
    }


async def scenario_streams(client: PeerClientProtocol, args: argparse.Namespace) -> dict[str, Any]:
    payloads = [os.urandom(args.size) for _ in range(args.count)]
    echoes = await asyncio.gather(*(client.exchange(p) for p in payloads))
    bad = [i for i, (sent, got) in enumerate(zip(payloads, echoes, strict=True)) if sent != got]
    return {"ok": not bad, "count": args.count, "size": args.size, "mismatched": bad}


async def scenario_datagrams(
    client: PeerClientProtocol, args: argparse.Namespace
) -> dict[str, Any]:
    expected = {i.to_bytes(4, "big") + os.urandom(max(args.size - 4, 0)) for i in range(args.count)}
    for payload in sorted(expected):
        client.send_datagram(payload)
    received: set[bytes] = set()
    unexpected = 0
    deadline = asyncio.get_running_loop().time() + args.datagram_wait
    while received != expected:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            data = await asyncio.wait_for(client.datagrams.get(), remaining)
        except TimeoutError:
            break
        if data in expected:
            received.add(data)
        else:
            unexpected += 1
    return {
        "ok": received == expected and unexpected == 0,
        "sent": len(expected),
        "received": len(received),
        "unexpected": unexpected,
    }


async def scenario_close(client: PeerClientProtocol, args: argparse.Namespace) -> dict[str, Any]:
    client.close(error_code=args.code, reason_phrase=args.reason)
    await client.wait_closed()
    return {"ok": True, "code": args.code, "reason": args.reason}


async def scenario_remote_close(
    client: PeerClientProtocol, args: argparse.Namespace
) -> dict[str, Any]:
    """Ask an echo server to close the connection; report the CONNECTION_CLOSE we got."""
    sid, _ = client.start_stream()
    client.send(sid, f"CLOSE {args.code} {args.reason}".encode(), True)
    event = await client.terminated
    return {
        "ok": event.error_code == args.code and event.reason_phrase == args.reason,
        "error_code": event.error_code,
        "reason": event.reason_phrase,
        "frame_type": event.frame_type,
    }


async def scenario_download(client: PeerClientProtocol, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    data = await client.exchange(b"SEND %d\n" % args.size)
    elapsed = time.perf_counter() - start
    return {
        "ok": data == source_payload(args.size),
        "size": args.size,
        "received_bytes": len(data),
        "received_sha256": sha256_hex(data),
        "elapsed_s": elapsed,
    }


async def scenario_upload(client: PeerClientProtocol, args: argparse.Namespace) -> dict[str, Any]:
    data = os.urandom(args.size)
    start = time.perf_counter()
    reply = await client.exchange(data)
    elapsed = time.perf_counter() - start
    local = sha256_hex(data)
    remote = reply.decode("ascii", "replace")
    return {
        "ok": remote == local,
        "size": args.size,
        "sent_sha256": local,
        "server_sha256": remote,
        "elapsed_s": elapsed,
    }


SCENARIOS: dict[str, Scenario] = {
    "handshake": scenario_handshake,
    "bulk": scenario_bulk,
    "streams": scenario_streams,
    "datagrams": scenario_datagrams,
    "close": scenario_close,
    "remote-close": scenario_remote_close,
    "download": scenario_download,
    "upload": scenario_upload,
}


async def run_client(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"scenario": args.scenario}
    created: list[PeerClientProtocol] = []

    def create_protocol(*a: Any, **kw: Any) -> PeerClientProtocol:
        created.append(PeerClientProtocol(*a, **kw))
        return created[-1]

    status = 0
    try:
        async with asyncio.timeout(args.timeout):
            start = time.perf_counter()
            async with connect(
                args.host,
                args.port,
                configuration=build_configuration(args, is_client=True),
                create_protocol=create_protocol,
            ) as client:
                assert isinstance(client, PeerClientProtocol)
                result["handshake_ms"] = (time.perf_counter() - start) * 1000.0
                result["alpn"] = client.handshake.alpn_protocol if client.handshake else None
                result.update(negotiated(client._quic))
                result.update(await SCENARIOS[args.scenario](client, args))
    except Exception as exc:  # report every failure as a JSON line
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        status = 3
    if created:
        result["local_port"] = created[0].local_port
        terminated = created[0].terminated
        if terminated.done() and "error" in result:  # how the connection died
            event = terminated.result()
            result["terminated"] = {
                "error_code": event.error_code,
                "reason": event.reason_phrase,
                "frame_type": event.frame_type,
            }
    emit("", result)
    return status or (0 if result.get("ok") else 1)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    roles = parser.add_subparsers(dest="role", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--alpn", required=True, help="comma-separated ALPN protocols")
        p.add_argument("--quic-version", choices=sorted(VERSIONS), default=None)
        p.add_argument("--keylog", default=None, help="append NSS key-log lines to FILE")
        p.add_argument("--max-datagram-size", type=int, default=1200)
        p.add_argument(
            "--cipher-suites", default=None, help="comma-separated codepoints, e.g. 0x1303,0x1301"
        )

    server = roles.add_parser("server", help="serve until SIGTERM or EOF on stdin")
    common(server)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--mode", choices=("echo", "sink", "source"), default="echo")

    client = roles.add_parser("client", help="run one scenario, print one JSON line")
    common(client)
    client.add_argument("--insecure", action="store_true", help="skip certificate checks")
    client.add_argument("--cafile", default=None)
    client.add_argument("--server-name", default=None)
    client.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    client.add_argument("--size", type=int, default=None, help="bytes (per stream/datagram)")
    client.add_argument("--count", type=int, default=100)
    client.add_argument("--code", type=int, default=0)
    client.add_argument("--reason", default="")
    client.add_argument("--datagram-wait", type=float, default=5.0)
    client.add_argument("--timeout", type=float, default=30.0)
    return parser.parse_args(argv)


DEFAULT_SIZES = {"bulk": 1_000_000, "streams": 1000, "datagrams": 64}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "client" and args.size is None:
        args.size = DEFAULT_SIZES.get(args.scenario, 1_000_000)
    runner = run_server if args.role == "server" else run_client
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
