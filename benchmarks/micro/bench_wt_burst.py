"""The burst of ``wt-sessions`` through the whole stack, both sides in one process.

A :class:`~pywebtransport.WebTransportServer` echoing streams (``benchmarks.wt_ours``)
and ``N`` client sessions, each on its own QUIC connection, on one asyncio loop over
loopback UDP. After the sessions open they rest (``--rest`` seconds: the keys rest, see
``key_rest_delay``), then every session at once opens a bidi stream, writes 64 bytes
and FIN and reads the echo to its end — the second half of the ``wt-sessions`` row of
``python -m benchmarks.harness``, with both sides' CPU in one process. Printed: CPU per
echo (both sides together), and per side and echo the datagrams sent and read, loop
timers, transmit passes, PTOs — counts that depend little on the machine's load —
with the garbage collector's passes during the burst and the server socket's drops.

``python -m benchmarks.micro.bench_wt_burst --sessions 200 [--profile] [--no-burst]``;
``--server-process`` runs the server in a process of its own, as the harness does, and
prints the CPU per echo of each side instead. ``--census`` adds, per side and echo, what
:mod:`benchmarks.micro.census` counted during the burst: the 1-RTT packets received by
the frames they carried, PTOs, ACKs written at their deadline (ahead of a reply), read
wake-ups by the datagrams they fed. ``--server-process --profile`` profiles each side
(the server between two signals, :func:`benchmarks.micro.census.install_profiler_from_environment`),
``--profile-dir`` keeps both profiles (``client.prof``, ``server.prof``) for pstats.
(``--no-burst``: open and rest only; subtract its instruction count from a run with the
burst to get the burst's instructions under valgrind.)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import wt_common, wt_ours
from benchmarks.common import server_stats
from benchmarks.micro.census import Census
from benchmarks.micro.wt_inproc import serve_here, server_args
from quic.aio.pump import QuicEndpointProtocol


def _pumps() -> tuple[list[QuicEndpointProtocol], list[QuicEndpointProtocol]]:
    """(server pumps, client pumps): every pump alive, told apart by its role."""
    pumps = [o for o in gc.get_objects() if isinstance(o, QuicEndpointProtocol)]
    server = [p for p in pumps if not p._icmp_hints]
    client = [p for p in pumps if p._icmp_hints]
    return server, client


def _counters(pumps: list[QuicEndpointProtocol]) -> dict[str, int]:
    """The pumps' counters and their connections' PTO and received-packet counts."""
    total = {"datagrams_sent": 0, "datagrams_read": 0, "timer_rearms": 0, "transmits": 0}
    ptos = received = 0
    for pump in pumps:
        for key in total:
            total[key] += getattr(pump, key)
        for conn in pump.endpoint.connections:
            ptos += conn.recovery.pto_count
            received += conn.reader.processed + conn.reader.dropped
    total["pto_count"] = ptos  # consecutive PTOs still unanswered
    total["packets_received"] = received
    return total


def _socket_drops(port: int) -> int:
    """The kernel's drops so far at the UDP socket bound to ``port`` (``/proc/net``)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
        lines += Path("/proc/net/udp6").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return 0


class _GcWatch:
    """Collections per generation and the time they took, while attached."""

    def __init__(self) -> None:
        self.collections = {0: 0, 1: 0, 2: 0}
        self.ms = {0: 0.0, 1: 0.0, 2: 0.0}
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        self.ms[generation] += (time.perf_counter() - self._start) * 1000


async def _burst(args: argparse.Namespace, sessions: list[Any], port: int) -> dict[str, Any]:
    """Every session echoes 64 bytes on a new stream at once; the figures per echo."""
    server_pumps, client_pumps = _pumps()
    before = (_counters(server_pumps), _counters(client_pumps))
    drops = _socket_drops(port)
    gc.collect()  # as the harness's burst does: garbage owed from the opening phase first
    watch = _GcWatch()
    gc.callbacks.append(watch)
    profiler = cProfile.Profile() if args.profile else None
    census = _census(args)
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    samples = await asyncio.gather(*(wt_common._one_echo(s, wall, 60.0) for s in sessions))
    if profiler is not None:
        profiler.disable()
    if census is not None:
        await asyncio.sleep(0.2)  # the last ACKs and probes
        census.stop()
        census.uninstall()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    gc.callbacks.remove(watch)
    after = (_counters(server_pumps), _counters(client_pumps))
    ok = sorted(s * 1000 for s in samples if s is not None)
    n = len(sessions)
    result: dict[str, Any] = {
        "sessions": n,
        "ok": len(ok),
        "cpu_ms_per_echo": round(cpu / n * 1000, 3),  # both sides
        "wall_s": round(wall, 3),
        "p50_ms": round(ok[len(ok) // 2], 1) if ok else None,
        "p99_ms": round(ok[max(int(len(ok) * 0.99) - 1, 0)], 1) if ok else None,
        "server_socket_drops": _socket_drops(port) - drops,
        "gc_collections": watch.collections,
        "gc_ms": {k: round(v, 1) for k, v in watch.ms.items()},
        "gc_tracked_objects": len(gc.get_objects()),
    }
    for side, old, new in (("server", before[0], after[0]), ("client", before[1], after[1])):
        result[side + "_per_echo"] = {k: round((new[k] - old[k]) / n, 3) for k in new}
    if census is not None:
        result["census_both_sides_per_echo"] = census.report(n)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
    return result


def _census(args: argparse.Namespace) -> Census | None:
    """A started census of this process when ``--census`` is given."""
    if not args.census:
        return None
    census = Census()
    census.install()
    census.start()
    return census


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc``; 0 without it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve_process(
    args: argparse.Namespace, census_file: str | None = None, profile_file: str | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """``wt_ours``'s server in a process of its own, as the harness runs it; its port."""
    env = dict(os.environ)
    stats = ()
    if profile_file:
        env["BENCH_PROFILE"] = profile_file  # cProfile in the server, driven by signals
    elif census_file:
        env["BENCH_CENSUS"] = census_file  # benchmarks.micro.census in the server
    else:  # the stats request collects the server's garbage (_collect_server_garbage)
        stats = ("--stats-file", _stats_file(args))
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "benchmarks.wt_ours", "server", "--host", "127.0.0.1"),
        *("--cert", args.cert, "--key", args.key, "--max-sessions", str(args.max_sessions)),
        *stats,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert server.stdout is not None
    while not (line := (await server.stdout.readline()).decode()).startswith("LISTENING"):
        if not line:
            raise RuntimeError("the server process ended before listening")
    return server, int(line.split()[1])


async def _print_profiles(args: argparse.Namespace, client: cProfile.Profile, server: Path) -> None:
    """Each side's profile printed, and dumped to ``--profile-dir`` if given."""
    for _ in range(100):
        if server.exists():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # written in full
    for side, stats in (("client", pstats.Stats(client)), ("server", pstats.Stats(str(server)))):
        print(f"--- {side}")
        stats.sort_stats(args.sort).print_stats(args.lines)
        if args.profile_dir:
            Path(args.profile_dir).mkdir(parents=True, exist_ok=True)  # made if missing
            stats.dump_stats(str(Path(args.profile_dir) / f"{side}.prof"))


def _stats_file(args: argparse.Namespace) -> str:
    return str(Path(args.cert).parent / "stats.json")


async def _collect_server_garbage(pid: int, args: argparse.Namespace) -> None:
    """The server collects its garbage before the burst, as in the harness (its stats
    request): else a full collection owed from the opening phase (about 60-200 ms for
    1,000 sessions) may fall into the burst of this benchmark and not of the harness."""
    await server_stats(pid, _stats_file(args))


async def _server_census(path: Path, n: int) -> dict[str, float]:
    """The server's census (written on SIGUSR2), per echo."""
    for _ in range(100):
        if path.exists():
            raw = json.loads(path.read_text())
            longest = raw.pop("longest read wake-up feed (ms)", 0.0)
            result = {k: round(v / n, 3) for k, v in sorted(raw.items())}
            result["longest read wake-up feed (ms)"] = round(longest, 1)
            return result
        await asyncio.sleep(0.05)
    raise RuntimeError("the server wrote no census")


async def _run_separate(args: argparse.Namespace, sargs: argparse.Namespace) -> dict[str, Any]:
    """The server in its own process: CPU per echo on each side (``--profile``: each
    side's cProfile, printed and dumped to ``--profile-dir`` as client.prof and
    server.prof; without the census, which wraps functions)."""
    census_file = str(Path(sargs.cert).parent / "census.json") if args.census else None
    profile_file = str(Path(sargs.cert).parent / "server.prof") if args.profile else None
    if profile_file:
        census_file = None
    server, sargs.port = await _serve_process(sargs, census_file, profile_file)
    try:
        url = f"https://127.0.0.1:{sargs.port}/echo"
        sessions, errors = await wt_common._open_many(wt_ours.STACK, sargs, url)
        if errors:
            raise RuntimeError(errors[0])
        await asyncio.sleep(args.rest)
        _, client_pumps = _pumps()
        before = _counters(client_pumps)
        gc.collect()  # as the harness's burst does (the server's stats handler does too)
        census = _census(args) if census_file else None
        if census_file or profile_file:
            os.kill(server.pid, signal.SIGUSR1)  # collects the garbage, starts counting
            await asyncio.sleep(0.1)  # the signal handled before the burst
        else:
            await _collect_server_garbage(server.pid, sargs)
        server_cpu = _process_cpu(server.pid)
        profiler = cProfile.Profile() if profile_file else None
        client_cpu = time.process_time()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        samples = await asyncio.gather(*(wt_common._one_echo(s, start, 60.0) for s in sessions))
        if profiler is not None:
            profiler.disable()
        client_cpu = time.process_time() - client_cpu
        await asyncio.sleep(0.2)  # the server's last ACKs and probes
        server_cpu = _process_cpu(server.pid) - server_cpu
        ok = sorted(s * 1000 for s in samples if s is not None)
        n = len(sessions)
        result: dict[str, Any] = {
            "sessions": n,
            "ok": len(ok),
            "server_cpu_ms_per_echo": round(server_cpu / n * 1000, 3),
            "client_cpu_ms_per_echo": round(client_cpu / n * 1000, 3),
            "p50_ms": round(ok[len(ok) // 2], 1) if ok else None,
            "p99_ms": round(ok[max(int(len(ok) * 0.99) - 1, 0)], 1) if ok else None,
        }
        after = _counters(client_pumps)
        result["client_per_echo"] = {k: round((after[k] - before[k]) / n, 3) for k in after}
        if census is not None and census_file:
            census.stop()
            census.uninstall()
            result["census_client_per_echo"] = census.report(n)
            os.kill(server.pid, signal.SIGUSR2)
            result["census_server_per_echo"] = await _server_census(Path(census_file), n)
        if profiler is not None and profile_file:
            os.kill(server.pid, signal.SIGUSR2)
            await _print_profiles(args, profiler, Path(profile_file))
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        await server.wait()
        wt_ours._clients.clear()
    return result


async def _run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    sargs = server_args(directory, args.sessions + 10, sessions=args.sessions)
    if args.server_process:
        return await _run_separate(args, sargs)
    server, stop = await serve_here(sargs)
    url = f"https://127.0.0.1:{sargs.port}/echo"
    sessions, errors = await wt_common._open_many(wt_ours.STACK, sargs, url)
    if errors:
        raise RuntimeError(errors[0])
    await asyncio.sleep(args.rest)
    result: dict[str, Any] = {"sessions": len(sessions)}
    if not args.no_burst:
        result = await _burst(args, sessions, sargs.port)
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    stop.set()
    await server
    wt_ours._clients.clear()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.bench_wt_burst")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rest", type=float, default=1.5, help="idle seconds before the burst")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument(
        "--profile-dir", help="with --server-process: dump client.prof and server.prof here"
    )
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument(
        "--server-process", action="store_true", help="the server in a process of its own"
    )
    parser.add_argument(
        "--census", action="store_true", help="count packets, PTOs, ACKs, reads per echo"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        print(asyncio.run(_run(args, Path(directory))))


if __name__ == "__main__":
    main()


def test_wt_burst(benchmark: Any) -> None:
    """20 sessions rest 1.2 s (keys rest), then each echoes 64 B on a new stream at
    once; one round (the figures are printed by the module's command line)."""
    args = argparse.Namespace(
        sessions=20, rest=1.2, profile=False, sort="tottime", lines=0, no_burst=False,
        server_process=False, census=False, profile_dir=None,
    )  # fmt: skip

    def burst() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as directory:
            return asyncio.run(_run(args, Path(directory)))

    result = benchmark.pedantic(burst, rounds=1, iterations=1)
    assert result["ok"] == 20
