"""Workers on one port: ``serve --workers 1`` against ``--workers 2`` (not a timed test).

``python -m benchmarks.workers [--processes 4] [--connections 40] [--concurrency 8]
[--sessions 2] [--echo-mib 4]`` starts the interop server with one worker, then with
two, on 127.0.0.1 (port 0, its self-signed certificate pinned by hash), and measures
against each, from ``--processes`` client processes at once:

* **connections/s**: each process opens ``--connections`` connections
  (``--concurrency`` at a time), each a QUIC handshake plus a WebTransport session
  on ``/echo`` and its close;
* **echo MB/s**: each process holds ``--sessions`` sessions, each echoing
  ``--echo-mib`` MiB over one bidirectional stream, all at once (bytes echoed back,
  per second of wall clock, 10^6 B/s).

It prints both for each worker count and the ratio ``2 workers / 1 worker``, and the
server's own CPU time per connection and per echoed MB (the workers' user + system time
from ``/proc/<pid>/stat``, Linux): the clients run on the same machine as the server,
and on a 2-core machine they compete with the workers for the cores, so the wall-clock
ratio says how much a second worker helps *there*; the CPU cost per unit of work says
what the workers cost — equal per-unit costs mean a machine with a core to spare per
worker scales by the worker count. The client processes' CPU per unit is printed too:
where it is larger than the server's, the load generator, not the server, holds the
cores. ``--repeat N`` alternates 1 and 2 workers N times and prints medians.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig

REPO = Path(__file__).resolve().parents[1]


class Server:
    """``python -m pywebtransport serve --workers N`` in a child process."""

    def __init__(self, workers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pywebtransport", "serve", "--port", "0",
             "--workers", str(workers), "--stats-interval", "0", "--max-sessions", "1000"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line.strip())
                if line.startswith("LISTENING "):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or not any(x.startswith("LISTENING ") for x in self.lines):
            self.stop()
            raise RuntimeError(f"the server did not start: {self.lines}")
        self.port = int(self._field("LISTENING"))
        self.cert_hash = self._field("CERT-SHA256")

    def _field(self, keyword: str) -> str:
        return next(x.split()[1] for x in self.lines if x.startswith(keyword + " "))

    def pids(self) -> list[int]:
        """The processes that serve: the workers (``WORKER i PID p`` lines, the latest of
        each index), or the server itself with one worker."""
        workers: dict[str, int] = {}
        for line in self.lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "WORKER" and parts[2] == "PID":
                workers[parts[1]] = int(parts[3])
        return list(workers.values()) or [self.process.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of :meth:`pids` so far (0 where /proc is missing)."""
        total = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _config(cert_hash: str) -> ClientConfig:
    return ClientConfig(server_certificate_hashes=[bytes.fromhex(cert_hash)])


async def _connections(port: int, cert_hash: str, count: int, concurrency: int) -> int:
    url = f"https://127.0.0.1:{port}/echo"
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one() -> None:
        nonlocal done
        async with gate, WebTransportClient(config=_config(cert_hash)) as client:
            session = await client.connect(url)
            await session.close()
            done += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return done


async def _echo(port: int, cert_hash: str, sessions: int, size: int) -> int:
    url = f"https://127.0.0.1:{port}/echo"
    payload = os.urandom(size)

    async def one() -> int:
        async with WebTransportClient(config=_config(cert_hash)) as client:
            session = await client.connect(url)
            async with session:
                stream = await session.create_bidirectional_stream()

                async def send() -> None:
                    view = memoryview(payload)
                    for at in range(0, size, 1 << 16):
                        await stream.write(view[at : at + (1 << 16)])
                    await stream.write(b"", end_stream=True)

                sender = asyncio.ensure_future(send())
                received = await stream.read_all()
                await sender
                return len(received)

    return sum(await asyncio.gather(*(one() for _ in range(sessions))))


def _client(task: str, port: int, cert_hash: str, a: int, b: int) -> tuple[int, float]:
    """One client process's share of a workload (runs in a spawned process): the count
    (connections or bytes echoed) and the CPU seconds this process spent on it."""
    cpu = time.process_time()
    if task == "connections":
        count = asyncio.run(_connections(port, cert_hash, a, b))
    else:
        count = asyncio.run(_echo(port, cert_hash, a, b))
    return count, time.process_time() - cpu


def _run(
    pool: concurrent.futures.Executor, processes: int, *args: object
) -> tuple[int, float, float]:
    """(total count, wall seconds, the clients' CPU seconds)."""
    start = time.perf_counter()
    futures = [pool.submit(_client, *args) for _ in range(processes)]  # type: ignore[arg-type]
    results = [f.result() for f in futures]
    wall = time.perf_counter() - start
    return sum(r[0] for r in results), wall, sum(r[1] for r in results)


Result = tuple[float, float, float, float, float, float]


def measure(workers: int, args: argparse.Namespace) -> Result:
    """(connections/s, echo MB/s, server CPU ms per connection, server CPU s per echoed
    MB, the same two for the clients) against ``serve --workers <workers>``."""
    server = Server(workers)
    try:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=context) as pool:
            _run(pool, args.processes, "connections", server.port, server.cert_hash, 2, 1)  # warm
            cpu = server.cpu_seconds()
            count, seconds, client_connect_cpu = _run(
                pool, args.processes, "connections", server.port, server.cert_hash,
                args.connections, args.concurrency,
            )  # fmt: skip
            connect_cpu = server.cpu_seconds() - cpu
            size = int(args.echo_mib * 1024 * 1024)
            cpu = server.cpu_seconds()
            echoed, echo_seconds, client_echo_cpu = _run(
                pool, args.processes, "echo", server.port, server.cert_hash, args.sessions, size
            )
            echo_cpu = server.cpu_seconds() - cpu
    finally:
        server.stop()
    return (
        count / seconds,
        echoed / echo_seconds / 1e6,
        connect_cpu / max(count, 1) * 1e3,
        echo_cpu / max(echoed / 1e6, 1e-9),
        client_connect_cpu / max(count, 1) * 1e3,
        client_echo_cpu / max(echoed / 1e6, 1e-9),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    parser.add_argument("--processes", type=int, default=4, help="client processes (4)")
    parser.add_argument("--connections", type=int, default=40, help="per process (40)")
    parser.add_argument("--concurrency", type=int, default=8, help="per process (8)")
    parser.add_argument("--sessions", type=int, default=2, help="echo sessions per process (2)")
    parser.add_argument("--echo-mib", type=float, default=4.0, help="MiB per session (4)")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per count (1)")
    args = parser.parse_args(argv)
    runs: dict[int, list[Result]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for workers in (1, 2):
            runs[workers].append(result := measure(workers, args))
            print(f"  workers={workers}: {_line(result)}", flush=True)
    med = {w: tuple(statistics.median(r[i] for r in runs[w]) for i in range(6)) for w in runs}
    for workers in (1, 2):
        print(f"workers={workers} (median of {args.repeat}): {_line(med[workers])}")
    (rate1, echo1, *_), (rate2, echo2, *_) = med[1], med[2]
    print(f"ratio 2/1:  {rate2 / rate1:8.2f} connections/s   {echo2 / echo1:8.2f} echo")
    print(f"({os.cpu_count()} CPUs; clients share them with the server)")
    return 0


def _line(result: tuple[float, ...]) -> str:
    rate, echo, connect_cpu, echo_cpu, client_connect, client_echo = result
    return (
        f"{rate:8.1f} connections/s   {echo:8.2f} MB/s echo   CPU server/clients: "
        f"{connect_cpu:5.2f}/{client_connect:5.2f} ms per connection, "
        f"{echo_cpu:5.3f}/{client_echo:5.3f} s per MB echoed"
    )


if __name__ == "__main__":
    sys.exit(main())
