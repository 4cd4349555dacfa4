"""The quic-interop-runner WebTransport protocol on pywebtransport 0.21.1 (PyPI; Rust
core on quinn, draft-16 only): an independent peer for our runner endpoint.

Run with the 0.21.1 interpreter (``/work/venvs/pwt021/bin/python``, Python 3.12), never
imported by the library::

    python pwt021_runner.py server --port 0 --cert C --key K --www DIR [--protocols "a b"]
    python pwt021_runner.py client --ca CA --downloads DIR --transport uni|bidi|datagram
                                   [--protocols "a b"] URL...
    python pwt021_runner.py client --ca CA --downloads DIR --transport answer --www DIR URL

server: prints ``LISTENING <port>``, accepts every session with the client's first
offered protocol it also lists (``WT-Protocol``), and answers ``GET <name>`` requests
from ``<www>/<endpoint>/<name>`` (uni stream → new uni stream ``PUSH <name>\\n`` + bytes;
bidi stream → the bytes on that stream; datagram → one ``PUSH`` datagram) until
SIGTERM. client: one session on the URLs' endpoint (the first path segment), requests
every URL's file over the transport, saves it to ``<downloads>/<endpoint>/<name>``,
prints ``PROTOCOL <negotiated or ->`` and exits 0 when all arrived (1 otherwise);
``--transport answer`` is the runner's ``transfer`` role instead: it answers the
server's requests from ``<www>/<endpoint>/`` and exits 0 once the server closed the
session.
Written from the runner's protocol text for these tests only: file names are checked
(one segment, no ``..``) and files outside ``<www>/<endpoint>`` are not served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pywebtransport import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportServer,
)

MAX_REQUEST = 1100


def safe_name(name: str) -> str | None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        return None
    return name


def lookup(www: Path, endpoint: str, name: str) -> Path | None:
    if safe_name(endpoint) is None or safe_name(name) is None:
        return None
    path = www / endpoint / name
    return path if path.is_file() else None


def parse_get(data: bytes) -> str | None:
    if len(data) > MAX_REQUEST or not data.startswith(b"GET "):
        return None
    try:
        return data[4:].decode().strip()
    except UnicodeDecodeError:
        return None


# -- server -----------------------------------------------------------------------------


async def answer_bidi(stream, www: Path, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    name = parse_get(await stream.read_all())
    path = lookup(www, endpoint, name or "")
    if path is None:
        await stream.reset(error_code=2)
        return
    await stream.write_all(data=path.read_bytes(), end_stream=True)


async def answer_uni(session, stream, www: Path, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    name = parse_get(await stream.read_all())
    path = lookup(www, endpoint, name or "")
    if name is None or path is None:
        return
    out = await session.create_unidirectional_stream()
    await out.write_all(data=b"PUSH " + name.encode() + b"\n" + path.read_bytes(), end_stream=True)


async def answer_datagrams(session, www: Path, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    while True:
        name = parse_get(await session.read_datagram())
        path = lookup(www, endpoint, name or "")
        if name is not None and path is not None:
            await session.send_datagram(data=b"PUSH " + name.encode() + b"\n" + path.read_bytes())


async def guarded(coro) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(Exception):
        await coro


async def serve_session(session, args: argparse.Namespace, tasks: set) -> None:  # type: ignore[no-untyped-def,type-arg]
    offered = session.wt_available_protocols or []
    ours = args.protocols.split()
    protocol = next((p for p in offered if p in ours), None)
    endpoint = urlsplit(session.path).path.lstrip("/").partition("/")[0]
    await session.accept(wt_protocol=protocol)
    await serve_session_requests(session, Path(args.www), endpoint, tasks)


async def serve_session_requests(session, www: Path, endpoint: str, tasks: set) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Answer the peer's GETs on uni/bidi streams and datagrams (background tasks)."""

    def spawn(coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(guarded(coro))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def bidi_loop() -> None:
        async for stream in session.incoming_bidirectional_streams():
            spawn(answer_bidi(stream, www, endpoint))

    async def uni_loop() -> None:
        async for stream in session.incoming_unidirectional_streams():
            spawn(answer_uni(session, stream, www, endpoint))

    spawn(bidi_loop())
    spawn(uni_loop())
    spawn(answer_datagrams(session, www, endpoint))


async def run_server(args: argparse.Namespace) -> int:
    config = ServerConfig(
        certfile=args.cert, keyfile=args.key, bind_host="127.0.0.1", bind_port=args.port
    )
    server = WebTransportServer(config=config)
    await server.listen(host="127.0.0.1", port=args.port)
    print(f"LISTENING {server.local_addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks: set[asyncio.Task[None]] = set()

    async def accept_loop() -> None:
        async for connection in server.incoming_connections():

            async def sessions(conn=connection) -> None:  # type: ignore[no-untyped-def]
                async for session in conn.incoming_sessions():
                    await serve_session(session, args, tasks)

            task = asyncio.ensure_future(guarded(sessions()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    accepting = asyncio.ensure_future(guarded(accept_loop()))
    await stop.wait()
    accepting.cancel()
    for task in list(tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.close(), 5)
    return 0


# -- client -----------------------------------------------------------------------------


async def run_client(args: argparse.Namespace) -> int:
    parts = [urlsplit(url) for url in args.urls]
    endpoint = parts[0].path.lstrip("/").partition("/")[0]
    names = [p.path.lstrip("/").partition("/")[2] for p in parts]
    names = [n for n in names if n]
    downloads = Path(args.downloads) / endpoint
    downloads.mkdir(parents=True, exist_ok=True)
    config = ClientConfig(ca_certs=args.ca, verify_mode=ssl.CERT_REQUIRED)
    async with WebTransportClient(config=config) as client:
        session = await client.connect(
            url=f"https://{parts[0].netloc}/{endpoint}",
            wt_available_protocols=args.protocols.split() or None,
        )
        print(f"PROTOCOL {session.wt_protocol or '-'}", flush=True)
        missing = set(names)
        if args.transport == "answer":  # the runner's "transfer" role: until closed
            tasks: set[asyncio.Task[None]] = set()
            await serve_session_requests(session, Path(args.www), endpoint, tasks)
            deadline = asyncio.get_running_loop().time() + args.timeout
            while not session.is_closed and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            for task in list(tasks):
                task.cancel()
            return 0 if session.is_closed else 1
        if args.transport == "bidi":

            async def fetch(name: str) -> None:
                stream = await session.create_bidirectional_stream()
                await stream.write_all(data=b"GET " + name.encode(), end_stream=True)
                (downloads / name).write_bytes(await stream.read_all())
                missing.discard(name)

            await asyncio.wait_for(asyncio.gather(*(fetch(n) for n in names)), args.timeout)
        elif args.transport == "uni":

            async def receive() -> None:
                async for stream in session.incoming_unidirectional_streams():
                    data = await stream.read_all()
                    head, _, body = data.partition(b"\n")
                    name = head.removeprefix(b"PUSH ").decode()
                    if name in missing and safe_name(name):
                        (downloads / name).write_bytes(body)
                        missing.discard(name)
                    if not missing:
                        return

            receiver = asyncio.ensure_future(receive())
            for name in names:
                stream = await session.create_unidirectional_stream()
                await stream.write_all(data=b"GET " + name.encode(), end_stream=True)
            await asyncio.wait_for(receiver, args.timeout)
        else:
            for name in names:
                await session.send_datagram(data=b"GET " + name.encode())

            async def receive_datagrams() -> None:
                while missing:
                    data = await session.read_datagram()
                    head, _, body = data.partition(b"\n")
                    name = head.removeprefix(b"PUSH ").decode()
                    if name in missing and safe_name(name):
                        (downloads / name).write_bytes(body)
                        missing.discard(name)

            await asyncio.wait_for(receive_datagrams(), args.timeout)
        await session.close()
    return 0 if not missing else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--port", type=int, required=True)  # 0.21.1 refuses port 0
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--www", required=True)
    server.add_argument("--protocols", default="")
    client = roles.add_parser("client")
    client.add_argument("--ca", required=True)
    client.add_argument("--downloads", required=True)
    client.add_argument(
        "--transport", choices=["uni", "bidi", "datagram", "answer"], default="bidi"
    )
    client.add_argument("--www", default=".", help="answer: files of <www>/<endpoint>/")
    client.add_argument("--protocols", default="")
    client.add_argument("--timeout", type=float, default=30.0)
    client.add_argument("urls", nargs="+")
    args = parser.parse_args()
    runner = run_server if args.role == "server" else run_client
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
