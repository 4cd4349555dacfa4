"""``QuicConnection.receive_datagram`` (quic.conn_batch) runs the per-datagram case —
on the current path, one 1-RTT packet of a confirmed connection — without calling
``PathManager.received_on_current``, ``QuicConnection._receive`` and (its common case)
``PacketReader.read_short`` (issue 10: three calls less per datagram). The same traffic
through the general way (those calls, as the method read before) must leave every
connection in the same state after each datagram — the path's byte counts, the idle
timer, the packets processed and dropped, authentication failures, the ACK tracker, the
ECN counts, the connection state, recovery, the events — with loss, duplicates and
reordering, corruption, key updates and ECN marks; a stateless reset in the
short-header shape still ends the connection."""

from __future__ import annotations

from typing import Any

import pytest

from quic import conn_batch
from quic.conn_keys import APPLICATION
from quic.conn_state import LIVE, ConnectionState
from quic.connection import QuicConnection
from quic.errors import QuicProtocolError
from quic.frames import FrameType
from quic.tls.alerts import AlertDescription, TlsAlertError
from tests.support.quicpair import make_pair

_DGRAM = {"max_datagram_frame_size": 65536}


def _general_way(
    conn: QuicConnection, data: bytes, addr: Any, now: float, ecn: int = 0, local: int = 0
) -> None:
    """receive_datagram as it read before: received_on_current and _receive called."""
    if now > conn._now:
        conn._now = now
    state = conn.state
    if state is ConnectionState.TERMINATED or state is ConnectionState.DRAINING:
        return
    try:
        paths = conn.paths
        if paths.current.addr is None:
            paths.peer_address = addr
        migration = conn.migration
        on_path = paths.received_on_current(addr, local, len(data))
        if not on_path and not migration.admit(data, addr, conn.cids.cid_length, local):
            return
        if state is ConnectionState.CLOSING:
            conn.closer.on_datagram_while_closing()
            return
        recovery = conn.recovery
        if recovery.amplification_limited and not paths.send_blocked():
            recovery.amplification_limited = False
        paths.receiving, paths.receiving_local = addr, local
        if on_path:
            conn._receive(data, addr, now, ecn & 3)
            migration.path_dcid = conn.reader.newest_dcid
        else:
            previous_dcid = migration.before_datagram()
            processed = conn._receive(data, addr, now, ecn & 3)
            if conn.state in LIVE:
                migration.after_datagram(addr, len(data), processed, previous_dcid, now, local)
        if paths.preferred_ready:
            migration.adopt_preferred(now)
        reprocess = conn.reader.reprocess
        while reprocess and conn.state in LIVE:
            again, again_addr, again_ecn = reprocess.popleft()
            conn._receive(again, again_addr, now, again_ecn)
    except QuicProtocolError as exc:
        conn._fail(exc)
    except TlsAlertError as exc:
        conn._fail(QuicProtocolError(exc.quic_error_code, str(exc), FrameType.CRYPTO))
    except Exception as exc:
        conn._internal_error(exc)


def _snapshot(conn: QuicConnection, size: int) -> tuple[Any, ...]:
    tracker = conn.acks.trackers[APPLICATION]
    return (
        conn.is_client,
        size,
        conn.state,
        conn.paths.bytes_received,
        conn.paths.current.received,
        conn.idle.last_activity,
        conn.idle.eliciting_since_receive,
        conn.reader.processed,
        tracker.largest,
        len(tracker.received),
        conn.recovery.congestion.bytes_in_flight,
        conn.recovery.spaces[APPLICATION].largest_acked,
        len(conn.migration.path_dcid or b""),
        conn.reader.dropped,
        conn.keys.auth_failures,
        conn.reader.newest_non_probing,
        tuple(conn.ecn.received_counts),
        [type(e).__name__ for e in conn._events[conn._taken :]],
    )


def _run(
    monkeypatch: pytest.MonkeyPatch, receive: Any, link: dict[str, Any]
) -> list[tuple[Any, ...]]:
    trace: list[tuple[Any, ...]] = []

    def traced(
        conn: QuicConnection, data: bytes, addr: Any, now: float, ecn: int = 0, local: int = 0
    ) -> None:
        receive(conn, data, addr, now, ecn, local)
        trace.append(_snapshot(conn, len(data)))

    monkeypatch.setattr(QuicConnection, "receive_datagram", traced)
    pair = make_pair(seed=5, client_kwargs=dict(_DGRAM), server_kwargs=dict(_DGRAM), **link)
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    client, server = pair.client, pair.server
    for i in range(30):
        client.send_datagram(b"ping %d" % i)
        pair.run(max_time=0.03)
        server.send_datagram(b"pong %d" % i)
        pair.run(max_time=0.03)
        if i in (10, 20):  # the other Key Phase (RFC 9001 §6): read_short's other way
            (client if i == 10 else server).request_key_update()
    sid = client.get_next_available_stream_id()
    client.send_stream_data(sid, b"x" * 20_000, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=10)
    client.close(0, "done")
    pair.run(max_time=2)
    monkeypatch.undo()
    return trace


@pytest.mark.parametrize(
    "link",
    [
        {},
        {"loss": 0.1},
        {"duplicate": 0.2, "jitter": 0.008},  # duplicates and reordering: read_short's way
        {"corrupt": 0.1},  # packets that fail authentication
        {"ecn": True, "ecn_ce": 0.1},  # ECT(0) counted inline, CE marks by EcnController
    ],
)
def test_the_inline_receive_leaves_the_state_the_general_way_does(
    monkeypatch: pytest.MonkeyPatch, link: dict[str, Any]
) -> None:
    inline = _run(monkeypatch, conn_batch.receive_datagram, link)
    general = _run(monkeypatch, _general_way, link)
    assert len(inline) > 100
    assert inline == general
    assert inline[-1][2] is not ConnectionState.CONNECTED  # the close went through


def test_the_inline_receive_skips_the_two_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(seed=3, client_kwargs=dict(_DGRAM), server_kwargs=dict(_DGRAM))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    pair.run(max_time=0.5)
    calls: list[str] = []
    paths_type = type(pair.server.paths)
    on_current = paths_type.received_on_current
    receive = QuicConnection._receive

    def counting_on_current(self: Any, *args: Any) -> bool:
        calls.append("received_on_current")
        return bool(on_current(self, *args))

    def counting_receive(self: QuicConnection, *args: Any) -> bool:
        calls.append("_receive")
        return receive(self, *args)

    monkeypatch.setattr(paths_type, "received_on_current", counting_on_current)
    monkeypatch.setattr(QuicConnection, "_receive", counting_receive)
    before = pair.server.reader.processed
    pair.client.send_datagram(b"ping")
    pair.run(max_time=0.05)
    assert pair.server.reader.processed > before  # it went the inline way
    assert calls == []


def test_a_stateless_reset_on_the_inline_way_ends_the_connection() -> None:
    pair = make_pair(seed=4, client_kwargs=dict(_DGRAM), server_kwargs=dict(_DGRAM))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    client = pair.client
    token = client.cids.active_peer_reset_token
    assert token is not None
    addr = client.paths.current.addr
    reset = bytes([0x40 | 0x0F]) + bytes(range(40)) + token  # a short header's shape
    client.receive_datagram(reset, addr, pair.net.now + 0.001)
    assert client.state is not ConnectionState.CONNECTED
    assert client.state not in LIVE or client.state is ConnectionState.DRAINING


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (QuicProtocolError(0x0A, "a bad frame"), 0x0A),  # the protocol's own error
        (TlsAlertError(AlertDescription.decode_error), 0x100 + 50),  # CRYPTO_ERROR (0x132)
        (RuntimeError("a bug"), 0x01),  # INTERNAL_ERROR
    ],
    ids=["protocol", "tls-alert", "bug"],
)
def test_a_receive_error_closes_with_its_code(error: Exception, code: int) -> None:
    """An error raised while reading a datagram closes the connection with its code
    (quic.conn_batch._close_on_error, shared by receive_datagram and receive_batch):
    the protocol's own error, a TLS alert as CRYPTO_ERROR, a bug as INTERNAL_ERROR;
    nothing escapes."""
    pair = make_pair(seed=6, client_kwargs=dict(_DGRAM), server_kwargs=dict(_DGRAM))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    conn = pair.server

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    conn.dispatcher.dispatch = fail  # type: ignore[method-assign]  # every path's frames
    pair.client.send_datagram(b"x")
    pair.run(lambda: conn._close_frame is not None, max_time=2)
    assert conn._close_frame is not None and conn._close_frame[1] == code
