#!/usr/bin/env python3
"""Our own QUIC stack as a standalone interop *server* process (test-only).

Theory of operation
-------------------
This script is the mirror image of ``tests/peers/aioquic_peer.py server``: it runs our
asyncio QUIC server (:mod:`quic.aio`) in a separate process and speaks the same tiny
line protocol, so :class:`tests.peers.PeerServer` (with ``script=OURS_PEER``) and any
client of that protocol (aioquic's client scenarios, ``run_peer_client``) can be
pointed at our stack exactly as at aioquic::

    python tests/interop/ours_peer.py server --port 0 --cert C --key K --alpn A \\
        [--mode echo|sink|source] [--quic-version 1|2|all] [--cipher-suites 0x1303,...]

* prints ``LISTENING <port>`` once bound, then serves until SIGTERM/SIGINT, or EOF on
  stdin when stdin is a pipe;
* every DATAGRAM is echoed back, in every mode;
* ``echo``: each client bidi stream is echoed as data arrives, FIN after the client's
  FIN; a stream whose whole content is ``CLOSE <code> <reason>`` makes the server close
  the connection with that application error code and reason instead of sending FIN;
  a RESET_STREAM from the client is answered with RESET_STREAM of the same code;
* ``sink``: replies with the 64 hex digits of SHA-256 of everything received, then FIN;
* ``source``: reads ``SEND <n>\\n`` and replies with SHAKE128("SEND <n>")[:n] and FIN;
  a malformed request line gets RESET_STREAM code 1;
* when a connection ends, one ``CLOSED {json}`` line is printed with ``error_code``,
  ``reason``, ``frame_type`` (null for an application close), ``commanded`` and
  ``peer``, as the aioquic peer does.

The connection is watched from the moment the endpoint accepts it (not only after the
handshake), so a failed handshake (e.g. no common ALPN) is reported too.
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
import stat
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``quic`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from quic.aio import (
    ConnectionClosed,
    QuicEndpointProtocol,
    QuicSession,
    QuicStreamReader,
    QuicStreamWriter,
    wall_clock,
)
from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from quic.errors import StreamResetError
from quic.stream_manager import is_local
from quic.tls.keylog import KeyLogFile
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion

CLOSE_COMMAND = re.compile(rb"CLOSE (\d+)(?: (.*))?", re.DOTALL)
CLOSE_COMMAND_LIMIT = 1024
REQUEST_LINE_LIMIT = 64
BAD_REQUEST_ERROR = 0x1
CHUNK = 1 << 16
IDLE_TIMEOUT = 30.0
VERSIONS = {
    "1": (QuicVersion.VERSION_1,),
    "2": (QuicVersion.VERSION_2,),
    "all": (QuicVersion.VERSION_1, QuicVersion.VERSION_2),
}


def source_payload(size: int) -> bytes:
    """What ``source`` mode sends for ``SEND <size>`` (same as the aioquic peer)."""
    return hashlib.shake_128(b"SEND %d" % size).digest(size)


def emit(prefix: str, payload: dict[str, Any]) -> None:
    print(f"{prefix} {json.dumps(payload, sort_keys=True)}", flush=True)


def build_configuration(args: argparse.Namespace) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=[a for a in args.alpn.split(",") if a],
        idle_timeout=IDLE_TIMEOUT,
        max_datagram_frame_size=65536,
        max_datagram_size=args.max_datagram_size,
        supported_versions=VERSIONS[args.quic_version],
    )
    config.load_cert_chain(args.cert, args.key)
    if args.cipher_suites:
        config.cipher_suites = tuple(
            CipherSuite(int(c, 0)) for c in args.cipher_suites.split(",") if c
        )
    if args.keylog:
        config.keylog = KeyLogFile(args.keylog)
    return config


class PeerConnection:
    """One accepted connection served in the chosen mode."""

    def __init__(self, session: QuicSession, mode: str) -> None:
        self.session = session
        self.mode = mode
        self.commanded = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> dict[str, Any]:
        """Serve the connection until it ends; return its ``CLOSED`` record."""
        session = self.session
        tasks: list[asyncio.Task[None]] = []
        with contextlib.suppress(ConnectionClosed):
            await session.wait_connected()
            tasks.append(asyncio.ensure_future(self._echo_datagrams()))
            tasks.append(asyncio.ensure_future(self._accept_streams()))
        term = await session.wait_closed()
        for task in tasks:
            task.cancel()
        peer = session.connection.peer_address
        return {
            "error_code": int(term.error_code),
            "reason": term.reason_phrase,
            "frame_type": None if term.is_application else term.frame_type,
            "commanded": self.commanded,
            "peer": None if peer is None else [peer[0], peer[1]],
        }

    async def _echo_datagrams(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await self.session.receive_datagram()
                with contextlib.suppress(ValueError):  # too large to send back: drop
                    self.session.send_datagram(data)

    async def _accept_streams(self) -> None:
        handlers = {"echo": self._echo, "sink": self._sink, "source": self._source}
        handler = handlers[self.mode]
        with contextlib.suppress(ConnectionClosed):
            while True:
                reader, writer = await self.session.accept_stream()
                sid = writer.stream_id
                if sid & 2 or is_local(sid, False):
                    continue  # only client-initiated bidirectional streams are served
                task = asyncio.ensure_future(self._guarded(handler(reader, writer), writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Any, writer: QuicStreamWriter) -> None:
        try:
            await coro
        except StreamResetError as exc:
            if writer.reset_code is None and not self.session.is_closed:
                with contextlib.suppress(Exception):
                    writer.reset(exc.error_code)  # answer a reset in kind
        except (ConnectionClosed, asyncio.IncompleteReadError):
            pass

    async def _echo(self, reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        head = bytearray()
        total = 0
        while chunk := await reader.read(CHUNK):
            total += len(chunk)
            if total <= CLOSE_COMMAND_LIMIT:
                head += chunk
            writer.write(chunk)
            await writer.drain()
        if total <= CLOSE_COMMAND_LIMIT:
            match = CLOSE_COMMAND.fullmatch(bytes(head))
            if match is not None:
                self.commanded = True
                reason = (match.group(2) or b"").decode("utf-8", "replace")
                await self.session.aclose(int(match.group(1)), reason)
                return
        writer.write_eof()

    async def _sink(self, reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        digest = hashlib.sha256()
        while chunk := await reader.read(CHUNK):
            digest.update(chunk)
        writer.write(digest.hexdigest().encode("ascii"))
        writer.write_eof()

    async def _source(self, reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        head = bytearray()
        while b"\n" not in head and len(head) <= REQUEST_LINE_LIMIT:
            chunk = await reader.read(REQUEST_LINE_LIMIT)
            if not chunk:
                break
            head += chunk
        line, newline, _ = bytes(head).partition(b"\n")
        match = re.fullmatch(rb"SEND (\d+)", line) if newline else None
        if match is None:
            writer.reset(BAD_REQUEST_ERROR)
            return
        payload = memoryview(source_payload(int(match.group(1))))
        for offset in range(0, len(payload), CHUNK):
            writer.write(payload[offset : offset + CHUNK])
            await writer.drain()
        writer.write_eof()


async def run_server(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    config = build_configuration(args)
    config.clock = wall_clock  # certificate validity (the only wall-clock need)
    running: set[asyncio.Task[None]] = set()

    async def serve_and_report(session: QuicSession) -> None:
        emit("CLOSED", await PeerConnection(session, args.mode).run())

    def on_session(session: QuicSession) -> None:
        task = asyncio.ensure_future(serve_and_report(session))
        running.add(task)
        task.add_done_callback(running.discard)

    transport, _ = await loop.create_datagram_endpoint(
        lambda: QuicEndpointProtocol(QuicEndpoint(config), on_session),
        local_addr=(args.host, args.port),
    )
    print(f"LISTENING {transport.get_extra_info('sockname')[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if _stdin_is_pipe():
        loop.add_reader(sys.stdin.fileno(), _stop_on_eof, stop)
    await stop.wait()
    transport.close()
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="our QUIC stack as an interop server")
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--alpn", required=True)
    server.add_argument("--mode", choices=("echo", "sink", "source"), default="echo")
    server.add_argument("--quic-version", choices=tuple(VERSIONS), default="all")
    server.add_argument("--cipher-suites", default="")
    server.add_argument("--max-datagram-size", type=int, default=1200)
    server.add_argument("--keylog", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run_server(args))


if __name__ == "__main__":
    sys.exit(main())
