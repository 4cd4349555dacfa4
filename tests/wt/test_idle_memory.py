"""Memory per idle WebTransport session (issue 10): a server holding N idle sessions,
each its own QUIC connection, retains a bounded number of bytes per session.

Measured with tracemalloc in memory (tests/wt/idlemem.py): the clients are dropped
before the measure, so only the server's state counts. Structural bounds, no timing."""

from __future__ import annotations

import gc
import sys
from collections import deque

from h3.qpack import QpackDecoder, QpackEncoder
from h3.settings import SettingId
from pywebtransport.protocol import WebTransportConfiguration
from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from tests.wt.idlemem import OPAQUE, IdleServer, reachable, server_bytes

# bytes the server retains per idle session, marginal (tracemalloc): 72.1 KB before
# issue 10's cuts (lazy queues, TLS and CRYPTO state released after the handshake),
# 52.7 KB after them, 43.8 KB after the next ones (__slots__ on the per-connection
# components, the DATAGRAM send deque and per-type closed-ID sets made on first use,
# sets as dicts, shared HTTP/3 configuration and local SETTINGS), 33.2 KB after QPACK
# without engines or unused QPACK streams on WebTransport connections and 4 connection
# IDs each way (active_connection_id_limit), about 26 KB after the HTTP/3 and
# WebTransport event queues made on demand, the server's TLS transcript, secrets and
# per-connection TLS settings released, out-of-order stores made on demand, emptied
# tables given back and the discarded spaces' state shared when the connection rests,
# one SETTINGS dict per connection and no request header list kept by a server's session,
# 23.9 KB after the QUIC event queue as a list emptied when drained, a connected server's
# TLS reader, key schedule and transport parameters let go, the 1-RTT CRYPTO halves and
# the sessions' futures made on first use and the request headers interned
BUDGET_PER_SESSION = 26_000
# deques an idle session may hold: none (an empty deque is ~760 bytes). The QUIC event
# queue is a list emptied when drained; the HTTP/3 and WebTransport queues are made by
# their first event and let go when drained; the 1-RTT space's ACK-only record goes
# once every packet it names has left the table of sent packets, the DATAGRAM send
# queue comes with the first DATAGRAM sent
MAX_IDLE_DEQUES = 0

N = 3


def test_bytes_per_idle_session_linear_and_bounded() -> None:
    server_bytes(1)  # one-time costs (imports, caches) are not the sessions'
    small, _ = server_bytes(N)
    large, (_, _, server) = server_bytes(4 * N)
    assert len(server.wt) == 4 * N
    # linear in the number of sessions: 4x the sessions costs about 4x the bytes
    assert large / small < 6
    # the marginal cost of one more idle session
    per_session = (large - small) / (3 * N)
    assert per_session < BUDGET_PER_SESSION, per_session


# GC-tracked objects the server keeps per idle session (marginal, Sans-I/O layers): every
# full collection visits each of them, and the 1,000-session burst paid one full pass of
# ~0.3 M objects per side (issue 10). 173 before the send parts' shared empty range
# and chunk lists, the WT flow-control counts in one list and the WT core's parked
# requests and claimed-ID heap made on demand; 153 after; 149 after the futures of
# wait_connected()/wait_closed() made on first use and one shared forget callback.
# 153 -> 157 with the AES header-protection Cipher kept by each 1-RTT key (a Cipher and
# its AES object, each direction): waking the keys after a rest builds only the context,
# about 28k instructions less per side and echo of the burst (quic.protection).
TRACKED_PER_SESSION = 159


def _tracked(n: int) -> int:
    """GC-tracked objects added by a server holding ``n`` idle sessions."""
    gc.collect()
    before = len(gc.get_objects())
    server = IdleServer(0)
    for i in range(n):
        server.add_session(i)
    server.drop_clients()
    gc.collect()
    added = len(gc.get_objects()) - before
    assert len(server.wt) == n
    return added


def test_tracked_objects_per_idle_session_linear_and_bounded() -> None:
    _tracked(1)  # one-time costs (imports, caches) are not the sessions'
    small = _tracked(N)
    large = _tracked(4 * N)
    assert large / small < 6
    per_session = (large - small) / (3 * N)
    assert per_session < TRACKED_PER_SESSION, per_session


def test_idle_session_holds_few_deques() -> None:
    _, (_, _, server) = server_bytes(2)
    wt = next(iter(server.wt.values()))
    stop = (
        *OPAQUE,
        QuicEndpoint,
        QuicConfiguration,
        WebTransportConfiguration,
    )
    deques = [o for o in reachable(wt, stop) if isinstance(o, deque)]
    assert len(deques) <= MAX_IDLE_DEQUES, len(deques)


def test_webtransport_encoder_keeps_to_the_static_table() -> None:
    """A WebTransport connection's encoder keeps capacity 0 (RFC 9204 §3.2.3), even
    when the peer allows a dynamic table: the engine's dynamic-table state (about 4.4 KB
    of native memory, invisible to tracemalloc) is never made."""
    _, (_, _, server) = server_bytes(1)
    wt = next(iter(server.wt.values()))
    assert wt.h3.encoder.max_table_capacity == 0
    encoder = QpackEncoder(dynamic_table=wt.h3.config.qpack_encoder_dynamic_table is not False)
    encoder.apply_settings(4096, 16)  # a peer that allows a dynamic table
    assert encoder.max_table_capacity == 0 and not encoder.pending_encoder_stream_data()


def test_webtransport_decoder_keeps_no_engine() -> None:
    """A WebTransport connection advertises a QPACK maximum table capacity of 0, so its
    decoder keeps no ls-qpack engine between field sections (4.5 KB each)."""
    _, (_, _, server) = server_bytes(1)
    wt = next(iter(server.wt.values()))
    assert wt.h3.config.qpack_max_table_capacity == 0
    assert wt.h3.decoder.max_table_capacity == 0
    assert wt.h3.decoder._decoder is None
    peer = wt.h3.peer_settings
    assert peer is not None and peer.get(SettingId.QPACK_MAX_TABLE_CAPACITY, 0) == 0


def test_webtransport_opens_no_unused_qpack_streams() -> None:
    """Neither side opens a QPACK stream it will not use (RFC 9204 §4.2): an idle
    session's connection holds three QUIC streams (the two control streams and the
    CONNECT stream), not seven (plain HTTP/3 still opens both: tests/h3)."""
    _, (_, _, server) = server_bytes(1)
    conn, wt = next(iter(server.wt.items()))
    control = wt.h3.control
    assert control.control_id is not None
    assert control.encoder_id is None and control.decoder_id is None
    assert len(conn.streams.manager.streams) == 3, sorted(conn.streams.manager.streams)


def test_qpack_encoder_dynamic_table_is_a_choice() -> None:
    dynamic, static = QpackEncoder(), QpackEncoder(dynamic_table=False)
    for encoder in (dynamic, static):
        encoder.apply_settings(4096, 16)
    assert dynamic.max_table_capacity == 4096 and dynamic.pending_encoder_stream_data()
    assert static.max_table_capacity == 0 and not static.pending_encoder_stream_data()
    headers = [(b":status", b"200"), (b"x-long-header-name", b"value " * 8)]
    block = static.encode(0, headers)
    assert QpackDecoder(4096, 16).feed_header(0, block) == headers


def test_idle_session_keeps_no_event_queue_above_quic() -> None:
    """The HTTP/3 and WebTransport event queues exist only while they hold events."""
    _, (_, _, server) = server_bytes(1)
    wt = next(iter(server.wt.values()))
    assert wt._events is None and wt.h3._events is None
    assert wt.table_sizes()["events"] == 0 and wt.h3.state_sizes()["events"] == 0


def test_resting_connection_gives_emptied_tables_back() -> None:
    """Once the keys rest (``key_rest_delay`` of quiet), the tables that grew during
    the handshake and emptied again hold no storage: each is the size of a new dict."""
    _, (_, _, server) = server_bytes(1)
    conn = next(iter(server.wt))
    assert not conn.keys.resident  # the connection rested
    empty = sys.getsizeof({})
    tables = [
        conn.streams._sendable,
        conn.streams._deferred,
        conn.cids._unannounced,
        conn.ackfreq._in_flight,
        conn.recovery.spaces[2].sent,
        conn.recovery.spaces[2].lost,
    ]
    assert [sys.getsizeof(t) for t in tables] == [empty] * len(tables)


def test_server_tls_keeps_no_handshake_secrets() -> None:
    """After the handshake a server's TLS engine holds no transcript hash (native
    memory), traffic secrets, ClientHello random or encoded transport parameters; the
    exporter still works (RFC 9846 §7.5)."""
    _, (_, _, server) = server_bytes(1)
    conn = next(iter(server.wt))
    tls = conn.tls
    assert tls.handshake_complete and tls.transcript.hash_name is None
    assert tls.client_application_secret == tls.server_application_secret == b""
    assert tls.client_random == tls.transport_parameters == b""
    # the connection's own TLS settings went too (chain, verification, 0-RTT check)
    assert not tls.config.certificate_chain and tls.config.early_data_check is None
    assert len(conn.export_keying_material(b"EXPORTER-test", b"", 32)) == 32


def test_idle_session_keeps_one_settings_dict_and_no_request_headers() -> None:
    """The peer's SETTINGS are one dict per connection (HTTP/3's record is the one the
    event carried up); a server's session keeps no copy of the CONNECT request's fields
    (they went up with SessionRequested)."""
    _, (_, _, server) = server_bytes(1)
    wt = next(iter(server.wt.values()))
    assert wt.peer_settings is not None and wt.peer_settings is wt.h3.peer_settings
    (session,) = wt._sessions.values()
    assert session.headers == ()


def test_idle_streams_keep_no_out_of_order_store() -> None:
    """A stream receives its reassembly store with its first out-of-order frame only."""
    _, (_, _, server) = server_bytes(1)
    conn = next(iter(server.wt))
    streams = conn.streams.manager.streams.values()
    receivers = [s.recv for s in streams if s.recv is not None]
    assert len(receivers) == 2  # the CONNECT stream and the client's control stream
    assert all(recv._ooo is None for recv in receivers)
