"""``python -m h3 get|serve``: our CLI client against our CLI server (processes), plus
the static file handler in-process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from h3.aio import H3Request
from h3.cli import EXIT_FAILURE, EXIT_HTTP_ERROR, StaticFileHandler, main, resolve_file
from h3.events import Headers
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
BIG = 10 * 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """www/{index.html, big.bin (10 MB), page.css, sub/x.txt, link -> ../secret.txt},
    secret.txt next to www; certs/{cert.pem,key.pem} (self-signed for 127.0.0.1)."""
    root = tmp_path_factory.mktemp("h3cli")
    www = root / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_bytes(b"<h1>hello</h1>\n")
    (www / "big.bin").write_bytes(os.urandom(BIG))
    (www / "page.css").write_bytes(b"body {}\n")
    (www / "sub" / "x.txt").write_bytes(b"nested\n")
    (www / "sub" / "index.html").write_bytes(b"sub index\n")
    (root / "secret.txt").write_bytes(b"do not serve\n")
    (www / "link").symlink_to(root / "secret.txt")
    (root / "certs").mkdir()
    cert = generate_self_signed(wall_clock())
    cert.write(root / "certs" / "cert.pem", root / "certs" / "key.pem")
    return root


class Server:
    """``python -m h3 serve`` as a child process; stdout lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "h3", "serve", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 20
        while not any(line.startswith("LISTENING ") for line in self.lines):
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                raise RuntimeError(f"no LISTENING line: {self.lines} {self.process.stderr}")
            self.lines.append(line)
        self.port = int(self.lines[-1].split()[1])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture(scope="module")
def server(tree: Path) -> Iterator[Server]:
    srv = Server("--root", str(tree / "www"), "--port", "0", "--host", "127.0.0.1")
    yield srv
    code, err = srv.stop()
    assert code == 0, err


def get(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "h3", "get", *args],
        cwd=REPO,
        capture_output=True,
        timeout=timeout,
    )


def test_serve_prints_the_self_signed_certificate_hashes(server: Server) -> None:
    assert len(server.lines) == 3, server.lines
    cert_line, spki_line, listening = server.lines
    assert listening == f"LISTENING {server.port}" and server.port > 0
    keyword, digest = cert_line.split()
    assert keyword == "CERT-SHA256" and len(bytes.fromhex(digest)) == 32
    keyword, spki = spki_line.split()
    assert keyword == "SPKI-SHA256-BASE64" and len(base64.b64decode(spki, validate=True)) == 32


def test_get_10_mb_file_to_disk(tree: Path, server: Server, tmp_path: Path) -> None:
    out = tmp_path / "big.out"
    done = get(f"https://127.0.0.1:{server.port}/big.bin", "-o", str(out), "--insecure")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"" and b"[" not in done.stderr  # no progress bar: not a TTY
    assert sha256(out.read_bytes()) == sha256((tree / "www" / "big.bin").read_bytes())


def test_get_prints_body_to_stdout(server: Server) -> None:
    base = f"https://127.0.0.1:{server.port}"
    done = get(base + "/", "--insecure")
    assert (done.returncode, done.stdout) == (0, b"<h1>hello</h1>\n"), done.stderr
    done = get(base + "/sub/", "--insecure", "-H", "x-test: 1")
    assert (done.returncode, done.stdout) == (0, b"sub index\n"), done.stderr
    done = get(base + "/sub/x.txt?query=1", "--insecure")
    assert (done.returncode, done.stdout) == (0, b"nested\n"), done.stderr


@pytest.mark.parametrize(
    "path",
    ["/missing.bin", "/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt", "/link"],
)
def test_get_missing_or_outside_root_is_404(server: Server, tmp_path: Path, path: str) -> None:
    out = tmp_path / "out"
    done = get(f"https://127.0.0.1:{server.port}{path}", "--insecure", "-o", str(out))
    assert done.returncode == EXIT_HTTP_ERROR
    assert b"HTTP 404" in done.stderr
    assert not out.exists()


def test_get_verifies_certificates(tree: Path, server: Server) -> None:
    url = f"https://127.0.0.1:{server.port}/"
    done = get(url)  # the generated certificate is in no trust store
    assert done.returncode == EXIT_FAILURE and b"error:" in done.stderr


def test_serve_with_given_certificate_and_cafile(tree: Path) -> None:
    certs = tree / "certs"
    srv = Server(
        *("--root", str(tree / "www"), "--port", "0", "--host", "127.0.0.1"),
        *("--cert", str(certs / "cert.pem"), "--key", str(certs / "key.pem")),
    )
    try:
        assert srv.lines == [f"LISTENING {srv.port}"]  # no hashes for a given certificate
        done = get(f"https://127.0.0.1:{srv.port}/page.css", "--cafile", str(certs / "cert.pem"))
        assert (done.returncode, done.stdout) == (0, b"body {}\n"), done.stderr
    finally:
        code, err = srv.stop()
    assert code == 0, err


def test_get_failures(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/x"
        done = get(url, "--insecure", "--timeout", "1", "-o", str(tmp_path / "f"))
    assert done.returncode == EXIT_FAILURE and b"timed out" in done.stderr
    # nothing listening: the OS says so (ICMP port unreachable) and get fails at once
    refused = get(
        "https://127.0.0.1:9/x", "--insecure", "--timeout", "30", "-o", str(tmp_path / "f")
    )
    assert refused.returncode == EXIT_FAILURE and b"refused" in refused.stderr.lower()
    assert not (tmp_path / "f").exists()
    assert get("--cafile", "a", "--insecure", "https://h/").returncode == 2  # exclusive
    assert main(["get", "https:///nohost"]) == 2


# --------------------------------------------------------------------------- in-process


class FakeExchange:
    """What :class:`H3Request` reads from: a stream id, an ended body."""

    def __init__(self) -> None:
        self.stream_id = 0
        self.body = asyncio.StreamReader()
        self.body.feed_eof()
        self.trailers = None
        self.early_data = False


async def call(handler: StaticFileHandler, method: str, path: str) -> tuple[int, Headers, bytes]:
    head: Headers = [
        (b":method", method.encode()),
        (b":scheme", b"https"),
        (b":authority", b"x"),
        (b":path", path.encode()),
    ]
    request = H3Request(FakeExchange(), head)  # type: ignore[arg-type]
    response = await handler(request)
    body = response.body
    if isinstance(body, bytes):
        data = body
    else:
        assert body is not None and not isinstance(body, (bytearray, memoryview))
        data = b"".join([chunk async for chunk in body])
    headers = [(k.lower().encode(), v.encode()) for k, v in response.headers]  # type: ignore[union-attr, misc]
    return response.status, headers, data


async def test_static_file_handler(tree: Path) -> None:
    handler = StaticFileHandler(tree / "www")
    status, headers, body = await call(handler, "GET", "/page.css")
    assert (status, body) == (200, b"body {}\n")
    assert (b"content-type", b"text/css") in headers and (b"content-length", b"8") in headers
    status, headers, body = await call(handler, "GET", "/big.bin")
    assert status == 200 and len(body) == BIG
    assert (b"content-type", b"application/octet-stream") in headers
    assert (await call(handler, "GET", "/"))[2] == b"<h1>hello</h1>\n"
    status, headers, _ = await call(handler, "POST", "/")
    assert status == 405 and (b"allow", b"GET, HEAD") in headers
    assert (await call(handler, "GET", "/%ff"))[0] == 400
    assert (await call(handler, "GET", "/a%00b"))[0] == 400
    for path in ["/nope", "/../secret.txt", "/%2e%2e/secret.txt", "/link", "//etc/passwd"]:
        assert (await call(handler, "GET", path))[0] == 404, path


def test_resolve_file(tree: Path) -> None:
    root = (tree / "www").resolve()
    assert resolve_file(root, "/") == root / "index.html"
    assert resolve_file(root, "/sub") == root / "sub" / "index.html"
    assert resolve_file(root, "//sub//x.txt") == root / "sub" / "x.txt"
    for path in ["/../secret.txt", "/sub/../../secret.txt", "/link", "/nope", "/" + "a" * 5000]:
        assert resolve_file(root, path) is None, path


def test_main_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve"])  # --root is required
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["get", "https://h/", "-H", "no-colon"])
    assert info.value.code == 2


def test_args_sequence_type() -> None:
    args: Sequence[str] = ("serve", "--root", "/nonexistent-dir-for-h3-test", "--port", "0")
    assert main(args) == EXIT_FAILURE
