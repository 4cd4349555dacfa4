"""Helpers to run independent interop peers as separate processes.

The peers themselves (e.g. ``aioquic_peer.py``) are standalone scripts; this module only
spawns them and parses their line protocol, so importing it does not import aioquic:

* :func:`make_self_signed_cert` writes a throwaway ECDSA P-256 certificate and key;
* :class:`PeerServer` starts ``aioquic_peer.py server``, waits for ``LISTENING <port>``
  and collects the ``CLOSED {json}`` lines printed as connections end;
* :func:`run_peer_client` runs one ``aioquic_peer.py client`` scenario and returns its
  JSON result line (plus ``returncode``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.children import die_with_parent

AIOQUIC_PEER = Path(__file__).with_name("aioquic_peer.py")


def make_self_signed_cert(directory: Path, common_name: str = "localhost") -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (ECDSA P-256, SAN localhost + 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class PeerServer:
    """``aioquic_peer.py server`` in a child process (use as a context manager)."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        alpn: str,
        mode: str = "echo",
        extra_args: Sequence[str] = (),
        script: Path = AIOQUIC_PEER,
    ) -> None:
        self.command = [
            sys.executable,
            str(script),
            "server",
            "--port",
            "0",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--alpn",
            alpn,
            "--mode",
            mode,
            *extra_args,
        ]
        self.port = 0
        self.closed: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self, timeout: float = 10.0) -> PeerServer:
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,  # closing it (or our death) stops the server
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=die_with_parent,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        line = self._next_line(timeout)
        if line is None or not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"peer server did not start: {line!r}\n{self.stderr()}")
        self.port = int(line.split()[1])
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_closed(self, peer_port: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The first ``CLOSED`` record (for the client at ``peer_port`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.closed:
                if peer_port is None or (record.get("peer") or [None, None])[1] == peer_port:
                    self.closed.remove(record)
                    return record
            line = self._next_line(max(deadline - time.monotonic(), 0.0))
            if line is None:
                raise TimeoutError(f"no CLOSED line for port {peer_port}\n{self.stderr()}")
            if line.startswith("CLOSED "):
                self.closed.append(json.loads(line[len("CLOSED ") :]))

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> PeerServer:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_peer_client(
    port: int,
    alpn: str,
    scenario: str,
    *args: str,
    host: str = "127.0.0.1",
    timeout: float = 20.0,
    script: Path = AIOQUIC_PEER,
) -> dict[str, Any]:
    """Run one client scenario; return its JSON line with ``returncode`` added."""
    command = [
        sys.executable,
        str(script),
        "client",
        "--host",
        host,
        "--port",
        str(port),
        "--alpn",
        alpn,
        "--insecure",
        "--scenario",
        scenario,
        "--timeout",
        str(timeout),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10.0)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"peer client printed nothing (rc={done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["returncode"] = done.returncode
    if done.stderr:
        result["stderr"] = done.stderr
    return result
