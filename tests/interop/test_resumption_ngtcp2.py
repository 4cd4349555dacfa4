"""Debian ngtcp2's ``gtlsclient`` resumes with 0-RTT against our HTTP/3 server
(:func:`h3.aio.serve_h3` with ticket keys and an anti-replay memory), on 127.0.0.1.

The first run stores its session ticket and the server's transport parameters
(``--session-file``, ``--tp-file``); the second run sends its request in 0-RTT. The
server's qlog must show 0-RTT packets received on one connection, its key log the
CLIENT_EARLY_TRAFFIC_SECRET (logged by a server only when it accepts 0-RTT), and both
downloads must match the served file.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from h3.aio import ALPN, serve_h3
from h3.cli import StaticFileHandler
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.antireplay import AntiReplay
from quic.tls.selfsigned import generate_self_signed
from quic.tls.tickets import SessionTicketKeys

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("gtlsclient") is None, reason="ngtcp2-client missing"),
]


def zero_rtt_received(qlog_dir: Path) -> list[int]:
    """0-RTT packets received, per connection trace (not the endpoint's own trace)."""
    counts = []
    for trace in qlog_dir.iterdir():
        if trace.name.startswith("endpoint-"):
            continue
        count = 0
        for record in trace.read_text().split("\x1e"):
            if record.strip():
                event = json.loads(record)
                if event.get("name") == "transport:packet_received":
                    count += event["data"]["header"]["packet_type"] == "0RTT"
        counts.append(count)
    return counts


async def test_gtlsclient_zero_rtt_against_our_h3_server(tmp_path: Path) -> None:
    www, downloads, qlogs = tmp_path / "www", tmp_path / "dl", tmp_path / "qlog"
    www.mkdir()
    downloads.mkdir()
    payload = os.urandom(200_000)
    (www / "f.bin").write_bytes(payload)
    keys: list[str] = []
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        ticket_keys=SessionTicketKeys(),
        anti_replay=AntiReplay(),
        qlog_dir=str(qlogs),
        keylog=keys.append,
    )
    cert = generate_self_signed(wall_clock())
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    server = await serve_h3("127.0.0.1", 0, config, StaticFileHandler(www))
    try:
        port = server.port
        for run in range(2):
            command = ["gtlsclient", "127.0.0.1", str(port), f"https://127.0.0.1:{port}/f.bin"]
            command += ["-q", "--exit-on-all-streams-close", "--download", str(downloads)]
            command += ["--session-file", str(tmp_path / "session")]
            command += ["--tp-file", str(tmp_path / "tp")]
            process = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=60
            )
            assert process.returncode == 0, (run, process.stderr[-2000:])
            assert (downloads / "f.bin").read_bytes() == payload
            (downloads / "f.bin").unlink()
    finally:
        await server.shutdown()
    counts = zero_rtt_received(qlogs)
    assert len(counts) == 2 and sorted(counts)[0] == 0 and sorted(counts)[1] >= 1
    assert sum(line.startswith("CLIENT_EARLY_TRAFFIC_SECRET") for line in keys) == 1
