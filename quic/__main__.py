"""``python -m quic demo``: a QUIC server and client over UDP on 127.0.0.1, end to end.

Generates a self-signed certificate, starts an echo server on a free port, connects a
client that pins the certificate by hash, echoes a stream and a datagram, and prints
what was negotiated and how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time

from quic.aio import QuicSession, QuicStreamReader, QuicStreamWriter, connect, serve, wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed


async def _echo(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()


async def _echo_datagrams(session: QuicSession) -> None:
    while True:
        data = await session.receive_datagram()
        # the peer's path MTU may exceed ours (docs/datagrams.md): too large, not echoed
        if len(data) <= session.max_datagram_size:
            session.send_datagram(data)


async def demo(size: int) -> int:
    cert = generate_self_signed(wall_clock())
    server_cfg = QuicConfiguration(is_client=False, alpn_protocols=["demo"])
    server_cfg.certificate_chain = [cert.certificate]
    server_cfg.private_key = cert.private_key
    server = await serve("127.0.0.1", 0, server_cfg, _echo_datagrams, stream_handler=_echo)
    print(f"server listening on udp 127.0.0.1:{server.port}")
    print(f"certificate sha-256 {cert.sha256_hex}")
    client_cfg = QuicConfiguration(
        is_client=True, alpn_protocols=["demo"], server_certificate_hashes=(cert.sha256,)
    )
    async with server:
        start = time.perf_counter()
        async with connect("127.0.0.1", server.port, client_cfg) as session:
            handshake = time.perf_counter() - start
            tls = session.connection.tls
            print(
                f"handshake {handshake * 1000:.1f} ms: ALPN {session.alpn_protocol}, "
                f"{tls.cipher_suite.name if tls.cipher_suite else '?'}, "
                f"group {tls.group.name if tls.group else '?'}"
            )
            payload = os.urandom(size)
            reader, writer = await session.create_stream()
            start = time.perf_counter()
            writer.write(payload)
            writer.write_eof()
            echoed = await reader.read()
            elapsed = time.perf_counter() - start
            same = hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            print(
                f"stream echo of {size} bytes: {'ok' if same else 'MISMATCH'} "
                f"in {elapsed * 1000:.1f} ms"
            )
            session.send_datagram(b"hello datagram")
            reply = await asyncio.wait_for(session.receive_datagram(), 5)
            print(f"datagram echo: {reply!r}")
            await session.aclose(0, "demo done")
        print("connection closed cleanly")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="echo over a local QUIC connection")
    d.add_argument("--size", type=int, default=1_000_000, help="bytes to echo on a stream")
    args = parser.parse_args(argv)
    return asyncio.run(demo(args.size))


if __name__ == "__main__":
    sys.exit(main())
