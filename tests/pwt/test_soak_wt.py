"""Slow soak runs over real sockets on 127.0.0.1 (``pytest -m slow -s``), the server
in its own process (``tests.pwt.soak_server``) so that its RSS can be read from /proc.

* one session echoing ``SOAK_BYTES`` (default 1 GiB) on one stream, then
  ``SOAK_DATAGRAMS`` (default 1,000,000) datagrams: server RSS and MB/s (datagrams/s)
  per quarter of the run, which should stay flat; the echo is byte-exact;
* ``SOAK_SESSIONS`` (default 1,000) concurrent sessions for ``SOAK_SECONDS`` (default
  60) exchanging streams and datagrams: no lost or altered stream byte, p50/p99
  stream round-trip latency, datagram echo ratio, server RSS over time.

Numbers are printed; the assertions are relative (RSS growth, rate ratios), never
absolute times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pywebtransport import ClientConfig, WebTransportClient, WebTransportSession

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@contextlib.asynccontextmanager
async def soak_server() -> AsyncIterator[tuple[int, int, bytes]]:
    """(pid, port, certificate hash) of a fresh echo server process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.pwt.soak_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        ready, port, digest = line.decode().split()
        assert ready == "READY"
        yield proc.pid, int(port), bytes.fromhex(digest)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client_config(digest: bytes, **kwargs: object) -> ClientConfig:
    return ClientConfig(
        server_certificate_hashes=[digest],
        connect_timeout=30.0,
        idle_timeout=120.0,
        **kwargs,  # type: ignore[arg-type]
    )


# -- one session: 1 GiB echo and a million datagrams -----------------------------------


async def echo_stream(session: WebTransportSession, total: int, pid: int) -> list[str]:
    pattern = random.Random(1).randbytes(MIB)
    chunk_size = 64 * 1024
    chunks = [pattern[i : i + chunk_size] for i in range(0, MIB, chunk_size)]
    stream = await session.create_bidirectional_stream()
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()

    async def writer() -> None:
        written = 0
        while written < total:
            chunk = chunks[(written % MIB) // chunk_size][: total - written]
            sent_hash.update(chunk)
            await stream.write(chunk)
            written += len(chunk)
        await stream.close()

    marks = [0, total // 4, total // 2, 3 * total // 4, total]
    report: list[str] = []
    task = asyncio.create_task(writer())
    received, start, last_t, last_b = 0, time.monotonic(), time.monotonic(), 0
    report.append(f"  0%: server RSS {rss_mib(pid):7.1f} MiB")
    next_mark = 1
    async for data in stream:
        got_hash.update(data)
        received += len(data)
        while next_mark < len(marks) and received >= marks[next_mark]:
            now = time.monotonic()
            rate = (received - last_b) / MIB / (now - last_t)
            report.append(
                f"{25 * next_mark:3d}%: server RSS {rss_mib(pid):7.1f} MiB, "
                f"slice {rate:6.1f} MB/s echoed"
            )
            last_t, last_b = now, received
            next_mark += 1
    await task
    elapsed = time.monotonic() - start
    report.append(f"total {total / MIB:.0f} MiB echoed in {elapsed:.1f} s")
    assert received == total and got_hash.digest() == sent_hash.digest()  # byte-exact
    return report


async def echo_datagrams(session: WebTransportSession, count: int, pid: int) -> list[str]:
    window = 256  # datagrams in flight
    sent = echoed = 0
    marks = [count // 4, count // 2, 3 * count // 4, count]
    report = [f"  0%: server RSS {rss_mib(pid):7.1f} MiB"]
    start = last_t = time.monotonic()
    last_n = 0
    payload = bytes(64)
    while sent < count:
        while sent < count and sent - echoed < window:
            session.send_datagram(sent.to_bytes(8, "big") + payload)
            sent += 1
        try:
            await session.receive_datagram(timeout=0.2)
            echoed += 1
        except TimeoutError:
            echoed = sent - window // 2  # lost in flight: move the window on
            continue
        while session.diagnostics()["datagrams_received"] > echoed:
            await session.receive_datagram(timeout=1.0)
            echoed += 1
        if marks and sent >= marks[0]:
            now = time.monotonic()
            report.append(
                f"{25 * (5 - len(marks)):3d}%: server RSS {rss_mib(pid):7.1f} MiB, "
                f"slice {(sent - last_n) / (now - last_t):8.0f} datagrams/s"
            )
            last_t, last_n = now, sent
            marks.pop(0)
    await asyncio.sleep(0.5)
    got = session.diagnostics()["datagrams_received"]
    report.append(
        f"{count} datagrams sent, {got} echoed ({100 * got / count:.2f} %) "
        f"in {time.monotonic() - start:.1f} s"
    )
    return report


def rss_values(report: list[str]) -> list[float]:
    return [float(line.split("RSS")[1].split()[0]) for line in report if "RSS" in line]


async def test_one_session_echoes_a_gib_and_a_million_datagrams() -> None:
    total = int(os.environ.get("SOAK_BYTES", str(1 << 30)))
    count = int(os.environ.get("SOAK_DATAGRAMS", "1000000"))
    async with (
        soak_server() as (pid, port, digest),
        WebTransportClient(client_config(digest)) as client,
    ):
        session = await client.connect(f"https://127.0.0.1:{port}/soak")
        stream_report = await echo_stream(session, total, pid)
        print("\nstream echo\n" + "\n".join(stream_report))
        datagram_report = await echo_datagrams(session, count, pid)
        print("datagram echo\n" + "\n".join(datagram_report))
        await session.close()
    stream_rss = rss_values(stream_report)
    assert stream_rss[-1] - stream_rss[1] < 64  # flat: no growth with the bytes echoed
    dgram_rss = rss_values(datagram_report)
    assert dgram_rss[-1] - dgram_rss[1] < 64


# -- a thousand sessions for a minute ----------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.bytes = 0
        self.datagrams_sent = 0
        self.datagrams_echoed = 0
        self.errors: list[str] = []
        self.per_session: list[int] = []  # round trips completed, per session


async def session_worker(
    session: WebTransportSession, deadline: float, rng: random.Random, stats: Stats
) -> None:
    index = len(stats.per_session)
    stats.per_session.append(0)
    while time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        payload = rng.randbytes(rng.randint(100, 4000))
        start = time.monotonic()
        try:
            stream = await session.create_bidirectional_stream()
            await stream.write_all(payload)
            echoed = await stream.read_all()
        except Exception as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            return
        stats.latencies.append(time.monotonic() - start)
        stats.per_session[index] += 1
        if echoed != payload:
            stats.errors.append(f"stream echo differs ({len(echoed)} vs {len(payload)} bytes)")
        stats.bytes += len(payload)
        session.send_datagram(payload[:64])
        stats.datagrams_sent += 1
        with contextlib.suppress(TimeoutError):
            while True:  # collect echoes that arrived
                await session.receive_datagram(timeout=0.001)
                stats.datagrams_echoed += 1


async def test_a_thousand_sessions_for_a_minute() -> None:
    count = int(os.environ.get("SOAK_SESSIONS", "1000"))
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))
    stats = Stats()
    samples: list[str] = []
    async with (
        soak_server() as (pid, port, digest),
        WebTransportClient(client_config(digest)) as client,
    ):
        url = f"https://127.0.0.1:{port}/many"
        base = rss_mib(pid)
        sessions: list[WebTransportSession] = []
        start = time.monotonic()
        for first in range(0, count, 50):
            batch = [client.connect(url) for _ in range(first, min(count, first + 50))]
            sessions += await asyncio.gather(*batch)
        opened = time.monotonic() - start
        samples.append(
            f"{count} sessions opened in {opened:.1f} s, server RSS {rss_mib(pid):.1f} MiB"
        )
        deadline = time.monotonic() + seconds

        async def sample() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(10)
                samples.append(f"t+{seconds - (deadline - time.monotonic()):4.0f} s: "
                               f"server RSS {rss_mib(pid):.1f} MiB")  # fmt: skip

        sampler = asyncio.create_task(sample())
        rngs = [random.Random(i) for i in range(count)]
        await asyncio.gather(
            *(
                session_worker(s, deadline, rng, stats)
                for s, rng in zip(sessions, rngs, strict=True)
            )
        )
        sampler.cancel()
        end_rss = rss_mib(pid)
        for session in sessions:
            await session.close()
    lat = sorted(stats.latencies)
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    print(
        "\n" + "\n".join(samples) + f"\nserver RSS before {base:.1f} MiB, at the end {end_rss:.1f}"
        f" MiB\n{len(lat)} stream round trips, {stats.bytes / MIB:.1f} MiB each way, "
        f"p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms, max {1000 * lat[-1]:.1f} ms\n"
        f"datagrams: {stats.datagrams_sent} sent, {stats.datagrams_echoed} echoed\n"
        f"errors: {len(stats.errors)} {stats.errors[:5]}"
    )
    assert not stats.errors  # no lost or altered byte, no failed stream
    assert min(stats.per_session) >= 1  # every session exchanged (none starved)
