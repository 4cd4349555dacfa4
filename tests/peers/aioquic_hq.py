#!/usr/bin/env python3
"""aioquic as an independent hq-interop (HTTP/0.9 over QUIC) peer; test-only, run as a process.

Theory of operation
-------------------
The QUIC interop runner's application protocol, ALPN ``hq-interop``: the client sends
``GET /path\\r\\n`` and FIN on a new bidirectional stream, the server answers with the
file's bytes and FIN, or resets the stream (code 2 here) when it has no such file.

Server (``server --port 0 --cert C --key K --www DIR``): prints ``LISTENING <port>``
once bound and serves until SIGTERM/SIGINT or EOF on a piped stdin. It prints one line
per event, each a JSON object after a keyword:

* ``CONNECTED {"alpn", "cipher_suite", "version", "odcid"}`` when a handshake completes;
* ``REQUEST {"path", "status" ("ok" | "not-found" | "bad-request"), "bytes", "odcid"}``
  when a request was answered (``odcid``: the connection's original destination
  connection ID in hex, to tell connections apart).

Client (``client --downloads DIR [--multiconnect] URL ...``): fetches all URLs of one
server concurrently over one connection (with ``--multiconnect``: one connection per URL,
one after the other), writes each body to ``DIR/<basename>`` and prints one JSON line
``{"ok", "connections", "cipher_suites", "results": [{"url", "ok", "bytes", "sha256",
"error"}]}``. Exit status 0 when every download succeeded, 1 otherwise, 3 on an
exception or timeout. The client never verifies the server certificate.

Runner test cases (the client's summary tells what happened):

* ``client --resumption``: the first URL on a first connection, which keeps the session
  ticket the server sends; the other URLs on a second connection resuming with it
  (RFC 9001 §4.5); ``--zerortt``: the same, the second connection's requests sent at
  once, in 0-RTT (RFC 9001 §4.6). The summary adds ``resumed`` and ``early_data`` (one
  entry per connection, from aioquic's HandshakeCompleted). ``server --tickets`` keeps
  the tickets it issues, so that it accepts resumption and 0-RTT.
* ``client --key-update``: one 1-RTT key update (aioquic's ``request_key_update``) as
  soon as the first response bytes arrive (RFC 9001 §6).
* ``client --migrate``: once the first response bytes arrive, the client moves to a new
  UDP socket (a new local port) and a new connection ID (RFC 9000 §9.2, §9.5): aioquic
  has no public call for the socket part, so a second datagram endpoint is opened on
  the same protocol object, which then sends through it (the old socket stays open and
  still delivers). The summary adds ``migrated``.

Both roles accept ``--cipher-suites 0x1303,...`` (restrict the TLS 1.3 suites),
``--keylog FILE`` and ``--quic-versions 0x6b3343cf,0x1`` (aioquic's supported_versions, in
preference order) with ``--original-version 0x1`` (the client's first version: compatible
version negotiation, RFC 9368); the client's summary then names each connection's
``versions``. aioquic is imported only by test peers, never by the library.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import CipherSuite, SessionTicket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aioquic_peer import _stdin_is_pipe, _stop_on_eof, emit, negotiated

ALPN = "hq-interop"
NOT_FOUND = 0x2
BAD_REQUEST = 0x1
REQUEST_LIMIT = 4096
CHUNK = 1 << 16
REQUEST_LINE = re.compile(rb"GET (/[^\s]*)\r?\n?")


def build_configuration(
    args: argparse.Namespace, *, is_client: bool, ticket: SessionTicket | None = None
) -> QuicConfiguration:
    config = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], idle_timeout=30.0)
    config.session_ticket = ticket
    if args.cipher_suites:
        config.cipher_suites = [CipherSuite(int(c, 0)) for c in args.cipher_suites.split(",")]
    if args.quic_versions:
        config.supported_versions = [int(v, 0) for v in args.quic_versions.split(",")]
    if args.original_version:
        config.original_version = int(args.original_version, 0)
    if args.keylog:
        config.secrets_log_file = open(args.keylog, "a", buffering=1)  # noqa: SIM115
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(args.cert, args.key)
    return config


def odcid(protocol: QuicConnectionProtocol) -> str:
    cid = getattr(protocol._quic, "original_destination_connection_id", None)
    return cid.hex() if isinstance(cid, bytes) else ""


# --------------------------------------------------------------------------- server


class HqServerProtocol(QuicConnectionProtocol):
    www = Path(".")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requests: dict[int, bytearray] = {}
        self._answered: set[int] = set()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            emit(
                "CONNECTED",
                {"alpn": event.alpn_protocol, "odcid": odcid(self), **negotiated(self._quic)},
            )
        elif isinstance(event, StreamDataReceived):
            sid = event.stream_id
            if sid & 0x3 or sid in self._answered:  # only client-initiated bidi streams
                return
            buffer = self._requests.setdefault(sid, bytearray())
            buffer.extend(event.data)
            if b"\n" in buffer or event.end_stream or len(buffer) > REQUEST_LIMIT:
                self._answered.add(sid)
                self._answer(sid, bytes(self._requests.pop(sid)))

    def _answer(self, sid: int, request: bytes) -> None:
        match = REQUEST_LINE.fullmatch(request)
        if match is None:
            self._quic.reset_stream(sid, BAD_REQUEST)
            self._report(repr(request[:64]), "bad-request", 0)
            return
        path = unquote(match.group(1).decode("ascii"))
        root = self.www.resolve()
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            self._quic.reset_stream(sid, NOT_FOUND)
            self._report(path, "not-found", 0)
            return
        data = target.read_bytes()
        view = memoryview(data)
        for offset in range(0, len(data), CHUNK):
            self._quic.send_stream_data(sid, bytes(view[offset : offset + CHUNK]), False)
        self._quic.send_stream_data(sid, b"", True)
        self._report(path, "ok", len(data))

    def _report(self, path: str, status: str, size: int) -> None:
        emit("REQUEST", {"path": path, "status": status, "bytes": size, "odcid": odcid(self)})


async def run_server(args: argparse.Namespace) -> int:
    protocol = type("WwwServerProtocol", (HqServerProtocol,), {"www": Path(args.www)})
    tickets: dict[bytes, SessionTicket] = {}
    store: dict[str, Any] = {}
    if args.tickets:  # aioquic issues tickets only with a handler, resumes only with a fetcher
        store = {
            "session_ticket_fetcher": tickets.get,
            "session_ticket_handler": lambda t: tickets.__setitem__(t.ticket, t),
        }
    server = await serve(
        args.host,
        args.port,
        configuration=build_configuration(args, is_client=False),
        create_protocol=protocol,
        **store,
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


class HqClientProtocol(QuicConnectionProtocol):
    key_update = False  # request one key update when the first response bytes arrive
    migrate = False  # move to a new socket and connection ID then

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}
        self.handshake: HandshakeCompleted | None = None
        self.migrated: asyncio.Task[None] | None = None
        self._first_data = True

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, StreamDataReceived):
            if self._first_data and event.data:
                self._first_data = False
                if self.key_update:
                    self._quic.request_key_update()
                if self.migrate:
                    self.migrated = asyncio.ensure_future(self._migrate())
            entry = self._streams.get(event.stream_id)
            if entry is not None:
                entry[0].extend(event.data)
                if event.end_stream and not entry[1].done():
                    entry[1].set_result(bytes(entry[0]))
        elif isinstance(event, StreamReset):
            entry = self._streams.get(event.stream_id)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(ConnectionError(f"stream reset, code {event.error_code}"))
        elif isinstance(event, ConnectionTerminated):
            for _, waiter in self._streams.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"connection closed: {event}"))

    async def _migrate(self) -> None:
        # the socket as aioquic's connect() makes it (dual stack), on a new port
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0, 0, 0))
        # connection_made() points this protocol at the new transport
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, sock=sock)
        self.change_connection_id()  # RFC 9000 §9.5: a new CID on the new path
        self.transmit()

    async def get(self, target: str) -> bytes:
        sid = self._quic.get_next_available_stream_id()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._streams[sid] = (bytearray(), waiter)
        self._quic.send_stream_data(sid, b"GET " + target.encode("ascii") + b"\r\n", True)
        self.transmit()
        return await waiter


async def download(
    client: HqClientProtocol, url: str, target: str, directory: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {"url": url, "ok": False, "bytes": 0, "sha256": None, "error": None}
    try:
        data = await client.get(target)
    except ConnectionError as exc:
        result["error"] = str(exc)
        return result
    (directory / Path(unquote(urlsplit(url).path)).name).write_bytes(data)
    result.update(ok=True, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return result


async def run_connection(
    args: argparse.Namespace,
    urls: list[str],
    summary: dict[str, Any],
    tickets: list[SessionTicket],
    *,
    resume: bool = False,
) -> list[dict[str, Any]]:
    first = urlsplit(urls[0])
    ticket = tickets[-1] if resume and tickets else None
    early = resume and args.zerortt and ticket is not None
    protocol = type(
        "Client", (HqClientProtocol,), {"key_update": args.key_update, "migrate": args.migrate}
    )
    async with connect(
        first.hostname or "127.0.0.1",
        first.port or 443,
        configuration=build_configuration(args, is_client=True, ticket=ticket),
        create_protocol=protocol,
        session_ticket_handler=tickets.append,
        wait_connected=not early,  # 0-RTT: the requests leave before the handshake ends
    ) as client:
        assert isinstance(client, HqClientProtocol)
        summary["connections"] += 1
        directory = Path(args.downloads)
        results = await asyncio.gather(
            *(download(client, url, urlsplit(url).path or "/", directory) for url in urls)
        )
        summary["cipher_suites"].append(negotiated(client._quic)["cipher_suite"])
        summary["versions"].append(negotiated(client._quic)["version"])
        if args.resumption or args.zerortt:
            for _ in range(100):  # the ticket follows the handshake
                if client.handshake is not None and (resume or tickets):
                    break
                await asyncio.sleep(0.02)
            hs = client.handshake
            summary["resumed"].append(bool(hs and hs.session_resumed))
            summary["early_data"].append(bool(hs and hs.early_data_accepted))
        if client.migrated is not None:
            await client.migrated
            summary["migrated"] = True
        return results


async def run_client(args: argparse.Namespace) -> int:
    summary: dict[str, Any] = {
        "ok": False,
        "connections": 0,
        "cipher_suites": [],
        "versions": [],
        "results": [],
        "resumed": [],
        "early_data": [],
        "migrated": False,
    }
    groups = [[url] for url in args.urls] if args.multiconnect else [args.urls]
    if args.resumption or args.zerortt:  # the runner: the first URL, then the others
        groups = [args.urls[:1], args.urls[1:]] if len(args.urls) > 1 else [args.urls]
    tickets: list[SessionTicket] = []
    status = 0
    try:
        async with asyncio.timeout(args.timeout):
            for i, group in enumerate(groups):
                got = await run_connection(args, group, summary, tickets, resume=i > 0)
                summary["results"].extend(got)
        summary["ok"] = all(r["ok"] for r in summary["results"])
    except Exception as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        status = 3
    emit("", summary)
    return status or (0 if summary["ok"] else 1)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--www", required=True)
    server.add_argument("--tickets", action="store_true", help="resumption and 0-RTT")
    client = roles.add_parser("client")
    client.add_argument("--downloads", required=True)
    client.add_argument("--multiconnect", action="store_true")
    client.add_argument("--timeout", type=float, default=30.0)
    client.add_argument("--resumption", action="store_true", help="the runner's resumption")
    client.add_argument("--zerortt", action="store_true", help="the runner's zerortt")
    client.add_argument("--key-update", action="store_true", help="one early key update")
    client.add_argument("--migrate", action="store_true", help="new port and CID, early")
    client.add_argument("urls", nargs="+")
    for role in (server, client):
        role.add_argument("--cipher-suites", default=None, help="e.g. 0x1303,0x1301")
        role.add_argument("--keylog", default=None)
        role.add_argument("--quic-versions", default=None, help="e.g. 0x6b3343cf,0x1")
        role.add_argument("--original-version", default=None, help="client: e.g. 0x1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run_server(args) if args.role == "server" else run_client(args))


if __name__ == "__main__":
    sys.exit(main())
