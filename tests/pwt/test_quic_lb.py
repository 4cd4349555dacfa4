"""QUIC-LB in the server configuration (pywebtransport/config.py ``ServerConfig.quic_lb``,
``serve --quic-lb-*``; docs/quic-lb.md).

The settings make a :class:`~quic.quiclb.QuicLbConfig` and set the QUIC connection ID
length to its CIDs'; bad values are refused with the rule they break; the CLI parses
its options into them. Over UDP on 127.0.0.1, a real client of a server so configured
— through a migration to a new local port — only ever sends to connection IDs that
decode to the configured server ID, i.e. a QUIC-LB load balancer would route every
one of its packets after the first Initials to this server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pywebtransport import ConfigurationError, WebTransportClient
from pywebtransport.cli import build_parser, quic_lb_settings, server_config
from quic.quiclb import QuicLbConfig
from tests.pwt.pwt_support import TIMEOUT, client_config, echo, running
from tests.pwt.pwt_support import server_config as pwt_server_config

KEY = bytes.fromhex("8f95f09245765f80256934e50c66207f")


def test_no_quic_lb_by_default() -> None:
    config = pwt_server_config()
    assert config.quic_lb() is None
    assert config.quic_configuration().connection_id_length == 8  # QuicConfiguration's


@pytest.mark.parametrize(
    ("key", "nonce", "algorithm"),
    [(None, 8, "plaintext"), (KEY, 14, "single-pass"), (KEY, 6, "four-pass")],
)
def test_settings_make_the_quic_lb_configuration(
    key: bytes | None, nonce: int, algorithm: str
) -> None:
    config = pwt_server_config(
        quic_lb_server_id=b"\x0a\x0b",
        quic_lb_config_rotation=5,
        quic_lb_nonce_length=nonce,
        quic_lb_key=key,
    )
    lb = config.quic_lb()
    assert isinstance(lb, QuicLbConfig)
    assert (lb.algorithm, lb.config_rotation, lb.server_id) == (algorithm, 5, b"\x0a\x0b")
    assert config.quic_configuration().connection_id_length == lb.cid_length == 3 + nonce
    cid = lb.token_bytes(lb.cid_length)
    assert cid[0] >> 5 == 5 and lb.server_id_of(cid) == b"\x0a\x0b"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quic_lb_config_rotation": 7}, "0b111"),
        ({"quic_lb_server_id": bytes(16)}, "server ID length"),
        ({"quic_lb_server_id": b""}, "server ID length"),
        ({"quic_lb_server_id": bytes(15), "quic_lb_nonce_length": 5}, "20 bytes"),
        ({"quic_lb_server_id": bytes(3), "quic_lb_nonce_length": 17}, "20 bytes"),
        ({"quic_lb_nonce_length": 3}, "nonce length"),
        ({"quic_lb_key": bytes(15)}, "16 bytes"),
        ({"quic_lb_key": bytes(32)}, "16 bytes"),
        ({"quic_lb_nonce_length": 6}, "PATH_CHALLENGE"),  # 1 + 1 + 6 = 8-byte CIDs
        ({"quic_lb_server_id": None, "quic_lb_key": KEY}, "needs quic_lb_server_id"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"quic_lb_server_id": b"\x01"}
    values.update(settings)
    config = pwt_server_config(**values)
    with pytest.raises(ConfigurationError, match=message):
        config.quic_lb()
    with pytest.raises(ConfigurationError, match=message):
        config.quic_configuration()


def test_cli_options() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "serve",
            "--port",
            "0",
            "--quic-lb-server-id",
            "0a0b0c",
            "--quic-lb-config-rotation",
            "2",
            "--quic-lb-nonce-length",
            "9",
            "--quic-lb-key",
            KEY.hex(),
        ]
    )
    assert quic_lb_settings(args) == {
        "quic_lb_server_id": b"\x0a\x0b\x0c",
        "quic_lb_key": KEY,
        "quic_lb_config_rotation": 2,
        "quic_lb_nonce_length": 9,
    }
    config, _ = server_config(args)
    lb = config.quic_lb()
    assert lb is not None and lb.algorithm == "four-pass" and lb.cid_length == 13
    plain = parser.parse_args(["serve", "--quic-lb-server-id", "0x01:02"])
    assert quic_lb_settings(plain) == {"quic_lb_server_id": b"\x01\x02", "quic_lb_key": None}
    assert quic_lb_settings(parser.parse_args(["serve"])) == {}
    assert server_config(parser.parse_args(["serve"]))[0].quic_lb() is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quic-lb-server-id", "xyz"], "not hexadecimal"),
        (["--quic-lb-server-id", "01", "--quic-lb-key", "0g"], "not hexadecimal"),
        (["--quic-lb-nonce-length", "9"], "needs --quic-lb-server-id"),
        (["--quic-lb-server-id", "01", "--quic-lb-config-rotation", "7"], "0b111"),
        (["--quic-lb-server-id", "01", "--quic-lb-key", "00ff"], "16 bytes"),
    ],
)
def test_cli_refuses_bad_options(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["serve", "--port", "0", *argv])
    with pytest.raises(ConfigurationError, match=message):
        server_config(args)


class _Sniffer:
    """Records the Destination CID of every datagram the server's endpoint receives."""

    def __init__(self, endpoint: Any, cid_length: int) -> None:
        self.dcids: list[bytes] = []
        self.long_header_dcids: list[bytes] = []
        self._cid_length = cid_length
        self._receive = endpoint.receive_datagram
        self._receive_many = endpoint.receive_datagrams  # the datagrams of a GRO read
        endpoint.receive_datagram = self
        endpoint.receive_datagrams = self.many

    def _record(self, data: bytes) -> None:
        if data and data[0] & 0x80:
            self.long_header_dcids.append(data[6 : 6 + data[5]])
        elif data:
            self.dcids.append(data[1 : 1 + self._cid_length])

    def __call__(self, data: bytes, *args: Any) -> None:
        self._record(data)
        self._receive(data, *args)

    def many(self, datagrams: list[bytes], *args: Any) -> None:
        for data in datagrams:
            self._record(data)
        self._receive_many(datagrams, *args)


@pytest.mark.parametrize("key", [None, KEY], ids=["plaintext", "four-pass"])
async def test_migrating_client_only_uses_cids_that_route_to_the_server(
    key: bytes | None,
) -> None:
    settings = {
        "quic_lb_server_id": b"\x5e\x01",
        "quic_lb_config_rotation": 3,
        "quic_lb_nonce_length": 9,
        "quic_lb_key": key,
    }
    lb = pwt_server_config(**settings).quic_lb()
    assert lb is not None
    async with running(**settings) as h, WebTransportClient(client_config("draft16")) as client:
        h.handler = echo
        assert h.server._quic is not None
        sniffer = _Sniffer(h.server._quic.endpoint, lb.cid_length)
        session = await client.connect(h.url())
        quic_session = session.link.quic_session
        conn = quic_session.connection
        async with asyncio.timeout(TIMEOUT):
            while not conn.handshake_confirmed:
                await asyncio.sleep(0.01)
        stream = await session.create_bidirectional_stream()
        await stream.write(b"before" * 1000)
        before = quic_session._protocol.local_address
        await quic_session.migrate()
        assert quic_session._protocol.local_address[1] != before[1]
        await stream.write(b"after" * 1000, end_stream=True)
        async with asyncio.timeout(TIMEOUT):
            echoed = await stream.read_all()
        assert echoed == b"before" * 1000 + b"after" * 1000
        (server_conn,) = h.server._quic.endpoint.connections
        assert server_conn.paths.migrations >= 1
        assert server_conn.peer_address[1] == quic_session._protocol.local_address[1]
        peer_cids = [entry.cid for entry in conn.cids.peer.values()]
        await session.close()
    # the client's own first DCID is the only foreign one (its Initials: the
    # balancer's fallback); everything else — Handshake packets, 1-RTT packets before
    # and after the move, and every CID the client holds — names this server
    foreign = [d for d in sniffer.long_header_dcids if not lb.is_ours(d)]
    assert len(set(foreign)) == 1
    assert len(set(sniffer.dcids)) >= 2  # a new CID after the migration (RFC 9000 §9.5)
    assert all(lb.is_ours(d) for d in sniffer.dcids)
    assert peer_cids and all(lb.is_ours(cid) for cid in peer_cids)
