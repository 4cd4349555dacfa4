"""WebTransport workloads shared by the WT adapters (``benchmarks/wt_<stack>.py``).

Theory of operation
-------------------
Each WT adapter (ours, pywebtransport 0.21.1, aioquic's HTTP/3 WebTransport) supplies a
:class:`Stack`: ``serve(args)`` runs an echo server (any path; every client-initiated
bidirectional stream is echoed as it arrives, FIN included; every datagram is echoed)
until the harness stops it, and ``open_session(args, url)`` opens one session on its
own QUIC connection and returns a :class:`WtSession`. The client workloads below are
written once against that small interface, so every stack runs exactly the same
procedure and clock:

* ``wt-echo``: one session, one bidi stream; a writer task sends ``--size-mib`` MiB in
  64 KiB writes then FIN while the reader counts the echo until FIN. Clock: first write
  → echo FIN. ``value`` = MB/s (10^6 B/s) of the one-way payload.
* ``wt-dgram``: 64-byte datagrams, one in flight, for ``--seconds``; a ping unanswered
  for 200 ms is counted lost. ``value`` = round trips per second.
* ``wt-sessions``: ``--sessions`` N sessions, each on its own connection, opened 20 at a
  time. The server's RSS (or, with ``--trace``, tracemalloc's traced bytes, tracing
  started just before) is read before and after (1 s to settle): ``kb_per_session`` =
  delta / sessions that opened (``opened``; the first errors of the others in
  ``open_errors``). Then the burst: every open session at once opens a stream and echoes
  64 bytes (the client's garbage collected first, as the server's was for the memory
  reading); latency from the common start to the echo's FIN; ``p50_ms``/``p99_ms`` over
  the N sessions (a session that failed to open, or whose echo failed or timed out,
  counts as the timeout), ``ok`` = successes.
* ``wt-long``: one session, one stream echoing ``--size-mib`` MiB; for each
  ``--slice-mib`` slice of echoed bytes the rate (MB/s) and the server's RSS at its end;
  ``rss_after_close_mb`` 1 s after the session is closed. The writer stops at each
  slice's end until the slice's echo has been read (:func:`echo_in_slices`): the
  server's figures are taken with nothing in flight, outside every slice's clock.

Output: one ``RESULT {json}`` line (see :mod:`benchmarks`), or ``ERROR ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from benchmarks import result_line
from benchmarks.common import (
    KEY_SHARES,
    LOOPS,
    loop_name,
    percentile,
    run,
    server_stats,
    start_server_tracing,
)

WT_WORKLOADS = ("wt-echo", "wt-dgram", "wt-sessions", "wt-long")
MIB = 1 << 20
WRITE_SIZE = 1 << 16
PING_SIZE = 64
PING_TIMEOUT = 0.2
OPEN_CONCURRENCY = 20
FILLER = os.urandom(WRITE_SIZE)


class WtStream(Protocol):
    async def write(self, data: bytes) -> None: ...  # waits while the send buffer is full
    async def write_eof(self) -> None: ...
    async def read(self) -> bytes: ...  # b"" at the end of the stream


class WtSession(Protocol):
    async def open_stream(self) -> WtStream: ...
    async def send_datagram(self, data: bytes) -> None: ...
    async def receive_datagram(self) -> bytes: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Stack:
    name: str
    serve: Callable[[argparse.Namespace], Awaitable[None]]
    open_session: Callable[[argparse.Namespace, str], Awaitable[WtSession]]
    describe: Callable[[argparse.Namespace], str]  # the configuration in one line


# --------------------------------------------------------------------------- workloads


async def _write_all(
    stream: WtStream, size: int, slice_size: int = 0, resume: asyncio.Event | None = None
) -> None:
    """``size`` bytes, then FIN. With ``slice_size`` and ``resume``: after each whole
    slice (but the last) the writer waits for ``resume`` (and clears it) before going on."""
    if not slice_size or resume is None:
        slice_size = size
    written = 0
    boundary = slice_size
    while written < size:
        count = min(WRITE_SIZE, size - written, boundary - written)
        await stream.write(FILLER if count == WRITE_SIZE else FILLER[:count])
        written += count
        if written == boundary and written < size:
            if resume is not None:
                await resume.wait()
                resume.clear()
            boundary += slice_size
    await stream.write_eof()


async def _echo(stream: WtStream, size: int) -> int:
    """Echo ``size`` bytes through ``stream``: the bytes read back."""
    writer = asyncio.ensure_future(_write_all(stream, size))
    received = 0
    try:
        while chunk := await stream.read():
            received += len(chunk)
        await writer
    finally:
        writer.cancel()
    return received


async def echo_in_slices(
    stream: WtStream, size: int, slice_size: int, at_slice: Callable[[], Awaitable[None]]
) -> tuple[int, list[float]]:
    """Echo ``size`` bytes through ``stream`` one ``slice_size`` slice at a time:
    (bytes read back, the rate of each whole slice in MB/s).

    The writer stops at each slice's end until the echo of the whole slice has been
    read; then ``at_slice()`` runs (the server's figures) with nothing in flight, and
    the next slice's clock starts when the writer is let go. (Until 2026-12-07 the
    writer went on during ``at_slice()``: what the peer echoed meanwhile, up to the
    stream's receive window, was then read at memory speed and counted in the next
    slice, whose rate came out inflated: 8,533 MB/s for a 2 MiB slice.)"""
    if slice_size <= 0:
        raise ValueError("slice_size must be positive")
    resume = asyncio.Event()
    writer = asyncio.ensure_future(_write_all(stream, size, slice_size, resume))
    rates: list[float] = []
    received = 0
    boundary = slice_size
    start = time.perf_counter()
    try:
        while chunk := await stream.read():
            received += len(chunk)
            if received >= boundary:  # the writer stopped at it: received == boundary
                rates.append(slice_size / (time.perf_counter() - start) / 1e6)
                await at_slice()
                boundary += slice_size
                start = time.perf_counter()
                resume.set()
        if received == size:  # else the echo ended early: the writer (perhaps waiting
            await writer  # at a slice's end for an echo that will not come) is cancelled
    finally:
        writer.cancel()
    return received, rates


async def wt_echo(stack: Stack, args: argparse.Namespace, url: str) -> dict[str, Any]:
    size = int(args.size_mib * MIB)
    session = await stack.open_session(args, url)
    stream = await session.open_stream()
    start = time.perf_counter()
    received = await _echo(stream, size)
    elapsed = time.perf_counter() - start
    await session.close()
    if received != size:
        raise RuntimeError(f"echoed {received} bytes, expected {size}")
    return {"value": size / elapsed / 1e6, "unit": "MB/s", "bytes": size, "elapsed_s": elapsed}


async def wt_dgram(stack: Stack, args: argparse.Namespace, url: str) -> dict[str, Any]:
    session = await stack.open_session(args, url)
    payload = bytearray(os.urandom(PING_SIZE))
    round_trips = lost = 0
    start = time.perf_counter()
    end = start + args.seconds
    while time.perf_counter() < end:
        tag = round_trips.to_bytes(8, "big") + lost.to_bytes(8, "big")
        payload[:16] = tag
        await session.send_datagram(bytes(payload))
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                while (await session.receive_datagram())[:16] != tag:
                    pass  # a late echo of a ping counted lost
        except TimeoutError:
            lost += 1
            continue
        round_trips += 1
    elapsed = time.perf_counter() - start
    await session.close()
    return {
        "value": round_trips / elapsed,
        "unit": "rt/s",
        "round_trips": round_trips,
        "lost": lost,
        "elapsed_s": elapsed,
    }


async def _open_many(
    stack: Stack, args: argparse.Namespace, url: str
) -> tuple[list[WtSession], list[str]]:
    """The sessions that opened, and the errors of those that did not."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one() -> WtSession:
        async with gate:
            return await stack.open_session(args, url)

    outcomes = await asyncio.gather(*(one() for _ in range(args.sessions)), return_exceptions=True)
    opened = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return opened, errors


async def _one_echo(session: WtSession, start: float, limit: float) -> float | None:
    try:
        async with asyncio.timeout(limit):
            stream = await session.open_stream()
            await stream.write(FILLER[:PING_SIZE])
            await stream.write_eof()
            received = 0
            while chunk := await stream.read():
                received += len(chunk)
    except Exception:  # the workload counts failures; it does not crash on them
        return None
    return time.perf_counter() - start if received == PING_SIZE else None


async def wt_sessions(stack: Stack, args: argparse.Namespace, url: str) -> dict[str, Any]:
    count = args.sessions
    if args.trace:
        start_server_tracing(args.server_pid)
    before = await server_stats(args.server_pid, args.stats_file)
    for _ in range(100):  # the two signals may be handled in either order: wait for tracing
        if not args.trace or before.get("traced_kb") is not None:
            break
        await asyncio.sleep(0.05)
        before = await server_stats(args.server_pid, args.stats_file)
    opening = time.perf_counter()
    sessions, open_errors = await _open_many(stack, args, url)
    open_s = time.perf_counter() - opening
    if not sessions:
        raise RuntimeError(f"no session opened: {open_errors[0]}")
    await asyncio.sleep(1.0)
    after = await server_stats(args.server_pid, args.stats_file)
    key = "traced_kb" if args.trace else "rss_kb"
    per_session = (after[key] - before[key]) / len(sessions)
    result: dict[str, Any] = {
        "value": per_session,
        "unit": "KB",
        "kb_per_session": per_session,
        "measure": "tracemalloc" if args.trace else "rss",
        "sessions": count,
        "opened": len(sessions),
        "open_errors": open_errors[:5],
        "open_s": open_s,
    }
    if not args.trace:
        limit = args.burst_timeout
        # The server's stats handler collected its garbage just now (for the memory
        # figure); the client settles too, so the clock below times the echoes and not
        # a full collection of the client's heap owed from the opening phase (1,000
        # connections: about 250,000 tracked objects in our client, 110-220 ms, which
        # began within 3 ms of the start in every run before this). Every stack's
        # client runs this same code.
        gc.collect()
        start = time.perf_counter()
        samples = await asyncio.gather(*(_one_echo(s, start, limit) for s in sessions))
        ok = [s * 1000.0 for s in samples if s is not None]
        everything = sorted(ok + [limit * 1000.0] * (count - len(ok)))
        result |= {
            "ok": len(ok),
            "p50_ms": percentile(everything, 0.50),
            "p99_ms": percentile(everything, 0.99),
            "max_ok_ms": max(ok) if ok else None,
        }
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return result


async def wt_long(stack: Stack, args: argparse.Namespace, url: str) -> dict[str, Any]:
    size, slice_size = int(args.size_mib * MIB), int(args.slice_mib * MIB)
    rss_mb: list[float] = []
    base = await server_stats(args.server_pid, args.stats_file)
    session = await stack.open_session(args, url)
    stream = await session.open_stream()

    async def at_slice() -> None:  # nothing in flight: outside every slice's clock
        stats = await server_stats(args.server_pid, args.stats_file)
        rss_mb.append((stats["rss_kb"] - base["rss_kb"]) / 1024)

    start = time.perf_counter()
    received, rates = await echo_in_slices(stream, size, slice_size, at_slice)
    elapsed = time.perf_counter() - start
    if received != size:
        raise RuntimeError(f"echoed {received} bytes, expected {size}")
    await session.close()
    await asyncio.sleep(1.0)
    closed = await server_stats(args.server_pid, args.stats_file)
    return {
        "value": statistics.fmean(rates) if rates else size / elapsed / 1e6,
        "unit": "MB/s",
        "slice_mbps": rates,
        "slice_rss_mb": rss_mb,
        "rss_after_close_mb": (closed["rss_kb"] - base["rss_kb"]) / 1024,
        "elapsed_s": elapsed,
    }


WORKLOAD_FUNCTIONS = {
    "wt-echo": wt_echo,
    "wt-dgram": wt_dgram,
    "wt-sessions": wt_sessions,
    "wt-long": wt_long,
}


# --------------------------------------------------------------------------- CLI


def parse_args(prog: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog)
    roles = parser.add_subparsers(dest="role", required=True)
    for name in ("server", "client"):
        role = roles.add_parser(name)
        role.add_argument("--host", default="127.0.0.1")
        role.add_argument("--port", type=int, default=0)
        role.add_argument("--loop", choices=LOOPS, default="asyncio")
        role.add_argument("--packet-size", type=int, default=1200, help="ignored for WT")
        if name == "server":
            role.add_argument("--cert", required=True)
            role.add_argument("--key", required=True)
            role.add_argument("--stats-file", default=None)
            role.add_argument("--max-sessions", type=int, default=2000)
        else:
            role.add_argument("--workload", choices=WT_WORKLOADS, required=True)
            role.add_argument("--key-shares", choices=KEY_SHARES, default="default")
            role.add_argument("--size-mib", type=float, default=50.0)
            role.add_argument("--slice-mib", type=float, default=50.0)
            role.add_argument("--seconds", type=float, default=5.0)
            role.add_argument("--sessions", type=int, default=1000)
            role.add_argument("--burst-timeout", type=float, default=30.0)
            role.add_argument("--trace", action="store_true")
            role.add_argument("--server-pid", type=int, default=0)
            role.add_argument("--stats-file", default=None)
            role.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args(argv)


async def _client(stack: Stack, args: argparse.Namespace) -> int:
    url = f"https://{args.host}:{args.port}/echo"
    try:
        async with asyncio.timeout(args.timeout):
            result = await WORKLOAD_FUNCTIONS[args.workload](stack, args, url)
    except Exception as exc:  # one ERROR line instead of a traceback
        print(f"ERROR {args.workload}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    result["loop"] = loop_name()
    result["config"] = stack.describe(args)
    print(result_line(args.workload, **result), flush=True)
    return 0


def main(stack: Stack, argv: list[str] | None = None) -> int:
    args = parse_args(f"python -m benchmarks.wt_{stack.name}", argv)
    if args.role == "server":

        async def serve() -> int:
            await stack.serve(args)
            return 0

        code = run(serve, args.loop)
    else:
        code = run(lambda: _client(stack, args), args.loop)
    sys.stdout.flush()
    os._exit(code)  # peers' background threads (Rust runtimes) must not delay the exit
