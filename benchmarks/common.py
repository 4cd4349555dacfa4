"""Stdlib-only helpers shared by every benchmark adapter, in every interpreter.

Theory of operation
-------------------
Adapters run in the main environment (ours, aioquic) and in the peers' own virtual
environments (pywebtransport 0.21.1 on Python 3.12, qh3), so this module imports nothing
but the standard library.

* Event loop: every adapter takes ``--loop asyncio|uvloop``; :func:`run` runs the
  coroutine on that loop (``uvloop`` falls back to asyncio with a note on stderr if it
  is not installed; the client's RESULT says which loop really ran).
* Stopping a server: :func:`wait_for_stop` returns on SIGTERM, SIGINT or EOF on stdin
  (the harness holds the server's stdin pipe and closes it to stop it).
* Server memory: a server started with ``--stats-file F`` answers SIGUSR1 by writing
  ``{"rss_kb": .., "traced_kb": ..}`` (after a ``gc.collect()``) to ``F`` atomically;
  SIGUSR2 starts :mod:`tracemalloc` (``traced_kb`` then counts what was allocated since
  and is still alive). A client given ``--server-pid`` and ``--stats-file`` asks with
  :func:`server_stats` / :func:`start_server_tracing`. Both processes are on the same
  machine, so a signal and a file are the whole protocol, identical for every stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import signal
import stat
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")
KEY_SHARES = ("default", "x25519")
# the ``resume`` workload: how long a connection waits for its session ticket, and what
# an adapter's config description adds
TICKET_WAIT = 5.0
RESUME_TEXT = "; each handshake resumes with the session ticket of the one before"


def verify_text(args: object) -> str:
    """What a raw QUIC client's description adds about certificate verification."""
    cafile = getattr(args, "cafile", None)
    return f"; certificate chain verified against {cafile}" if cafile else ""


def rss_kb() -> int:
    """Resident set size of this process in KiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Callable[[], Coroutine[Any, Any, T]], loop: str) -> T:
    """Run ``main()`` on the requested event loop."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed: running on asyncio", file=sys.stderr)
        else:
            return uvloop.run(main())
    return asyncio.run(main())


def handshake_result(samples: Sequence[float]) -> dict[str, Any]:
    """The RESULT fields of the ``handshake`` and ``resume`` workloads (ms samples)."""
    ordered = sorted(samples)
    return {
        "value": statistics.median(ordered),
        "unit": "ms",
        "count": len(ordered),
        "min_ms": ordered[0],
        "p90_ms": percentile(ordered, 0.9),
        "mean_ms": statistics.fmean(ordered),
    }


# --------------------------------------------------------------------------- server side


def _write_stats(path: Path) -> None:
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else None
    payload = {"rss_kb": rss_kb(), "traced_kb": traced, "time": time.time()}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def install_stats_handlers(stats_file: str | None) -> None:
    """SIGUSR1 → write the stats file; SIGUSR2 → start tracemalloc (see module doc)."""
    if not stats_file:
        return
    loop = asyncio.get_running_loop()
    path = Path(stats_file)
    loop.add_signal_handler(signal.SIGUSR1, _write_stats, path)
    loop.add_signal_handler(signal.SIGUSR2, tracemalloc.start)


async def wait_for_stop() -> None:
    """Return on SIGTERM, SIGINT, or EOF on stdin when stdin is the harness's pipe."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            loop.add_reader(fd, lambda: None if os.read(fd, 4096) else stop.set())
    await stop.wait()


def announce(port: int) -> None:
    print(f"LISTENING {port}", flush=True)


# --------------------------------------------------------------------------- client side


async def server_stats(pid: int, stats_file: str, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the server process ``pid`` for its memory figures (SIGUSR1 + file)."""
    path = Path(stats_file)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            result: dict[str, Any] = json.loads(path.read_text())
            return result
        await asyncio.sleep(0.01)
    raise RuntimeError("the server did not write its stats file")


def start_server_tracing(pid: int) -> None:
    os.kill(pid, signal.SIGUSR2)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence: the value of
    rank ceil(fraction * n), 1-based (the p90 of 10 samples is the 9th). The product is
    rounded first: 0.29 * 100 is 28.999999999999996 in floats, and ranks 29."""
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[max(0, min(len(ordered), rank) - 1)]
