"""The interop runner's "retry" test case against aioquic, both roles, on 127.0.0.1.

* aioquic's hq client downloads from our endpoint (``python -m quic.interop server
  --testcase retry``): our server sends a Retry to every new connection (RFC 9000
  §8.1.2), aioquic accepts it (it reports one Retry) and the files arrive byte-exact.
* our client (``--testcase retry``) downloads from aioquic's hq server with Retry on
  (``tests/peers/aioquic_hq_retry.py``): aioquic's server only creates a connection for
  an Initial that returns its Retry token, and reports that the connection went through
  a Retry; the files arrive byte-exact.
* ngtcp2's ``gtlsclient`` (HTTP/3) downloads from our HTTP/3 server with Retry always
  on (:func:`h3.aio.serve_h3` in a child process that reports its validator's counters
  when it stops). (Our client against ``gtlsserver -V`` is in ``test_h3_interop.py``.)
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quic.interop import TESTCASES
from tests.interop.test_hq_interop import (
    BIG,
    REPO,
    SMALL,
    LineProcess,
    our_endpoint,
    run,
    sha256,
    tree,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

__all__ = ["tree"]  # the module fixture, shared with test_hq_interop

AIOQUIC_HQ_RETRY = REPO / "tests" / "peers" / "aioquic_hq_retry.py"


def aioquic_hq_retry(*args: str) -> list[str]:
    return [sys.executable, str(AIOQUIC_HQ_RETRY), *args]


@pytest.fixture(scope="module")
def our_retry_server(tree: Path) -> Iterator[LineProcess]:
    server = LineProcess(
        our_endpoint(
            "server",
            *("--testcase", "retry", "--port", "0"),
            *("--certs", str(tree / "certs"), "--www", str(tree / "www")),
        )
    )
    server.port()
    yield server
    assert server.stop() == 0, server.stderr()


@pytest.fixture(scope="module")
def aioquic_retry_server(tree: Path) -> Iterator[LineProcess]:
    pytest.importorskip("aioquic")
    certs = tree / "certs"
    server = LineProcess(
        aioquic_hq_retry(
            "server",
            *("--cert", str(certs / "cert.pem"), "--key", str(certs / "priv.key")),
            *("--www", str(tree / "www")),
        )
    )
    server.port()
    yield server
    server.stop()


def test_retry_case_is_supported() -> None:
    assert TESTCASES["retry"].retry == "always"


def test_aioquic_client_follows_our_retry(
    tree: Path, our_retry_server: LineProcess, tmp_path: Path
) -> None:
    pytest.importorskip("aioquic")
    port = our_retry_server.port()
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG)]
    done = run(aioquic_hq_retry("client", "--downloads", str(tmp_path), *urls))
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr)
    retries = [json.loads(line[6:]) for line in lines if line.startswith("RETRY ")]
    assert retries == [{"retry_count": 1}]  # our server sent a Retry; aioquic took it
    www = tree / "www"
    for name in (SMALL, BIG):
        assert sha256(tmp_path / name) == sha256(www / name)


def test_our_client_follows_aioquic_retry(
    tree: Path, aioquic_retry_server: LineProcess, tmp_path: Path
) -> None:
    since = aioquic_retry_server.mark(0.0)
    port = aioquic_retry_server.port()
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG)]
    done = run(our_endpoint("client", "--testcase", "retry", "--downloads", str(tmp_path), *urls))
    assert done.returncode == 0, done.stderr
    (connected,) = aioquic_retry_server.records("CONNECTED", 1, since)
    assert connected["retry"] is True  # aioquic's server accepted our Retry token
    www = tree / "www"
    for name in (SMALL, BIG):
        assert sha256(tmp_path / name) == sha256(www / name)


H3_RETRY_SERVER = """
import asyncio, json, signal, sys
from pathlib import Path
from h3.aio import ALPN, serve_h3
from h3.cli import StaticFileHandler
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.tls.selfsigned import generate_self_signed

async def main() -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN], retry="always")
    cert = generate_self_signed(wall_clock())
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    server = await serve_h3("127.0.0.1", 0, config, StaticFileHandler(Path(sys.argv[1])))
    print(f"LISTENING {server.port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    v = server.quic_server.endpoint.address_validator
    counters = {"retries": v.retries, "retry_validated": v.retry_validated}
    print("VALIDATION " + json.dumps(counters), flush=True)
    await server.shutdown()

asyncio.run(main())
"""


def test_gtlsclient_follows_our_retry(tree: Path, tmp_path: Path) -> None:
    binary = shutil.which("gtlsclient")
    if binary is None:
        pytest.skip("gtlsclient not installed (apt ngtcp2-client)")
    server = LineProcess([sys.executable, "-c", H3_RETRY_SERVER, str(tree / "www")])
    try:
        port = server.port()
        url = f"https://127.0.0.1:{port}/{BIG}"
        command = [binary, "127.0.0.1", str(port), url, "-q", "--exit-on-all-streams-close"]
        done = run([*command, "--download", str(tmp_path)])
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.stderr()}"
    finally:
        assert server.stop() == 0, server.stderr()
    (counters,) = server.records("VALIDATION", 1)
    assert counters["retries"] >= 1 and counters["retry_validated"] == 1, counters
    assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
