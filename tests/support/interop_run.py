"""Run one interop test case through the impairment proxy, the way the runner does.

:func:`run_case` starts a server process (ours, ``python -m quic.interop server``, or
aioquic's hq peer), puts an :class:`~quic.interop.proxy.ImpairmentProxy` in front of
it with the case's network, runs a client process (ours or aioquic's) against the
proxy with a key log, and returns a :class:`CaseRun`: the client's exit status and
output, the capture, the key log and the downloads directory. The checks of the
runner are then made on that (:mod:`quic.interop.trace`, :func:`CaseRun.files_ok`).

:func:`make_tree` writes ``certs/`` (a self-signed leaf, or a chain of N certificates
whose leaf has many long subjectAltNames, like the runner's ``amplificationlimit``
certificates) and ``www/`` with random files of the given sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import filecmp
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from quic.interop.impair import Scenario
from quic.interop.proxy import CaptureRecord, ImpairmentProxy

__all__ = ["CaseRun", "make_chain", "make_tree", "run_case"]

REPO = Path(__file__).resolve().parents[2]
AIOQUIC_HQ = REPO / "tests" / "peers" / "aioquic_hq.py"
AIOQUIC_HQ_RETRY = REPO / "tests" / "peers" / "aioquic_hq_retry.py"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_chain(directory: Path, length: int = 1, sans: int = 0) -> None:
    """``cert.pem`` (leaf first, then ``length - 1`` CA certificates up to a root) and
    ``priv.key`` (the leaf's ECDSA P-256 key). The leaf carries ``sans`` extra
    subjectAltNames of about 60 characters each."""
    now = datetime.datetime.now(datetime.UTC)
    keys: list[rsa.RSAPrivateKey] = [
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(length - 1)
    ]
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    certs: list[x509.Certificate] = []
    issuer_name = _name("leaf")
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = leaf_key
    # from the root down: CA i is signed by CA i-1 (the root signs itself)
    for i, key in enumerate(keys):
        subject = _name(f"interop test CA {i}")
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name if i else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer if i else key, hashes.SHA256())
        )
        certs.insert(0, cert)
        issuer_name, signer = subject, key
    names: list[x509.GeneralName] = [x509.DNSName("server"), x509.DNSName("localhost")]
    names += [x509.DNSName(f"{'x' * 48}-{i:04d}.example.com") for i in range(sans)]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("server"))
        .issuer_name(issuer_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(signer, hashes.SHA256())
    )
    certs.insert(0, leaf)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    )
    (directory / "priv.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_tree(root: Path, files: Mapping[str, int], chain: int = 1, sans: int = 0) -> Path:
    """``root/certs`` and ``root/www`` with random ``files`` (name -> size)."""
    make_chain(root / "certs", chain, sans)
    www = root / "www"
    www.mkdir(parents=True, exist_ok=True)
    for name, size in files.items():
        (www / name).write_bytes(os.urandom(size))
    return root


@dataclass
class CaseRun:
    """What one run left behind."""

    status: int  # the client's exit status
    output: str  # the client's stdout + stderr
    records: list[CaptureRecord]
    summary: dict[str, object]
    keylog: Path
    downloads: Path
    www: Path
    files: list[str] = field(default_factory=list)

    def files_ok(self) -> bool:
        """Every file arrived byte-exact (the runner's ``_check_files``)."""
        for name in self.files:
            got = self.downloads / name
            if not got.is_file() or not filecmp.cmp(self.www / name, got, shallow=False):
                return False
        return True


async def _start_server(command: Sequence[str]) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"server exited: {command}")
            if line.startswith("LISTENING "):
                return proc, int(line.split()[1])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# the aioquic hq peer's options per runner test case (tests/peers/aioquic_hq.py)
V2_SERVER = ["--quic-versions", "0x6b3343cf,0x1"]  # prefers v2 (RFC 9369)
V2_CLIENT = [*V2_SERVER, "--original-version", "0x1"]  # starts on v1, offers v2 (RFC 9368)
CHACHA20 = ["--cipher-suites", "0x1303"]  # TLS_CHACHA20_POLY1305_SHA256 only
AIOQUIC_SERVER_OPTIONS: dict[str, list[str]] = {
    "chacha20": CHACHA20,
    "v2": V2_SERVER,
    "resumption": ["--tickets"],
    "zerortt": ["--tickets"],
}
AIOQUIC_CLIENT_OPTIONS: dict[str, list[str]] = {
    "chacha20": CHACHA20,
    "v2": V2_CLIENT,
    "resumption": ["--resumption"],
    "zerortt": ["--zerortt"],
    "keyupdate": ["--key-update"],
    "connectionmigration": ["--migrate"],
    "multiconnect": ["--multiconnect"],
    "handshakeloss": ["--multiconnect"],
    "handshakecorruption": ["--multiconnect"],
}


def _aioquic_script(testcase: str) -> str:
    # "retry": the same peer with Retry on (server) / reporting Retry (client)
    return str(AIOQUIC_HQ_RETRY if testcase == "retry" else AIOQUIC_HQ)


def _server_command(peer: str, testcase: str, tree: Path, host: str) -> list[str]:
    if peer == "ours":
        return [
            sys.executable, "-m", "quic.interop", "server", "--testcase", testcase,
            "--host", host, "--port", "0",
            "--certs", str(tree / "certs"), "--www", str(tree / "www"),
        ]  # fmt: skip
    return [
        sys.executable, _aioquic_script(testcase), "server", "--host", host, "--port", "0",
        "--cert", str(tree / "certs" / "cert.pem"), "--key", str(tree / "certs" / "priv.key"),
        "--www", str(tree / "www"), *AIOQUIC_SERVER_OPTIONS.get(testcase, []),
    ]  # fmt: skip


def _client_command(
    peer: str, testcase: str, downloads: Path, keylog: Path, urls: list[str], timeout: float
) -> list[str]:
    if peer == "ours":
        return [
            sys.executable, "-m", "quic.interop", "client", "--testcase", testcase,
            "--downloads", str(downloads), "--keylog-file", str(keylog),
            "--timeout", str(timeout), *urls,
        ]  # fmt: skip
    return [
        sys.executable, _aioquic_script(testcase), "client", "--downloads", str(downloads),
        "--keylog", str(keylog), "--timeout", str(timeout),
        *AIOQUIC_CLIENT_OPTIONS.get(testcase, []), *urls,
    ]  # fmt: skip


async def run_case(
    tree: Path,
    testcase: str,
    scenario: Scenario | None,
    files: Sequence[str],
    *,
    seed: int = 0,
    server: str = "ours",
    client: str = "ours",
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    run_dir: Path | None = None,
) -> CaseRun:
    """Run ``testcase`` (the name the runner gives the endpoints) between ``server`` and
    ``client`` (each "ours" or "aioquic") across ``scenario``."""
    work = run_dir or tree
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    keylog = work / "keys.log"
    keylog.unlink(missing_ok=True)
    server_proc, port = await _start_server(_server_command(server, testcase, tree, host))
    try:
        async with ImpairmentProxy(
            (host, port), scenario, seed=seed, listen=(host, 0), capture_payload=False
        ) as proxy:
            authority = f"[{host}]" if ":" in host else host
            urls = [f"https://{authority}:{proxy.port}/{name}" for name in files]
            proc = await asyncio.create_subprocess_exec(
                *_client_command(client, testcase, downloads, keylog, urls, timeout),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout + 15)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await asyncio.sleep(0.05)  # the last datagrams in flight
            assert proc.returncode is not None
            return CaseRun(
                proc.returncode,
                out.decode(errors="replace"),
                list(proxy.records),
                proxy.summary(),
                keylog,
                downloads,
                tree / "www",
                list(files),
            )
    finally:
        await _stop(server_proc)
