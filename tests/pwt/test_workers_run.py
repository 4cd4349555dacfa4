"""``ServerApp.run(workers=2)`` in a child process: an app defined in a script (a
closure as handler: it reaches the workers by fork) is served by both workers on one
port and stops cleanly on SIGTERM; a worker that keeps dying stops the group after
``max_restarts`` restarts instead of restarting it forever."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.exceptions import WebTransportError
from tests.support.children import die_with_parent

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT + fork"),
]

REPO = Path(__file__).resolve().parents[2]

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {repo!r})
    from pywebtransport import ServerApp, ServerConfig
    from quic.aio import wall_clock
    from quic.tls.selfsigned import generate_self_signed

    cert = generate_self_signed(wall_clock(), hostnames=["127.0.0.1"], days=5)
    with open({hash_file!r}, "w") as fp:
        fp.write(cert.sha256.hex())
    app = ServerApp(config=ServerConfig(
        certificate_chain=[cert.certificate], private_key=cert.private_key,
        shutdown_timeout=1.0,
    ))
    """
)

WHO = textwrap.dedent(
    """
    greeting = "worker"  # a closure: only fork carries this to the workers

    @app.route("/who")
    async def who(session):
        async for stream in session.incoming_bidirectional_streams():
            await stream.read_all()
            await stream.write(f"{{greeting}} {{app.worker_info.index}}".encode(), end_stream=True)

    app.run("127.0.0.1", {port}, workers=2)
    """
)

CRASHING = textwrap.dedent(
    """
    from pywebtransport.workers import run_workers

    @app.on_startup
    def die_soon():
        asyncio.get_running_loop().call_later(0.3, os._exit, 7)

    def started(index, pid):
        print("WORKER", index, "PID", pid, flush=True)

    sys.exit(run_workers(app, "127.0.0.1", 0, 2, max_restarts={limit}, on_worker=started))
    """
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(script: str, tmp_path: Path) -> subprocess.Popen[str]:
    path = tmp_path / "app.py"
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


async def ask(port: int, cert_hash: bytes) -> str:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(f"https://127.0.0.1:{port}/who")
        async with session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"?", end_stream=True)
            async with asyncio.timeout(10):
                return (await stream.read_all()).decode()


async def test_server_app_run_with_two_workers(tmp_path: Path) -> None:
    port = free_udp_port()
    hash_file = tmp_path / "hash"
    script = PRELUDE.format(repo=str(REPO), hash_file=str(hash_file)) + WHO.format(port=port)
    process = start(script, tmp_path)
    try:
        answers: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answers) < 2:  # each new client port hashes anew: both workers answer
            assert time.monotonic() < deadline, answers
            assert process.poll() is None, process.communicate()
            try:
                answers.add(await ask(port, bytes.fromhex(hash_file.read_text())))
            except (OSError, ValueError, ConnectionError, WebTransportError):
                await asyncio.sleep(0.2)  # not listening yet
        assert answers == {"worker 0", "worker 1"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]


@pytest.mark.parametrize("limit", [1, 4])
def test_a_crashing_worker_stops_the_group_after_max_restarts(tmp_path: Path, limit: int) -> None:
    script = PRELUDE.format(repo=str(REPO), hash_file=str(tmp_path / "hash"))
    process = start(script + CRASHING.format(limit=limit), tmp_path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err[-3000:]
    starts = [line for line in out.splitlines() if line.startswith("WORKER ")]
    # two first starts, then one start per unexpected exit up to the limit; the exit
    # beyond it stops the group instead
    assert len(starts) == 2 + limit, starts
    assert "worker restarts in 60 s: stopping" in err


def test_restart_limit_counts_exits_within_60_seconds_of_the_given_clock() -> None:
    """The supervisor reads time only through its ``clock``: more than ``max_restarts``
    unexpected exits within 60 s of it stop the group; spread out, they never do, and
    the record of them stays bounded."""
    from pywebtransport import ServerApp
    from pywebtransport.workers import Supervisor

    now = [0.0]
    supervisor = Supervisor(ServerApp(), "127.0.0.1", 0, 2, max_restarts=3, clock=lambda: now[0])
    assert supervisor._clock() == 0.0
    assert [supervisor._note_restart(t) for t in (0.0, 10.0, 20.0)] == [False] * 3
    assert supervisor._note_restart(30.0)  # the 4th within 60 s
    spread = Supervisor(ServerApp(), "127.0.0.1", 0, 2, max_restarts=3)
    assert not any(spread._note_restart(61.0 * i) for i in range(400))
    assert len(spread._restarts) <= 4 and spread.restarts == 400
