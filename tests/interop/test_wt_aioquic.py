"""WebTransport interop with aioquic (draft-02), both roles, over real UDP sockets.

* aioquic's client (``tests/peers/aioquic_wt.py client``, a separate process) against
  our interop server (``python -m pywebtransport serve --port 0``, a separate process):
  a session on ``/echo``, a small and a 1 MB bidi echo, datagram echo, a uni stream
  answered by a server uni stream, and a close with CLOSE_WEBTRANSPORT_SESSION after
  which our server ends its side of the CONNECT stream;
* our client (:class:`pywebtransport.client.WebTransportClient`, in this process)
  against aioquic's WebTransport server (``tests/peers/aioquic_wt.py server``): the
  negotiated draft is draft-02, bidi echo (small and 1 MB), datagram echo, uni stream
  echo, then a close with code and reason that the aioquic server prints
  (``SESSION-CLOSED``); a path the server does not serve is rejected with 405 (draft-16 §3.2).

The certificate of the aioquic server is pinned by its SHA-256 (browser
``serverCertificateHashes`` semantics), so no verification is switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from pywebtransport.exceptions import SessionRejected
from tests.peers import make_self_signed_cert
from tests.support.children import die_with_parent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
AIOQUIC_WT = REPO / "tests" / "peers" / "aioquic_wt.py"
ONE_MB = 1024 * 1024
START_TIMEOUT = 20.0


class LineProcess:
    """A child process whose stdout lines are collected; stopped by its PID."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.port = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> LineProcess:
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command,
            cwd=REPO,
            stdin=subprocess.PIPE,  # our death closes it: the aioquic peer then stops
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=die_with_parent,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_line("LISTENING ", timeout)
        self.port = int(line.split()[1])
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with ``prefix`` (earlier ones are kept in seen)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise TimeoutError(f"no {prefix!r} line; stderr:\n{self.stderr()}") from None
            if line is None:
                raise RuntimeError(f"process ended before {prefix!r}; stderr:\n{self.stderr()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def wait_json(self, prefix: str, timeout: float) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.wait_line(prefix + " ", timeout)[len(prefix) :])
        return record

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, grace: float = 5.0) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        return process.returncode

    def close(self) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@pytest.fixture
def certificate() -> Iterator[tuple[Path, Path, bytes]]:
    """cert.pem, key.pem and the SHA-256 of the certificate DER (ECDSA, 8 days)."""
    with tempfile.TemporaryDirectory(prefix="wt-aioquic-") as tmp:
        cert, key = make_self_signed_cert(Path(tmp))
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
        yield cert, key, hashlib.sha256(der).digest()


@pytest.fixture
def our_server() -> Iterator[LineProcess]:
    server = LineProcess([sys.executable, "-m", "pywebtransport", "serve", "--port", "0"])
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def aioquic_server(certificate: tuple[Path, Path, bytes]) -> Iterator[LineProcess]:
    cert, key, _ = certificate
    server = LineProcess(
        [sys.executable, str(AIOQUIC_WT), "server", "--port", "0", "--cert", str(cert),
         "--key", str(key)]
    )  # fmt: skip
    try:
        yield server.start()
    finally:
        server.close()


# ------------------------------------------------------------------ aioquic client → us


def test_aioquic_client_against_our_echo_server(our_server: LineProcess) -> None:
    url = f"https://127.0.0.1:{our_server.port}/echo"
    run = subprocess.run(
        [sys.executable, str(AIOQUIC_WT), "client", url, "--size", str(ONE_MB),
         "--datagrams", "20", "--close-code", "4242", "--close-reason", "aioquic done"],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert run.stdout.strip(), run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    context = f"{result}\nclient stderr:\n{run.stderr}\nserver stderr:\n{our_server.stderr()}"
    assert run.returncode == 0, context
    assert result["status"] == 200, context
    # draft-02 §3.3: the server names the draft it speaks.
    assert result["response_headers"].get("sec-webtransport-http3-draft") == "draft02", context
    assert result["bidi_small_ok"] is True, context
    assert result["bidi_big_ok"] is True and result["bidi_big_bytes"] == ONE_MB, context
    # Loopback: every datagram should come back; allow a little loss all the same.
    assert result["datagrams_received"] >= 18 and result["unexpected"] == 0, context
    assert result["uni_ok"] is True, context
    # After the client's CLOSE_WEBTRANSPORT_SESSION + FIN, our server FINs its side.
    assert result["server_fin"] is True, context


def test_aioquic_client_rejected_on_unknown_path(our_server: LineProcess) -> None:
    url = f"https://127.0.0.1:{our_server.port}/no-such-route"
    run = subprocess.run(
        [sys.executable, str(AIOQUIC_WT), "client", url],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] == 405, f"{result}\n{run.stderr}"  # draft-16 §3.2
    assert run.returncode == 1


# ------------------------------------------------------------------ us → aioquic server


async def _datagram_echo(session: Any, count: int) -> int:
    sent = {f"dgram-{i:03d}-".encode() + os.urandom(16) for i in range(count)}
    for data in sent:
        session.send_datagram(data)
        await asyncio.sleep(0.002)
    got = 0
    with contextlib.suppress(TimeoutError):
        while got < count:
            data = await session.receive_datagram(timeout=3.0)
            assert data in sent
            got += 1
    return got


async def test_our_client_against_aioquic_server(
    aioquic_server: LineProcess, certificate: tuple[Path, Path, bytes]
) -> None:
    _, _, cert_hash = certificate
    config = ClientConfig(server_certificate_hashes=[cert_hash], connect_timeout=10.0)
    url = f"https://127.0.0.1:{aioquic_server.port}/echo"
    async with asyncio.timeout(60), WebTransportClient(config=config) as client:
        session = await client.connect(url, headers={"origin": "https://pwt.test"})
        assert session.draft == "draft02"
        opened = aioquic_server.wait_json("SESSION", 5.0)
        assert opened["path"] == "/echo"
        assert opened["headers"].get("sec-webtransport-http3-draft02") == "1"
        assert opened["headers"].get("origin") == "https://pwt.test"

        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello aioquic", end_stream=True)
        assert await stream.read_all() == b"hello aioquic"

        big = os.urandom(ONE_MB)
        stream = await session.create_bidirectional_stream()
        writer = asyncio.create_task(stream.write_all(big))
        echoed = await stream.read_all()
        await writer
        assert len(echoed) == ONE_MB
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(big).digest()

        assert await _datagram_echo(session, 20) >= 18

        uni = await session.create_unidirectional_stream()
        await uni.write_all(b"one way from pywebtransport")
        incoming = await asyncio.wait_for(session.accept_unidirectional_stream(), 5.0)
        assert await incoming.read_all() == b"one way from pywebtransport"

        await session.close(error_code=4242, reason="pwt says bye")
        closed = aioquic_server.wait_json("SESSION-CLOSED", 5.0)
    assert closed == {
        "session_id": opened["session_id"],
        "code": 4242,
        "reason": "pwt says bye",
        "capsule": True,
    }


async def test_our_client_rejected_by_aioquic_server(
    aioquic_server: LineProcess, certificate: tuple[Path, Path, bytes]
) -> None:
    _, _, cert_hash = certificate
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    url = f"https://127.0.0.1:{aioquic_server.port}/nowhere"
    async with asyncio.timeout(30), WebTransportClient(config=config) as client:
        with pytest.raises(SessionRejected) as info:
            await client.connect(url)
    assert info.value.status_code == 404
