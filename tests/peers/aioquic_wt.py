#!/usr/bin/env python3
"""aioquic as an independent WebTransport (draft-02) peer (test-only; separate process).

Theory of operation
-------------------
aioquic 1.7.2's ``H3Connection(quic, enable_webtransport=True)`` speaks WebTransport
over HTTP/3 as of draft-ietf-webtrans-http3-02: SETTINGS ENABLE_WEBTRANSPORT
(0x2b603742) = 1 and H3_DATAGRAM (0x33) = 1, an extended CONNECT with
``:protocol webtransport`` (draft-02 §3.2), streams opened with the WebTransport
signal (bidi 0x41, uni 0x54) and the session id (§4.1, §4.2), HTTP datagrams whose
quarter stream id is the session id (§4.4). This script wraps it in a command-line
peer so our stack can be tested against an independent implementation over real UDP
sockets on 127.0.0.1 (ALPN ``h3``).

Server (``server --port 0 --cert C --key K``):

* prints ``LISTENING <port>`` once bound; serves until SIGTERM, SIGINT or EOF on a
  piped stdin;
* a CONNECT for ``/echo`` gets ``:status 200`` and ``sec-webtransport-http3-draft:
  draft02`` (draft-02 §3.3) and prints ``SESSION {"session_id", "path", "headers"}``;
  any other path or method gets 404;
* in a session every client bidi stream is echoed as its data arrives (FIN after the
  client's FIN), every client uni stream is answered by a server uni stream with the
  same bytes, every datagram is echoed;
* when a session ends it prints ``SESSION-CLOSED {"session_id", "code", "reason",
  "capsule"}`` — ``capsule`` tells whether a CLOSE_WEBTRANSPORT_SESSION capsule
  (0x2843, draft-02 §5) carried the code and reason, otherwise a FIN alone means code
  0 (draft-02 §5).

Client (``client URL [--size N] [--datagrams N] [--close-code C --close-reason R]``):
one session, then in order: a small bidi echo, a bidi echo of ``--size`` random bytes
(1 MB), ``--datagrams`` datagram echoes, a uni stream echo, and a close with a
CLOSE_WEBTRANSPORT_SESSION capsule plus FIN. Prints one JSON line with every check
(``ok`` is true when all passed) and exits 0 if ok, 1 if a check failed, 3 on an
exception or timeout.

Both roles accept ``--keylog FILE`` (NSS key log, appended); 30 s idle timeout;
max_datagram_frame_size 65536. aioquic is imported only by test peers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import ssl
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StreamReset,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aioquic_peer import _stdin_is_pipe, _stop_on_eof, emit  # type: ignore[import-not-found]

IDLE_TIMEOUT = 30.0
MAX_DATAGRAM_FRAME_SIZE = 65536
CLOSE_WEBTRANSPORT_SESSION = 0x2843  # draft-02 §5
CHUNK = 1 << 14
USER_AGENT = b"aioquic-wt-peer"


def build_configuration(args: argparse.Namespace, *, is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=list(H3_ALPN),
        idle_timeout=IDLE_TIMEOUT,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
    )
    if args.keylog:
        config.secrets_log_file = open(args.keylog, "a", buffering=1)  # noqa: SIM115
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(args.cert, args.key)
    return config


def header_map(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


def close_capsule(code: int, reason: str) -> bytes:
    """CLOSE_WEBTRANSPORT_SESSION {error code (32), message} (draft-02 §5)."""
    value = struct.pack("!I", code) + reason.encode("utf-8")
    return encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(value)) + value


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """RFC 9000 §16 variable-length integer at ``pos``: (value, next pos), None if cut."""
    if pos >= len(data):
        return None
    size = 1 << (data[pos] >> 6)
    if pos + size > len(data):
        return None
    value = int.from_bytes(data[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, pos + size


def parse_capsules(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole capsules (type, value) at the start of ``data`` and the unparsed rest."""
    capsules: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        kind = _varint(data, pos)
        length = None if kind is None else _varint(data, kind[1])
        if kind is None or length is None or length[1] + length[0] > len(data):
            break
        end = length[1] + length[0]
        capsules.append((kind[0], data[length[1] : end]))
        pos = end
    return capsules, data[pos:]


# --------------------------------------------------------------------------- server


class _ServerSession:
    def __init__(self, session_id: int, path: str) -> None:
        self.session_id = session_id
        self.path = path
        self.capsule_bytes = b""
        self.close: tuple[int, str] | None = None
        self.uni_replies: dict[int, int] = {}  # client uni stream -> our uni stream
        self.ended = False


class WtServerProtocol(QuicConnectionProtocol):
    """One server connection: WebTransport /echo over aioquic's H3Connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h3: H3Connection | None = None
        self._sessions: dict[int, _ServerSession] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._h3 = H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, StreamReset) and event.stream_id in self._sessions:
            self._end_session(self._sessions[event.stream_id], reply_fin=False)
        elif isinstance(event, ConnectionTerminated):
            for session in list(self._sessions.values()):
                self._end_session(session, reply_fin=False)
        if self._h3 is None:
            return
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)
        self.transmit()

    def _on_h3_event(self, event: H3Event) -> None:
        assert self._h3 is not None
        if isinstance(event, HeadersReceived):
            self._on_request(event)
        elif isinstance(event, DataReceived) and event.stream_id in self._sessions:
            session = self._sessions[event.stream_id]
            capsules, session.capsule_bytes = parse_capsules(session.capsule_bytes + event.data)
            for kind, value in capsules:
                if kind == CLOSE_WEBTRANSPORT_SESSION and len(value) >= 4:
                    code = struct.unpack_from("!I", value)[0]
                    session.close = (code, value[4:].decode("utf-8", "replace"))
            if event.stream_ended:
                self._end_session(session, reply_fin=True)
        elif isinstance(event, WebTransportStreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, DatagramReceived) and event.stream_id in self._sessions:
            self._h3.send_datagram(event.stream_id, event.data)

    def _on_request(self, event: HeadersReceived) -> None:
        assert self._h3 is not None
        fields = header_map(event.headers)
        sid = event.stream_id
        is_wt = fields.get(":method") == "CONNECT" and fields.get(":protocol") == "webtransport"
        path = fields.get(":path", "")
        if not is_wt or path.split("?")[0] != "/echo":
            self._h3.send_headers(sid, [(b":status", b"404")], end_stream=True)
            return
        self._h3.send_headers(
            sid, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        )
        self._sessions[sid] = _ServerSession(sid, path)
        headers = {k: v for k, v in fields.items() if not k.startswith(":")}
        emit("SESSION", {"session_id": sid, "path": path, "headers": headers})

    def _on_stream_data(self, event: WebTransportStreamDataReceived) -> None:
        assert self._h3 is not None
        session = self._sessions.get(event.session_id)
        if session is None or session.ended:
            return
        sid = event.stream_id
        if sid & 2 == 0:  # bidirectional (RFC 9000 §2.1): echo on the same stream
            self._quic.send_stream_data(sid, event.data, end_stream=event.stream_ended)
            return
        reply = session.uni_replies.get(sid)
        if reply is None:
            reply = self._h3.create_webtransport_stream(session.session_id, is_unidirectional=True)
            session.uni_replies[sid] = reply
        self._quic.send_stream_data(reply, event.data, end_stream=event.stream_ended)

    def _end_session(self, session: _ServerSession, *, reply_fin: bool) -> None:
        if session.ended:
            return
        session.ended = True
        code, reason = session.close if session.close is not None else (0, "")
        emit(
            "SESSION-CLOSED",
            {
                "session_id": session.session_id,
                "code": code,
                "reason": reason,
                "capsule": session.close is not None,
            },
        )
        if reply_fin and self._h3 is not None:
            # FIN our side of the CONNECT stream too (draft-02 §5).
            with contextlib.suppress(Exception):  # the stream may be gone already
                self._h3.send_data(session.session_id, b"", end_stream=True)


async def run_server(args: argparse.Namespace) -> int:
    server = await serve(
        args.host,
        args.port,
        configuration=build_configuration(args, is_client=False),
        create_protocol=WtServerProtocol,
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


class WtClientProtocol(QuicConnectionProtocol):
    """Client connection: one WebTransport session and its streams and datagrams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h3 = H3Connection(self._quic, enable_webtransport=True)
        loop = asyncio.get_running_loop()
        self.session_id: int | None = None
        self.response: asyncio.Future[dict[str, str]] = loop.create_future()
        self.streams: dict[int, bytearray] = {}
        self.stream_done: dict[int, asyncio.Future[bytes]] = {}
        self.server_uni: asyncio.Queue[int] = asyncio.Queue()
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.session_ended: asyncio.Future[None] = loop.create_future()
        self.terminated: dict[str, Any] | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = {"error_code": event.error_code, "reason": event.reason_phrase}
            error = ConnectionError(f"connection closed: {self.terminated}")
            futures: list[asyncio.Future[Any]] = [self.response, self.session_ended]
            futures.extend(self.stream_done.values())
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)

    def _done(self, stream_id: int) -> asyncio.Future[bytes]:
        future = self.stream_done.get(stream_id)
        if future is None:
            future = self.stream_done[stream_id] = asyncio.get_running_loop().create_future()
        return future

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id == self.session_id:
            if not self.response.done():
                self.response.set_result(header_map(event.headers))
            if event.stream_ended and not self.session_ended.done():
                self.session_ended.set_result(None)
        elif isinstance(event, DataReceived) and event.stream_id == self.session_id:
            if event.stream_ended and not self.session_ended.done():
                self.session_ended.set_result(None)
        elif isinstance(event, WebTransportStreamDataReceived):
            sid = event.stream_id
            if sid not in self.streams:
                self.streams[sid] = bytearray()
                if sid & 3 == 3:  # server-initiated unidirectional (RFC 9000 §2.1)
                    self.server_uni.put_nowait(sid)
            self.streams[sid] += event.data
            if event.stream_ended and not self._done(sid).done():
                self._done(sid).set_result(bytes(self.streams[sid]))
        elif isinstance(event, DatagramReceived) and event.stream_id == self.session_id:
            self.datagrams.put_nowait(event.data)

    async def open_session(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.session_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(
            self.session_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", parts.netloc.encode()),
                (b":path", target.encode()),
                (b"origin", b"https://aioquic-wt-peer.test"),
                (b"sec-webtransport-http3-draft02", b"1"),  # draft-02 §3.2
                (b"user-agent", USER_AGENT),
            ],
        )
        self.transmit()
        return await self.response

    async def bidi_echo(self, payload: bytes) -> bytes:
        assert self.session_id is not None
        sid = self._h3.create_webtransport_stream(self.session_id)
        # aioquic 1.7.2 does not remember that a bidi stream it opened is a WebTransport
        # stream and would parse the echo as HTTP/3 frames: mark it (internals).
        with self._h3._get_or_create_stream(sid) as stream:
            stream.frame_type = FrameType.WEBTRANSPORT_STREAM
            stream.session_id = self.session_id
        done = self._done(sid)
        view = memoryview(payload)
        for offset in range(0, len(view), CHUNK):
            self._quic.send_stream_data(sid, bytes(view[offset : offset + CHUNK]))
        self._quic.send_stream_data(sid, b"", end_stream=True)
        self.transmit()
        return await done

    async def uni_echo(self, payload: bytes) -> bytes:
        assert self.session_id is not None
        sid = self._h3.create_webtransport_stream(self.session_id, is_unidirectional=True)
        self._quic.send_stream_data(sid, payload, end_stream=True)
        self.transmit()
        reply = await self.server_uni.get()
        return await self._done(reply)

    def send_datagram(self, data: bytes) -> None:
        assert self.session_id is not None
        self._h3.send_datagram(self.session_id, data)
        self.transmit()

    def close_session(self, code: int, reason: str) -> None:
        assert self.session_id is not None
        self._h3.send_data(self.session_id, close_capsule(code, reason), end_stream=True)
        self.transmit()


async def _datagram_echo(client: WtClientProtocol, count: int, wait: float) -> dict[str, Any]:
    sent = [f"dgram-{i:04d}-".encode() + os.urandom(32) for i in range(count)]
    expected = set(sent)
    received = 0
    unexpected = 0
    for data in sent:
        client.send_datagram(data)
        await asyncio.sleep(0.002)
    deadline = time.monotonic() + wait
    while received < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            data = await asyncio.wait_for(client.datagrams.get(), left)
        except TimeoutError:
            break
        if data in expected:
            expected.discard(data)
            received += 1
        else:
            unexpected += 1
    return {"datagrams_sent": count, "datagrams_received": received, "unexpected": unexpected}


async def client_checks(args: argparse.Namespace, result: dict[str, Any]) -> None:
    parts = urlsplit(args.url)
    config = build_configuration(args, is_client=True)
    config.server_name = parts.hostname
    async with connect(
        parts.hostname or "127.0.0.1",
        parts.port or 443,
        configuration=config,
        create_protocol=WtClientProtocol,
    ) as client:
        assert isinstance(client, WtClientProtocol)
        transport = client._transport
        if transport is not None:
            result["local_port"] = transport.get_extra_info("sockname")[1]
        response = await client.open_session(args.url)
        result["status"] = int(response.get(":status", "0"))
        result["response_headers"] = {k: v for k, v in response.items() if k[0] != ":"}
        if result["status"] != 200:
            return
        small = b"hello from aioquic " * 3
        result["bidi_small_ok"] = await client.bidi_echo(small) == small
        big = os.urandom(args.size)
        echoed = await client.bidi_echo(big)
        result["bidi_big_bytes"] = len(echoed)
        result["bidi_big_ok"] = hashlib.sha256(echoed).digest() == hashlib.sha256(big).digest()
        result.update(await _datagram_echo(client, args.datagrams, args.datagram_wait))
        uni = b"uni stream from aioquic " + os.urandom(100)
        result["uni_ok"] = await client.uni_echo(uni) == uni
        client.close_session(args.close_code, args.close_reason)
        try:
            await asyncio.wait_for(asyncio.shield(client.session_ended), 5.0)
            result["server_fin"] = True
        except TimeoutError:
            result["server_fin"] = False
        client.close()


async def run_client(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"ok": False, "url": args.url}
    try:
        async with asyncio.timeout(args.timeout):
            await client_checks(args, result)
    except Exception as exc:  # every failure is reported as a JSON line
        result["error"] = f"{type(exc).__name__}: {exc}"
        emit("", result)
        return 3
    checks = ("bidi_small_ok", "bidi_big_ok", "uni_ok")
    result["ok"] = (
        result.get("status") == 200
        and all(result.get(name) for name in checks)
        and result.get("datagrams_received", 0) >= max(1, args.datagrams // 2)
    )
    emit("", result)
    return 0 if result["ok"] else 1


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server", help="WebTransport /echo until SIGTERM or EOF on stdin")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    client = roles.add_parser("client", help="run the echo checks, print one JSON line")
    client.add_argument("url")
    client.add_argument("--size", type=int, default=1_000_000)
    client.add_argument("--datagrams", type=int, default=20)
    client.add_argument("--datagram-wait", type=float, default=5.0)
    client.add_argument("--close-code", type=int, default=0)
    client.add_argument("--close-reason", default="")
    client.add_argument("--timeout", type=float, default=60.0)
    for role in (server, client):
        role.add_argument("--keylog", default=None, help="append NSS key-log lines to FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run_server(args) if args.role == "server" else run_client(args))


if __name__ == "__main__":
    sys.exit(main())
