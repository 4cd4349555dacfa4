"""HTTP/3 interop: our CLI (``python -m h3``) against aioquic, ngtcp2 and headless Chromium.

Every peer is a separate process talking over real UDP sockets on 127.0.0.1:

* our client (``python -m h3 get URL -o FILE``) downloads a 10 MB file from the aioquic
  HTTP/3 peer (``tests/peers/aioquic_h3.py server``) and from Debian's ngtcp2
  ``gtlsserver``; the file is compared by SHA-256;
* aioquic's client (``tests/peers/aioquic_h3.py client``) and ``gtlsclient`` download the
  same 10 MB file from our server (``python -m h3 serve``);
* headless Chromium (helpers in ``tests/interop/chromium.py``) loads a static page from
  our server with ``--dump-dom``, and a page whose JavaScript fetches a 1 MB file over
  the same origin, hashes it with ``crypto.subtle`` and POSTs the digest and the
  negotiated protocol (``nextHopProtocol``, must be ``h3``) to a plain-HTTP result server
  of the test; once more with ``--quic-version=RFCv2`` against the same file handler
  served through :func:`h3.aio.serve_h3` offering QUIC v1 and v2 (:data:`API_SERVER`:
  the CLI offers only v1), the browser's net log confirming that v2 was negotiated.

Our client verifies the server certificate (``--cafile``, see :func:`make_server_cert`);
the peers' clients do not.

Servers listen on OS-chosen ports (``gtlsserver`` cannot: it gets a port the test found
free and is polled in ``/proc/net/udp`` until it is bound). A test is skipped only when
its peer binary is missing; CI installs ``ngtcp2-client``, ``ngtcp2-server`` and
``chromium``. Nothing here imports aioquic.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.interop.chromium import (
    ChromiumProcess,
    ResultServer,
    dump_dom,
    find_chromium,
    netlog_events,
    quic_flags,
)
from tests.support.children import die_with_parent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
AIOQUIC_H3 = REPO / "tests" / "peers" / "aioquic_h3.py"
BIG, ONE_MB = "big.bin", "one.bin"
BIG_SIZE, ONE_MB_SIZE = 10 * 1024 * 1024, 1024 * 1024
MARKER = "PWT-H3-INTEROP-MARKER-7f3a9c"
DOWNLOAD_TIMEOUT = 90.0
QUIC_V1, QUIC_V2 = 0x00000001, 0x6B3343CF  # RFC 9000 §15, RFC 9369 §3.1

STATIC_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>h3 interop</title></head>
<body><p id="marker">{MARKER}</p></body></html>
"""

# The parameters travel in the fragment, which is never sent to the server:
# sha.html#file=/one.bin&report=http://127.0.0.1:PORT/result
SHA_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>h3 sha-256</title></head><body><script>
(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  const result = {file: params.get("file")};
  try {
    const response = await fetch(params.get("file"), {cache: "no-store"});
    result.status = response.status;
    const body = await response.arrayBuffer();
    result.bytes = body.byteLength;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    result.sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const page = performance.getEntriesByType("navigation")[0];
    const entry = performance.getEntriesByName(response.url)[0];
    result.page_protocol = page ? page.nextHopProtocol : null;
    result.fetch_protocol = entry ? entry.nextHopProtocol : null;
  } catch (error) {
    result.error = String(error);
  }
  await fetch(params.get("report"), {
    method: "POST", mode: "no-cors",
    headers: {"content-type": "text/plain"}, body: JSON.stringify(result),
  });
})();
</script></body></html>
"""


def make_server_cert(directory: Path) -> tuple[Path, Path]:
    """``cert.pem`` + ``key.pem``: self-signed ECDSA P-256 for 127.0.0.1 and localhost.

    It carries subject and authority key identifiers and serverAuth: our client's
    verifier (``--cafile cert.pem``, the certificate being its own trust anchor) rejects
    a certificate without an authority key identifier. Valid 8 days in total (Chromium
    accepts at most 14 for certificate hashes).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
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


# Our static file server through the API, offering the QUIC versions of argv[2]
# (e.g. "0x1,0x6b3343cf"); same stdout lines and request log as ``python -m h3 -v serve``.
API_SERVER = """
import asyncio, logging, signal, sys
from pathlib import Path
from h3.aio import ALPN, serve_h3
from h3.cli import StaticFileHandler
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed

async def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    versions = tuple(int(v, 0) for v in sys.argv[2].split(","))
    config = QuicConfiguration(
        is_client=False, alpn_protocols=[ALPN], supported_versions=versions
    )
    cert = generate_self_signed(wall_clock())
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    server = await serve_h3("127.0.0.1", 0, config, StaticFileHandler(Path(sys.argv[1])))
    print(f"SPKI-SHA256-BASE64 {cert.spki_sha256_base64}", flush=True)
    print(f"LISTENING {server.port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.shutdown()

asyncio.run(main())
"""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (apt {package})")
    return path


# --------------------------------------------------------------------------- processes


class LineProcess:
    """A child process whose stdout lines are collected by a thread (context manager).

    Started in its own session so that it can be ended by its process id; stdin is a
    pipe, which peers that watch it (aioquic_h3.py) take as a stop signal when closed.
    """

    def __init__(self, command: Sequence[str], cwd: Path | None = None) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.lines: list[str] = []
        self._consumed: set[int] = set()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self) -> LineProcess:
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout: float = 15.0) -> str:
        """The first stdout line starting with ``prefix`` not returned before (waiting up
        to ``timeout`` seconds for it); returns the rest of the line."""
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.lines):
                line = self.lines[index]
                if index not in self._consumed and line.startswith(prefix):
                    self._consumed.add(index)
                    return line[len(prefix) :].strip()
                index += 1
            try:
                fresh = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                fresh = None
            if fresh is None:
                raise RuntimeError(
                    f"no {prefix!r} line from {self.command[:4]}: {self.lines}\n{self.stderr()}"
                )
            self.lines.append(fresh)

    def drain(self, settle: float = 0.3) -> list[str]:
        """All stdout lines so far (waits ``settle`` seconds for stragglers)."""
        deadline = time.monotonic() + settle
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return self.lines
            if line is None:
                return self.lines
            self.lines.append(line)

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def log(self) -> str:
        return "\n".join(self.drain(0.0)) + "\n" + self.stderr()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LineProcess:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class OurServer(LineProcess):
    """``python -m h3 -v serve --root DIR --port 0`` (self-signed certificate by default).

    ``-v`` makes it log one ``GET <path> <status> <bytes>`` line per request on stderr.
    With ``versions`` it is instead :data:`API_SERVER` (the same handler through
    :func:`h3.aio.serve_h3`, offering those QUIC versions), because the CLI has no
    option for the versions and offers only the configuration default, QUIC v1.
    """

    def __init__(
        self,
        root: Path,
        cert: Path | None = None,
        key: Path | None = None,
        versions: Sequence[int] = (),
    ) -> None:
        if versions:
            command = [sys.executable, "-c", API_SERVER, str(root)]
            command.append(",".join(hex(v) for v in versions))
        else:
            command = [sys.executable, "-m", "h3", "-v", "serve", "--root", str(root)]
            command += ["--host", "127.0.0.1", "--port", "0"]
            if cert is not None and key is not None:
                command += ["--cert", str(cert), "--key", str(key)]
        super().__init__(command, cwd=REPO)
        self.self_signed = cert is None
        self.port = 0
        self.spki_b64 = ""

    def start(self) -> OurServer:
        super().start()
        try:
            self.port = int(self.expect("LISTENING "))
            if self.self_signed:
                self.spki_b64 = self.expect("SPKI-SHA256-BASE64 ")
        except Exception:
            self.stop()
            raise
        return self

    def __enter__(self) -> OurServer:
        return self.start() if self._process is None else self


class AioquicServer(LineProcess):
    """``tests/peers/aioquic_h3.py server``."""

    def __init__(self, root: Path, cert: Path, key: Path) -> None:
        command = [sys.executable, str(AIOQUIC_H3), "server", "--port", "0"]
        command += ["--cert", str(cert), "--key", str(key), "--root", str(root)]
        super().__init__(command)
        self.port = 0

    def start(self) -> AioquicServer:
        super().start()
        try:
            self.port = int(self.expect("LISTENING "))
        except Exception:
            self.stop()
            raise
        return self

    def __enter__(self) -> AioquicServer:
        return self.start() if self._process is None else self


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def udp_bound(port: int) -> bool:
    """True when some socket is bound to 127.0.0.1:port (Linux /proc/net/udp)."""
    wanted = f"0100007F:{port:04X}"
    try:
        table = Path("/proc/net/udp").read_text()
    except OSError:
        return True  # cannot tell: assume it is
    return any(line.split()[1] == wanted for line in table.splitlines()[1:] if line.strip())


class GtlsServer(LineProcess):
    """Debian's ngtcp2 ``gtlsserver 127.0.0.1 PORT key cert -d DIR -q`` on a free port."""

    def __init__(
        self, binary: str, root: Path, cert: Path, key: Path, extra: Sequence[str] = ()
    ) -> None:
        self.port = free_udp_port()
        command = [binary, "127.0.0.1", str(self.port), str(key), str(cert)]
        super().__init__([*command, "-d", str(root), "-q", *extra])

    def start(self, timeout: float = 10.0) -> GtlsServer:
        super().start()
        deadline = time.monotonic() + timeout
        while not udp_bound(self.port):
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gtlsserver did not bind {self.port}:\n{self.stderr()}")
            time.sleep(0.05)
        return self

    def __enter__(self) -> GtlsServer:
        return self.start() if self._process is None else self


def run(
    command: Sequence[str], timeout: float = DOWNLOAD_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a client process to completion, bounded by ``timeout``."""
    return subprocess.run(
        list(command), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def our_get(url: str, output: Path, cafile: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "h3", "get", url, "-o", str(output)]
    command += ["--cafile", str(cafile)] if cafile is not None else ["--insecure"]
    return run(command)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """certs/{cert.pem,key.pem} (ECDSA P-256, 8 days), www/{big.bin (10 MB), one.bin
    (1 MB), page.html, sha.html, index.html}, secret.txt next to www."""
    root = tmp_path_factory.mktemp("h3-interop")
    (root / "certs").mkdir()
    make_server_cert(root / "certs")
    www = root / "www"
    www.mkdir()
    (www / BIG).write_bytes(os.urandom(BIG_SIZE))
    (www / ONE_MB).write_bytes(os.urandom(ONE_MB_SIZE))
    (www / "page.html").write_text(STATIC_PAGE)
    (www / "index.html").write_text(STATIC_PAGE)
    (www / "sha.html").write_text(SHA_PAGE)
    (root / "secret.txt").write_text("never served\n")
    return root


@pytest.fixture(scope="module")
def certs(tree: Path) -> tuple[Path, Path]:
    return tree / "certs" / "cert.pem", tree / "certs" / "key.pem"


@pytest.fixture(scope="module")
def our_server(tree: Path) -> Iterator[OurServer]:
    """Our server with its own self-signed certificate (as Chromium needs it)."""
    with OurServer(tree / "www") as server:
        yield server


# --------------------------------------------------------------------------- our client


def test_our_client_downloads_from_aioquic(
    tree: Path, certs: tuple[Path, Path], tmp_path: Path
) -> None:
    with AioquicServer(tree / "www", *certs) as server:
        output = tmp_path / BIG
        started = time.monotonic()
        done = our_get(f"https://127.0.0.1:{server.port}/{BIG}", output, cafile=certs[0])
        elapsed = time.monotonic() - started
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
        assert output.stat().st_size == BIG_SIZE
        assert sha256_file(output) == sha256_file(tree / "www" / BIG)
        server.expect("REQUEST ", timeout=5.0)
        assert any(f'"path": "/{BIG}"' in line and '"status": 200' in line for line in server.lines)
        print(f"our client <- aioquic: 10 MB in {elapsed:.2f} s")


def test_our_client_downloads_from_gtlsserver(
    tree: Path, certs: tuple[Path, Path], tmp_path: Path
) -> None:
    binary = require("gtlsserver", "ngtcp2-server")
    with GtlsServer(binary, tree / "www", *certs) as server:
        output = tmp_path / BIG
        started = time.monotonic()
        done = our_get(f"https://127.0.0.1:{server.port}/{BIG}", output, cafile=certs[0])
        elapsed = time.monotonic() - started
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
        assert output.stat().st_size == BIG_SIZE
        assert sha256_file(output) == sha256_file(tree / "www" / BIG)
        print(f"our client <- gtlsserver: 10 MB in {elapsed:.2f} s")


def test_our_client_follows_retry_from_gtlsserver(
    tree: Path, certs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``gtlsserver -V`` answers every first Initial with Retry (RFC 9000 §8.1.2): our
    client must verify the integrity tag, resend its Initial with the token and check
    retry_source_connection_id (§7.3)."""
    binary = require("gtlsserver", "ngtcp2-server")
    with GtlsServer(binary, tree / "www", *certs, extra=("-V",)) as server:
        output = tmp_path / BIG
        done = our_get(f"https://127.0.0.1:{server.port}/{BIG}", output, cafile=certs[0])
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
        assert sha256_file(output) == sha256_file(tree / "www" / BIG)


def test_our_client_reports_404_from_aioquic(
    tree: Path, certs: tuple[Path, Path], tmp_path: Path
) -> None:
    with AioquicServer(tree / "www", *certs) as server:
        done = our_get(f"https://127.0.0.1:{server.port}/missing.bin", tmp_path / "m", certs[0])
        assert done.returncode != 0, done.stdout
        server.expect("REQUEST ", timeout=5.0)
        assert any('"status": 404' in line for line in server.lines)


# --------------------------------------------------------------------------- our server


def test_aioquic_client_downloads_from_our_server(
    tree: Path, our_server: OurServer, tmp_path: Path
) -> None:
    output = tmp_path / BIG
    url = f"https://127.0.0.1:{our_server.port}/{BIG}"
    started = time.monotonic()
    done = run([sys.executable, str(AIOQUIC_H3), "client", url, "-o", str(output), "--insecure"])
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{our_server.log()}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = sha256_file(tree / "www" / BIG)
    assert result["alpn"] == "h3"
    assert result["status"] == 200
    assert result["headers"]["content-length"] == str(BIG_SIZE)
    assert result["bytes"] == BIG_SIZE and result["sha256"] == expected
    assert sha256_file(output) == expected
    print(f"aioquic client <- our server: 10 MB in {elapsed:.2f} s")


def test_aioquic_client_gets_index_and_404_from_our_server(
    tree: Path, our_server: OurServer
) -> None:
    base = f"https://127.0.0.1:{our_server.port}"
    done = run([sys.executable, str(AIOQUIC_H3), "client", f"{base}/", "--insecure"])
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{our_server.log()}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200
    assert result["sha256"] == hashlib.sha256(STATIC_PAGE.encode()).hexdigest()
    assert result["headers"]["content-type"].startswith("text/html")
    for path in ("/missing.bin", "/../secret.txt", "/%2e%2e/secret.txt"):
        done = run([sys.executable, str(AIOQUIC_H3), "client", base + path, "--insecure"])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert done.returncode == 1 and result["status"] == 404, (path, result)


def test_gtlsclient_downloads_from_our_server(
    tree: Path, our_server: OurServer, tmp_path: Path
) -> None:
    binary = require("gtlsclient", "ngtcp2-client")
    port = our_server.port
    command = [binary, "127.0.0.1", str(port), f"https://127.0.0.1:{port}/{BIG}", "-q"]
    command += ["--exit-on-all-streams-close", "--download", str(tmp_path)]
    started = time.monotonic()
    done = run(command)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{our_server.log()}"
    output = tmp_path / BIG
    assert output.is_file(), f"{sorted(tmp_path.iterdir())}\n{done.stderr}"
    assert output.stat().st_size == BIG_SIZE
    assert sha256_file(output) == sha256_file(tree / "www" / BIG)
    print(f"gtlsclient <- our server: 10 MB in {elapsed:.2f} s")


def test_gtlsclient_with_key_updates_and_loss(
    tree: Path, our_server: OurServer, tmp_path: Path
) -> None:
    """The peer updates its keys every 50 ms (RFC 9001 §6) and drops 5 % of packets in
    each direction: we follow every key phase and recover every loss."""
    binary = require("gtlsclient", "ngtcp2-client")
    port = our_server.port
    command = [binary, "127.0.0.1", str(port), f"https://127.0.0.1:{port}/{BIG}", "-q"]
    command += ["--exit-on-all-streams-close", "--download", str(tmp_path)]
    command += ["--key-update=50ms", "-t", "0.05", "-r", "0.05"]
    done = run(command)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{our_server.log()}"
    output = tmp_path / BIG
    assert sha256_file(output) == sha256_file(tree / "www" / BIG)


# --------------------------------------------------------------------------- Chromium


def require_chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not installed (apt chromium)")
    return binary


def test_chromium_dump_dom_over_h3(tree: Path) -> None:
    """A static page served by our server only (no TCP listener exists on that port)."""
    binary = require_chromium()
    with OurServer(tree / "www") as server:
        url = f"https://127.0.0.1:{server.port}/page.html"
        code, dom, stderr = dump_dom(
            url, quic_flags(server.port, server.spki_b64), timeout=45.0, binary=binary
        )
        assert code == 0, stderr[-3000:]
        assert MARKER in dom, f"{dom[:2000]}\n{stderr[-3000:]}\n{server.log()}"
        log = server.log()  # -v: the server logs "GET <path> <status> <bytes>" per request
        assert "GET /page.html 200" in log, log


@pytest.mark.parametrize("quic_version", [None, "RFCv2"], ids=["v1-cli", "v2-api"])
def test_chromium_fetches_and_hashes_over_h3(
    tree: Path, tmp_path: Path, quic_version: str | None
) -> None:
    """The page and a 1 MB fetch over h3; Chromium hashes it and POSTs the digest.

    v1: the CLI server. v2: ``--quic-version=RFCv2`` (Chromium then offers only RFC 9369
    QUIC v2) against the API server offering v1 and v2; the browser's net log must
    show that v2 was negotiated.
    """
    binary = require_chromium()
    versions = (QUIC_V1, QUIC_V2) if quic_version else ()
    netlog = tmp_path / "netlog.json"
    with OurServer(tree / "www", versions=versions) as server, ResultServer() as results:
        flags = quic_flags(server.port, server.spki_b64)
        if quic_version is not None:
            flags += [f"--quic-version={quic_version}", f"--log-net-log={netlog}"]
        url = f"https://127.0.0.1:{server.port}/sha.html#file=/{ONE_MB}&report={results.url}"
        started = time.monotonic()
        with ChromiumProcess(url, flags, binary=binary) as browser:
            try:
                record = results.wait(timeout=45.0)
            except TimeoutError as exc:
                pytest.fail(f"{exc}\nchromium:\n{browser.output()[-3000:]}\n{server.log()}")
        elapsed = time.monotonic() - started
        body = record["body"]
        assert "error" not in body, body
        assert body["status"] == 200
        assert body["bytes"] == ONE_MB_SIZE
        assert body["sha256"] == sha256_file(tree / "www" / ONE_MB)
        # nextHopProtocol: "h3"; Chromium 156 names HTTP/3 over QUIC v2 "h3/quic2draft08".
        expected = "h3" if quic_version is None else "h3/quic2draft08"
        assert body["page_protocol"] == expected == body["fetch_protocol"], body
        log = server.log()
        assert "GET /sha.html 200" in log and f"GET /{ONE_MB} 200 {ONE_MB_SIZE}" in log, log
        if quic_version is not None:
            negotiated = {
                params.get("version")
                for kind, params in netlog_events(netlog)
                if kind == "QUIC_SESSION_VERSION_NEGOTIATED"
            }
            assert negotiated == {quic_version}, negotiated
        print(f"chromium ({quic_version or 'v1'}) <- our server: page + 1 MB in {elapsed:.2f} s")
