"""What one idle WebTransport session costs our server: a census, not a timing.

Theory of operation
-------------------
``python -m benchmarks.micro.bench_wt_sessions_census [--sessions N] [--top K]`` starts
:mod:`benchmarks.wt_ours`'s server on this process's loop and a client process (the
harness's own opener, :func:`benchmarks.wt_common._open_many`) that opens sessions and
holds them idle. One warm-up session first puts lazily made module state out of the
count. Then two rounds of N sessions each:

1. untraced: the growth of the server's RSS and of the objects the garbage collector
   tracks, per session, by type;
2. with :mod:`tracemalloc` started just before it: the traced bytes per session and the
   source lines that allocated them (``--top`` lines).

Each figure is a difference of two snapshots of this process taken after a settle
(``SETTLE_S``) and a ``gc.collect()``, divided by the number of sessions that opened.
The harness's ``wt-sessions`` row measures the RSS of a separate server process; this
census says where the bytes are. Counts do not depend on the machine's load; RSS and
traced bytes a little (timer heaps, freelists).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import sys
import tempfile
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import rss_kb
from benchmarks.micro.wt_inproc import serve_here, server_args

SETTLE_S = 1.5
CLIENT = """
import argparse, asyncio, sys
from benchmarks import wt_common, wt_ours
async def main():
    args = argparse.Namespace(key_shares="default", sessions=int(sys.argv[2]))
    opened, errors = await wt_common._open_many(wt_ours.STACK, args, sys.argv[1])
    print("OPEN", len(opened), errors[:1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
asyncio.run(main())
"""


@dataclass
class Census:
    sessions: int = 0
    rss_kb: float = 0.0
    traced_kb: float = 0.0
    objects: float = 0.0
    by_type: list[tuple[str, float]] = field(default_factory=list)
    by_line: list[tuple[str, float]] = field(default_factory=list)


def _types() -> collections.Counter[str]:
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )


async def _open(url: str, count: int) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        url,
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    if not line.startswith("OPEN"):
        raise RuntimeError(f"the client did not open its sessions: {line!r}")
    opened = int(line.split()[1])
    if not opened:
        raise RuntimeError(f"no session opened: {line.strip()}")
    return process, opened


async def _settle() -> None:
    await asyncio.sleep(SETTLE_S)
    gc.collect()


async def census(sessions: int, top: int = 25) -> Census:
    """Open ``sessions`` idle sessions twice (untraced, traced) against an in-process server."""
    result = Census()
    clients: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as folder:
        args = server_args(Path(folder), 2 * sessions + 10, sessions=sessions)
        server, stop = await serve_here(args)
        url = f"https://127.0.0.1:{args.port}/echo"
        try:
            clients.append((await _open(url, 1))[0])
            await _settle()
            rss, kinds = rss_kb(), _types()
            process, opened = await _open(url, sessions)
            clients.append(process)
            await _settle()
            grown = _types() - kinds
            result.sessions = opened
            result.rss_kb = (rss_kb() - rss) / opened
            result.objects = sum(grown.values()) / opened
            result.by_type = [(k, v / opened) for k, v in grown.most_common(top)]
            del kinds, grown
            tracemalloc.start()
            try:
                await _settle()
                start = tracemalloc.take_snapshot()
                process, opened = await _open(url, sessions)
                clients.append(process)
                await _settle()
                end = tracemalloc.take_snapshot()
                result.traced_kb = (
                    sum(s.size_diff for s in end.compare_to(start, "filename")) / 1024 / opened
                )
                result.by_line = [
                    (str(stat.traceback), stat.size_diff / 1024 / opened)
                    for stat in end.compare_to(start, "lineno")[:top]
                ]
            finally:
                tracemalloc.stop()
        finally:
            for process in clients:
                assert process.stdin is not None
                process.stdin.close()
                await process.wait()
            stop.set()
            await server
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="types and source lines listed")
    args = parser.parse_args()
    found = asyncio.run(census(args.sessions, args.top))
    print(f"sessions per round: {found.sessions}")
    print(f"server RSS per idle session: {found.rss_kb:.2f} KB")
    print(f"server tracemalloc per idle session: {found.traced_kb:.2f} KB")
    print(f"server tracked objects per idle session: {found.objects:.1f}")
    for name, count in found.by_type:
        print(f"  {count:7.2f}  {name}")
    print("traced KB per idle session, by source line:")
    for where, kb in found.by_line:
        print(f"  {kb:7.3f}  {where}")


if __name__ == "__main__":
    main()
