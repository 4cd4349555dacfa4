"""The runner's WebTransport cases against an independent implementation: pywebtransport
0.21.1 (PyPI, Rust core on quinn, draft-16 only) running the runner protocol in
``tests/peers/pwt021_runner.py``. Our client against its server (handshake and every
receive case), its client against our server (every transport, both directions: it
receives, and it answers our server's requests in the -send cases), all processes on
127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pwt.runner_support import (
    REPO,
    RunnerEndpoint,
    Tree,
    digest,
    make_certs,
    make_files,
    our_command,
    run_endpoint,
)
from tests.support.children import die_with_parent

PWT021 = Path("/work/venvs/pwt021/bin/python")
PEER = REPO / "tests" / "peers" / "pwt021_runner.py"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not PWT021.exists(), reason="pywebtransport 0.21.1 venv not installed"),
]

KB = 1024
SIZES = {
    "unidirectional": [0, 100 * KB, 1024 * KB + 3],
    "bidirectional": [7, 250 * KB, 2048 * KB],
    "datagram": [600 + 2 * i for i in range(40)],
}
ENDPOINT = "pwt"


def peer_env() -> dict[str, str]:
    """0.21.1's own package, not ours: no PYTHONPATH into this repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SSLKEYLOGFILE")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def free_udp_port() -> int:
    """0.21.1 refuses to bind port 0: a port free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("pwt021") / "certs")


@pytest.fixture
def tree(tmp_path: Path, certs: Path) -> Tree:
    tree = Tree(tmp_path)
    tree.certs.symlink_to(certs)
    tree.server_www.mkdir()
    return tree


@pytest.fixture
def pwt021_server(tree: Tree) -> Iterator[RunnerEndpoint]:
    for name, sizes in SIZES.items():
        make_files(tree.server_www / ENDPOINT, sizes, prefix=name[0])
    server = RunnerEndpoint(
        [str(PWT021), str(PEER), "server", "--port", str(free_udp_port()),
         "--cert", str(tree.certs / "cert.pem"), "--key", str(tree.certs / "priv.key"),
         "--www", str(tree.server_www), "--protocols", "s1 shared2 shared1 s4"],
        tree.root / "pwt021-server.log", env=peer_env(), cwd=tree.root, our_package=False,
    )  # fmt: skip
    yield server
    server.stop()


@pytest.mark.parametrize("kind", list(SIZES))
def test_our_client_receives_from_pwt021(
    tree: Tree, pwt021_server: RunnerEndpoint, kind: str
) -> None:
    names = [f"{kind[0]}{i}" for i in range(len(SIZES[kind]))]
    base = f"https://127.0.0.1:{pwt021_server.port}/{ENDPOINT}"
    result = run_endpoint(
        our_command(
            "client", "--testcase", f"transfer-{kind}-receive", "--certs", str(tree.certs),
            "--downloads", str(tree.client_downloads), "--protocols", "shared1 c2",
            *(f"{base}/{name}" for name in names),
        )
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stderr}\n{pwt021_server.stderr()}"
    assert "protocol 'shared1'" in result.stderr
    for name in names:
        got = tree.client_downloads / ENDPOINT / name
        assert digest(got) == digest(tree.server_www / ENDPOINT / name), name


def test_handshake_with_pwt021_server(tree: Tree, pwt021_server: RunnerEndpoint) -> None:
    url = f"https://127.0.0.1:{pwt021_server.port}/{ENDPOINT}"
    result = run_endpoint(
        our_command(
            "client", "--testcase", "handshake", "--certs", str(tree.certs),
            "--downloads", str(tree.client_downloads), "--protocols", "c1 shared2 c3 shared1",
            url,
        )
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stderr}\n{pwt021_server.stderr()}"
    assert (tree.client_downloads / "negotiated_protocol.txt").read_text() == "shared2"


@pytest.mark.parametrize(("kind", "transport"), [("unidirectional", "uni"),
                                                 ("bidirectional", "bidi"),
                                                 ("datagram", "datagram")])  # fmt: skip
def test_pwt021_client_receives_from_our_server(tree: Tree, kind: str, transport: str) -> None:
    names = make_files(tree.server_www / ENDPOINT, SIZES[kind])
    server = RunnerEndpoint(
        our_command(
            "server", "--testcase", "transfer", "--host", "127.0.0.1", "--port", "0",
            "--certs", str(tree.certs), "--www", str(tree.server_www),
            "--downloads", str(tree.server_downloads), "--protocols", "x shared1 shared2",
        ),
        tree.root / "server.log",
    )  # fmt: skip
    try:
        base = f"https://127.0.0.1:{server.port}/{ENDPOINT}"
        downloads = tree.root / "pwt021-downloads"
        result = subprocess.run(
            [str(PWT021), str(PEER), "client", "--ca", str(tree.certs / "ca.pem"),
             "--downloads", str(downloads), "--transport", transport,
             "--protocols", "c1 shared2 shared1", *(f"{base}/{name}" for name in names)],
            cwd=tree.root, env=peer_env(), capture_output=True, text=True, timeout=60,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{server.stderr()}"
        # the client's first protocol that our server also offers
        assert "PROTOCOL shared2" in result.stdout
        for name in names:
            got = downloads / ENDPOINT / name
            assert digest(got) == digest(tree.server_www / ENDPOINT / name), name
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("kind", list(SIZES))
def test_our_server_requests_from_pwt021_client(tree: Tree, kind: str) -> None:
    """The -send cases: our server requests the files, 0.21.1's client answers them (the
    runner's ``transfer`` role) and exits once our server closed the session."""
    client_www = tree.root / "pwt021-www"
    names = make_files(client_www / ENDPOINT, SIZES[kind])
    requests = " ".join(f"{ENDPOINT}/{name}" for name in names)
    server = RunnerEndpoint(
        our_command(
            "server", "--testcase", f"transfer-{kind}-send", "--host", "127.0.0.1",
            "--port", "0", "--certs", str(tree.certs), "--www", str(tree.server_www),
            "--downloads", str(tree.server_downloads), "--requests", requests,
        ),
        tree.root / "server.log",
    )  # fmt: skip
    try:
        result = subprocess.run(
            [str(PWT021), str(PEER), "client", "--ca", str(tree.certs / "ca.pem"),
             "--downloads", str(tree.root / "unused"), "--transport", "answer",
             "--www", str(client_www), f"https://127.0.0.1:{server.port}/{ENDPOINT}"],
            cwd=tree.root, env=peer_env(), capture_output=True, text=True, timeout=60,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{server.stderr()}"
        for name in names:
            got = tree.server_downloads / ENDPOINT / name
            assert digest(got) == digest(client_www / ENDPOINT / name), name
    finally:
        assert server.stop() == 0
