"""Connection migration and NAT rebinding with real peers (RFC 9000 §9), on 127.0.0.1.

* aioquic's client → a rebinding relay (``tests/support/rebind.py``, a NAT that moves
  the client to a new port — or a new loopback address — every 200 ms) → our server:
  a 4 MB echo, byte-exact (the runner's "rebind-port" and "rebind-addr").
* our client → the relay → aioquic's server: the same, the other way round (every
  500 ms: aioquic insists that a PATH_RESPONSE arrive on the path it challenged, which
  RFC 9000 §8.2.2 forbids to enforce, so faster rebinding stalls aioquic).
* our client migrating itself (``QuicSession.migrate()``, a new UDP socket and a new
  connection ID) mid-transfer against aioquic's server (the runner's
  "connectionmigration", client role).
* Debian's ngtcp2 ``gtlsclient --change-local-addr`` downloading 10 MB from our HTTP/3
  server: it probes the new path first (PATH_CHALLENGE from the new address), so the
  server must answer on the path the challenge came from (§8.2.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from quic.aio import connect
from tests.interop.test_aioquic_quic import (  # noqa: F401  (fixtures)
    ALPN,
    aioquic_echo,
    certs,
    client_config,
    echo_through,
    ok,
    our_server,
)
from tests.interop.test_h3_interop import (  # noqa: F401  (fixtures)
    BIG,
    require,
    run,
    sha256_file,
    tree,
)
from tests.interop.test_h3_interop import our_server as our_h3_server  # noqa: F401
from tests.peers import PeerServer, run_peer_client
from tests.support.rebind import RebindingRelay

pytest.importorskip("aioquic")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SIZE = 4 * 1024 * 1024
NEW_HOSTS = ("127.0.0.2", "127.0.0.3")


@pytest.mark.parametrize("hosts", [(), NEW_HOSTS], ids=["rebind-port", "rebind-addr"])
async def test_aioquic_client_through_rebinding_nat_to_our_server(
    certs: tuple[Path, Path],  # noqa: F811
    hosts: tuple[str, ...],
) -> None:
    async with our_server(certs) as server:
        relay = await RebindingRelay.start(("127.0.0.1", server.port))
        rebinding = asyncio.ensure_future(relay.rebind_every(0.2, hosts))
        try:
            result = await asyncio.to_thread(
                run_peer_client,
                relay.port,
                ALPN,
                "bulk",
                "--size",
                str(SIZE),
                timeout=60,
            )
        finally:
            rebinding.cancel()
            relay.close()
        ok(result)
        assert result["received_sha256"] == result["sent_sha256"]
        assert relay.rebinds >= 1
        conn = server.sessions[0].connection
        assert conn.paths.migrations >= 1  # the server followed (RFC 9000 §9.3)
        if hosts:
            assert conn.peer_address[0] in (*hosts, "127.0.0.1")


@pytest.mark.parametrize("hosts", [(), NEW_HOSTS], ids=["rebind-port", "rebind-addr"])
async def test_our_client_through_rebinding_nat_to_aioquic(
    aioquic_echo: PeerServer,  # noqa: F811
    certs: tuple[Path, Path],  # noqa: F811
    hosts: tuple[str, ...],
) -> None:
    relay = await RebindingRelay.start(("127.0.0.1", aioquic_echo.port))
    payload = os.urandom(2 * SIZE)
    try:
        async with connect("127.0.0.1", relay.port, client_config(certs)) as session:
            # every 0.5 s: aioquic validates a path only by a PATH_RESPONSE that arrives on
            # it, so a NAT that moves faster than a round trip of validation stalls it
            rebinding = asyncio.ensure_future(relay.rebind_every(0.5, hosts))
            try:
                received = await asyncio.wait_for(echo_through(session, payload), 60)
            finally:
                rebinding.cancel()
    finally:
        relay.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert relay.rebinds >= 1


async def test_our_client_migrates_actively_against_aioquic(
    aioquic_echo: PeerServer,  # noqa: F811
    certs: tuple[Path, Path],  # noqa: F811
) -> None:
    payload = os.urandom(SIZE)
    async with connect("127.0.0.1", aioquic_echo.port, client_config(certs)) as session:
        conn = session.connection
        while not conn.handshake_confirmed:
            await asyncio.sleep(0.01)
        dcid = conn.cids.peer_cid
        before = session._protocol.local_address
        transfer = asyncio.ensure_future(echo_through(session, payload))
        await asyncio.sleep(0.05)
        await session.migrate()  # RFC 9000 §9.2
        assert conn.cids.peer_cid != dcid  # a new connection ID on the new path (§9.5)
        assert session._protocol.local_address[1] != before[1]
        received = await asyncio.wait_for(transfer, 60)
        assert not conn.paths.current.validating  # aioquic answered our PATH_CHALLENGE
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_gtlsclient_changes_local_address_against_our_server(
    tree: Path,  # noqa: F811
    our_h3_server: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    binary = require("gtlsclient", "ngtcp2-client")
    port = our_h3_server.port  # type: ignore[attr-defined]
    command = [binary, "127.0.0.1", str(port), f"https://127.0.0.1:{port}/{BIG}", "-q"]
    command += ["--exit-on-all-streams-close", "--download", str(tmp_path)]
    command += ["--change-local-addr=100ms"]
    done = run(command)
    log = our_h3_server.log()  # type: ignore[attr-defined]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log}"
    output = tmp_path / BIG
    assert output.is_file(), f"{sorted(tmp_path.iterdir())}\n{done.stderr}"
    assert sha256_file(output) == sha256_file(tree / "www" / BIG)
