"""quic-interop-runner's WebTransport mode between our client and our server, as real
processes on 127.0.0.1 (the server on a free port), files in the runner's layout:
every test case, the negotiated protocol on both sides, exit 127, the environment-only
mode, key log and qlog, several endpoints on one QUIC connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pwt.runner_support import (
    RunnerEndpoint,
    Tree,
    digest,
    make_certs,
    make_files,
    our_command,
    run_endpoint,
)

pytestmark = pytest.mark.timeout(180)

KB = 1024
MB = 1024 * KB
#: the runner's stream sizes are 100 KB .. 2 MB; ours include an empty file and > 1 MB
STREAM_SIZES = [0, 1, 100 * KB, 1 * MB + 17, 2 * MB]
#: the runner's datagram files: 600 + 2i bytes for i < 200 (every 4th here, and the
#: largest), named by slugs of a few words
DATAGRAM_SIZES = [600 + 2 * i for i in range(0, 200, 4)] + [998]
SLUG = "brave-orange-walrus-of-"
ENDPOINT = "wt-endpoint"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("runner") / "certs")


@pytest.fixture
def tree(tmp_path: Path, certs: Path) -> Tree:
    tree = Tree(tmp_path)
    tree.certs.symlink_to(certs)
    for directory in (tree.server_www, tree.client_www):
        directory.mkdir()
    return tree


def server_command(tree: Tree, testcase: str, *extra: str) -> list[str]:
    return our_command(
        "server", "--testcase", testcase, "--host", "127.0.0.1", "--port", "0",
        "--certs", str(tree.certs), "--www", str(tree.server_www),
        "--downloads", str(tree.server_downloads), *extra,
    )  # fmt: skip


def client_command(tree: Tree, testcase: str, *urls: str, extra: tuple[str, ...] = ()) -> list[str]:
    return our_command(
        "client", "--testcase", testcase, "--certs", str(tree.certs),
        "--www", str(tree.client_www), "--downloads", str(tree.client_downloads),
        *extra, *urls,
    )  # fmt: skip


@pytest.fixture
def server_factory(tree: Tree) -> Iterator[list[RunnerEndpoint]]:
    started: list[RunnerEndpoint] = []
    yield started
    for server in started:
        server.stop()


def start_server(
    started: list[RunnerEndpoint], tree: Tree, testcase: str, *extra: str
) -> RunnerEndpoint:
    server = RunnerEndpoint(
        server_command(tree, testcase, *extra), tree.root / f"server-{len(started)}.log"
    )
    started.append(server)
    return server


def assert_same_files(source: Path, downloads: Path, names: list[str]) -> None:
    assert sorted(p.name for p in downloads.iterdir()) == sorted(names)
    for name in names:
        assert digest(downloads / name) == digest(source / name), name


def check_client(result: object, server: RunnerEndpoint) -> None:
    assert getattr(result, "returncode", None) == 0, (
        f"client: {getattr(result, 'stderr', '')}\nserver: {server.stderr()}"
    )


# ======================================================================================
# handshake
# ======================================================================================


def test_handshake_negotiates_the_clients_first_protocol_the_server_offers(
    tree: Tree, server_factory: list[RunnerEndpoint]
) -> None:
    # the runner's shape: five protocols each side, two shared, in crossed order
    server = start_server(server_factory, tree, "handshake", "--protocols", "s1 s2 b s3 a")
    (tree.server_www / ENDPOINT).mkdir()
    url = f"https://127.0.0.1:{server.port}/{ENDPOINT}"
    result = run_endpoint(
        client_command(tree, "handshake", url, extra=("--protocols", "c1 a c2 b c3"))
    )
    check_client(result, server)
    assert (tree.client_downloads / "negotiated_protocol.txt").read_text() == "a"
    assert (tree.server_downloads / "negotiated_protocol.txt").read_text() == "a"
    assert server.process.poll() is None  # the server runs until it is stopped
    assert server.stop() == 0


def test_handshake_without_a_common_protocol_writes_empty_files(
    tree: Tree, server_factory: list[RunnerEndpoint]
) -> None:
    server = start_server(server_factory, tree, "handshake", "--protocols", "x y")
    url = f"https://127.0.0.1:{server.port}/{ENDPOINT}"
    result = run_endpoint(client_command(tree, "handshake", url, extra=("--protocols", "z")))
    check_client(result, server)
    assert (tree.client_downloads / "negotiated_protocol.txt").read_text() == ""
    assert (tree.server_downloads / "negotiated_protocol.txt").read_text() == ""


# ======================================================================================
# transfer: the server sends (receive cases) and the client sends (send cases)
# ======================================================================================


@pytest.mark.parametrize("kind", ["unidirectional", "bidirectional", "datagram"])
def test_transfer_receive(tree: Tree, server_factory: list[RunnerEndpoint], kind: str) -> None:
    sizes = DATAGRAM_SIZES if kind == "datagram" else STREAM_SIZES
    source = tree.server_www / ENDPOINT
    names = make_files(source, sizes, prefix=SLUG)
    # the runner starts the server with "transfer" for the receive cases
    server = start_server(server_factory, tree, "transfer", "--protocols", "proto")
    urls = [f"https://127.0.0.1:{server.port}/{ENDPOINT}/{name}" for name in names]
    result = run_endpoint(
        client_command(tree, f"transfer-{kind}-receive", *urls, extra=("--protocols", "proto"))
    )
    check_client(result, server)
    assert_same_files(source, tree.client_downloads / ENDPOINT, names)


@pytest.mark.parametrize("kind", ["unidirectional", "bidirectional", "datagram"])
def test_transfer_send(tree: Tree, server_factory: list[RunnerEndpoint], kind: str) -> None:
    sizes = DATAGRAM_SIZES if kind == "datagram" else STREAM_SIZES
    source = tree.client_www / ENDPOINT
    names = make_files(source, sizes, prefix=SLUG)
    requests = " ".join(f"{ENDPOINT}/{name}" for name in names)
    server = start_server(server_factory, tree, f"transfer-{kind}-send", "--requests", requests)
    # the runner starts the client with "transfer" and the endpoint's URL only
    url = f"https://127.0.0.1:{server.port}/{ENDPOINT}"
    result = run_endpoint(client_command(tree, "transfer", url))
    check_client(result, server)  # the server closed the session once all arrived
    assert_same_files(source, tree.server_downloads / ENDPOINT, names)
    assert server.stop() == 0


def test_transfer_missing_file_fails_the_client(
    tree: Tree, server_factory: list[RunnerEndpoint]
) -> None:
    names = make_files(tree.server_www / ENDPOINT, [10])
    server = start_server(server_factory, tree, "transfer")
    base = f"https://127.0.0.1:{server.port}/{ENDPOINT}"
    result = run_endpoint(
        client_command(
            tree, "transfer-bidirectional-receive", f"{base}/{names[0]}", f"{base}/nothere",
            extra=("--timeout", "5"),
        )
    )  # fmt: skip
    assert result.returncode == 1
    assert (tree.client_downloads / ENDPOINT / names[0]).is_file()
    assert not (tree.client_downloads / ENDPOINT / "nothere").exists()


def test_several_endpoints_share_one_connection(
    tree: Tree, server_factory: list[RunnerEndpoint]
) -> None:
    first = make_files(tree.server_www / "wt1", [5000, 70000])
    second = make_files(tree.server_www / "wt2", [300], prefix="g")
    server = start_server(server_factory, tree, "transfer")
    base = f"https://127.0.0.1:{server.port}"
    urls = [f"{base}/wt1/{n}" for n in first] + [f"{base}/wt2/{n}" for n in second]
    qlog = tree.root / "qlog"
    keylog = tree.root / "keys.log"
    env = {"QLOGDIR": str(qlog), "SSLKEYLOGFILE": str(keylog)}
    result = run_endpoint(client_command(tree, "transfer-unidirectional-receive", *urls), env=env)
    check_client(result, server)
    assert_same_files(tree.server_www / "wt1", tree.client_downloads / "wt1", first)
    assert_same_files(tree.server_www / "wt2", tree.client_downloads / "wt2", second)
    # one QUIC connection (one qlog file) for both sessions, and its TLS secrets
    assert len(list(qlog.glob("*_client.sqlog"))) == 1
    assert "SERVER_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()


# ======================================================================================
# the runner's contract: exit 127, environment only
# ======================================================================================


@pytest.mark.parametrize("role", ["server", "client"])
def test_unsupported_test_case_exits_127(role: str) -> None:
    result = run_endpoint(our_command(), env={"ROLE": role, "TESTCASE": "zerortt"})
    assert result.returncode == 127, result.stderr


def test_environment_mode_without_flags(tree: Tree, tmp_path: Path) -> None:
    names = make_files(tree.server_www / ENDPOINT, [3000, 1 * MB])
    qlog = tmp_path / "server-qlog"
    keylog = tmp_path / "server-keys.log"
    server_env = {
        "ROLE": "server",
        "TESTCASE": "transfer",
        "PORT": "0",
        "CERTS": str(tree.certs),
        "WWW": str(tree.server_www),
        "DOWNLOADS": str(tree.server_downloads),
        "PROTOCOLS": "p1 p2",
        "QLOGDIR": str(qlog),
        "SSLKEYLOGFILE": str(keylog),
    }
    server = RunnerEndpoint(our_command(), tmp_path / "server.log", env=server_env)
    try:
        urls = " ".join(f"https://127.0.0.1:{server.port}/{ENDPOINT}/{n}" for n in names)
        client_env = {
            "ROLE": "client",
            "TESTCASE": "transfer-bidirectional-receive",
            "CERTS": str(tree.certs),
            "DOWNLOADS": str(tree.client_downloads),
            "REQUESTS": urls,
            "PROTOCOLS": "p2",
        }
        result = run_endpoint(our_command(), env=client_env)
        check_client(result, server)
        assert "protocol 'p2'" in result.stderr
    finally:
        assert server.stop() == 0
    assert_same_files(tree.server_www / ENDPOINT, tree.client_downloads / ENDPOINT, names)
    assert len(list(qlog.glob("*_server.sqlog"))) == 1
    assert "SERVER_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()
