"""Session resumption and 0-RTT against aioquic 1.7.2, both roles, on 127.0.0.1.

* Our client (:func:`quic.aio.connect`) against the aioquic resumption peer server
  (``tests/peers/aioquic_resume.py server``): a first connection stores a ticket, a
  second resumes with it — with 0-RTT (the request is written before the handshake
  completes, and the server reports that it arrived in 0-RTT) and without.
* The aioquic peer client against our server (:func:`quic.aio.serve` with ticket keys
  and an anti-replay memory): its second connection resumes, with and without 0-RTT.

Nothing from aioquic is imported here: the peers are processes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quic.aio import QuicSession, QuicStreamReader, QuicStreamWriter, connect, serve
from quic.events import HandshakeCompleted, QuicEvent, StreamDataReceived
from quic.tls.antireplay import AntiReplay
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys
from tests.interop.test_aioquic_quic import client_config, server_config
from tests.peers import PeerServer, make_self_signed_cert

pytest.importorskip("aioquic")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

ALPN = "pwt-interop"
PEER = Path(__file__).parents[1] / "peers" / "aioquic_resume.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("resume-certs"))


@pytest.fixture
def aioquic_server(certs: tuple[Path, Path]) -> Iterator[PeerServer]:
    with PeerServer(certs[0], certs[1], ALPN, script=PEER) as server:
        yield server


def handshake_record(server: PeerServer) -> dict[str, Any]:
    line = server._next_line(10.0)
    assert line is not None and line.startswith("HANDSHAKE "), (line, server.stderr())
    return json.loads(line.split(" ", 1)[1])  # type: ignore[no-any-return]


async def echo(session: QuicSession, payload: bytes) -> bytes:
    reader, writer = await session.create_stream()
    writer.write(payload)
    writer.write_eof()
    return await reader.read()


@pytest.mark.parametrize("zero_rtt", [True, False])
async def test_our_client_resumes_with_aioquic(
    aioquic_server: PeerServer, certs: tuple[Path, Path], zero_rtt: bool
) -> None:
    store = InMemorySessionTicketStore()
    config = client_config(certs, session_ticket_store=store, server_name="localhost")
    async with connect("127.0.0.1", aioquic_server.port, config) as session:
        assert await echo(session, b"first") == b"first"
        for _ in range(100):
            if len(store):
                break
            await asyncio.sleep(0.02)
    assert len(store) == 1
    first = handshake_record(aioquic_server)
    assert not first["session_resumed"]
    config = client_config(
        certs, session_ticket_store=store, server_name="localhost", enable_early_data=zero_rtt
    )
    async with connect(
        "127.0.0.1", aioquic_server.port, config, wait_connected=not zero_rtt
    ) as session:
        assert session.connection.early_data_possible is zero_rtt
        assert await echo(session, b"second") == b"second"
        await session.wait_connected()
        assert session.connection.tls.session_resumed
        assert session.connection.tls.early_data_accepted is zero_rtt
    second = handshake_record(aioquic_server)
    assert second["session_resumed"]
    assert second["early_data_accepted"] is zero_rtt
    assert second["early_streams"] == ([0] if zero_rtt else [])


@pytest.mark.parametrize(
    ("zero_rtt", "accept"),
    [(True, True), (False, False), (True, False)],
    ids=["0rtt-accepted", "resumed-only", "0rtt-rejected"],
)
async def test_aioquic_client_resumes_with_our_server(
    certs: tuple[Path, Path], zero_rtt: bool, accept: bool
) -> None:
    """aioquic offers early_data whenever its ticket allows; ``zero_rtt``: it also
    writes its request before the handshake completes; ``accept``: our server takes
    0-RTT (else it refuses it and the request arrives again in 1-RTT)."""
    records: list[dict[str, Any]] = []

    def setup(session: QuicSession) -> None:
        record: dict[str, Any] = {"early_streams": set()}
        records.append(record)

        def listen(event: QuicEvent) -> bool:
            if isinstance(event, StreamDataReceived) and "handshake" not in record:
                record["early_streams"].add(event.stream_id)
            elif isinstance(event, HandshakeCompleted):
                record["handshake"] = event
                if not accept:  # the first ticket allows 0-RTT; from now on refuse it
                    config.enable_early_data = False
            return False

        session.event_listener = listen

    async def echo_stream(reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        writer.write(await reader.read())
        writer.write_eof()

    config = server_config(certs, ticket_keys=SessionTicketKeys(), anti_replay=AntiReplay())
    server = await serve("127.0.0.1", 0, config, stream_handler=echo_stream, session_setup=setup)
    try:
        command = [sys.executable, str(PEER), "client", "--port", str(server.port)]
        command += ["--alpn", ALPN] + (["--zerortt"] if zero_rtt else [])
        process = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        result = json.loads(process.stdout.strip().splitlines()[-1])
        assert result["ok"], (result, process.stderr)
        assert not result["first_resumed"] and result["second_resumed"]
        assert result["early_data_accepted"] is accept
        assert len(records) == 2
        first, second = (r["handshake"] for r in records)
        assert not first.session_resumed
        assert second.session_resumed and second.early_data_accepted is accept
        assert records[1]["early_streams"] == ({0} if zero_rtt and accept else set())
    finally:
        await server.shutdown()
