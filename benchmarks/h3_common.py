"""The HTTP/3 GET workload shared by the HTTP/3 adapters (``benchmarks/h3_<stack>.py``).

Theory of operation
-------------------
Each HTTP/3 adapter (ours, aioquic 1.7.2, qh3 2.x) supplies an :class:`H3Stack`:
``serve(args)`` runs an HTTP/3 server (ALPN ``h3``) answering ``GET /bytes/<n>`` with
``200``, ``content-length: n`` and ``n`` bytes of filler written in 64 KiB DATA frames,
until the harness stops it; ``download(args, n)`` connects (outside the clock), sends
that request and reads the body to its end, returning the bytes received and the
seconds from sending the request to the end of the body. ``value`` = MB/s (10^6 B/s).
The CLI matches the other adapters' (``--loop``, ``--key-shares``, ``--stats-file``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from benchmarks import result_line
from benchmarks.common import KEY_SHARES, LOOPS, loop_name, run

H3_WORKLOADS = ("h3-get",)
CHUNK = 1 << 16
FILLER = os.urandom(CHUNK)
PATH = re.compile(r"/bytes/(\d{1,12})")


def requested_size(path: str) -> int | None:
    match = PATH.fullmatch(path)
    return None if match is None else int(match.group(1))


@dataclass(frozen=True)
class H3Stack:
    name: str
    serve: Callable[[argparse.Namespace], Awaitable[None]]
    download: Callable[[argparse.Namespace, int], Awaitable[tuple[int, float]]]
    describe: Callable[[argparse.Namespace], str]


def parse_args(prog: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog)
    roles = parser.add_subparsers(dest="role", required=True)
    for name in ("server", "client"):
        role = roles.add_parser(name)
        role.add_argument("--host", default="127.0.0.1")
        role.add_argument("--port", type=int, default=0)
        role.add_argument("--loop", choices=LOOPS, default="asyncio")
        role.add_argument("--packet-size", type=int, default=1200, help="ignored here")
        if name == "server":
            role.add_argument("--cert", required=True)
            role.add_argument("--key", required=True)
            role.add_argument("--stats-file", default=None)
        else:
            role.add_argument("--workload", choices=H3_WORKLOADS, required=True)
            role.add_argument("--key-shares", choices=KEY_SHARES, default="default")
            role.add_argument("--size-mb", type=float, default=50.0)
            role.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args(argv)


async def _client(stack: H3Stack, args: argparse.Namespace) -> int:
    size = int(args.size_mb * 1_000_000)
    try:
        async with asyncio.timeout(args.timeout):
            received, elapsed = await stack.download(args, size)
        if received != size:
            raise RuntimeError(f"received {received} bytes, expected {size}")
    except Exception as exc:  # one ERROR line instead of a traceback
        print(f"ERROR {args.workload}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    line = result_line(
        args.workload,
        size / elapsed / 1e6,
        "MB/s",
        bytes=size,
        elapsed_s=elapsed,
        loop=loop_name(),
        config=stack.describe(args),
    )
    print(line, flush=True)
    return 0


def main(stack: H3Stack, argv: list[str] | None = None) -> int:
    args = parse_args(f"python -m benchmarks.h3_{stack.name}", argv)
    if args.role == "server":

        async def serve() -> int:
            await stack.serve(args)
            return 0

        code = run(serve, args.loop)
    else:
        code = run(lambda: _client(stack, args), args.loop)
    sys.stdout.flush()
    os._exit(code)
