"""Slow soak (``python3 -m pytest -m slow tests/soak/test_endpoint_flood.py -s``):
20,000 spoofed Initials and 20,000 random datagrams from another process while a
:mod:`quic.aio` client downloads 20 MiB from a :mod:`quic.aio` server (a third process).

Checked: the download is byte-exact; the server's tables stay within its limits and its
RSS bounded; once the flood's spoofs have expired nothing is left; a new handshake
succeeds right after. The numbers are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from quic.aio import connect
from quic.configuration import QuicConfiguration
from tests.support.quicpair import certificate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).with_name("flood_peers.py")
SIZE = 20 * 1024 * 1024
INITIALS = 20_000
RANDOMS = 20_000
RATE = 5_000.0  # datagrams per second: the flood lasts 8 s


def client_config() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=["test"],
        server_certificate_hashes=(certificate().sha256,),
    )


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PEERS), *args, stdout=asyncio.subprocess.PIPE, env=env
    )


async def _collect(proc: asyncio.subprocess.Process, samples: list[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        if line.startswith(b"stats "):
            samples.append({"t": time.monotonic(), **json.loads(line[6:])})


async def _handshake_time(port: int) -> float:
    start = time.monotonic()
    async with connect("127.0.0.1", port, client_config()) as session:
        assert session.alpn_protocol == "test"
    return time.monotonic() - start


async def test_flood_while_downloading(tmp_path: Path) -> None:
    certificate().write(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = await _spawn("server", str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert server.stdout is not None
    port = int(await server.stdout.readline())
    samples: list[dict[str, Any]] = []
    collector = asyncio.ensure_future(_collect(server, samples))
    flooder: asyncio.subprocess.Process | None = None
    try:
        await asyncio.sleep(0.6)
        baseline = samples[-1]["rss_kb"]
        async with connect("127.0.0.1", port, client_config()) as session:
            flooder = await _spawn("flood", str(port), str(INITIALS), str(RANDOMS), str(RATE))
            await asyncio.sleep(1.0)  # the flood is on: the half-open table is full
            reader, writer = await session.create_stream()
            start = time.monotonic()
            writer.write(b"GET %d\n" % SIZE)
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 300)
            elapsed = time.monotonic() - start
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256(random.Random(SIZE).randbytes(SIZE)).digest()
        )
        flood_running = flooder.returncode is None
        right_after = await asyncio.wait_for(_handshake_time(port), 60)
        assert flooder.stdout is not None
        sent = (await asyncio.wait_for(flooder.stdout.read(), 60)).decode().strip()
        await flooder.wait()
        await asyncio.sleep(10.5)  # the handshake deadline of the last spoofs
        settled = samples[-1]
        after_deadline = await asyncio.wait_for(_handshake_time(port), 10)
    finally:
        for proc in (flooder, server):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
        collector.cancel()
    peak = {key: max(s[key] for s in samples) for key in samples[0] if key != "t"}
    print(
        f"\ndownload {SIZE / 2**20:.0f} MiB in {elapsed:.2f} s "
        f"({SIZE / 2**20 / elapsed:.1f} MiB/s), flood still running at its end: "
        f"{flood_running}; flooder {sent}"
        f"\nserver RSS: baseline {baseline / 1024:.1f} MiB, peak {peak['rss_kb'] / 1024:.1f} MiB,"
        f" after the deadline {settled['rss_kb'] / 1024:.1f} MiB"
        f"\npeak tables: {peak}"
        f"\nafter the deadline: {settled}"
        f"\nnew handshake right after the download: {right_after:.2f} s;"
        f" after the spoofs' deadline: {after_deadline:.3f} s"
    )
    assert peak["half_open"] <= 1000 and peak["connections"] <= 1001
    assert peak["routes"] <= 2 * 1001 + 8
    assert peak["internal_errors"] == 0
    assert settled["connections"] == 0 and settled["routes"] == 0
    assert settled["sessions"] == 0
    assert peak["rss_kb"] - baseline < 400 * 1024
