"""Runner test cases ``resumption`` and ``zerortt`` of ``python -m quic.interop``:
our client against our server, in one event loop (quic.interop.resume).

The checks are the runner's: two connections; the second resumes (its handshake has
no certificate); for ``zerortt`` the second connection's requests leave in 0-RTT
packets (seen in the client's qlog) and CLIENT_EARLY_TRAFFIC_SECRET is in the key log;
for ``resumption`` no 0-RTT packet is sent. Every file arrives intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from quic.aio import QuicSession, serve
from quic.interop import TESTCASES, run_client
from quic.interop.options import InteropOptions
from quic.interop.server import HqFileServer, server_configuration
from tests.peers import make_self_signed_cert

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

FILES = ("a.bin", "b.bin", "c.bin")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-case")
    (root / "certs").mkdir()
    _, key = make_self_signed_cert(root / "certs")
    key.rename(root / "certs" / "priv.key")
    (root / "www").mkdir()
    for name in FILES:
        (root / "www" / name).write_bytes(os.urandom(20_000))
    return root


def sent_packet_types(qlog: Path) -> dict[str, int]:
    """Packet type -> packets sent carrying STREAM frames, from one .sqlog file."""
    counts: dict[str, int] = {}
    for record in qlog.read_text().split("\x1e"):
        if not record.strip():
            continue
        event = json.loads(record)
        if event.get("name") != "transport:packet_sent":
            continue
        data = event["data"]
        if any(f.get("frame_type") == "stream" for f in data.get("frames", [])):
            kind = data["header"]["packet_type"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.mark.parametrize("testcase", ["resumption", "zerortt"])
async def test_resumption_cases(tree: Path, tmp_path: Path, testcase: str) -> None:
    case = TESTCASES[testcase]
    sessions: list[QuicSession] = []
    server_opts = InteropOptions(role="server", testcase=testcase, certs=tree / "certs")
    config = server_configuration(server_opts, case)
    files = HqFileServer(tree / "www")
    server = await serve("127.0.0.1", 0, config, files.serve_session, session_setup=sessions.append)
    async with server:
        base = f"https://127.0.0.1:{server.port}/"
        keylog, qlogs = tmp_path / "keys.log", tmp_path / "qlog"
        options = InteropOptions(
            role="client",
            testcase=testcase,
            downloads=tmp_path / "downloads",
            requests=tuple(base + name for name in FILES),
            keylog_file=str(keylog),
            qlog_dir=str(qlogs),
            timeout=30.0,
        )
        assert await run_client(options, case) == 0
    for name in FILES:
        got = (tmp_path / "downloads" / name).read_bytes()
        assert (
            hashlib.sha256(got).digest()
            == hashlib.sha256((tree / "www" / name).read_bytes()).digest()
        )
    assert [s.connection.tls.session_resumed for s in sessions] == [False, True]
    early = [s.connection.tls.early_data_accepted for s in sessions]
    assert early == [False, testcase == "zerortt"]
    traces = sorted(qlogs.iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(traces) == 2
    second = sent_packet_types(traces[1])
    if testcase == "zerortt":
        assert second.get("0RTT", 0) >= 1  # the requests went in 0-RTT
        assert "CLIENT_EARLY_TRAFFIC_SECRET" in keylog.read_text()
    else:
        assert "0RTT" not in second
        assert "CLIENT_EARLY_TRAFFIC_SECRET" not in keylog.read_text()
