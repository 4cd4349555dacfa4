"""``python -m pywebtransport serve`` as a child process, exercised by our client with
the printed certificate hash pinned; plus ``ServerApp.run`` under SIGINT."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pywebtransport.cli import build_parser, js_snippet
from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.exceptions import SessionRejected, StreamReset
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed
from tests.support.children import die_with_parent

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


class Server:
    """``python -m pywebtransport serve`` in a child process; stdout read by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pywebtransport", "serve", "--port", "0", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 30
        while not any(line.startswith("LISTENING ") for line in self.lines):
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                _, err = self.process.communicate()
                raise RuntimeError(f"no LISTENING line: {self.lines} {err}")
            self.lines.append(line)
        self.port = int(self.lines[-1].split()[1])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def field(self, keyword: str) -> str:
        for line in self.lines:
            if line.startswith(keyword + " "):
                return line[len(keyword) + 1 :]
        raise KeyError(keyword)

    @property
    def cert_hash(self) -> bytes:
        return bytes.fromhex(self.field("CERT-SHA256"))

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    keylog = tmp_path_factory.mktemp("keylog") / "keys.txt"
    qlog = tmp_path_factory.mktemp("qlog")
    srv = Server("--keylog", str(keylog), "--qlog-dir", str(qlog))
    srv.keylog = keylog  # type: ignore[attr-defined]
    srv.qlog = qlog  # type: ignore[attr-defined]
    yield srv
    code, err = srv.stop()
    assert code == 0, err


@asynccontextmanager
async def session_to(server: Server, path: str, **kwargs: Any) -> AsyncIterator[Any]:
    config = ClientConfig(server_certificate_hashes=[server.cert_hash], **kwargs)
    async with WebTransportClient(config=config) as client:
        session = await client.connect(f"https://127.0.0.1:{server.port}{path}")
        async with session:
            yield session


# ======================================================================================
# output
# ======================================================================================


def test_prints_hashes_snippet_and_listening(server: Server) -> None:
    keywords = [line.split()[0] for line in server.lines]
    assert keywords == [
        "CERT-SHA256",
        "CERT-SHA256-BASE64",
        "SPKI-SHA256-BASE64",
        "JS",
        "LISTENING",
    ]
    digest = server.cert_hash
    assert len(digest) == 32
    assert base64.b64decode(server.field("CERT-SHA256-BASE64"), validate=True) == digest
    assert len(base64.b64decode(server.field("SPKI-SHA256-BASE64"), validate=True)) == 32
    snippet = server.field("JS")
    assert snippet.startswith(f'new WebTransport("https://127.0.0.1:{server.port}/echo", ')
    assert 'algorithm: "sha-256"' in snippet
    inner = snippet.split("Uint8Array.from([", 1)[1].split("])", 1)[0]
    assert bytes(int(b) for b in inner.split(",")) == digest
    assert server.port > 0


def test_js_snippet_format() -> None:
    text = js_snippet("https://h:1/echo", b"\x00\x01\xff")
    assert text == (
        'new WebTransport("https://h:1/echo", {serverCertificateHashes: [{algorithm: '
        '"sha-256", value: Uint8Array.from([0, 1, 255])}]})'
    )


def test_help_documents_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pywebtransport", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    for word in ("serve", "--port", "--cert", "--keylog", "/echo", "/stats", "/status"):
        assert word in done.stdout, word
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.cert, args.key) == ("127.0.0.1", 4433, None, None)


def test_bad_certificate_file_fails_cleanly(tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate")
    done = subprocess.run(
        [sys.executable, "-m", "pywebtransport", "serve", "--port", "0", "--cert", str(bogus)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert "error:" in done.stderr and "LISTENING" not in done.stdout


# ======================================================================================
# /echo
# ======================================================================================


async def test_echo_bidi_chunks_without_fin(server: Server) -> None:
    async with session_to(server, "/echo") as session:
        stream = await session.create_bidirectional_stream()
        async with asyncio.timeout(TIMEOUT):
            for chunk in (b"hello", b" ", b"world" * 100):
                await stream.write(chunk)  # no FIN: the echo must still come back
                got = b""
                while len(got) < len(chunk):
                    got += await stream.read(65536)
                assert got == chunk
            await stream.write(b"", end_stream=True)
            assert await stream.read() == b""  # FIN echoed after ours
            assert stream.at_eof()


async def test_echo_reflects_a_reset(server: Server) -> None:
    async with session_to(server, "/echo") as session:
        stream = await session.create_bidirectional_stream()
        async with asyncio.timeout(TIMEOUT):
            await stream.write(b"abc")
            assert await stream.readexactly(3) == b"abc"
            stream.reset(7)
            with pytest.raises(StreamReset) as info:
                await stream.read_all()
        assert info.value.code == 7


async def test_echo_bidi_large_and_parallel(server: Server) -> None:
    payloads = [os.urandom(300_000), b"x" * 10, b""]
    async with session_to(server, "/echo") as session:

        async def roundtrip(data: bytes) -> bytes:
            stream = await session.create_bidirectional_stream()
            writer = asyncio.ensure_future(stream.write_all(data))
            result = await stream.read_all()
            await writer
            return bytes(result)

        async with asyncio.timeout(TIMEOUT * 2):
            results = await asyncio.gather(*(roundtrip(p) for p in payloads))
        assert results == payloads


async def test_echo_unidirectional(server: Server) -> None:
    async with session_to(server, "/echo") as session:
        async with asyncio.timeout(TIMEOUT):
            for data in (b"uni payload", os.urandom(100_000), b""):
                out = await session.create_unidirectional_stream()
                await out.write_all(data)
                back = await session.accept_unidirectional_stream()
                assert await back.read_all() == data


async def test_echo_datagrams(server: Server) -> None:
    async with session_to(server, "/echo") as session:
        assert session.max_datagram_size > 100
        received: set[bytes] = set()
        async with asyncio.timeout(TIMEOUT):
            for attempt in range(20):  # datagrams are unreliable: retry a lost one
                data = f"datagram {attempt}".encode()
                session.send_datagram(data)
                try:
                    received.add(await session.receive_datagram(timeout=0.5))
                except TimeoutError:
                    continue
                if len(received) >= 3:
                    break
        assert len(received) >= 3
        assert all(d.startswith(b"datagram ") for d in received)


# ======================================================================================
# /stats and /status
# ======================================================================================


async def read_json(session: Any) -> dict[str, Any]:
    stream = await session.create_bidirectional_stream()
    async with asyncio.timeout(TIMEOUT):
        data = await stream.read_all()  # the server answers without waiting for our FIN
    document = json.loads(data)
    assert isinstance(document, dict)
    return document


async def test_stats(server: Server) -> None:
    async with session_to(server, "/stats") as session:
        first = await read_json(session)
        second = await read_json(session)
    for key in (
        "draft",
        "protocol",
        "max_datagram_size",
        "rtt",
        "bytes_sent",
        "bytes_received",
        "datagrams_sent",
        "datagrams_received",
        "streams_accepted",
    ):
        assert key in first, key
    assert first["draft"] == "draft16"
    assert first["path"] == "/stats"
    assert first["max_datagram_size"] > 0 and first["rtt"] > 0
    assert second["streams_accepted"] == first["streams_accepted"] + 1
    assert second["bytes_sent"] > first["bytes_sent"]


async def test_stats_on_draft02(server: Server) -> None:
    async with session_to(server, "/stats", drafts=("draft02",)) as session:
        stats = await read_json(session)
    assert stats["draft"] == "draft02"


async def test_status(server: Server) -> None:
    async with session_to(server, "/echo") as echo:
        stream = await echo.create_bidirectional_stream()
        await stream.write_all(b"count me")
        async with asyncio.timeout(TIMEOUT):
            assert await stream.read_all() == b"count me"
        async with session_to(server, "/status") as session:
            status = await read_json(session)
    assert status["status"] == "ok"
    assert status["uptime"] > 0
    assert status["sessions_active"] >= 2  # this one and the /echo one
    assert status["sessions_total"] >= 2
    for key in ("connections", "streams", "bytes_sent", "bytes_received", "datagrams_sent"):
        assert key in status, key
    assert status["connections"] >= 2


async def test_unknown_path_405(server: Server) -> None:
    with pytest.raises(SessionRejected) as info:
        async with session_to(server, "/nowhere"):
            pass
    assert info.value.status_code == 405  # draft-ietf-webtrans-http3-16 §3.2


async def test_keylog_written(server: Server) -> None:
    # a handshake of its own: the test must not depend on others having run first
    async with session_to(server, "/echo"):
        pass
    keylog: Path = server.keylog  # type: ignore[attr-defined]
    assert keylog.exists()
    text = keylog.read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in text or "SERVER_HANDSHAKE_TRAFFIC_SECRET" in text


async def test_qlog_written_by_both_ends(server: Server, tmp_path: Path) -> None:
    """``serve --qlog-dir`` and ``ClientConfig(qlog_dir=...)``: one trace per connection
    at each end, named by the connection's original destination CID."""
    async with session_to(server, "/echo", qlog_dir=str(tmp_path)) as session:
        stream = await session.create_bidirectional_stream()
        await stream.write_all(b"traced")
        assert await stream.read_all() == b"traced"
    (client_trace,) = tmp_path.glob("*_client.sqlog")
    odcid = client_trace.name.removesuffix("_client.sqlog")
    server_trace = server.qlog / f"{odcid}_server.sqlog"  # type: ignore[attr-defined]
    for trace in (client_trace, server_trace):
        records = [json.loads(r) for r in trace.read_text().split("\x1e") if r.strip()]
        names = {record.get("name") for record in records[1:]}
        assert {"transport:packet_sent", "transport:packet_received"} <= names, trace


# ======================================================================================
# shutdown
# ======================================================================================


async def test_sigterm_drains_then_closes_sessions() -> None:
    srv = Server("--shutdown-timeout", "1.0")
    try:
        config = ClientConfig(server_certificate_hashes=[srv.cert_hash])
        async with WebTransportClient(config=config) as client:
            session = await client.connect(f"https://127.0.0.1:{srv.port}/echo")
            draining = asyncio.ensure_future(session.events.wait_for("draining", timeout=TIMEOUT))
            srv.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(TIMEOUT):
                await draining  # WT_DRAIN_SESSION / GOAWAY first
                closed = await session.wait_closed()  # then closed: we did not leave
            assert closed.by_peer
            assert session.draining
            code = await asyncio.to_thread(srv.process.wait, TIMEOUT)  # exits by itself
    finally:
        _, err = srv.stop()
    assert code == 0, err


async def test_sigint_with_a_polite_client() -> None:
    srv = Server("--shutdown-timeout", "5.0", "--drafts", "draft16")
    try:
        config = ClientConfig(server_certificate_hashes=[srv.cert_hash])
        async with WebTransportClient(config=config) as client:
            session = await client.connect(f"https://127.0.0.1:{srv.port}/echo")
            started = time.monotonic()
            srv.process.send_signal(signal.SIGINT)
            async with asyncio.timeout(TIMEOUT):
                await session.events.wait_for("draining", timeout=TIMEOUT)
                await session.close(0, "bye")
                code = await asyncio.to_thread(srv.process.wait, TIMEOUT)
            assert code == 0
            assert time.monotonic() - started < 4.0  # did not wait the full timeout
    finally:
        srv.stop()


def test_given_certificate_files(tmp_path: Path) -> None:
    cert = generate_self_signed(wall_clock())
    cert.write(tmp_path / "c.pem", tmp_path / "k.pem")
    srv = Server("--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem"))
    try:
        assert [line.split()[0] for line in srv.lines] == ["LISTENING"]

        async def check() -> bytes:
            config = ClientConfig(server_certificate_hashes=[cert.sha256])
            async with WebTransportClient(config=config) as client:
                session = await client.connect(f"https://127.0.0.1:{srv.port}/echo")
                async with session:
                    stream = await session.create_bidirectional_stream()
                    await stream.write_all(b"with my cert")
                    async with asyncio.timeout(TIMEOUT):
                        return bytes(await stream.read_all())

        assert asyncio.run(check()) == b"with my cert"
    finally:
        code, err = srv.stop()
    assert code == 0, err


APP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pywebtransport.app import ServerApp
    from pywebtransport.config import ServerConfig
    from quic.aio import wall_clock
    from quic.tls.selfsigned import generate_self_signed

    cert = generate_self_signed(wall_clock())
    app = ServerApp(config=ServerConfig(
        certificate_chain=[cert.certificate], private_key=cert.private_key, port=0,
        shutdown_timeout=0.5))

    @app.on_startup
    def started():
        print("STARTUP", flush=True)

    @app.on_shutdown
    async def stopped():
        print("SHUTDOWN", flush=True)

    @app.route("/x")
    async def x(session):
        await session.wait_closed()

    async def announce():
        port = await app.wait_started()
        print(f"LISTENING {port}", flush=True)

    @app.on_startup
    def schedule():
        import asyncio
        asyncio.get_running_loop().create_task(announce())

    app.run(host="127.0.0.1", port=0)
    print("EXITED", flush=True)
    """
)


def test_app_run_stops_on_sigint(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "STARTUP"
        assert process.stdout.readline().startswith("LISTENING ")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.split() == ["SHUTDOWN", "EXITED"], (out, err)
