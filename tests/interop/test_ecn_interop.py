"""The interop case "ecn" on loopback, checked as quic-interop-runner checks it.

The runner looks at a capture: every QUIC datagram of each side carries ECT(0) or
ECT(1) in its IP header (no Not-ECT, no CE), and each side sends ACK frames with ECN
counts. Here our interop client and server (in one event loop) talk through a relay
that reads the ECN field of every datagram (``recvmsg``) and forwards it unchanged —
the capture — and the ACK frames are read from each side's qlog. aioquic does no ECN:
our client against it must still download byte-exact, with ECN validation failing and
marking stopping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quic.aio import serve
from quic.aio.udp import configure_path_options, read_batch_ecn, send_marked
from quic.interop import TESTCASES
from quic.interop.client import run_client
from quic.interop.options import InteropOptions
from quic.interop.server import HqFileServer, server_configuration
from tests.peers import make_self_signed_cert

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not hasattr(socket, "IP_RECVTOS") or not sys.platform.startswith("linux"),
        reason="the platform cannot read the ECN field",
    ),
]

FILE = "file.bin"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ecn")
    (root / "certs").mkdir()
    _, key = make_self_signed_cert(root / "certs")
    key.rename(root / "certs" / "priv.key")
    (root / "www").mkdir()
    (root / "www" / FILE).write_bytes(os.urandom(1_000_000))
    return root


class EcnRelay:
    """UDP relay client ⇄ server that records the ECN field of every datagram."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.front, self.back):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            assert configure_path_options(sock).ecn
        self.port: int = self.front.getsockname()[1]
        self.client: Any = None
        self.seen: dict[str, dict[int, int]] = {"client": {}, "server": {}}
        self.order: dict[str, list[int]] = {"client": [], "server": []}  # codepoints in order

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.front.fileno(), self._from_client)
        loop.add_reader(self.back.fileno(), self._from_server)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for sock in (self.front, self.back):
            loop.remove_reader(sock.fileno())
            sock.close()

    def _record(self, side: str, ecn: int) -> None:
        counts = self.seen[side]
        counts[ecn] = counts.get(ecn, 0) + 1
        self.order[side].append(ecn)

    def _from_client(self) -> None:
        def forward(data: bytes, addr: Any, _now: float, ecn: int) -> None:
            self.client = addr
            self._record("client", ecn)
            send_marked(self.back, data, self.server, ecn)

        read_batch_ecn(self.front, forward, pytest.fail)

    def _from_server(self) -> None:
        def forward(data: bytes, addr: Any, _now: float, ecn: int) -> None:
            self._record("server", ecn)
            if self.client is not None:
                send_marked(self.front, data, self.client, ecn)

        read_batch_ecn(self.back, forward, pytest.fail)


def _acks_with_counts(qlog_dir: Path) -> int:
    """ACK frames with ECN counts among the packets a qlog file says were sent."""
    count = 0
    for path in qlog_dir.glob("*.sqlog"):
        for record in path.read_text().split("\x1e"):
            if not record.strip():
                continue
            event = json.loads(record)
            if event.get("name") != "transport:packet_sent":
                continue
            for frame in event["data"]["frames"]:
                if frame.get("frame_type") == "ack" and "ect0" in frame:
                    count += 1
    return count


async def test_ecn_case_passes_the_runner_checks(tree: Path, tmp_path: Path) -> None:
    case = TESTCASES["ecn"]
    server_qlog, client_qlog = tmp_path / "server-qlog", tmp_path / "client-qlog"
    server_qlog.mkdir()
    options = InteropOptions(
        role="server", testcase="ecn", certs=tree / "certs", qlog_dir=str(server_qlog)
    )
    files = HqFileServer(tree / "www")
    server = await serve("127.0.0.1", 0, server_configuration(options, case), files.serve_session)
    loop = asyncio.get_running_loop()
    relay = EcnRelay(server.port)
    relay.start(loop)
    try:
        async with server:
            client = InteropOptions(
                role="client",
                testcase="ecn",
                downloads=tmp_path / "downloads",
                requests=(f"https://127.0.0.1:{relay.port}/{FILE}",),
                qlog_dir=str(client_qlog),
                timeout=30.0,
            )
            assert await asyncio.wait_for(run_client(client, case), 40) == 0
    finally:
        relay.stop(loop)
    got = hashlib.sha256((tmp_path / "downloads" / FILE).read_bytes()).digest()
    assert got == hashlib.sha256((tree / "www" / FILE).read_bytes()).digest()
    for side in ("client", "server"):
        seen = relay.seen[side]
        assert seen.get(2, 0) > 10, seen  # ECT(0) ...
        assert set(seen) == {2}, seen  # ... on every datagram: no Not-ECT, no CE
    client_acks, server_acks = _acks_with_counts(client_qlog), _acks_with_counts(server_qlog)
    assert client_acks > 0 and server_acks > 0  # both send ACK frames with ECN counts


@pytest.fixture()
def aioquic_server(tree: Path) -> Iterator[int]:
    pytest.importorskip("aioquic")
    from tests.interop.test_hq_interop import aioquic_server as start

    server = start(tree)
    yield server.port()
    server.stop()


async def test_ecn_case_against_aioquic_which_does_no_ecn(
    tree: Path, aioquic_server: int, tmp_path: Path
) -> None:
    case = TESTCASES["ecn"]
    qlog = tmp_path / "qlog"
    client = InteropOptions(
        role="client",
        testcase="ecn",
        downloads=tmp_path / "downloads",
        requests=(f"https://127.0.0.1:{aioquic_server}/{FILE}",),
        qlog_dir=str(qlog),
        timeout=30.0,
    )
    assert await asyncio.wait_for(run_client(client, case), 40) == 0
    got = hashlib.sha256((tmp_path / "downloads" / FILE).read_bytes()).digest()
    assert got == hashlib.sha256((tree / "www" / FILE).read_bytes()).digest()
    assert _acks_with_counts(qlog) == 0  # aioquic never marks, so we report no counts


async def test_ecn_validated_both_ways_with_ngtcp2(tmp_path: Path) -> None:
    """ngtcp2 (an independent implementation that does ECN) downloads from our HTTP/3
    server through the capturing relay: each side keeps marking ECT(0) to the end,
    which it does only if the other side's ACK_ECN counts passed its validation."""
    binary = shutil.which("gtlsclient")
    if binary is None:
        pytest.skip("gtlsclient not installed (apt ngtcp2-client)")
    from tests.interop.test_h3_interop import OurServer

    www = tmp_path / "www"
    www.mkdir()
    payload = os.urandom(2_000_000)
    (www / FILE).write_bytes(payload)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    loop = asyncio.get_running_loop()
    with OurServer(www) as server:
        relay = EcnRelay(server.port)
        relay.start(loop)
        try:
            url = f"https://127.0.0.1:{relay.port}/{FILE}"
            process = await asyncio.create_subprocess_exec(
                *(binary, "127.0.0.1", str(relay.port), url, "-q"),
                *("--exit-on-all-streams-close", "--download", str(downloads)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(process.communicate(), 45)
        finally:
            relay.stop(loop)
        assert process.returncode == 0, f"{stderr.decode()[-2000:]}\n{server.log()}"
    assert (downloads / FILE).read_bytes() == payload
    for side in ("client", "server"):
        marks = relay.order[side]
        assert len(marks) > 100
        assert set(marks[-20:]) == {2}, (side, relay.seen[side])  # still ECT(0) at the end
    assert set(relay.seen["server"]) == {2}, relay.seen  # we never stopped marking
