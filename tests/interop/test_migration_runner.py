"""Runner cases "rebind-port", "rebind-addr" and "connectionmigration" of the hq-interop
endpoint (``python -m quic.interop``), against aioquic's hq peer and in process.

* "connectionmigration", client role: our endpoint process downloads 5 MB from aioquic's
  hq server and migrates actively on the way (a new socket, a new connection ID); and
  in process against our own server, which must see the new address and the new ID.
* "rebind-port" / "rebind-addr": the runner's simulator moves the client; here the
  rebinding relay (``tests/support/rebind.py``) does, between aioquic's hq client and our
  server (in process), and between our client and aioquic's hq server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quic.aio import QuicSession, serve
from quic.interop import TESTCASES
from quic.interop.client import run_client
from quic.interop.options import InteropOptions
from quic.interop.server import HqFileServer, server_configuration
from tests.interop.test_hq_interop import (  # noqa: F401  (fixtures)
    BIG,
    SMALL,
    our_endpoint,
    peer_client,
    peer_server,
    run,
    sha256,
    tree,
)
from tests.support.rebind import RebindingRelay

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def test_cases_are_supported() -> None:
    for name in ("rebind-port", "rebind-addr", "connectionmigration"):
        assert name in TESTCASES


def test_our_client_connectionmigration_from_aioquic(
    tree: Path,  # noqa: F811
    peer_server: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    port = peer_server.port()  # type: ignore[attr-defined]
    urls = [f"https://127.0.0.1:{port}/{name}" for name in (SMALL, BIG)]
    command = our_endpoint("client", "-v", "--testcase", "connectionmigration")
    done = run([*command, "--downloads", str(tmp_path), *urls])
    assert done.returncode == 0, done.stderr
    assert "migrated to a new local address" in done.stderr
    for name in (SMALL, BIG):
        assert sha256(tmp_path / name) == sha256(tree / "www" / name)


async def _our_server(root: Path, testcase: str) -> tuple[object, list[QuicSession]]:
    case = TESTCASES[testcase]
    files = HqFileServer(root / "www")
    sessions: list[QuicSession] = []

    def remember(session: QuicSession) -> None:
        sessions.append(session)

    options = InteropOptions(role="server", testcase=testcase, certs=root / "certs")
    server = await serve(
        "127.0.0.1",
        0,
        server_configuration(options, case),
        files.serve_session,
        session_setup=remember,
    )
    return server, sessions


async def test_connectionmigration_in_process(tree: Path, tmp_path: Path) -> None:  # noqa: F811
    server, sessions = await _our_server(tree, "transfer")  # the server role's test name
    async with server:  # type: ignore[attr-defined]
        base = f"https://127.0.0.1:{server.port}/"  # type: ignore[attr-defined]
        options = InteropOptions(
            role="client",
            testcase="connectionmigration",
            downloads=tmp_path,
            requests=(base + BIG,),
            timeout=60.0,
        )
        assert await run_client(options, TESTCASES["connectionmigration"]) == 0
        assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
        conn = sessions[0].connection
        # the client's close leaves at once and returns (it does not wait on the loop):
        # the server reads the new path's datagrams after it; the download can also end
        # before MIGRATE_AFTER, so the move comes with the close
        for _ in range(200):
            if conn.paths.migrations:
                break
            await asyncio.sleep(0.01)
        assert conn.paths.migrations >= 1  # RFC 9000 §9.3: the server followed
        assert conn.cids.peer_active_sequence >= 1  # and moved to a new connection ID


async def _rebind_once_confirmed(
    relay: RebindingRelay, sessions: list[QuicSession], hosts: tuple[str, ...]
) -> None:
    """Rebind the relay as soon as our server's handshake is confirmed, then every
    0.2 s. Not before: QUIC relies on the client's address staying the same during the
    handshake (RFC 9000 §9), and our server follows a new address only once it is
    confirmed, so a rebinding before the server's flight reached the client lost that
    flight and every retransmission of it (the old binding no longer forwards): under
    load the aioquic client then never connected (a 30 s TimeoutError)."""
    while not (sessions and sessions[0].connection.handshake_confirmed):
        await asyncio.sleep(0.005)
    await relay.rebind(hosts[0] if hosts else None)
    await relay.rebind_every(0.2, hosts[1:] + hosts[:1])


@pytest.mark.parametrize("testcase", ["rebind-port", "rebind-addr"])
async def test_aioquic_client_through_rebinding_relay_to_our_server(
    tree: Path,  # noqa: F811
    tmp_path: Path,
    testcase: str,
) -> None:
    pytest.importorskip("aioquic")
    hosts = ("127.0.0.2", "127.0.0.3") if testcase == "rebind-addr" else ()
    server, sessions = await _our_server(tree, testcase)
    async with server:  # type: ignore[attr-defined]
        relay = await RebindingRelay.start(("127.0.0.1", server.port))  # type: ignore[attr-defined]
        rebinding = asyncio.ensure_future(_rebind_once_confirmed(relay, sessions, hosts))
        try:
            url = f"https://127.0.0.1:{relay.port}/{BIG}"
            result = await asyncio.to_thread(peer_client, tmp_path, url)
        finally:
            rebinding.cancel()
            relay.close()
        assert result["returncode"] == 0 and result["ok"], result
        assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
        assert relay.rebinds >= 1
        assert sessions[0].connection.paths.migrations >= 1


@pytest.mark.parametrize("testcase", ["rebind-port", "rebind-addr"])
async def test_our_client_through_rebinding_relay_to_aioquic(
    tree: Path,  # noqa: F811
    peer_server: object,  # noqa: F811
    tmp_path: Path,
    testcase: str,
) -> None:
    hosts = ("127.0.0.2", "127.0.0.3") if testcase == "rebind-addr" else ()
    port = peer_server.port()  # type: ignore[attr-defined]
    relay = await RebindingRelay.start(("127.0.0.1", port))
    rebinding = asyncio.ensure_future(relay.rebind_every(0.5, hosts))  # see aioquic's limits
    try:
        options = InteropOptions(
            role="client",
            testcase=testcase,
            downloads=tmp_path,
            requests=(f"https://127.0.0.1:{relay.port}/{BIG}",),
            timeout=60.0,
        )
        assert await run_client(options, TESTCASES[testcase]) == 0
    finally:
        rebinding.cancel()
        relay.close()
    assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)


async def test_connectionmigration_to_the_servers_preferred_address_in_process(
    tree: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The runner's older "connectionmigration": our server offers a preferred address
    (``--preferred-address``), our client moves there (RFC 9000 §9.6.1) instead of
    migrating actively, and the server follows once the path is validated and the
    client's non-probing packets arrive there (§9.6.2)."""
    case = TESTCASES["connectionmigration"]
    files = HqFileServer(tree / "www")
    sessions: list[QuicSession] = []
    options = InteropOptions(
        role="server",
        testcase="transfer",
        certs=tree / "certs",
        preferred_address=("127.0.0.1", 0),
    )
    config = server_configuration(options, TESTCASES["transfer"])
    assert config.preferred_address == ("127.0.0.1", 0)
    server = await serve("127.0.0.1", 0, config, files.serve_session, session_setup=sessions.append)
    preferred_port = config.preferred_address[1]
    assert preferred_port not in (0, server.port)
    async with server:
        options = InteropOptions(
            role="client",
            testcase="connectionmigration",
            downloads=tmp_path,
            requests=(f"https://127.0.0.1:{server.port}/{BIG}",),
            timeout=60.0,
        )
        assert await run_client(options, case) == 0
        assert sha256(tmp_path / BIG) == sha256(tree / "www" / BIG)
        conn = sessions[0].connection
        assert conn.paths.current.local == 1  # the server moved to its preferred address
        assert conn.paths.migrations == 1  # and nothing else happened (no active migration)
        assert conn.cids.reserved_peer_cids == 0


def test_preferred_address_option() -> None:
    from quic.interop.options import parse_options

    options = parse_options(["server", "--testcase", "transfer", "--preferred-address", "[::1]:0"])
    assert options.preferred_address == ("::1", 0)
    options = parse_options(
        ["server", "--testcase", "transfer"], {"PREFERRED_ADDRESS": "127.0.0.1:4434"}
    )
    assert options.preferred_address == ("127.0.0.1", 4434)
    with pytest.raises(SystemExit):
        parse_options(["server", "--testcase", "transfer", "--preferred-address", "nope"])
