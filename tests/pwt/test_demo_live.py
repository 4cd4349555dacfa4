"""Live server output of ``serve`` and ``demo`` (:mod:`pywebtransport.live`): the
session lines and summaries in memory, bounded at scale (N against 4N sessions), and
``python -m pywebtransport serve -v --stats-interval S`` as a child process."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
import tracemalloc
from typing import Any

import pytest

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.events import EventEmitter, EventType
from pywebtransport.exceptions import SessionClosed
from pywebtransport.live import DEFAULT_STATS_INTERVAL, LiveOutput, summary_interval
from tests.interop.test_wt_aioquic import LineProcess

pytestmark = pytest.mark.timeout(120)

SERVE = [sys.executable, "-m", "pywebtransport", "serve", "--port", "0"]


def fields(line: str) -> dict[str, Any]:
    """``key=value`` words of a live-output line (the reason is JSON, last)."""
    head, _, reason = line.partition(" reason=")
    out: dict[str, Any] = dict(word.split("=", 1) for word in head.split()[1:])
    if reason:
        out["reason"] = json.loads(reason)
    return out


# ====================================================================== in memory


def test_summary_interval_follows_the_tty_flag() -> None:
    assert summary_interval(None, is_tty=True) == DEFAULT_STATS_INTERVAL
    assert summary_interval(None, is_tty=False) is None
    assert summary_interval(2.5, is_tty=False) == 2.5  # --stats-interval forces it
    assert summary_interval(0, is_tty=True) is None  # --stats-interval 0 turns it off
    assert summary_interval(None, is_tty=True, default=3.0) == 3.0


class FakeSession:
    """What :class:`LiveOutput` reads of a session."""

    def __init__(self, number: int) -> None:
        self.events = EventEmitter(self)
        self.path = "/echo"
        self.remote_address = ("127.0.0.1", 1000 + number)
        self.draft = "draft16"
        self.streams_opened = 1
        self.streams_accepted = 2


class FakeServer:
    def __init__(self) -> None:
        self.events = EventEmitter(self)


class FakeApp:
    """The public surface of ServerApp that LiveOutput uses."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.is_serving = True
        self.counters = {"sessions": 0, "sessions_total": 0, "bytes_received": 0}

    def stats(self) -> dict[str, Any]:
        return {"sessions_rejected": 3, "server": dict(self.counters)}


def run_sessions(count: int) -> tuple[LiveOutput, list[str], int]:
    """``count`` sessions opened, then closed; (monitor, its lines, peak table size)."""
    now = [0.0]
    lines: list[str] = []
    app = FakeApp()
    live = LiveOutput(app, sessions=True, clock=lambda: now[0], write=lines.append)  # type: ignore[arg-type]
    live.attach()
    sessions = [FakeSession(i) for i in range(count)]
    for session in sessions:
        app.server.events.emit(EventType.SESSION, session)
    peak = live.open_sessions
    now[0] = 1.5
    for i, session in enumerate(sessions):
        closed = SessionClosed(i, "bye", by_peer=i % 2 == 0)
        session.events.emit(EventType.CLOSED, closed)
        session.events.emit(EventType.CLOSED, closed)  # a second close is not a second line
    return live, lines, peak


def test_session_lines() -> None:
    live, lines, _ = run_sessions(2)
    assert lines[0] == "SESSION-OPENED path=/echo peer=127.0.0.1:1000 draft=draft16"
    assert lines[2] == (
        "SESSION-CLOSED path=/echo peer=127.0.0.1:1000 draft=draft16 duration=1.500s code=0 "
        'by=peer reason="bye"'
    )
    assert fields(lines[3]) == {
        "path": "/echo",
        "peer": "127.0.0.1:1001",
        "draft": "draft16",
        "duration": "1.500s",
        "code": "1",
        "by": "server",
        "reason": "bye",
    }
    assert len(lines) == 4
    summary = fields(live.summary())
    assert summary["streams_total"] == "6" and summary["rejected"] == "3"


def test_sessions_leave_the_table_n_vs_4n() -> None:
    n = 200
    live_n, lines_n, peak_n = run_sessions(n)
    live_4n, lines_4n, peak_4n = run_sessions(4 * n)
    assert (peak_n, peak_4n) == (n, 4 * n)  # one entry per open session, no more
    assert live_n.open_sessions == live_4n.open_sessions == 0  # ended ones leave
    assert (len(lines_n), len(lines_4n)) == (2 * n, 8 * n)  # one line per open and close
    # what the ended sessions leave behind is one integer, whatever their number
    assert fields(live_4n.summary())["streams_total"] == str(3 * 4 * n)


def retained_after(count: int) -> int:
    """Bytes still allocated once ``count`` sessions opened together and all ended (the
    lines are written to a sink that keeps nothing)."""
    app = FakeApp()
    live = LiveOutput(app, sessions=True, clock=lambda: 0.0, write=lambda _: None)  # type: ignore[arg-type]
    live.attach()
    gc.collect()
    tracemalloc.start()
    try:
        sessions = [FakeSession(i) for i in range(count)]
        for session in sessions:
            app.server.events.emit(EventType.SESSION, session)
        for session in sessions:
            session.events.emit(EventType.CLOSED, SessionClosed(0, ""))
        del sessions, session
        gc.collect()
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert live.open_sessions == 0
    return retained


def test_ended_sessions_leave_no_memory_n_vs_4n() -> None:
    """Before: the table kept the size of its peak (about 37 bytes per session of the
    peak: 38 KB after 1,000 sessions, 148 KB after 4,000)."""
    n = 1000
    retained_n, retained_4n = retained_after(n), retained_after(4 * n)
    assert retained_4n < 16 * 1024 and retained_4n < 2 * retained_n + 4096, (
        retained_n,
        retained_4n,
    )


def test_quiet_without_verbose() -> None:
    lines: list[str] = []
    app = FakeApp()
    live = LiveOutput(app, sessions=False, clock=lambda: 0.0, write=lines.append)  # type: ignore[arg-type]
    live.attach()
    session = FakeSession(0)
    app.server.events.emit(EventType.SESSION, session)
    session.events.emit(EventType.CLOSED, SessionClosed(0, ""))
    assert lines == [] and live.open_sessions == 0


async def test_summaries_every_interval() -> None:
    lines: list[str] = []
    app = FakeApp()
    app.counters.update(sessions=2, sessions_total=5, bytes_received=77)
    live = LiveOutput(app, sessions=False, clock=lambda: 0.0, write=lines.append)  # type: ignore[arg-type]
    task = asyncio.create_task(live.run_summaries(0.01))
    while len(lines) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    summary = fields(lines[0])
    assert (summary["sessions"], summary["total"], summary["bytes_in"]) == ("2", "5", "77")
    assert all(line == lines[0] for line in lines)


# ====================================================================== serve


def cert_of(server: LineProcess) -> bytes:
    """The certificate hash of the server's ``CERT-SHA256`` line."""
    return bytes.fromhex(next(x.split()[1] for x in server.seen if x.startswith("CERT-SHA256 ")))


class Serve(LineProcess):
    def interrupt(self, timeout: float = 30.0) -> int:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        return self._process.wait(timeout=timeout)


async def talk(port: int, cert_hash: bytes) -> None:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(f"https://127.0.0.1:{port}/echo?x=1")
        stream = await session.create_bidirectional_stream()
        await stream.write(b"live output", end_stream=True)
        assert await stream.read_all() == b"live output"
        await session.close(7, "done here")


def test_serve_verbose_prints_sessions_and_stats() -> None:
    server = Serve([*SERVE, "-v", "--stats-interval", "0.2"])
    try:
        server.start()
        cert = bytes.fromhex(
            next(x.split()[1] for x in server.seen if x.startswith("CERT-SHA256 "))
        )
        asyncio.run(talk(server.port, cert))
        opened = fields(server.wait_line("SESSION-OPENED ", 10.0))
        assert opened["path"] == "/echo" and opened["draft"] == "draft16"
        assert opened["peer"].startswith("127.0.0.1:")
        closed = fields(server.wait_line("SESSION-CLOSED ", 10.0))
        assert (closed["code"], closed["by"], closed["reason"]) == ("7", "peer", "done here")
        assert closed["peer"] == opened["peer"] and closed["duration"].endswith("s")
        while True:  # summaries keep coming; one shows the session's traffic
            stats = fields(server.wait_line("STATS ", 10.0))
            if stats["total"] == "1":
                break
        assert stats["sessions"] == "0" and int(stats["bytes_in"]) >= len(b"live output")
        assert int(stats["bytes_out"]) >= len(b"live output")
        assert int(stats["streams_total"]) >= 1
        assert server.interrupt() == 0, server.stderr()
    finally:
        server.close()


def test_serve_is_quiet_off_a_terminal() -> None:
    """Without -v and with stdout a pipe (not a terminal): no session lines, no STATS."""
    server = Serve(SERVE)
    try:
        server.start()
        cert = bytes.fromhex(
            next(x.split()[1] for x in server.seen if x.startswith("CERT-SHA256 "))
        )
        asyncio.run(talk(server.port, cert))
        assert server.interrupt() == 0, server.stderr()
        with pytest.raises(RuntimeError):  # the process ended: no further line came
            server.wait_line("", 5.0)
        assert [line.split()[0] for line in server.seen][-1] == "LISTENING"
    finally:
        server.close()
