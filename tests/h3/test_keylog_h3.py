"""SSLKEYLOGFILE at the HTTP/3 entry points: serve_h3 / H3Client, and the command
line's ``--keylog`` (python -m h3 get|serve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from h3.cli import _client_configuration, build_parser
from quic.tls.keylog import shared_keylog_file
from quic.tls.selfsigned import SelfSignedCertificate
from tests.h3.test_aio import H3Client, cert, client_config, echo, start
from tests.support.keylog_check import handshakes_logged

__all__ = ["cert"]  # the module-scoped certificate fixture


async def test_sslkeylogfile_is_honoured_by_serve_h3_and_h3_client(
    cert: SelfSignedCertificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_log, client_log = tmp_path / "server.log", tmp_path / "client.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(server_log))
    async with await start(cert, echo) as server:
        monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
        url = f"https://127.0.0.1:{server.port}/"
        async with H3Client.connect(url, configuration=client_config(cert)) as client:
            assert (await client.get("/x")).status == 200
    randoms = handshakes_logged(client_log)
    assert len(randoms) == 1 and handshakes_logged(server_log) == randoms


def test_cli_keylog_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    path = str(tmp_path / "k.log")
    args = build_parser().parse_args(["get", "https://127.0.0.1:1/", "--keylog", path])
    assert _client_configuration(args).keylog is shared_keylog_file(path)
    args = build_parser().parse_args(["get", "https://127.0.0.1:1/"])
    assert _client_configuration(args).keylog is None  # $SSLKEYLOGFILE at connect time
    serve = build_parser().parse_args(["serve", "--root", ".", "--keylog", path])
    assert serve.keylog == path
