"""Fail fast and say why: connection failures name the host, the port, the draft when
one was negotiated, the TLS alert in words (CRYPTO_ERROR = 0x100 + alert, RFC 9001
§4.8) and, for a refused certificate, the problem. Real sessions on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import socket
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pywebtransport import (
    CertificateError,
    ConnectionFailed,
    ServerConfig,
    SessionRejected,
    SessionRequest,
    WebTransportClient,
    WebTransportServer,
)
from pywebtransport.exceptions import certificate_problem, error_code_text, tls_alert_text
from quic.aio import serve, wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed
from tests.pwt.pwt_support import certificate, client_config, running

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- words ---------------------------------------------------------------------------------


def test_tls_alerts_in_words() -> None:
    assert tls_alert_text(0x128) == "handshake_failure (40)"
    assert tls_alert_text(0x12A) == "bad_certificate (42)"
    assert tls_alert_text(0x178) == "no_application_protocol (120)"
    assert tls_alert_text(0x1FF) == "alert 255"  # no name: the number still
    assert tls_alert_text(0x0A) is None and tls_alert_text(0x200) is None


def test_close_codes_in_words() -> None:
    assert error_code_text(0x128) == "TLS alert handshake_failure (40)"
    assert error_code_text(0x0A) == "PROTOCOL_VIOLATION (0xa)"
    assert error_code_text(0x110, application=True) == "H3_VERSION_FALLBACK (0x110)"
    # the same number is an HTTP/3 code in an application close (RFC 9114 §8.1)
    assert error_code_text(0x10A, application=True) == "H3_MISSING_SETTINGS (0x10a)"
    assert error_code_text(0x10A) == "TLS alert unexpected_message (10)"
    assert error_code_text(0x4242, application=True) == "application error 0x4242"


def test_certificate_problems_in_words() -> None:
    assert certificate_problem("certificate hash is not pinned").startswith("hash mismatch")
    assert certificate_problem("pinned certificate is not valid now").startswith("expired")
    assert certificate_problem("x: leaf certificate has no matching subjectAltName").startswith(
        "name mismatch"
    )
    assert certificate_problem("", 0x12D).startswith("expired")  # certificate_expired alone
    assert certificate_problem("something new", 0x12A) == "something new"


# -- real connections ------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="Linux reports ICMP on 127.0.0.1")
async def test_nothing_listening_fails_at_once_and_says_so() -> None:
    loop = asyncio.get_running_loop()
    port = free_port()
    async with WebTransportClient(client_config(connect_timeout=10.0)) as client:
        start = loop.time()
        with pytest.raises(ConnectionFailed) as info:
            await client.connect(f"https://127.0.0.1:{port}/echo")
        elapsed = loop.time() - start
    assert elapsed < 2.0, elapsed  # not the 10 s connect_timeout
    exc = info.value
    assert (exc.host, exc.port) == ("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(exc) and "nothing is listening" in str(exc)
    assert "ICMP" in str(exc)


async def test_hash_mismatch_says_so() -> None:
    config = client_config(server_certificate_hashes=[hashlib.sha256(b"other").digest()])
    async with running() as h, WebTransportClient(config) as client:
        with pytest.raises(CertificateError) as info:
            await client.connect(h.url())
    exc = info.value
    assert exc.problem.startswith("hash mismatch")
    assert exc.alert == "bad_certificate (42)" and exc.code == 0x12A
    assert f"127.0.0.1:{h.server.port}" in str(exc) and "bad_certificate (42)" in str(exc)


async def test_expired_pinned_certificate_says_so() -> None:
    old = generate_self_signed(wall_clock() - datetime.timedelta(days=30))
    server = WebTransportServer(
        ServerConfig(certificate_chain=[old.certificate], private_key=old.private_key, port=0)
    )
    await server.listen(host="127.0.0.1", port=0)
    config = client_config(server_certificate_hashes=[old.sha256])
    try:
        async with WebTransportClient(config) as client:
            with pytest.raises(CertificateError) as info:
                await client.connect(f"https://127.0.0.1:{server.port}/echo")
    finally:
        await server.shutdown(timeout=0.5)
    exc = info.value
    assert exc.problem.startswith("expired")
    assert exc.alert == "certificate_expired (45)"
    assert "expired" in str(exc) and "certificate_expired (45)" in str(exc)


async def test_name_mismatch_says_so(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certificate().certificate.public_bytes(Encoding.PEM))
    config = client_config(
        server_certificate_hashes=[], ca_certs=str(ca), server_name="example.org"
    )
    async with running() as h, WebTransportClient(config) as client:
        with pytest.raises(CertificateError) as info:
            await client.connect(h.url())
    exc = info.value
    assert exc.problem.startswith("name mismatch")
    assert "'example.org'" in str(exc) and "bad_certificate (42)" in str(exc)


async def test_alert_from_the_server_is_named() -> None:
    cert = certificate()
    qconfig = QuicConfiguration(is_client=False, alpn_protocols=["not-h3"])
    qconfig.certificate_chain = [cert.certificate]
    qconfig.private_key = cert.private_key
    server = await serve("127.0.0.1", 0, qconfig)
    async with server, WebTransportClient(client_config()) as client:
        with pytest.raises(ConnectionFailed) as info:
            await client.connect(f"https://127.0.0.1:{server.port}/echo")
    exc = info.value
    assert not isinstance(exc, CertificateError)
    assert exc.alert == "no_application_protocol (120)" and exc.code == 0x178
    text = str(exc)
    assert f"127.0.0.1:{server.port}" in text and "the server closed" in text
    assert "no_application_protocol (120)" in text and "ALPN h3" in text


async def test_rejection_names_url_status_and_draft() -> None:
    async def refuse(request: SessionRequest) -> None:
        await request.reject(404)

    async with running() as h, WebTransportClient(client_config("draft16")) as client:
        h.handler = refuse
        with pytest.raises(SessionRejected) as info:
            await client.connect(h.url("/nowhere"))
    exc = info.value
    assert (exc.status_code, exc.draft, exc.url) == (404, "draft16", h.url("/nowhere"))
    assert "status 404" in str(exc) and "(draft16)" in str(exc) and h.url("/nowhere") in str(exc)


async def test_no_common_draft_names_both_sides() -> None:
    async with (
        running(drafts=("draft16",)) as h,
        WebTransportClient(client_config("draft02")) as client,
    ):
        with pytest.raises(SessionRejected) as info:
            await client.connect(h.url())
    text = str(info.value)
    assert info.value.status_code == 0
    assert "ours: draft02" in text and "its SETTINGS: draft16" in text
