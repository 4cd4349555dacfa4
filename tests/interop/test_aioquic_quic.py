"""Raw-QUIC interop with aioquic 1.7.2, both directions, over UDP on 127.0.0.1.

* Our client (:func:`quic.aio.connect`, in the test's event loop) against the aioquic
  peer server (``tests/peers/aioquic_peer.py server``, a child process).
* The aioquic peer client (one scenario per child process, run from a worker thread so
  the event loop keeps serving) against our server, which runs in the test's event loop
  (:func:`quic.aio.serve`) so that its ``wait_closed()`` termination events can be
  checked, or as a separate process (``tests/interop/ours_peer.py``, same line protocol
  as the aioquic peer) for the sink/source modes and a failed handshake.

Nothing from aioquic is imported here or by the library: the peers are processes.
Every test covers one behaviour: handshake (ALPN, version, cipher suite), 10 MB on one
bidirectional stream checked by SHA-256, 100 (and 300) concurrent streams, datagram
echo, application close with code and reason in both directions, ALPN mismatch, key
update, each also with ``--quic-version 1`` and ChaCha20-Poly1305 where it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from quic.aio import ConnectionClosed, QuicServer, QuicSession, connect, serve
from quic.configuration import QuicConfiguration
from quic.conn_keys import OneRttReadKeys
from quic.errors import StreamResetError
from quic.events import ConnectionTerminated
from quic.tls.signatures import load_certificate_chain_pem
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion
from tests.interop.ours_peer import PeerConnection
from tests.peers import PeerServer, make_self_signed_cert, run_peer_client

pytest.importorskip("aioquic")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

ALPN = "pwt-interop"
OURS_PEER = Path(__file__).with_name("ours_peer.py")
TEN_MB = 10 * 1024 * 1024
# The largest DATAGRAM payload aioquic can echo: it never sends UDP payloads above 1200
# bytes; 1200 less a short header with our 8-byte CID, a 4-byte packet number, the AEAD
# tag and the frame's type and length (our own base size, docs/datagrams.md).
AIOQUIC_DATAGRAM_PAYLOAD = 1200 - (1 + 8 + 4 + 16 + 3)
NO_APPLICATION_PROTOCOL = 0x100 + 120  # RFC 9001 §4.8: CRYPTO_ERROR of TLS alert 120
CHACHA20 = "TLS_CHACHA20_POLY1305_SHA256"
SUITE_NAMES = {
    CipherSuite(0x1301): "TLS_AES_128_GCM_SHA256",
    CipherSuite(0x1302): "TLS_AES_256_GCM_SHA384",
    CipherSuite(0x1303): CHACHA20,
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("interop-certs"))


@pytest.fixture(scope="module")
def aioquic_echo(certs: tuple[Path, Path]) -> Iterator[PeerServer]:
    with PeerServer(certs[0], certs[1], ALPN, mode="echo") as server:
        yield server


@pytest.fixture(scope="module")
def rsa_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An RSA-4096 leaf + CA chain (~3.4 kB): the server's first flight exceeds the
    anti-amplification limit (RFC 9000 §8.1) and spans several packets."""
    directory = tmp_path_factory.mktemp("rsa-chain")
    key = rsa.generate_private_key(65537, 4096)  # one key signs both (verification is off)
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "interop test CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    pem = b""
    for subject, ca in ((leaf_name, False), (ca_name, True)):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(san, critical=False)
        pem += builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)
    cert_path, key_path = directory / "chain.pem", directory / "key.pem"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def client_config(certs: tuple[Path, Path], **kwargs: Any) -> QuicConfiguration:
    """Our client, pinning the peer's self-signed certificate (it is really verified)."""
    leaf = load_certificate_chain_pem(certs[0].read_bytes())[0]
    pin = hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest()
    kwargs.setdefault("alpn_protocols", [ALPN])
    return QuicConfiguration(is_client=True, server_certificate_hashes=(pin,), **kwargs)


def server_config(certs: tuple[Path, Path], **kwargs: Any) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN], **kwargs)
    config.load_cert_chain(str(certs[0]), str(certs[1]))
    return config


def local_port(session: QuicSession) -> int:
    # The session does not expose its socket; the pump's transport knows the bound port.
    transport = session._protocol.transport
    assert transport is not None
    return int(transport.get_extra_info("sockname")[1])


async def echo_through(session: QuicSession, payload: bytes, chunk: int = 1 << 16) -> bytes:
    """Write ``payload`` + FIN on a new bidi stream while reading the echo to its FIN."""
    reader, writer = await session.create_stream()

    async def send() -> None:
        view = memoryview(payload)
        for offset in range(0, len(view), chunk):
            writer.write(view[offset : offset + chunk])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    try:
        received = await reader.read()
    finally:
        if not sender.done():
            sender.cancel()
    await sender
    return received


@dataclass
class OurServer:
    """Our server in this event loop, in ``echo`` mode of the peer line protocol."""

    server: QuicServer
    records: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[QuicSession] = field(default_factory=list)
    terminations: dict[int, asyncio.Future[ConnectionTerminated]] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    async def terminated(self, peer_port: int, timeout: float = 5.0) -> ConnectionTerminated:
        """The ``wait_closed()`` event of the connection from ``peer_port``."""
        async with asyncio.timeout(timeout):
            while peer_port not in self.terminations:
                await asyncio.sleep(0.01)
            return await self.terminations[peer_port]

    async def client(self, scenario: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
        """Run one aioquic client scenario against this server (in a worker thread)."""
        return await asyncio.to_thread(
            run_peer_client, self.port, ALPN, scenario, *args, timeout=timeout
        )


@contextlib.asynccontextmanager
async def our_server(certs: tuple[Path, Path], **kwargs: Any) -> AsyncIterator[OurServer]:
    holder: list[OurServer] = []

    async def handler(session: QuicSession) -> None:
        state = holder[0]
        state.sessions.append(session)
        peer = session.connection.peer_address
        done: asyncio.Future[ConnectionTerminated] = asyncio.get_running_loop().create_future()
        state.terminations[int(peer[1])] = done
        record = await PeerConnection(session, "echo").run()
        state.records.append(record)
        done.set_result(await session.wait_closed())

    server = await serve("127.0.0.1", 0, server_config(certs, **kwargs), handler)
    holder.append(OurServer(server))
    try:
        yield holder[0]
    finally:
        await server.shutdown()


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["returncode"] == 0 and result["ok"] is True, result
    return result


# ------------------------------------------------------------ our client → aioquic


@pytest.mark.parametrize(
    ("versions", "suites"),
    [
        pytest.param((QuicVersion.VERSION_1,), None, id="v1-default-suites"),
        pytest.param((QuicVersion.VERSION_1,), (CipherSuite(0x1303),), id="v1-chacha20"),
        pytest.param((QuicVersion.VERSION_2,), (CipherSuite(0x1301),), id="v2-aes128"),
    ],
)
async def test_our_client_handshake(
    aioquic_echo: PeerServer,
    certs: tuple[Path, Path],
    versions: tuple[int, ...],
    suites: tuple[CipherSuite, ...] | None,
) -> None:
    kwargs: dict[str, Any] = {"supported_versions": versions}
    if suites is not None:
        kwargs["cipher_suites"] = suites
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs, **kwargs)) as s:
        assert s.alpn_protocol == ALPN
        assert s.connection.version == versions[0]
        if suites is not None:
            assert s.connection.tls.cipher_suite == suites[0]
        assert await echo_through(s, b"hello over QUIC") == b"hello over QUIC"
        port = local_port(s)
    closed = await asyncio.to_thread(aioquic_echo.wait_closed, port)
    assert (closed["error_code"], closed["frame_type"], closed["commanded"]) == (0, None, False)


async def test_our_client_10mb_echo(aioquic_echo: PeerServer, certs: tuple[Path, Path]) -> None:
    payload = os.urandom(TEN_MB)
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        received = await asyncio.wait_for(echo_through(s, payload), 60)
    assert len(received) == TEN_MB
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_our_client_key_updates_during_transfer(
    aioquic_echo: PeerServer, certs: tuple[Path, Path]
) -> None:
    # RFC 9001 §6: aioquic follows our Key Phase flips mid-stream and answers in kind.
    part = 400_000
    payload = os.urandom(4 * part)
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        conn = s.connection
        reader, writer = await s.create_stream()
        received = bytearray()
        for index in range(4):
            if index:
                async with asyncio.timeout(5):
                    while True:  # §6.1: only once the current phase was acknowledged
                        try:
                            conn.request_key_update()
                            break
                        except RuntimeError:
                            await asyncio.sleep(0.005)
            writer.write(payload[index * part : (index + 1) * part])
            await writer.drain()
            received += await asyncio.wait_for(reader.readexactly(part), 10)
            write, read = conn.spaces[2].write, conn.spaces[2].read
            assert write is not None and isinstance(read, OneRttReadKeys)
            assert write.key_phase == read.current.key_phase == index % 2
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert received == payload


@pytest.mark.parametrize("count", [100, 300])
async def test_our_client_concurrent_streams(
    aioquic_echo: PeerServer, certs: tuple[Path, Path], count: int
) -> None:
    # 300 exceeds aioquic's initial bidi stream limit (128): MAX_STREAMS must flow.
    payloads = [os.urandom(1000) for _ in range(count)]
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        echoes = await asyncio.wait_for(asyncio.gather(*(echo_through(s, p) for p in payloads)), 30)
    assert [i for i, (a, b) in enumerate(zip(payloads, echoes, strict=True)) if a != b] == []


async def test_our_client_datagram_echo(aioquic_echo: PeerServer, certs: tuple[Path, Path]) -> None:
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        # a little traffic first, so that an ACK is pending when the datagrams are queued
        assert await echo_through(s, b"warm up") == b"warm up"
        # Size by what the peer can send back, not by what we may send: aioquic sends
        # 1200-byte packets only, while our size grows to 1452 once path MTU discovery
        # (on by default) proves it (docs/datagrams.md). A payload that fits our
        # 1200-byte packets fits aioquic's (its short header is no longer than ours).
        assert s.max_datagram_size in (AIOQUIC_DATAGRAM_PAYLOAD, 1452 - 32)
        largest = AIOQUIC_DATAGRAM_PAYLOAD
        sizes = [1, 64, 500, largest - 1, largest] * 6
        sent = {i.to_bytes(4, "big") + os.urandom(max(n - 4, 0)) for i, n in enumerate(sizes)}
        for data in sorted(sent):
            s.send_datagram(data)
        received: set[bytes] = set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while received != sent:
                    received.add(await s.receive_datagram())
    assert received == sent  # loopback loses nothing, so every datagram comes back


async def test_our_client_close_is_seen_by_aioquic(
    aioquic_echo: PeerServer, certs: tuple[Path, Path]
) -> None:
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        port = local_port(s)
        await s.aclose(42, "bye now")
        assert s.termination is not None
        assert (s.termination.error_code, s.termination.by_peer) == (42, False)
    closed = await asyncio.to_thread(aioquic_echo.wait_closed, port)
    assert closed == {
        "error_code": 42,
        "reason": "bye now",
        "frame_type": None,  # application CONNECTION_CLOSE (0x1d)
        "commanded": False,
        "peer": ["127.0.0.1", port],
    }


async def test_aioquic_server_close_is_seen_by_our_client(
    aioquic_echo: PeerServer, certs: tuple[Path, Path]
) -> None:
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        port = local_port(s)
        _, writer = await s.create_stream()
        writer.write(b"CLOSE 7 done for today")
        writer.write_eof()
        term = await asyncio.wait_for(s.wait_closed(), 5)
        with pytest.raises(ConnectionClosed):
            await s.create_stream()
    assert (term.error_code, term.reason_phrase) == (7, "done for today")
    assert term.is_application and term.by_peer and term.frame_type is None
    closed = await asyncio.to_thread(aioquic_echo.wait_closed, port)
    assert (closed["error_code"], closed["reason"], closed["commanded"]) == (
        7,
        "done for today",
        True,
    )


async def test_our_client_alpn_mismatch(aioquic_echo: PeerServer, certs: tuple[Path, Path]) -> None:
    config = client_config(certs, alpn_protocols=["not-" + ALPN])
    with pytest.raises(ConnectionClosed) as info:
        async with connect("127.0.0.1", aioquic_echo.port, config):
            pass
    assert info.value.error_code == NO_APPLICATION_PROTOCOL and info.value.by_peer


async def test_our_client_stream_reset_and_stop_sending(
    aioquic_echo: PeerServer, certs: tuple[Path, Path]
) -> None:
    # The echo peer answers RESET_STREAM and STOP_SENDING with RESET_STREAM (same code).
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as s:
        reader, writer = await s.create_stream()
        writer.write(b"abandoned")
        writer.reset(77)
        with pytest.raises(StreamResetError) as info:
            await asyncio.wait_for(reader.read(), 5)
        assert info.value.error_code == 77
        reader, writer = await s.create_stream()
        writer.write(b"half")
        await asyncio.wait_for(reader.readexactly(4), 5)
        s.stop_stream(writer.stream_id, 55)
        with pytest.raises(StreamResetError) as info:
            await asyncio.wait_for(reader.read(), 5)
        assert info.value.error_code == 55
        assert await echo_through(s, b"still alive") == b"still alive"


async def test_our_client_larger_packets(
    aioquic_echo: PeerServer, certs: tuple[Path, Path]
) -> None:
    payload = os.urandom(1_000_000)
    config = client_config(certs, max_datagram_size=1452)
    async with connect("127.0.0.1", aioquic_echo.port, config) as s:
        assert s.max_datagram_size > 1400
        assert await asyncio.wait_for(echo_through(s, payload), 20) == payload


async def test_our_client_large_rsa_chain(rsa_chain: tuple[Path, Path]) -> None:
    with PeerServer(rsa_chain[0], rsa_chain[1], ALPN, mode="echo") as server:
        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_certificates=False)
        async with connect("127.0.0.1", server.port, config) as s:
            assert await echo_through(s, b"rsa") == b"rsa"


# ------------------------------------------------------------ aioquic client → our server


@pytest.mark.parametrize(
    ("args", "version", "suite"),
    [
        pytest.param((), QuicVersion.VERSION_1, None, id="default"),
        pytest.param(("--quic-version", "1"), QuicVersion.VERSION_1, None, id="v1"),
        pytest.param(
            ("--quic-version", "1", "--cipher-suites", "0x1303"),
            QuicVersion.VERSION_1,
            CHACHA20,
            id="v1-chacha20",
        ),
        pytest.param(("--quic-version", "2"), QuicVersion.VERSION_2, None, id="v2"),
    ],
)
async def test_aioquic_client_handshake(
    certs: tuple[Path, Path], args: tuple[str, ...], version: int, suite: str | None
) -> None:
    versions = (QuicVersion.VERSION_1, QuicVersion.VERSION_2)
    async with our_server(certs, supported_versions=versions) as server:
        result = ok(await server.client("handshake", *args))
        assert result["alpn"] == ALPN and result["version"] == version
        if suite is not None:
            assert result["cipher_suite"] == suite
        term = await server.terminated(result["local_port"])
        session = server.sessions[0]
    assert session.alpn_protocol == ALPN and session.connection.version == version
    cipher = session.connection.tls.cipher_suite
    assert cipher is not None and SUITE_NAMES[cipher] == result["cipher_suite"]
    assert (term.error_code, term.is_application, term.by_peer) == (0, True, True)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="default"),
        pytest.param(("--quic-version", "1", "--cipher-suites", "0x1303"), id="v1-chacha20"),
    ],
)
async def test_aioquic_client_10mb_echo(certs: tuple[Path, Path], args: tuple[str, ...]) -> None:
    async with our_server(certs) as server:
        result = ok(await server.client("bulk", "--size", str(TEN_MB), *args, timeout=60))
    assert result["received_bytes"] == TEN_MB
    assert result["received_sha256"] == result["sent_sha256"]
    if args:
        assert result["cipher_suite"] == CHACHA20 and result["version"] == 1


async def test_aioquic_client_larger_packets(certs: tuple[Path, Path]) -> None:
    # 1452-byte UDP payloads from aioquic; our server keeps its own 1200 (RFC 9000 §14)
    async with our_server(certs) as server:
        result = ok(await server.client("bulk", "--size", "1000000", "--max-datagram-size", "1452"))
    assert result["received_sha256"] == result["sent_sha256"]


async def test_aioquic_client_large_rsa_chain(rsa_chain: tuple[Path, Path]) -> None:
    async with our_server(rsa_chain) as server:
        result = ok(await server.client("bulk", "--size", "100000"))
    assert result["received_sha256"] == result["sent_sha256"]
    assert result["handshake_ms"] < 900  # no PTO (1 s) wait at the amplification limit


async def test_aioquic_client_hundred_concurrent_streams(certs: tuple[Path, Path]) -> None:
    async with our_server(certs) as server:
        result = ok(await server.client("streams", "--count", "100", "--size", "1000"))
    assert result["count"] == 100 and result["mismatched"] == []


@pytest.mark.parametrize("size", [64, 1100])
async def test_aioquic_client_datagram_echo(certs: tuple[Path, Path], size: int) -> None:
    async with our_server(certs) as server:
        result = ok(await server.client("datagrams", "--count", "40", "--size", str(size)))
    assert result["sent"] == result["received"] == 40 and result["unexpected"] == 0


async def test_aioquic_client_close_is_seen_by_our_server(certs: tuple[Path, Path]) -> None:
    async with our_server(certs) as server:
        result = ok(await server.client("close", "--code", "42", "--reason", "bye now"))
        term = await server.terminated(result["local_port"])
    assert (term.error_code, term.reason_phrase) == (42, "bye now")
    assert term.is_application and term.by_peer and term.frame_type is None


async def test_our_server_close_is_seen_by_aioquic_client(certs: tuple[Path, Path]) -> None:
    async with our_server(certs) as server:
        result = ok(await server.client("remote-close", "--code", "7", "--reason", "done"))
        term = await server.terminated(result["local_port"])
        assert server.records[0]["commanded"] is True
    assert (result["error_code"], result["reason"], result["frame_type"]) == (7, "done", None)
    assert (term.error_code, term.reason_phrase, term.by_peer) == (7, "done", False)


# ------------------------------------------------- aioquic client → ours_peer.py process


def _ours(certs: tuple[Path, Path], mode: str) -> PeerServer:
    return PeerServer(certs[0], certs[1], ALPN, mode=mode, script=OURS_PEER)


def test_aioquic_client_upload_to_our_sink(certs: tuple[Path, Path]) -> None:
    with _ours(certs, "sink") as server:
        result = ok(run_peer_client(server.port, ALPN, "upload", "--size", "3000000"))
        closed = server.wait_closed(result["local_port"])
    assert result["server_sha256"] == result["sent_sha256"]
    assert (closed["error_code"], closed["frame_type"]) == (0, None)


def test_aioquic_client_download_from_our_source(certs: tuple[Path, Path]) -> None:
    size = 3_000_000
    with _ours(certs, "source") as server:
        result = ok(run_peer_client(server.port, ALPN, "download", "--size", str(size)))
    expected = hashlib.shake_128(b"SEND %d" % size).digest(size)
    assert result["received_bytes"] == size
    assert result["received_sha256"] == hashlib.sha256(expected).hexdigest()


def test_aioquic_client_alpn_mismatch_with_our_server(certs: tuple[Path, Path]) -> None:
    with _ours(certs, "echo") as server:
        result = run_peer_client(server.port, "not-" + ALPN, "handshake", timeout=5.0)
        assert result["ok"] is False and result["returncode"] == 3
        assert result["terminated"]["error_code"] == NO_APPLICATION_PROTOCOL
        closed = server.wait_closed(result["local_port"])
    assert closed["error_code"] == NO_APPLICATION_PROTOCOL
    assert closed["frame_type"] is not None  # a transport CONNECTION_CLOSE (0x1c)


def test_ours_peer_close_command(certs: tuple[Path, Path]) -> None:
    with _ours(certs, "echo") as server:
        result = ok(
            run_peer_client(server.port, ALPN, "remote-close", "--code", "9", "--reason", "x")
        )
        closed = server.wait_closed(result["local_port"])
    assert (result["error_code"], result["reason"]) == (9, "x")
    assert (closed["error_code"], closed["reason"], closed["commanded"]) == (9, "x", True)
