"""The browser tests' own tooling, without a browser: the custom server's qlog traces
and the failure message built from them (``tests/interop/wt_browser.py``).

A browser test that fails in CI cannot be rerun to look closer, so its message must
carry what our server saw: :class:`~tests.interop.wt_browser.CustomServer` traces every
connection into its own qlog directory and :func:`~tests.interop.wt_browser.explain`
appends the traces' last events. Here our own client asks the server's ``/stats`` the
way the page does (a bidi stream, FIN, read the JSON) and the message must show that
stream's frames both ways.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig
from tests.interop.wt_browser import CustomServer, cert_hash, explain, qlog_tail

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.fixture
def custom_server() -> Iterator[CustomServer]:
    with CustomServer() as server:
        yield server


async def _ask_stats(port: int, sha256: bytes) -> dict[str, object]:
    config = ClientConfig(server_certificate_hashes=[sha256])
    async with WebTransportClient(config) as client:
        session = await client.connect(f"https://127.0.0.1:{port}/stats")
        stream = await session.create_bidirectional_stream()
        await stream.write(b"", end_stream=True)
        stats: dict[str, object] = json.loads(await stream.read_all())
        await session.close()
        return stats


def test_failure_message_carries_the_servers_qlog_of_the_stream(
    custom_server: CustomServer,
) -> None:
    stats = asyncio.run(_ask_stats(custom_server.port, bytes.fromhex(cert_hash(custom_server))))
    assert stats["path"] == "/stats"
    why = explain({"ok": False, "failedStep": "stats"}, custom_server)
    trace = why[why.index("qlog ") :]
    assert "_server.sqlog" in trace
    # our client's first bidi stream is 0 (the CONNECT), its second 4: the stats stream,
    # received with its FIN and answered with the JSON and a FIN
    received = [line for line in trace.splitlines() if "packet_received" in line]
    sent = [line for line in trace.splitlines() if "packet_sent" in line]
    assert any("stream(stream_id=4" in line and "fin=True" in line for line in received), trace
    assert any("stream(stream_id=4" in line and "fin=True" in line for line in sent), trace
    assert "http:stream_type_set" in trace


def test_qlog_tail_keeps_the_newest_events_of_the_newest_traces(tmp_path: Path) -> None:
    for index in range(6):
        records = [{"qlog_version": "0.3"}] + [
            {"time": float(n), "name": "http:frame_parsed", "data": {"stream_id": index, "n": n}}
            for n in range(100)
        ]
        path = tmp_path / f"{index:016x}_server.sqlog"
        path.write_text("".join("\x1e" + json.dumps(record) + "\n" for record in records))
        stamp = 1_000_000 + index
        os.utime(path, (stamp, stamp))
    tail = qlog_tail(tmp_path, events=10, traces=2)
    headers = [line for line in tail.splitlines() if line.startswith("qlog ")]
    assert headers == [
        f"qlog {4:016x}_server.sqlog (last 10 of 100 events):",
        f"qlog {5:016x}_server.sqlog (last 10 of 100 events):",
    ]
    assert len(tail.splitlines()) == 2 + 2 * 10
    assert '"n": 99' in tail and '"n": 89' not in tail
    assert qlog_tail(tmp_path / "empty").startswith("(no qlog trace")
