"""Stream echoes on one WebTransport session, both sides in this process: the cost of
a stream's life (open, 64 B + FIN, echo read to FIN, retirement) through every layer.

Theory of operation
-------------------
The server is :mod:`benchmarks.wt_ours`'s (started on this loop by
:func:`benchmarks.micro.wt_inproc.serve_here`), the client one
:class:`~pywebtransport.WebTransportClient` session; after a warm-up of ``--warmup``
echoes, ``--streams`` echoes run ``--batch`` at a time, each exactly
:func:`benchmarks.wt_common._one_echo`'s (the ``wt-sessions`` burst's echo). Printed:
the CPU time per echo (both sides together; noisy, for a glance), and per side and
echo the datagrams sent and the pump's transmits. For a load-independent count run it
under callgrind with ``--collect-atstart=no --toggle-collect=functools_reduce`` (only
the measured echoes are counted) for ``N`` and ``4N`` streams: the instructions per
echo should not depend on ``N``; compare runs whose datagrams and transmits per echo
match (under valgrind's slowness, timers may fire that do not otherwise).
``--profile`` prints cProfile's call counts per echo grouped by package (``quic``,
``h3``, ``pywebtransport``, asyncio, the rest).

``python -m benchmarks.micro.bench_wt_stream_echo [--streams 200] [--batch 1] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import pstats
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import wt_common, wt_ours
from benchmarks.micro.bench_wt_burst import _counters, _pumps
from benchmarks.micro.wt_inproc import serve_here, server_args


def _layer(filename: str) -> str:
    for name in ("/quic/", "/h3/", "/pywebtransport/", "/benchmarks/", "asyncio"):
        if name in filename:
            return name.strip("/")
    return "other" if filename != "~" else "builtin"


async def _echoes(session: Any, count: int, batch: int) -> None:
    done = 0
    while done < count:
        n = min(batch, count - done)
        start = time.perf_counter()
        results = await asyncio.gather(
            *(wt_common._one_echo(session, start, 30.0) for _ in range(n))
        )
        if any(r is None for r in results):
            raise RuntimeError("an echo failed")
        done += n


async def _setup(args: argparse.Namespace, directory: Path) -> tuple[Any, ...]:
    sargs = server_args(directory, 10, sessions=1)
    server, stop = await serve_here(sargs)
    session = await wt_ours.open_session(sargs, f"https://127.0.0.1:{sargs.port}/echo")
    await _echoes(session, args.warmup, args.batch)
    return server, stop, session


async def _teardown(server: Any, stop: asyncio.Event, session: Any) -> None:
    await session.close()
    stop.set()
    await server
    wt_ours._clients.clear()


def _run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server, stop, session = loop.run_until_complete(_setup(args, directory))
    profiler = cProfile.Profile() if args.profile else None
    server_pumps, client_pumps = _pumps()
    before = [_counters(server_pumps), _counters(client_pumps)]
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    # the echoes, and only them, inside functools.reduce: what callgrind counts with
    # --collect-atstart=no --toggle-collect=functools_reduce
    functools.reduce(
        lambda _a, _b: loop.run_until_complete(_echoes(session, args.streams, args.batch)),
        (None, None),
    )
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu
    after = [_counters(server_pumps), _counters(client_pumps)]
    per_echo = {
        f"{side}_{key}": round((a[key] - b[key]) / args.streams, 2)
        for side, a, b in zip(("server", "client"), after, before, strict=True)
        for key in ("datagrams_sent", "transmits")
    }
    loop.run_until_complete(_teardown(server, stop, session))
    loop.close()
    result: dict[str, Any] = {
        "streams": args.streams,
        "cpu_us_per_echo": cpu / args.streams * 1e6,
        **per_echo,
    }
    if profiler is not None:
        stats = pstats.Stats(profiler)
        layers: Counter[str] = Counter()
        for (filename, _line, _name), (_cc, calls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
            layers[_layer(filename)] += calls
        result["calls_per_echo"] = {k: round(v / args.streams, 1) for k, v in layers.most_common()}
        result["calls_total_per_echo"] = round(sum(layers.values()) / args.streams, 1)
        if args.dump:
            stats.dump_stats(args.dump)
        stats.sort_stats(args.sort).print_stats(args.lines)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.bench_wt_stream_echo")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1, help="echoes in flight at once")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="ncalls")
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--dump", default="", help="keep the profile in this file (pstats)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result = _run(args, Path(directory))
    print(result)


if __name__ == "__main__":
    main()
