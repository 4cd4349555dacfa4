"""The runner's ``http3`` test case of ``python -m quic.interop`` (ALPN h3, GET requests):
our client against our server, and each against aioquic's HTTP/3 peer
(``tests/peers/aioquic_h3.py``), as processes on 127.0.0.1; files compared by SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from quic.interop import TESTCASES
from tests.peers import make_self_signed_cert
from tests.support.children import die_with_parent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
AIOQUIC_H3 = REPO / "tests" / "peers" / "aioquic_h3.py"
SMALL, BIG = "small.bin", "big.bin"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """certs/{cert.pem,priv.key}, www/{small.bin, big.bin (5 MB), sub/x.txt}, secret.txt."""
    root = tmp_path_factory.mktemp("http3")
    (root / "certs").mkdir()
    _, key = make_self_signed_cert(root / "certs")
    key.rename(root / "certs" / "priv.key")
    www = root / "www"
    (www / "sub").mkdir(parents=True)
    (www / SMALL).write_bytes(os.urandom(1024))
    (www / BIG).write_bytes(os.urandom(5 * 1024 * 1024))
    (www / "sub" / "x.txt").write_bytes(b"nested\n")
    (root / "secret.txt").write_bytes(b"do not serve\n")
    return root


class Process:
    """A server child process; waits for ``LISTENING <port>`` on its stdout."""

    def __init__(self, command: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 20
        while not self.lines or not self.lines[-1].startswith("LISTENING "):
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                raise RuntimeError(f"no LISTENING line: {self.lines}")
            self.lines.append(line)
        self.port = int(self.lines[-1].split()[1])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def records(self, keyword: str) -> list[Any]:
        while True:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        prefix = keyword + " "
        return [json.loads(line[len(prefix) :]) for line in self.lines if line.startswith(prefix)]

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def endpoint(*args: str) -> list[str]:
    return [sys.executable, "-m", "quic.interop", *args]


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=REPO, capture_output=True, text=True, timeout=100)


@pytest.fixture(scope="module")
def our_server(tree: Path) -> Iterator[Process]:
    server = Process(
        endpoint(
            "server",
            *("--testcase", "http3", "--port", "0"),
            *("--certs", str(tree / "certs"), "--www", str(tree / "www")),
        )
    )
    yield server
    code, err = server.stop()
    assert code == 0, err


def our_client(downloads: Path, *urls: str) -> subprocess.CompletedProcess[str]:
    return run(endpoint("client", "--testcase", "http3", "--downloads", str(downloads), *urls))


def test_http3_is_a_supported_case() -> None:
    assert TESTCASES["http3"].plugin and not TESTCASES["transfer"].plugin


def test_http3_runners_come_from_the_h3_entry_point() -> None:
    # quic.interop never imports h3 (tests/test_layering.py): the installed package
    # metadata points it at h3.interop
    import h3.interop
    from quic.interop import plugin_runners

    assert plugin_runners("http3") == h3.interop.RUNNERS
    assert plugin_runners("no-such-case") is None


def test_our_client_and_our_server(tree: Path, our_server: Process, tmp_path: Path) -> None:
    base = f"https://127.0.0.1:{our_server.port}/"
    done = our_client(tmp_path, base + SMALL, base + BIG, base + "sub/x.txt")
    assert done.returncode == 0, done.stderr
    for name in (SMALL, BIG):
        assert sha256(tmp_path / name) == sha256(tree / "www" / name)
    assert (tmp_path / "x.txt").read_bytes() == b"nested\n"


@pytest.mark.parametrize("path", ["/missing.bin", "/../secret.txt", "/%2e%2e/secret.txt"])
def test_our_client_fails_on_404(
    tree: Path, our_server: Process, tmp_path: Path, path: str
) -> None:
    base = f"https://127.0.0.1:{our_server.port}"
    done = our_client(tmp_path, base + "/" + SMALL, base + path)
    assert done.returncode == 1
    assert "HTTP status 404" in done.stderr
    assert (tmp_path / SMALL).exists()
    assert not (tmp_path / "secret.txt").exists() and not (tmp_path / "missing.bin").exists()


def test_aioquic_client_against_our_http3_server(
    tree: Path, our_server: Process, tmp_path: Path
) -> None:
    pytest.importorskip("aioquic")
    out = tmp_path / "big"
    url = f"https://127.0.0.1:{our_server.port}/{BIG}"
    done = run([sys.executable, str(AIOQUIC_H3), "client", url, "-o", str(out), "--insecure"])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr)
    assert result["alpn"] == "h3" and result["status"] == 200
    assert result["sha256"] == sha256(tree / "www" / BIG) == sha256(out)
    missing = run([sys.executable, str(AIOQUIC_H3), "client", url + ".nope", "--insecure"])
    assert missing.returncode == 1 and json.loads(missing.stdout.splitlines()[-1])["status"] == 404


def test_our_client_against_aioquic_http3_server(tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("aioquic")
    certs = tree / "certs"
    server = Process(
        [
            *(sys.executable, str(AIOQUIC_H3), "server", "--port", "0"),
            *("--cert", str(certs / "cert.pem"), "--key", str(certs / "priv.key")),
            *("--root", str(tree / "www")),
        ]
    )
    try:
        base = f"https://127.0.0.1:{server.port}/"
        done = our_client(tmp_path, base + SMALL, base + BIG)
        assert done.returncode == 0, done.stderr
        for name in (SMALL, BIG):
            assert sha256(tmp_path / name) == sha256(tree / "www" / name)
        requests = server.records("REQUEST")
        assert sorted(r["path"] for r in requests) == sorted(["/" + BIG, "/" + SMALL])
        assert len(server.records("CONNECTED")) == 1  # one connection for both
    finally:
        server.stop()
