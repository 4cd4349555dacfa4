"""Helpers for the quic-interop-runner WebTransport tests: the runner's directory layout
(certificates, www, downloads) in a temporary directory, and endpoints as processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from quic.aio import wall_clock
from quic.tls.selfsigned import generate_ca_and_leaf
from tests.support.children import die_with_parent

__all__ = [
    "REPO",
    "RunnerEndpoint",
    "Tree",
    "digest",
    "make_certs",
    "make_files",
    "our_command",
    "run_endpoint",
]

REPO = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT = 60.0


def make_certs(directory: Path) -> Path:
    """The runner's certificate directory: ``ca.pem``, ``cert.pem``, ``priv.key``
    (a throw-away CA and a leaf for localhost / 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, leaf = generate_ca_and_leaf(wall_clock(), hostnames=("localhost", "127.0.0.1"))
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.certificate.public_bytes(pem))
    (directory / "cert.pem").write_bytes(leaf.certificate.public_bytes(pem))
    (directory / "priv.key").write_bytes(
        leaf.private_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory


def make_files(directory: Path, sizes: Sequence[int], prefix: str = "f") -> list[str]:
    """Random files ``<prefix><i>`` of the given sizes; their names."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, size in enumerate(sizes):
        name = f"{prefix}{i}"
        (directory / name).write_bytes(os.urandom(size))
        names.append(name)
    return names


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Tree:
    """One test's directories, laid out as the runner mounts them."""

    root: Path

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def server_www(self) -> Path:
        return self.root / "server_www"

    @property
    def client_www(self) -> Path:
        return self.root / "client_www"

    @property
    def server_downloads(self) -> Path:
        return self.root / "server_downloads"

    @property
    def client_downloads(self) -> Path:
        return self.root / "client_downloads"


def our_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pywebtransport.interop", *args]


class RunnerEndpoint:
    """A server endpoint process; its port from the ``LISTENING <port>`` line."""

    def __init__(
        self,
        command: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
        *,
        our_package: bool = True,
    ) -> None:
        """``our_package``: the environment imports this repository (PYTHONPATH); else
        ``env`` is the whole environment (a peer with its own ``pywebtransport``)."""
        self.log = log
        self._stderr = log.open("wb")
        if our_package:
            full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        else:
            full_env = dict(env or {})
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("LISTENING "):
                return int(line.split()[1])
        self.process.kill()
        raise RuntimeError(f"no LISTENING line:\n{self.stderr()}")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._stderr.close()
        return code


def run_endpoint(
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = PROCESS_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a client endpoint to completion."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        list(command),
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=die_with_parent,
    )
