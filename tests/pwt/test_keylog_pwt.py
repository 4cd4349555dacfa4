"""SSLKEYLOGFILE and ``keylog_file`` at the WebTransport entry points: ServerApp,
WebTransportServer, WebTransportClient (the CLI's --keylog: tests/pwt/test_cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pywebtransport import ClientConfig, WebTransportClient
from quic.tls.selfsigned import SelfSignedCertificate
from tests.pwt.pwt_support import client_config, running
from tests.pwt.test_app import ask, cert, make_app, serving
from tests.support.keylog_check import handshakes_logged

__all__ = ["cert"]  # the module-scoped certificate fixture


async def test_sslkeylogfile_with_webtransport_server_and_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_log, client_log = tmp_path / "server.log", tmp_path / "client.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(server_log))
    async with running() as h:
        monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
        async with WebTransportClient(client_config()) as client:
            session = await client.connect(h.url())
            await session.close()
    randoms = handshakes_logged(client_log)
    assert len(randoms) == 1 and handshakes_logged(server_log) == randoms


async def test_keylog_file_of_server_app_and_sslkeylogfile_of_client(
    cert: SelfSignedCertificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_log, client_log = tmp_path / "app.log", tmp_path / "client.log"
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    app = make_app(cert)
    app.config.keylog_file = str(app_log)

    @app.route("/echo")
    async def echo(session: Any) -> None:
        async for stream in session.incoming_bidirectional_streams():
            await stream.write(await stream.read_all(), end_stream=True)

    async with serving(app) as port:
        monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
        config = ClientConfig(server_certificate_hashes=[cert.sha256], connect_timeout=5.0)
        async with (
            WebTransportClient(config=config) as client,
            await client.connect(f"https://127.0.0.1:{port}/echo") as session,
        ):
            assert await ask(session, b"k") == b"k"
    randoms = handshakes_logged(client_log)
    assert len(randoms) == 1 and handshakes_logged(app_log) == randoms


async def test_client_keylog_file_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    own = tmp_path / "own.log"
    async with running() as h, WebTransportClient(client_config(keylog_file=str(own))) as client:
        session = await client.connect(h.url())
        await session.close()
    assert len(handshakes_logged(own)) == 1
