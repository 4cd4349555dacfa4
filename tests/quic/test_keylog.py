"""SSLKEYLOGFILE and the key log writer (quic.tls.keylog) at the QUIC entry points
(quic.aio connect / serve), which every layer above goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from quic.aio import connect, serve
from quic.tls.keylog import (
    KeyLogFile,
    format_keylog_line,
    keylog_from_environment,
    shared_keylog_file,
)
from tests.quic.test_aio import client_config, echo_stream, server_config
from tests.support.keylog_check import handshakes_logged, keylog_entries


def test_keylog_from_environment(tmp_path: Path) -> None:
    assert keylog_from_environment({}) is None
    assert keylog_from_environment({"SSLKEYLOGFILE": ""}) is None
    path = str(tmp_path / "k.log")
    first = keylog_from_environment({"SSLKEYLOGFILE": path})
    assert isinstance(first, KeyLogFile)
    # one open file per path in the process, however many connections use it
    assert keylog_from_environment({"SSLKEYLOGFILE": path}) is first
    assert shared_keylog_file(path) is first
    assert shared_keylog_file(str(tmp_path / "other.log")) is not first


def test_any_label_is_written(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    keylog = shared_keylog_file(str(path))
    random, secret = bytes(range(32)), bytes(range(32, 64))
    keylog(format_keylog_line("CLIENT_EARLY_TRAFFIC_SECRET", random, secret))  # 0-RTT
    keylog(format_keylog_line("A_FUTURE_LABEL", random, secret))
    assert keylog_entries(path) == {
        "CLIENT_EARLY_TRAFFIC_SECRET": {random.hex()},
        "A_FUTURE_LABEL": {random.hex()},
    }


async def _echo_once(port: int, keylog_env: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if keylog_env is not None:
        monkeypatch.setenv("SSLKEYLOGFILE", str(keylog_env))
    async with connect("127.0.0.1", port, client_config()) as session:
        reader, writer = await session.create_stream()
        writer.write(b"ping")
        writer.write_eof()
        assert await reader.read() == b"ping"


async def test_sslkeylogfile_is_honoured_by_serve_and_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_log, client_log = tmp_path / "server.log", tmp_path / "client.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(server_log))
    server = await serve("127.0.0.1", 0, server_config(), stream_handler=echo_stream)
    async with server:
        await _echo_once(server.port, client_log, monkeypatch)
        await _echo_once(server.port, None, monkeypatch)
    # each role wrote every handshake secret of both connections, for the same randoms
    client_randoms = handshakes_logged(client_log)
    assert len(client_randoms) == 2
    assert handshakes_logged(server_log) == client_randoms


async def test_an_explicit_keylog_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_log, own_log = tmp_path / "env.log", tmp_path / "own.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(env_log))
    lines: list[str] = []
    config = server_config()
    config.keylog = lines.append
    server = await serve("127.0.0.1", 0, config, stream_handler=echo_stream)
    async with server:
        client = client_config()
        client.keylog = KeyLogFile(str(own_log))
        async with connect("127.0.0.1", server.port, client) as session:
            assert session.alpn_protocol == "test"
        client.keylog.close()
    assert not env_log.exists()
    assert len(handshakes_logged(own_log)) == 1
    assert {line.split()[0] for line in lines} >= {"SERVER_TRAFFIC_SECRET_0"}
