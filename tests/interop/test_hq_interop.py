"""The hq-interop endpoint (``python -m quic.interop``) against aioquic, and its parts.

Process tests run our endpoint and the aioquic hq peer (``tests/peers/aioquic_hq.py``)
as separate processes on 127.0.0.1 with OS-chosen ports; files are compared by SHA-256.
The codec, path and option tests and one in-process client/server run need no peer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from quic.aio import connect, serve
from quic.errors import StreamResetError
from quic.interop import EXIT_UNSUPPORTED, TESTCASES, main, parse_options
from quic.interop.client import client_configuration, plan_connections, run_client
from quic.interop.hq import (
    HqErrorCode,
    HqRequestError,
    encode_request,
    parse_request,
    parse_url,
    resolve_path,
)
from quic.interop.options import InteropOptions
from quic.interop.server import HqFileServer, server_configuration
from quic.tls.suites import CipherSuite
from tests.peers import make_self_signed_cert
from tests.support.children import die_with_parent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
AIOQUIC_HQ = REPO / "tests" / "peers" / "aioquic_hq.py"
SMALL, BIG = "small.bin", "big.bin"
CHACHA20 = "TLS_CHACHA20_POLY1305_SHA256"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """certs/{cert.pem,priv.key}, www/{small.bin (1 KB), big.bin (5 MB), sub/x.txt},
    and secret.txt next to www (must never be served)."""
    root = tmp_path_factory.mktemp("hq")
    (root / "certs").mkdir()
    _, key = make_self_signed_cert(root / "certs")
    key.rename(root / "certs" / "priv.key")
    www = root / "www"
    (www / "sub").mkdir(parents=True)
    (www / SMALL).write_bytes(os.urandom(1024))
    (www / BIG).write_bytes(os.urandom(5 * 1024 * 1024))
    (www / "sub" / "x.txt").write_bytes(b"nested\n")
    (root / "secret.txt").write_bytes(b"do not serve\n")
    (www / "link").symlink_to(root / "secret.txt")
    return root


class LineProcess:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _fill(self, timeout: float) -> bool:
        try:
            line = self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        if line is None:
            self._queue.put(None)
            return False
        self.lines.append(line)
        return True

    def records(self, keyword: str, count: int, since: int = 0, timeout: float = 10.0) -> list[Any]:
        """JSON payloads of the first ``count`` lines ``keyword {...}`` after line ``since``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                json.loads(line[len(keyword) + 1 :])
                for line in self.lines[since:]
                if line.startswith(keyword + " ")
            ]
            if len(found) >= count:
                return found[:count]
            if not self._fill(deadline - time.monotonic()):  # timed out, or stdout closed
                raise TimeoutError(f"{count} x {keyword} not seen: {self.lines}\n{self.stderr()}")

    def mark(self, settle: float = 0.2) -> int:
        """Index of the next line, after taking in what arrives within ``settle`` s."""
        while self._fill(settle):
            pass
        return len(self.lines)

    def port(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if line.startswith("LISTENING "):
                    return int(line.split()[1])
            if not self._fill(deadline - time.monotonic()):
                raise RuntimeError(f"no LISTENING line: {self.lines}\n{self.stderr()}")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        return self.process.returncode


def run(
    command: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=50
    )


def our_endpoint(*args: str) -> list[str]:
    return [sys.executable, "-m", "quic.interop", *args]


def aioquic_hq(*args: str) -> list[str]:
    return [sys.executable, str(AIOQUIC_HQ), *args]


def aioquic_server(tree: Path, *extra: str) -> LineProcess:
    certs = tree / "certs"
    return LineProcess(
        aioquic_hq(
            "server",
            *("--cert", str(certs / "cert.pem"), "--key", str(certs / "priv.key")),
            *("--www", str(tree / "www"), *extra),
        )
    )


@pytest.fixture(scope="module")
def peer_server(tree: Path) -> Iterator[LineProcess]:
    pytest.importorskip("aioquic")
    server = aioquic_server(tree)
    server.port()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def our_server(tree: Path) -> Iterator[LineProcess]:
    server = LineProcess(
        our_endpoint(
            "server",
            *("--testcase", "transfer", "--port", "0"),
            *("--certs", str(tree / "certs"), "--www", str(tree / "www")),
        )
    )
    server.port()
    yield server
    assert server.stop() == 0, server.stderr()


def peer_client(downloads: Path, *urls: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    pytest.importorskip("aioquic")
    done = run(aioquic_hq("client", "--downloads", str(downloads), *extra, *urls))
    assert done.stdout.strip(), done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["returncode"] = done.returncode
    return result


# --------------------------------------------------------------------------- our server


def test_aioquic_client_downloads_from_our_server(
    tree: Path, our_server: LineProcess, tmp_path: Path
) -> None:
    port = our_server.port()
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG, "sub/x.txt")]
    result = peer_client(tmp_path, *urls)
    assert result["returncode"] == 0 and result["ok"], result
    assert result["connections"] == 1
    www = tree / "www"
    assert [r["sha256"] for r in result["results"]] == [
        sha256(www / SMALL),
        sha256(www / BIG),
        sha256(www / "sub" / "x.txt"),
    ]
    assert sha256(tmp_path / BIG) == sha256(www / BIG)


def test_our_server_one_connection_per_url(our_server: LineProcess, tmp_path: Path) -> None:
    port = our_server.port()
    urls = [f"https://127.0.0.1:{port}/{SMALL}", f"https://127.0.0.1:{port}/sub/x.txt"]
    result = peer_client(tmp_path, *urls, extra=["--multiconnect"])
    assert result["returncode"] == 0 and result["ok"] and result["connections"] == 2, result


@pytest.mark.parametrize(
    "path",
    [
        "/missing.bin",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/link",
        "/sub",
    ],
)
def test_our_server_resets_unknown_files_and_traversal(
    our_server: LineProcess, tmp_path: Path, path: str
) -> None:
    result = peer_client(tmp_path, f"https://127.0.0.1:{our_server.port()}{path}")
    assert result["returncode"] == 1, result
    assert result["results"][0]["error"] == f"stream reset, code {int(HqErrorCode.NOT_FOUND)}"
    assert not (tmp_path / "secret.txt").exists()


# --------------------------------------------------------------------------- our client


def test_our_client_transfer_from_aioquic(
    tree: Path, peer_server: LineProcess, tmp_path: Path
) -> None:
    port, mark = peer_server.port(), peer_server.mark()
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG)]
    done = run(
        our_endpoint("client", "--testcase", "transfer", "--downloads", str(tmp_path), *urls)
    )
    assert done.returncode == 0, done.stderr
    for name in (SMALL, BIG):
        assert sha256(tmp_path / name) == sha256(tree / "www" / name)
    requests = peer_server.records("REQUEST", 2, since=mark)
    assert {r["path"] for r in requests} == {"/" + SMALL, "/" + BIG}
    assert len({r["odcid"] for r in requests}) == 1  # one connection


def test_our_client_chacha20(tree: Path, peer_server: LineProcess, tmp_path: Path) -> None:
    port, mark = peer_server.port(), peer_server.mark()
    url = f"https://127.0.0.1:{port}/{BIG}"
    done = run(our_endpoint("client", "--testcase", "chacha20", "--downloads", str(tmp_path), url))
    assert done.returncode == 0, done.stderr
    assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
    (connected,) = peer_server.records("CONNECTED", 1, since=mark)
    assert connected["cipher_suite"] == CHACHA20 and connected["alpn"] == "hq-interop"
    (request,) = peer_server.records("REQUEST", 1, since=mark)
    assert request["odcid"] == connected["odcid"] and request["bytes"] == 5 * 1024 * 1024


def test_our_client_chacha20_offers_nothing_else(tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("aioquic")
    server = aioquic_server(tree, "--cipher-suites", "0x1301,0x1302")
    try:
        url = f"https://127.0.0.1:{server.port()}/{SMALL}"
        failed = run(
            our_endpoint("client", "--testcase", "chacha20", "--downloads", str(tmp_path), url)
        )
        assert failed.returncode == 1, failed.stderr
        assert not (tmp_path / SMALL).exists()
        passed = run(
            our_endpoint("client", "--testcase", "handshake", "--downloads", str(tmp_path), url)
        )
        assert passed.returncode == 0, passed.stderr
    finally:
        server.stop()


def test_our_client_multiconnect(tree: Path, peer_server: LineProcess, tmp_path: Path) -> None:
    port, mark = peer_server.port(), peer_server.mark()
    names = [SMALL, "sub/x.txt", BIG]
    urls = [f"https://127.0.0.1:{port}/{name}" for name in names]
    done = run(
        our_endpoint("client", "--testcase", "multiconnect", "--downloads", str(tmp_path), *urls)
    )
    assert done.returncode == 0, done.stderr
    requests = peer_server.records("REQUEST", 3, since=mark)
    assert [r["path"] for r in requests] == ["/" + n for n in names]  # sequential, in order
    assert len({r["odcid"] for r in requests}) == 3  # one connection each
    assert len(peer_server.records("CONNECTED", 3, since=mark)) == 3
    assert sha256(tmp_path / "x.txt") == sha256(tree / "www" / "sub" / "x.txt")


def test_our_client_fails_on_missing_file(peer_server: LineProcess, tmp_path: Path) -> None:
    port = peer_server.port()
    urls = [f"https://127.0.0.1:{port}/{SMALL}", f"https://127.0.0.1:{port}/nothing.bin"]
    done = run(
        our_endpoint("client", "--testcase", "transfer", "--downloads", str(tmp_path), *urls)
    )
    assert done.returncode == 1
    assert (tmp_path / SMALL).exists() and not (tmp_path / "nothing.bin").exists()
    assert "stream reset" in done.stderr


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("testcase", ["no-such-case"])
def test_unsupported_test_case_exits_127(role: str, testcase: str) -> None:
    args = ["--testcase", testcase] if role == "server" else ["--testcase", testcase, "https://x/y"]
    assert main([role, *args], environ={}) == EXIT_UNSUPPORTED


def test_unsupported_test_case_from_environment_exits_127_in_a_process() -> None:
    env = {**os.environ, "ROLE": "client", "TESTCASE": "no-such-case", "REQUESTS": "https://x/y"}
    done = run(our_endpoint(), env=env)
    assert done.returncode == 127, done.stderr


def test_environment_mode_client(tree: Path, peer_server: LineProcess, tmp_path: Path) -> None:
    port = peer_server.port()
    keylog, downloads = tmp_path / "keys.log", tmp_path / "downloads"
    env = {
        **os.environ,
        "ROLE": "client",
        "TESTCASE": "transfer",
        "REQUESTS": f"https://127.0.0.1:{port}/{SMALL} https://127.0.0.1:{port}/sub/x.txt",
        "DOWNLOADS": str(downloads),
        "SSLKEYLOGFILE": str(keylog),
        "QLOGDIR": str(tmp_path / "qlog"),
    }
    done = run(our_endpoint(), env=env)
    assert done.returncode == 0, done.stderr
    assert sha256(downloads / SMALL) == sha256(tree / "www" / SMALL)
    assert (downloads / "x.txt").read_bytes() == b"nested\n"
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} <= labels


def free_udp_port() -> int:
    family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return int(sock.getsockname()[1])


def test_environment_mode_server(tree: Path, tmp_path: Path) -> None:
    keylog = tmp_path / "server-keys.log"
    port = free_udp_port()
    env = {
        **os.environ,
        "ROLE": "server",
        "TESTCASE": "handshake",
        "PORT": str(port),
        "CERTS": str(tree / "certs"),
        "WWW": str(tree / "www"),
        "SSLKEYLOGFILE": str(keylog),
    }
    server = LineProcess(our_endpoint(), env=env)
    try:
        assert server.port() == port
        result = peer_client(tmp_path, f"https://127.0.0.1:{port}/{SMALL}")
        assert result["returncode"] == 0 and result["ok"], result
        assert result["results"][0]["sha256"] == sha256(tree / "www" / SMALL)
    finally:
        assert server.stop() == 0, server.stderr()
    assert "SERVER_TRAFFIC_SECRET_0" in keylog.read_text()


# --------------------------------------------------------------------------- parts


def test_request_line_round_trip() -> None:
    assert encode_request("/a/b.txt") == b"GET /a/b.txt\r\n"
    assert encode_request("x") == b"GET /x\r\n"
    assert encode_request("/a b") == b"GET /a%20b\r\n"
    assert parse_request(b"GET /a/b.txt\r\n") == "/a/b.txt"
    assert parse_request(b"GET /a%20b?q=1#f\n") == "/a b"
    assert parse_request(b"GET /no-newline") == "/no-newline"  # the FIN ends it
    assert parse_request(encode_request("/caf\u00e9")) == "/caf\u00e9"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"POST /x\r\n",
        b"GET\r\n",
        b"GET x\r\n",
        b"GET /a b\r\n",
        b"GET /\xff\r\n",
        b"GET /%ff\r\n",
        b"GET /%00\r\n",
        b"GET /\x01\r\n",
        b"GET /" + b"a" * 9000,
    ],
)
def test_bad_requests_raise_typed_error(data: bytes) -> None:
    with pytest.raises(HqRequestError) as info:
        parse_request(data)
    assert info.value.error_code is HqErrorCode.BAD_REQUEST


def test_resolve_path_stays_below_root(tree: Path) -> None:
    root = (tree / "www").resolve()
    assert resolve_path(root, "/" + SMALL) == root / SMALL
    assert resolve_path(root, "//sub//x.txt") == root / "sub" / "x.txt"
    assert resolve_path(root, "/sub/../" + SMALL) == root / SMALL
    for path in ["/", "/sub", "/../secret.txt", "/sub/../../secret.txt", "/link", "/nope"]:
        assert resolve_path(root, path) is None, path
    assert resolve_path(root, "/" + "a" * 5000) is None  # name too long: no OSError escapes


def test_parse_url() -> None:
    d = parse_url("https://server4:443/abc?x=1")
    assert (d.host, d.port, d.target, d.filename) == ("server4", 443, "/abc?x=1", "abc")
    d = parse_url("https://[fd00:cafe::1]/dir/f%20g")
    assert (d.host, d.port, d.target, d.filename) == ("fd00:cafe::1", 443, "/dir/f%20g", "f g")
    for bad in ["https:///file", "https://h/", "https://h:99999/f", "https://h/.."]:
        with pytest.raises(ValueError):
            parse_url(bad)


def test_plan_connections() -> None:
    urls = ["https://a/1", "https://b:4433/2", "https://a/3"]
    downloads = [parse_url(u) for u in urls]
    shared = plan_connections(downloads, TESTCASES["transfer"])
    assert [[d.url for d in group] for group in shared] == [[urls[0], urls[2]], [urls[1]]]
    single = plan_connections(downloads, TESTCASES["multiconnect"])
    assert [[d.url for d in group] for group in single] == [[u] for u in urls]
    assert TESTCASES["chacha20"].cipher_suites == (CipherSuite.TLS_CHACHA20_POLY1305_SHA256,)


def test_options_arguments_override_environment_and_defaults() -> None:
    env = {"TESTCASE": "transfer", "REQUESTS": "https://s/1 https://s/2", "DOWNLOADS": "/dl"}
    opts = parse_options(["client", "--testcase", "handshake", "https://o/3"], env)
    assert (opts.role, opts.testcase, opts.requests) == ("client", "handshake", ("https://o/3",))
    assert opts.downloads == Path("/dl")
    opts = parse_options([], {**env, "ROLE": "client", "SSLKEYLOGFILE": "/k", "QLOGDIR": "/q"})
    assert opts.requests == ("https://s/1", "https://s/2") and opts.testcase == "transfer"
    assert (opts.keylog_file, opts.qlog_dir) == ("/k", "/q")
    opts = parse_options(["server"], {"TESTCASE": "handshake"})
    assert (opts.port, opts.certs, opts.www, opts.host) == (443, Path("/certs"), Path("/www"), "::")
    opts = parse_options(["server", "--port", "0", "--www", "/w"], {"TESTCASE": "x", "PORT": "1"})
    assert (opts.port, opts.www) == (0, Path("/w"))
    for argv, environ in [([], {}), (["server"], {}), (["server"], {"TESTCASE": "t", "PORT": "x"})]:
        with pytest.raises(SystemExit) as info:
            parse_options(argv, environ)
        assert info.value.code == 2


async def test_in_process_client_and_server(tree: Path, tmp_path: Path) -> None:
    """Our client against our server in one event loop (no peer needed)."""
    case = TESTCASES["transfer"]
    files = HqFileServer(tree / "www")
    server_opts = InteropOptions(role="server", testcase="transfer", certs=tree / "certs")
    config = server_configuration(server_opts, case)
    server = await serve("127.0.0.1", 0, config, files.serve_session)
    async with server:
        base = f"https://127.0.0.1:{server.port}/"
        options = InteropOptions(
            role="client",
            testcase="transfer",
            downloads=tmp_path / "new" / "dir",
            requests=(base + SMALL, base + "sub/x.txt", base + "missing"),
            timeout=20.0,
        )
        assert await run_client(options, case) == 1  # one of three is missing
        assert sha256(tmp_path / "new" / "dir" / SMALL) == sha256(tree / "www" / SMALL)
        assert not (tmp_path / "new" / "dir" / "missing").exists()
        assert (files.served, files.refused) == (2, 1)
        options = InteropOptions(
            role="client", testcase="chacha20", downloads=tmp_path, requests=(base + SMALL,)
        )
        assert await asyncio.wait_for(run_client(options, TESTCASES["chacha20"]), 20) == 0
        # a stream that is not a GET request is reset with BAD_REQUEST
        async with connect("127.0.0.1", server.port, client_configuration(case)) as session:
            reader, writer = await session.create_stream()
            writer.write(b"POST /small.bin\r\n")
            writer.write_eof()
            with pytest.raises(StreamResetError) as info:
                await asyncio.wait_for(reader.read(), 10)
            assert info.value.error_code == HqErrorCode.BAD_REQUEST
