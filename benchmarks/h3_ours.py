"""Our HTTP/3 adapter of the benchmark harness (``h3.aio``).

Theory of operation
-------------------
Server: :func:`h3.aio.serve_h3` with a default :class:`QuicConfiguration` (certificate
loaded) and default :class:`H3Configuration`; the handler streams the body as an async
iterator of 64 KiB chunks (``content-length`` given), so the HTTP/3 layer's send
backpressure paces it. Client: :meth:`H3Client.connect` with a default client
configuration (certificate not verified; ``--key-shares x25519``: x25519 only instead
of our default X25519MLKEM768 + x25519), ``get`` and ``read_chunk(1 MiB)`` to the end.
Workload and clock: :mod:`benchmarks.h3_common`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator

from benchmarks.common import announce, install_stats_handlers, wait_for_stop
from benchmarks.h3_common import CHUNK, FILLER, H3Stack, main, requested_size
from h3.aio import H3Client, H3Request, H3Response, serve_h3
from quic.configuration import QuicConfiguration
from quic.tls.groups import NamedGroup


async def _body(size: int) -> AsyncIterator[bytes]:
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield FILLER
    if rest:
        yield FILLER[:rest]


async def _handle(request: H3Request) -> H3Response:
    size = requested_size(request.path)
    if request.method != "GET" or size is None:
        return H3Response(404, body=b"")
    return H3Response(200, [("content-length", str(size))], _body(size))


async def serve(args: argparse.Namespace) -> None:
    config = QuicConfiguration(is_client=False)
    config.load_cert_chain(args.cert, args.key)
    server = await serve_h3(args.host, args.port, config, _handle)
    install_stats_handlers(args.stats_file)
    announce(server.port)
    await wait_for_stop()
    server.close()


async def download(args: argparse.Namespace, size: int) -> tuple[int, float]:
    config = QuicConfiguration(is_client=True, verify_certificates=False)
    if args.key_shares == "x25519":
        config.key_share_groups = (NamedGroup.x25519,)
    async with H3Client.connect(args.host, args.port, configuration=config) as client:
        start = time.perf_counter()
        response = await client.get(f"/bytes/{size}")
        received = 0
        while chunk := await response.read_chunk(1 << 20):
            received += len(chunk)
        return received, time.perf_counter() - start


def describe(args: argparse.Namespace) -> str:
    shares = "x25519 only" if getattr(args, "key_shares", "") == "x25519" else "default"
    return f"ours: default QuicConfiguration/H3Configuration, key shares {shares}"


STACK = H3Stack("ours", serve, download, describe)

if __name__ == "__main__":
    main(STACK)
