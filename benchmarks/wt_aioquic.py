"""aioquic 1.7.2 WebTransport adapter of the benchmark harness (test-only dependency).

Theory of operation
-------------------
aioquic has no WebTransport API, only the HTTP/3 pieces (``H3Connection(quic,
enable_webtransport=True)``: SETTINGS_ENABLE_WEBTRANSPORT and H3 datagrams, draft-02
style, extended CONNECT, ``create_webtransport_stream``, ``WebTransportStreamDataReceived``
and ``DatagramReceived`` events). This adapter is the thin glue a user writes on top:

* :class:`WtProtocol` (a ``QuicConnectionProtocol``) feeds every QUIC event to its
  ``H3Connection``. Server: a CONNECT with ``:protocol webtransport`` is answered 200
  (``sec-webtransport-http3-draft: draft02``); each WebTransport stream's data is
  written straight back on the same stream (FIN too), each datagram sent back.
  Client: the CONNECT's 200 resolves the session; stream data is queued per stream for
  :meth:`_Stream.read`; datagrams are queued for ``receive_datagram``. A bidi stream
  the client opens is marked a WebTransport stream in aioquic's H3 stream state (it
  would otherwise parse the echo as HTTP/3 frames) — aioquic offers no API for that.
* Writes: aioquic has no send backpressure, so :meth:`_Stream.write` queues the data
  and then polls (2 ms) while that stream's unsent+unacknowledged bytes exceed 1 MiB —
  what an application must do so a 200 MiB echo does not sit in memory.

Configuration: aioquic's defaults (``QuicConfiguration``: its flow-control windows,
Reno) with ALPN ``h3``, ``max_datagram_frame_size=65536`` (needed for datagrams) and
the client not verifying the throwaway certificate. Key shares: aioquic's default
four, or x25519 only with ``--key-shares x25519`` (:mod:`benchmarks.aioquic_tweaks`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from collections import deque
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DatagramReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from benchmarks.aioquic_tweaks import default_key_shares, offer_x25519_only
from benchmarks.common import announce, install_stats_handlers, wait_for_stop
from benchmarks.wt_common import Stack, main

SEND_HIGH = 1 << 20
POLL = 0.002


class _Inbox:
    """Received chunks of one stream (client side) and a waiter."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.ended = False
        self.failed: str | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class WtProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.established: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.inboxes: dict[int, _Inbox] = {}
        self.datagrams: deque[bytes] = deque()
        self.datagram_waiter: asyncio.Future[None] | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self._fail_all(f"connection closed: {event.reason_phrase}")
        elif isinstance(event, StreamReset) and event.stream_id in self.inboxes:
            self.inboxes[event.stream_id].failed = "stream reset"
            self.inboxes[event.stream_id].wake()
        for h3_event in self.h3.handle_event(event):
            if self._quic.configuration.is_client:
                self._client_event(h3_event)
            else:
                self._server_event(h3_event)

    def _fail_all(self, why: str) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectionError(why))
            self.established.exception()  # a server never awaits it
        for inbox in self.inboxes.values():
            inbox.failed = why
            inbox.wake()
        if self.datagram_waiter is not None and not self.datagram_waiter.done():
            self.datagram_waiter.set_exception(ConnectionError(why))

    # -- server

    def _server_event(self, event: Any) -> None:
        if isinstance(event, HeadersReceived):
            headers = dict(event.headers)
            ok = headers.get(b":method") == b"CONNECT" and headers.get(b":protocol") == (
                b"webtransport"
            )
            status = b"200" if ok else b"400"
            self.h3.send_headers(
                event.stream_id,
                [(b":status", status), (b"sec-webtransport-http3-draft", b"draft02")],
                end_stream=not ok,
            )
        elif isinstance(event, WebTransportStreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, DatagramReceived):
            self.h3.send_datagram(event.stream_id, event.data)
        self.transmit()

    # -- client

    def _client_event(self, event: Any) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id == self.session_id:
            status = dict(event.headers).get(b":status")
            if not self.established.done():
                if status == b"200":
                    self.established.set_result(event.stream_id)
                else:
                    self.established.set_exception(ConnectionError(f"status {status!r}"))
        elif isinstance(event, WebTransportStreamDataReceived):
            inbox = self.inboxes.setdefault(event.stream_id, _Inbox())
            if event.data:
                inbox.chunks.append(event.data)
            inbox.ended |= event.stream_ended
            inbox.wake()
        elif isinstance(event, DatagramReceived):
            self.datagrams.append(event.data)
            if self.datagram_waiter is not None and not self.datagram_waiter.done():
                self.datagram_waiter.set_result(None)

    def send_buffered(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)  # aioquic offers no public query
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender._buffer_start)


class _Stream:
    def __init__(self, protocol: WtProtocol, stream_id: int) -> None:
        self.protocol, self.stream_id = protocol, stream_id
        self.inbox = protocol.inboxes.setdefault(stream_id, _Inbox())

    async def write(self, data: bytes) -> None:
        protocol = self.protocol
        protocol._quic.send_stream_data(self.stream_id, data, False)
        protocol.transmit()
        while protocol.send_buffered(self.stream_id) > SEND_HIGH:
            if self.inbox.failed:
                raise ConnectionError(self.inbox.failed)
            await asyncio.sleep(POLL)

    async def write_eof(self) -> None:
        self.protocol._quic.send_stream_data(self.stream_id, b"", True)
        self.protocol.transmit()

    async def read(self) -> bytes:
        inbox = self.inbox
        while not inbox.chunks:
            if inbox.failed:
                raise ConnectionError(inbox.failed)
            if inbox.ended:
                self.protocol.inboxes.pop(self.stream_id, None)
                return b""
            inbox.waiter = asyncio.get_running_loop().create_future()
            await inbox.waiter
        return inbox.chunks.popleft()


class _Session:
    def __init__(self, protocol: WtProtocol, session_id: int, exit_stack: Any) -> None:
        self.protocol, self.session_id, self.exit_stack = protocol, session_id, exit_stack

    async def open_stream(self) -> _Stream:
        h3 = self.protocol.h3
        stream_id = h3.create_webtransport_stream(self.session_id)
        # aioquic parses what arrives on a bidi stream it opened as HTTP/3 frames; mark
        # it a WebTransport stream so the echo is delivered as stream data (draft-02 §4.2)
        with h3._get_or_create_stream(stream_id) as state:
            state.frame_type = FrameType.WEBTRANSPORT_STREAM
            state.session_id = self.session_id
        return _Stream(self.protocol, stream_id)

    async def send_datagram(self, data: bytes) -> None:
        self.protocol.h3.send_datagram(self.session_id, data)
        self.protocol.transmit()

    async def receive_datagram(self) -> bytes:
        protocol = self.protocol
        while not protocol.datagrams:
            protocol.datagram_waiter = asyncio.get_running_loop().create_future()
            await protocol.datagram_waiter
        return protocol.datagrams.popleft()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.exit_stack.aclose()


def _configuration(is_client: bool) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536
    )
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    return config


async def serve(args: argparse.Namespace) -> None:
    config = _configuration(False)
    config.load_cert_chain(args.cert, args.key)
    server = await aioquic_serve(
        args.host, args.port, configuration=config, create_protocol=WtProtocol
    )
    install_stats_handlers(args.stats_file)
    announce(server._transport.get_extra_info("sockname")[1])
    await wait_for_stop()
    server.close()


_patched: list[bool] = []


async def open_session(args: argparse.Namespace, url: str) -> _Session:
    if args.key_shares == "x25519" and not _patched:
        offer_x25519_only()
        _patched.append(True)
    exit_stack = contextlib.AsyncExitStack()
    client = connect(
        args.host, args.port, configuration=_configuration(True), create_protocol=WtProtocol
    )
    protocol: WtProtocol = await exit_stack.enter_async_context(client)
    stream_id = protocol._quic.get_next_available_stream_id()
    protocol.session_id = stream_id
    authority = f"{args.host}:{args.port}".encode()
    protocol.h3.send_headers(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", b"/echo"),
            (b"sec-webtransport-http3-draft02", b"1"),
        ],
    )
    protocol.transmit()
    try:
        await protocol.established
    except BaseException:
        await exit_stack.aclose()
        raise
    return _Session(protocol, stream_id, exit_stack)


def describe(args: argparse.Namespace) -> str:
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else None
    shares = shares or default_key_shares()
    return f"aioquic WT glue: default QuicConfiguration, key shares {shares}"


STACK = Stack("aioquic", serve, open_session, describe)

if __name__ == "__main__":
    main(STACK)
