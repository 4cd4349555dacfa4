#!/usr/bin/env python3
"""aioquic as an independent HTTP/3 peer (test-only; run as a separate process).

Theory of operation
-------------------
This script wraps aioquic's QUIC and HTTP/3 layers (``H3Connection``) in a small
command-line peer, so that our HTTP/3 stack (``python -m h3``) can be tested against an
independent implementation over real UDP sockets on 127.0.0.1. ALPN is ``h3``.

Server (``server --port 0 --cert C --key K --root DIR``):

* prints ``LISTENING <port>`` once the UDP socket is bound, then serves until SIGTERM,
  SIGINT or EOF on a piped stdin (so a test that dies takes its server with it);
* prints ``CONNECTED {"alpn", "version", "cipher_suite"}`` when a handshake completes;
* answers ``GET`` (and ``HEAD``) for files under DIR (``index.html`` for ``/``) with
  ``:status 200``, ``content-length`` and ``content-type``; a missing file or a path
  leaving DIR gets 404, any other method 405;
* prints ``REQUEST {"method", "path", "status", "bytes"}`` for every answered request.

Client (``client URL [-o FILE] [--insecure | --cafile F]``): one GET over one
connection. The body is hashed while it arrives and written to FILE (discarded without
``-o``). Prints one JSON line ``{"ok", "status", "bytes", "sha256", "elapsed_s",
"headers", "alpn", "version", "cipher_suite"}`` (``"error"`` on failure) and exits 0 when
the status is below 400, 1 for an HTTP error status, 3 on an exception or timeout.

Both roles accept ``--keylog FILE`` (NSS key log, appended) and use a 30 s idle timeout.
aioquic is imported only by test peers and benchmarks, never by the library.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import mimetypes
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aioquic_peer import _stdin_is_pipe, _stop_on_eof, emit, negotiated

IDLE_TIMEOUT = 30.0
CHUNK = 1 << 16
SERVER_NAME = b"aioquic-h3-peer"


def build_configuration(args: argparse.Namespace, *, is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=list(H3_ALPN), idle_timeout=IDLE_TIMEOUT
    )
    if args.keylog:
        # Line-buffered so a live capture sees the keys; lives as long as the process.
        config.secrets_log_file = open(args.keylog, "a", buffering=1)  # noqa: SIM115
    if is_client:
        if args.cafile:
            config.load_verify_locations(cafile=args.cafile)
        else:
            config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(args.cert, args.key)
    return config


def header_map(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


# --------------------------------------------------------------------------- server


def resolve_target(root: Path, raw_path: str) -> Path | None:
    """The file a request path names under ``root``, or None (missing or outside root)."""
    path = unquote(urlsplit(raw_path).path) or "/"
    if path.endswith("/"):
        path += "index.html"
    base = root.resolve()
    target = (base / path.lstrip("/")).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


class H3ServerProtocol(QuicConnectionProtocol):
    """One server connection: a static file server over aioquic's H3Connection."""

    root = Path(".")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h3: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._h3 = H3Connection(self._quic)
            emit("CONNECTED", {"alpn": event.alpn_protocol, **negotiated(self._quic)})
        if self._h3 is None:
            return
        for h3_event in self._h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self._answer(h3_event)

    def _answer(self, event: HeadersReceived) -> None:
        assert self._h3 is not None
        fields = header_map(event.headers)
        method, path = fields.get(":method", ""), fields.get(":path", "/")
        body = b""
        content_type = "text/plain"
        if method not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
        else:
            target = resolve_target(self.root, path)
            if target is None:
                status, body = 404, b"not found\n"
            else:
                status, body = 200, target.read_bytes()
                content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        sid = event.stream_id
        headers = [
            (b":status", str(status).encode()),
            (b"server", SERVER_NAME),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", content_type.encode()),
        ]
        if method == "HEAD":
            self._h3.send_headers(sid, headers, end_stream=True)
        else:
            self._h3.send_headers(sid, headers)
            view = memoryview(body)
            for offset in range(0, len(view), CHUNK):
                self._h3.send_data(sid, bytes(view[offset : offset + CHUNK]), end_stream=False)
            self._h3.send_data(sid, b"", end_stream=True)
        self.transmit()
        emit("REQUEST", {"method": method, "path": path, "status": status, "bytes": len(body)})


async def run_server(args: argparse.Namespace) -> int:
    protocol = type("RootedH3ServerProtocol", (H3ServerProtocol,), {"root": Path(args.root)})
    server = await serve(
        args.host,
        args.port,
        configuration=build_configuration(args, is_client=False),
        create_protocol=protocol,
    )
    transport = server._transport  # aioquic has no public accessor for the bound port
    assert transport is not None
    print(f"LISTENING {transport.get_extra_info('sockname')[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if _stdin_is_pipe():
        loop.add_reader(sys.stdin.fileno(), _stop_on_eof, stop)
    await stop.wait()
    server.close()
    return 0


# --------------------------------------------------------------------------- client


class H3ClientProtocol(QuicConnectionProtocol):
    """Client connection running one GET; the body streams into a hash and a file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h3 = H3Connection(self._quic)
        self._stream_id: int | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sink: IO[bytes] | None = None
        self.digest = hashlib.sha256()
        self.received = 0
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.handshake: HandshakeCompleted | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, ConnectionTerminated) and not self._done.done():
            self._done.set_exception(
                ConnectionError(
                    f"connection closed: code {event.error_code} {event.reason_phrase!r}"
                )
            )
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)

    def _on_h3_event(self, event: H3Event) -> None:
        if getattr(event, "stream_id", None) != self._stream_id:
            return
        if isinstance(event, HeadersReceived):
            if self.status is None:
                self.headers = header_map(event.headers)
                self.status = int(self.headers.get(":status", "0"))
            ended = event.stream_ended
        elif isinstance(event, DataReceived):
            self.digest.update(event.data)
            self.received += len(event.data)
            if self._sink is not None:
                self._sink.write(event.data)
            ended = event.stream_ended
        else:
            return
        if ended and not self._done.done():
            self._done.set_result(None)

    async def get(self, url: str, sink: IO[bytes] | None) -> None:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self._sink = sink
        self._stream_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(
            self._stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", parts.netloc.encode()),
                (b":path", target.encode()),
                (b"user-agent", SERVER_NAME),
            ],
            end_stream=True,
        )
        self.transmit()
        await self._done


async def fetch(args: argparse.Namespace, result: dict[str, Any]) -> None:
    parts = urlsplit(args.url)
    config = build_configuration(args, is_client=True)
    config.server_name = parts.hostname
    start = time.perf_counter()
    async with connect(
        parts.hostname or "127.0.0.1",
        parts.port or 443,
        configuration=config,
        create_protocol=H3ClientProtocol,
    ) as client:
        assert isinstance(client, H3ClientProtocol)
        if client.handshake is not None:
            result["alpn"] = client.handshake.alpn_protocol
        result.update(negotiated(client._quic))
        sink = open(args.output, "wb") if args.output else None  # noqa: SIM115
        try:
            await client.get(args.url, sink)
        finally:
            if sink is not None:
                sink.close()
        result.update(
            status=client.status,
            headers={k: v for k, v in client.headers.items() if not k.startswith(":")},
            bytes=client.received,
            sha256=client.digest.hexdigest(),
            elapsed_s=time.perf_counter() - start,
        )
        client.close()


async def run_client(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"ok": False, "url": args.url}
    try:
        async with asyncio.timeout(args.timeout):
            await fetch(args, result)
    except Exception as exc:  # every failure is reported as a JSON line
        result["error"] = f"{type(exc).__name__}: {exc}"
        emit("", result)
        return 3
    result["ok"] = result.get("status") is not None and result["status"] < 400
    emit("", result)
    return 0 if result["ok"] else 1


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server", help="serve --root until SIGTERM or EOF on stdin")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--root", required=True)
    client = roles.add_parser("client", help="GET one URL, print one JSON line")
    client.add_argument("url")
    client.add_argument("-o", "--output", default=None)
    client.add_argument("--insecure", action="store_true", help="skip certificate checks")
    client.add_argument("--cafile", default=None)
    client.add_argument("--timeout", type=float, default=60.0)
    for role in (server, client):
        role.add_argument("--keylog", default=None, help="append NSS key-log lines to FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run_server(args) if args.role == "server" else run_client(args))


if __name__ == "__main__":
    sys.exit(main())
