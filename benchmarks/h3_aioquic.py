"""aioquic 1.7.2 HTTP/3 adapter of the benchmark harness (also qh3's: ``h3_qh3``).

Theory of operation
-------------------
aioquic's HTTP/3 is a Sans-I/O ``H3Connection`` driven by a ``QuicConnectionProtocol``
subclass (:class:`H3Protocol`), as in aioquic's own examples (written here from its
API, not copied). Server: on a ``GET /bytes/<n>`` header section it sends ``200`` with
``content-length`` and the ``n`` bytes as 64 KiB DATA frames, all queued at once —
aioquic has no send backpressure, flow and congestion control pace the wire. Client:
sends the request with FIN and counts ``DataReceived`` bytes until ``stream_ended``.

Configuration: the library's default ``QuicConfiguration`` with ALPN ``h3`` and
``max_datagram_frame_size=65536`` (qh3's HTTP/3 insists on it); the
client does not verify the throwaway certificate; key shares are the library's
default or x25519 only with ``--key-shares x25519`` (:mod:`benchmarks.aioquic_tweaks`).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from benchmarks.aioquic_tweaks import default_key_shares, offer_x25519_only
from benchmarks.common import announce, install_stats_handlers, wait_for_stop
from benchmarks.h3_common import CHUNK, FILLER, H3Stack, main, requested_size

# qh3's H3Connection announces H3_DATAGRAM, which needs the DATAGRAM transport parameter
DATAGRAM_FRAME = 65536


class H3Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.received = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated) and not self.done.done():
            self.done.set_exception(ConnectionError(event.reason_phrase))
            self.done.exception()  # a server never awaits it
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and not self._quic.configuration.is_client:
                self._answer(h3_event)
            else:
                if isinstance(h3_event, DataReceived):
                    self.received += len(h3_event.data)
                ended = isinstance(h3_event, DataReceived | HeadersReceived)
                if ended and h3_event.stream_ended and not self.done.done():
                    self.done.set_result(None)

    def _answer(self, event: HeadersReceived) -> None:
        headers = dict(event.headers)
        path = headers.get(b":path", b"").decode("ascii", "replace")
        size = requested_size(path)
        if headers.get(b":method") != b"GET" or size is None:
            self.h3.send_headers(event.stream_id, [(b":status", b"404")], end_stream=True)
        else:
            length = str(size).encode()
            self.h3.send_headers(
                event.stream_id, [(b":status", b"200"), (b"content-length", length)]
            )
            full, rest = divmod(size, CHUNK)
            for index in range(full):
                last = index == full - 1 and not rest
                self.h3.send_data(event.stream_id, FILLER, end_stream=last)
            if rest or not full:
                self.h3.send_data(event.stream_id, FILLER[:rest], end_stream=True)
        self.transmit()


async def serve(args: argparse.Namespace) -> None:
    config = QuicConfiguration(
        is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=DATAGRAM_FRAME
    )
    config.load_cert_chain(args.cert, args.key)
    server = await aioquic_serve(
        args.host, args.port, configuration=config, create_protocol=H3Protocol
    )
    install_stats_handlers(args.stats_file)
    announce(server._transport.get_extra_info("sockname")[1])
    await wait_for_stop()
    server.close()


async def download(args: argparse.Namespace, size: int) -> tuple[int, float]:
    if args.key_shares == "x25519":
        offer_x25519_only()
    config = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=DATAGRAM_FRAME
    )
    config.verify_mode = ssl.CERT_NONE
    async with connect(
        args.host, args.port, configuration=config, create_protocol=H3Protocol
    ) as client:
        assert isinstance(client, H3Protocol)
        stream_id = client._quic.get_next_available_stream_id()
        start = time.perf_counter()
        client.h3.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", f"{args.host}:{args.port}".encode()),
                (b":path", f"/bytes/{size}".encode()),
            ],
            end_stream=True,
        )
        client.transmit()
        await client.done
        return client.received, time.perf_counter() - start


def describe(args: argparse.Namespace) -> str:
    library = sys.modules["aioquic"].__name__
    version = getattr(sys.modules["aioquic"], "__version__", "?")
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else None
    shares = shares or default_key_shares()
    return f"{library} {version}: default QuicConfiguration, key shares {shares}"


STACK = H3Stack("aioquic", serve, download, describe)

if __name__ == "__main__":
    main(STACK)
