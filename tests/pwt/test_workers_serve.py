"""``python -m pywebtransport serve --workers 2`` as a child process: ``/status`` reports
the workers and the sessions of each; a worker killed with SIGKILL is replaced; SIGHUP
restarts the workers one at a time — an open session gets DRAIN, and new connections
made all through the rolling restart succeed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.events import EventType
from pywebtransport.exceptions import SessionRejected, StreamReset, WebTransportError
from quic.quiclb import QuicLbConfig
from tests.support.children import die_with_parent

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT + fork"),
]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0


class Workers:
    """``serve --workers 2`` in a child process; every stdout line is collected."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pywebtransport", "serve", "--port", "0", "--workers", "2",
             "--shutdown-timeout", "2", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait_for(lambda: self._field("LISTENING"), 60))
        self.cert_hash = bytes.fromhex(self._field("CERT-SHA256") or "")

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def _field(self, keyword: str) -> str | None:
        with self._lock:
            for line in self.lines:
                if line.startswith(keyword + " "):
                    return line[len(keyword) + 1 :]
        return None

    def pids(self) -> dict[int, list[int]]:
        """Worker index → the pids it had, in order (a restart adds one)."""
        out: dict[int, list[int]] = {}
        with self._lock:
            for line in self.lines:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "WORKER" and parts[2] == "PID":
                    out.setdefault(int(parts[1]), []).append(int(parts[3]))
        return out

    def wait_for(self, check: Any, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        _, err = self.process.communicate()
        raise AssertionError(f"timed out: {self.lines} {err[-3000:]}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture
def workers() -> Iterator[Workers]:
    server = Workers()
    yield server
    code, err = server.stop()
    assert code == 0, err[-3000:]
    for pids in server.pids().values():  # no worker outlives the supervisor
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@asynccontextmanager
async def session_to(server: Workers, path: str) -> AsyncIterator[Any]:
    config = ClientConfig(server_certificate_hashes=[server.cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(f"https://127.0.0.1:{server.port}{path}")
        async with session:
            yield session


async def status(server: Workers) -> dict[str, Any]:
    async with session_to(server, "/status") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"", end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            document: dict[str, Any] = json.loads(await stream.read_all())
    return document


async def echo_once(server: Workers, payload: bytes) -> bool:
    async with session_to(server, "/echo") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write_all(payload)
        async with asyncio.timeout(TIMEOUT):
            return bool(await stream.read_all() == payload)


async def echo_through_drain(server: Workers, payload: bytes) -> tuple[bool, int]:
    """:func:`echo_once`; a connection that was already on its way when its worker
    began to drain may be told so — GOAWAY or 503 before its request, DRAIN, or, for a
    handshake still in progress when the worker closed, a CONNECTION_CLOSE: the client
    then opens a new connection, as RFC 9114 §5.2 and draft-ietf-webtrans-http3-16 §4.6
    ask (a new connection is forwarded to a worker that takes them). The number of
    such retries is returned too."""
    for attempt in range(3):
        try:
            return await echo_once(server, payload), attempt
        except (WebTransportError, SessionRejected) as exc:
            told = (
                "GOAWAY" in str(exc)
                or getattr(exc, "status_code", 0) == 503
                or "server closed the connection" in str(exc)
                or isinstance(exc, StreamReset)
            )
            if not told:
                raise
    return False, 3


async def test_status_reports_workers_and_a_killed_worker_is_replaced(workers: Workers) -> None:
    async with session_to(workers, "/echo") as held:
        stream = await held.create_bidirectional_stream()
        await stream.write(b"hold")
        async with asyncio.timeout(TIMEOUT):
            assert await stream.read(4) == b"hold"
        doc = await status(workers)
        assert doc["workers"] == 2
        assert len(doc["sessions_per_worker"]) == 2
        assert sum(doc["sessions_per_worker"]) >= 2  # the held /echo and this /status
        assert doc["worker"] in (0, 1)
        assert doc["steering"] in ("bpf", "forwarding")
    first = workers.pids()
    assert sorted(first) == [0, 1]
    victim = first[0][-1]
    os.kill(victim, signal.SIGKILL)
    await asyncio.to_thread(workers.wait_for, lambda: len(workers.pids()[0]) == 2)
    replacement = workers.pids()[0][-1]
    assert replacement != victim
    os.kill(replacement, 0)  # it runs
    for _ in range(4):  # sessions on both workers, the new one included
        assert await echo_once(workers, b"after the restart")
    doc = await status(workers)
    assert doc["workers"] == 2


async def test_rolling_drain_keeps_taking_new_connections(workers: Workers) -> None:
    drained = asyncio.Event()
    async with session_to(workers, "/echo") as held:
        held.events.on(EventType.DRAINING, lambda _: drained.set())
        stream = await held.create_bidirectional_stream()
        await stream.write(b"hold")
        async with asyncio.timeout(TIMEOUT):
            assert await stream.read(4) == b"hold"
        before = workers.pids()
        os.kill(workers.process.pid, signal.SIGHUP)

        def rolled() -> bool:
            now = workers.pids()
            return all(len(now.get(i, [])) == len(before[i]) + 1 for i in (0, 1))

        made = retried = 0
        deadline = time.monotonic() + 60
        while not rolled():  # new connections all through the rolling restart
            assert time.monotonic() < deadline, workers.lines
            ok, retries = await echo_through_drain(workers, f"during the drain {made}".encode())
            assert ok
            made += 1
            retried += retries
            await asyncio.sleep(0.05)
        async with asyncio.timeout(TIMEOUT):
            await drained.wait()  # the held session's worker drained it (WT DRAIN)
    assert made >= 3
    # only connections caught at the moment a worker began to drain (a handful of
    # milliseconds per worker) are told to go elsewhere
    assert retried <= 4, retried
    after = workers.pids()
    assert all(after[i][-1] not in before[i] for i in (0, 1))
    assert await echo_once(workers, b"after the rolling restart")
    doc = await status(workers)
    assert doc["workers"] == 2


async def test_a_room_across_both_workers_gets_every_broadcast_once(workers: Workers) -> None:
    """``/rooms/<name>`` with members on both workers (the MeshBackplane each worker
    gets): a stream message reaches every other member exactly once."""
    # a socket per connection: the kernel's 4-tuple hash spreads them over the workers
    config = ClientConfig(server_certificate_hashes=[workers.cert_hash], share_socket=False)
    url = f"https://127.0.0.1:{workers.port}/rooms/lobby"
    async with WebTransportClient(config=config) as client:
        members: list[Any] = []
        spread = False
        while not spread:  # each new connection hashes anew: until both workers hold some
            assert len(members) < 24, "the hash never reached the other worker"
            members.append(await client.connect(url))
            rooms = (await status(workers))["rooms"]
            spread = rooms["total_members"] == len(members) and (
                0 < rooms["members"] < len(members)
            )
            if rooms["total_members"] != len(members):
                await asyncio.sleep(0.2)  # the counts travel between the workers
                rooms = (await status(workers))["rooms"]
                spread = rooms["total_members"] == len(members) and (
                    0 < rooms["members"] < len(members)
                )
        sender, others = members[0], members[1:]
        stream = await sender.create_bidirectional_stream()
        await stream.write(b"to the whole lobby", end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            assert await stream.read_all() == b""
            for member in others:
                incoming = await member.accept_unidirectional_stream()
                assert await incoming.read_all() == b"to the whole lobby"
        await asyncio.sleep(0.5)
        for member in others:  # once: nothing more arrives
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await member.accept_unidirectional_stream()
        for member in members:
            await member.close()


LB_KEY = "8f95f09245765f80256934e50c66207f"


@pytest.mark.parametrize("key", [None, LB_KEY], ids=["plaintext", "encrypted"])
async def test_workers_issue_quic_lb_cids_of_the_host(key: str | None) -> None:
    """``--workers 2`` with QUIC-LB settings: each worker's server ID is the host's
    (``--quic-lb-server-id``) followed by its worker byte, so a balancer configured with
    those server IDs routes every connection to this host, and the host to the worker.
    Encrypted CIDs cannot be read by the kernel program: the workers forward."""
    args = ["--quic-lb-server-id", "0a01", "--quic-lb-config-rotation", "2"]
    args += ["--quic-lb-nonce-length", "9"] + (["--quic-lb-key", key] if key else [])
    server = Workers(*args)
    try:
        balancer = QuicLbConfig(2, b"\x0a\x01\x00", 9, bytes.fromhex(key) if key else None)
        seen: set[int] = set()
        for _ in range(8):
            async with session_to(server, "/echo") as session:
                stream = await session.create_bidirectional_stream()
                await stream.write_all(b"routed")
                async with asyncio.timeout(TIMEOUT):
                    assert await stream.read_all() == b"routed"
                conn = session.link.quic_session.connection
                cids = [entry.cid for entry in conn.cids.peer.values()]
                server_ids = {balancer.server_id_of(cid) for cid in cids}
                assert len(server_ids) == 1, server_ids  # one worker's, all of them
                (server_id,) = server_ids
                assert server_id is not None and server_id[:2] == b"\x0a\x01"
                assert server_id[2] in (0, 1)
                seen.add(server_id[2])
        doc = await status(server)
        assert doc["workers"] == 2
        if key:
            assert doc["steering"] == "forwarding"
    finally:
        code, err = server.stop()
    assert code == 0, err[-3000:]
    assert seen  # (which worker the hash picks is the kernel's choice)


@pytest.mark.parametrize(
    ("key", "clients"), [(None, 200), (LB_KEY, 50)], ids=["steered", "forwarded"]
)
async def test_webtransport_sessions_migrate_across_worker_processes(
    key: str | None, clients: int
) -> None:
    """Real worker processes: ``clients`` WebTransport sessions, each on its own
    connection, that move to a new local port mid-stream keep going — the kernel program
    steers their packets to the worker that owns them (plaintext CIDs) or, with
    encrypted CIDs, the worker the hash picks forwards them to the owner."""
    server = Workers(*(["--quic-lb-server-id", "0a01", "--quic-lb-key", key] if key else []))
    try:
        # a socket per connection: the 4-tuple hash spreads the handshakes over the workers
        # (one socket would put every connection on one worker, beyond its per-address limit)
        config = ClientConfig(server_certificate_hashes=[server.cert_hash], share_socket=False)
        async with WebTransportClient(config=config) as client:
            url = f"https://127.0.0.1:{server.port}/echo"
            sessions = [await client.connect(url) for _ in range(clients)]
            streams = [await s.create_bidirectional_stream() for s in sessions]
            for i, stream in enumerate(streams):
                await stream.write(b"before %d " % i * 200)
            moved = 0
            for session in sessions:
                quic_session = session.link.quic_session
                before = quic_session._protocol.local_address
                await quic_session.migrate()
                moved += quic_session._protocol.local_address[1] != before[1]
            for i, stream in enumerate(streams):
                await stream.write(b"after %d " % i * 200, end_stream=True)
            async with asyncio.timeout(TIMEOUT * 2):
                for i, stream in enumerate(streams):
                    expected = b"before %d " % i * 200 + b"after %d " % i * 200
                    assert await stream.read_all() == expected
            assert moved == len(sessions)
            doc = await status(server)
            # encrypted CIDs are never steered by the kernel; plaintext ones are where
            # the kernel takes the program (else forwarding, logged)
            assert (
                doc["steering"] == "forwarding" if key else doc["steering"] in ("bpf", "forwarding")
            )
            assert sum(doc["sessions_per_worker"]) >= len(sessions)
            assert min(doc["sessions_per_worker"]) > 0  # both workers hold some
            for session in sessions:
                await session.close()
    finally:
        code, err = server.stop()
    assert code == 0, err[-3000:]
