"""Issue 8: what a peer can make an H3Connection hold is bounded, and ended streams
leave every table (in-memory pairs on a fake clock; N against 4N inputs, counters and
tracemalloc, no wall-clock times).

* Finding 1 — one way out: events leave only through ``next_event``; after a pump
  nothing is queued.
* Finding 3 — frames behind a QPACK-blocked field section are bounded (count and bytes,
  per stream and in total); unknown frames are not held at all.
* Finding 9 — finished, reset and stopped requests leave the tables.
"""

from __future__ import annotations

import gc
import os
import random
import tracemalloc
from collections.abc import Callable

import pytest

import h3
from h3.connection import H3Configuration
from h3.errors import H3ErrorCode
from h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    RequestStreamReset,
)
from h3.frames import encode_data_frame, encode_frame, encode_headers_frame
from quic import events as qe
from quic.stream_manager import StreamLimitReached
from tests.h3.h3pair import IDLE, REQUEST, H3LeanPair, idle_sizes, lean_pair

# A request field section that references dynamic table entry 0 before it exists
# (Required Insert Count 1, RFC 9204 §4.5.1): the stream blocks (§2.1.2) until the
# encoder stream carries INSERT. Static entries: 17 :method GET, 23 :scheme https,
# 1 :path /, 0 :authority (literal value); then dynamic relative index 0.
BLOCKED_SECTION = b"\x02\x00\xd1\xd7\xc1\x50\x09localhost\x80"
INSERT = b"\x43x-a\x01b"  # Insert With Literal Name "x-a: b" (RFC 9204 §4.3.3)
RESERVED_FRAME = b"\x21\x00"  # reserved frame type 0x21, empty (RFC 9114 §7.2.8)
H3_ONLY = os.path.join(os.path.dirname(h3.__file__), "*")  # allocations by h3/ code


def open_blocked_request(p: H3LeanPair) -> int:
    """A request whose field section blocks on the server. It is hand-made, so the
    client's QPACK encoder must not see the server's acknowledgment of it."""
    decoder_stream = p.server.control.decoder_id
    p.client_quic_filter = lambda e: getattr(e, "stream_id", None) != decoder_stream
    sid = p.pair.client.create_stream(True)
    p.pair.client.send_stream_data(sid, encode_headers_frame(BLOCKED_SECTION))
    return sid


def unblock(p: H3LeanPair) -> None:
    assert p.client.control.encoder_id is not None
    p.pair.client.send_stream_data(p.client.control.encoder_id, INSERT)


def h3_retained(run: Callable[[], None]) -> int:
    """Bytes allocated from h3/ code during ``run`` and still alive afterwards."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, H3_ONLY)])
        run()
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, H3_ONLY)])
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


# ======================================================================================
# Finding 1: one way out
# ======================================================================================


def test_handle_event_returns_nothing_and_the_queue_is_drained() -> None:
    """Requests with bodies, trailers and HTTP datagrams: events leave only through
    next_event; once the pair is pumped no event is queued and every table is back to
    its idle size."""
    cfg = H3Configuration(enable_datagrams=True)
    p = lean_pair(cfg, H3Configuration(enable_datagrams=True))
    received: dict[int, bytearray] = {}
    answered: dict[int, bytearray] = {}
    datagrams: list[int] = []

    def handler(side: str, event: H3Event) -> None:
        if isinstance(event, DatagramReceived):
            datagrams.append(event.stream_id)
        if side == "server" and isinstance(event, (DataReceived, HeadersReceived)):
            if isinstance(event, DataReceived):
                received.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.stream_ended:
                p.server.send_headers(event.stream_id, [(b":status", b"200")])
                p.server.send_data(event.stream_id, bytes(received[event.stream_id]), True)
        elif side == "client" and isinstance(event, DataReceived):
            answered.setdefault(event.stream_id, bytearray()).extend(event.data)

    p.handler = handler
    sids = []
    for i in range(20):
        sid = p.client.get_next_available_stream_id()
        p.client.send_headers(sid, [*REQUEST[:3], (b":path", b"/%d" % i)])
        p.client.send_data(sid, bytes([i]) * 50_000)
        p.client.send_datagram(sid, b"datagram %d" % i)
        p.client.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True)
        sids.append(sid)
    p.run(lambda: sum(len(b) for b in answered.values()) == 20 * 50_000)
    p.settle(1.0)
    assert all(answered[s] == bytes([i]) * 50_000 for i, s in enumerate(sids))
    assert sorted(datagrams) == sids
    assert p.events_handled > 100
    assert p.client.handle_event(qe.StreamWritable(0)) is None  # type: ignore[func-returns-value]
    for conn in (p.client, p.server):
        assert conn.next_event() is None
        assert idle_sizes(conn) == IDLE


@pytest.mark.parametrize("kind", ["stream", "datagrams"])
def test_webtransport_core_drains_the_h3_queue(kind: str) -> None:
    """Finding 1 at scale: the WebTransport core over H3 leaves nothing in H3's queue,
    for 1 MB and 4 MB on one WebTransport stream, and 500 and 2,000 datagrams."""
    from pywebtransport.protocol import StreamData
    from pywebtransport.protocol import events as wt_events
    from tests.wt.wtpair import config, establish, wt_pair

    def run(n: int) -> int:
        p = wt_pair(config(), config())
        session = establish(p)
        if kind == "stream":
            sid = p.client.open_stream(session, False)
            payload = b"w" * (n * 1_000_000)
            offset = 0
            while offset < len(payload):  # as WebTransport flow control allows
                offset += p.client.send_stream_data(sid, payload[offset : offset + 65536])
                p.settle(0.01)
            p.client.send_stream_data(sid, b"", end_stream=True)
            p.run(
                lambda: any(e.fin for e in p.of(StreamData) if e.stream_id == sid),
                max_time=60,
            )
            got = b"".join(e.data for e in p.of(StreamData) if e.stream_id == sid)
            assert got == payload
        else:
            for i in range(n * 500):
                p.client.send_datagram(session, b"%d" % i)
                if i % 50 == 49:
                    p.settle(0.02)
            p.settle(0.5)
            assert len(p.of(wt_events.DatagramReceived)) > n * 250
        p.clear()
        return p.server.h3.state_sizes()["events"]

    assert run(1) == 0
    assert run(4) == 0


# ======================================================================================
# Finding 3: a request blocked on QPACK
# ======================================================================================


def _reserved_frames_held(n: int) -> int:
    p = lean_pair()
    sid = open_blocked_request(p)
    p.settle(0.2)
    assert p.server.state_sizes()["qpack_blocked_streams"] == 1

    def flood() -> None:
        chunk = RESERVED_FRAME * 8192
        for _ in range(n // 8192):
            p.pair.client.send_stream_data(sid, chunk)
            p.settle(0.05)
        p.settle(2.0)

    held = h3_retained(flood)
    # the request still completes once the dynamic table entry arrives
    done: list[H3Event] = []
    p.handler = lambda side, e: done.append(e) if side == "server" else None
    p.pair.client.send_stream_data(sid, b"", end_stream=True)
    unblock(p)
    p.run(lambda: any(getattr(e, "stream_ended", False) for e in done))
    assert isinstance(done[0], HeadersReceived) and (b"x-a", b"b") in done[0].headers
    p.settle(0.5)
    assert idle_sizes(p.server) == IDLE
    return held


def test_reserved_frames_on_a_blocked_stream_are_not_held() -> None:
    """20 MB of 2-byte reserved frames became 709 MB of pending items: frames of an
    unknown type behind a blocked section are now dropped (RFC 9114 §9), so what is
    held does not grow with their number (N = 2^15 frames against 4N)."""
    small = _reserved_frames_held(1 << 15)
    large = _reserved_frames_held(1 << 17)
    assert large < 64 * 1024, (small, large)
    assert large <= small + 16 * 1024, (small, large)


def _body_held_while_blocked(size: int) -> tuple[int, int]:
    p = lean_pair()
    sid = open_blocked_request(p)
    body = random.Random(size).randbytes(size)
    p.client.send_data(sid, body, end_stream=True)
    p.settle(3.0)
    held = p.server.state_sizes()["blocked_bytes"]
    holdings = p.server.blocked_stream_holdings()
    assert [h[0] for h in holdings] == [sid] and holdings[0][1] <= 1 < 2  # one DATA run
    got = bytearray()

    def handler(side: str, event: H3Event) -> None:
        if side == "server" and isinstance(event, DataReceived):
            got.extend(event.data)

    p.handler = handler
    unblock(p)
    p.run(lambda: len(got) == size, max_time=60)
    assert got == body
    p.settle(0.5)
    assert idle_sizes(p.server) == IDLE
    return held, p.pair.server.configuration.initial_max_stream_data


def test_body_of_a_blocked_request_is_held_within_the_stream_window() -> None:
    """100 MB of body held: DATA behind a blocked section is not credited until the
    application consumes it, so at most the stream window is held, for 2 MB as for
    8 MB sent; once unblocked every byte arrives in order."""
    held_n, window = _body_held_while_blocked(2_000_000)
    held_4n, _ = _body_held_while_blocked(8_000_000)
    assert 0 < held_n <= window and 0 < held_4n <= window
    assert held_4n == held_n


def _close_code_after(p: H3LeanPair) -> int | None:
    p.run(lambda: p.close_code("client") is not None)
    return p.close_code("client")


def test_headers_flood_on_a_blocked_stream_is_excessive_load() -> None:
    p = lean_pair(server_cfg=H3Configuration(max_blocked_frames_per_stream=8))
    sid = open_blocked_request(p)
    trailers = encode_headers_frame(b"\x00\x00" + b"\x5f\x0a\x01x")  # static-name line
    for _ in range(4):  # DATA runs count once each, HEADERS one each
        p.pair.client.send_stream_data(sid, encode_data_frame(b"d") + RESERVED_FRAME * 3)
    p.settle(0.5)
    assert p.close_code("client") is None
    for _ in range(8):
        p.pair.client.send_stream_data(sid, trailers)
    assert _close_code_after(p) == H3ErrorCode.H3_EXCESSIVE_LOAD


def test_blocked_bytes_per_stream_limit() -> None:
    p = lean_pair(server_cfg=H3Configuration(max_blocked_bytes_per_stream=64 * 1024))
    sid = open_blocked_request(p)
    p.client.send_data(sid, b"x" * 60_000)
    p.settle(0.5)
    assert p.close_code("client") is None
    assert p.server.state_sizes()["blocked_bytes"] == 60_000
    p.client.send_data(sid, b"x" * 10_000)
    assert _close_code_after(p) == H3ErrorCode.H3_EXCESSIVE_LOAD


def test_blocked_bytes_total_limit() -> None:
    cfg = H3Configuration(max_blocked_bytes_per_stream=64 * 1024, max_blocked_bytes=100_000)
    p = lean_pair(server_cfg=cfg)
    first = open_blocked_request(p)
    second = open_blocked_request(p)
    p.client.send_data(first, b"x" * 60_000)
    p.settle(0.5)
    assert p.close_code("client") is None
    p.client.send_data(second, b"x" * 60_000)
    assert _close_code_after(p) == H3ErrorCode.H3_EXCESSIVE_LOAD


def test_qpack_blocked_streams_beyond_the_setting() -> None:
    """RFC 9204 §2.1.2: more blocked streams than SETTINGS_QPACK_BLOCKED_STREAMS is
    QPACK_DECOMPRESSION_FAILED."""
    p = lean_pair(server_cfg=H3Configuration(qpack_blocked_streams=4))
    for _ in range(4):
        open_blocked_request(p)
    p.settle(0.5)
    assert p.server.state_sizes()["qpack_blocked_streams"] == 4
    assert p.close_code("client") is None
    open_blocked_request(p)
    assert _close_code_after(p) == H3ErrorCode.QPACK_DECOMPRESSION_FAILED


def test_frames_after_blocked_trailers_are_unexpected() -> None:
    """The blocked section is the trailers: nothing may follow it (RFC 9114 §4.1)."""
    p = lean_pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST)
    p.client.send_data(sid, b"body")
    p.settle(0.5)
    p.pair.client.send_stream_data(sid, encode_headers_frame(BLOCKED_SECTION))
    p.pair.client.send_stream_data(sid, encode_data_frame(b"late"))
    assert _close_code_after(p) == H3ErrorCode.H3_FRAME_UNEXPECTED


def test_control_frame_behind_a_blocked_section_is_rejected_at_once() -> None:
    p = lean_pair()
    sid = open_blocked_request(p)
    p.pair.client.send_stream_data(sid, encode_frame(0x07, b"\x00"))  # GOAWAY
    assert _close_code_after(p) == H3ErrorCode.H3_FRAME_UNEXPECTED


def test_reset_of_a_blocked_stream_releases_what_it_held() -> None:
    p = lean_pair()
    sids = [open_blocked_request(p) for _ in range(3)]
    for sid in sids:
        p.client.send_data(sid, b"y" * 5000)
    p.settle(0.5)
    assert p.server.state_sizes()["blocked_bytes"] == 15_000
    for sid in sids:
        p.pair.client.reset_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
    p.settle(0.5)
    unblock(p)
    p.settle(0.5)
    assert idle_sizes(p.server) == IDLE
    assert p.close_code("client") is None


# ======================================================================================
# Finding 9: ended requests leave every table
# ======================================================================================


def exchange(p: H3LeanPair, n: int, chaos: random.Random | None = None) -> int:
    """``n`` request/response exchanges, up to the peer's stream limit at a time. With
    ``chaos``, some are cancelled by the client, reset by the server, or answered
    early with the rest of the request body refused (STOP_SENDING). Returns the number
    of exchanges that ended with a reset."""
    finished: set[int] = set()
    resets = [0]
    fate: dict[int, str] = {}

    def handler(side: str, event: H3Event) -> None:
        sid = getattr(event, "stream_id", None)
        if side == "server" and isinstance(event, HeadersReceived):
            what = fate.get(sid, "normal")  # type: ignore[arg-type]
            if what == "server_reset":
                p.server.reset_stream(event.stream_id, H3ErrorCode.H3_REQUEST_REJECTED)
                p.server.stop_stream(event.stream_id, H3ErrorCode.H3_REQUEST_REJECTED)
            elif what == "early_response":
                p.server.send_headers(event.stream_id, [(b":status", b"200")], True)
                p.server.stop_stream(event.stream_id, H3ErrorCode.H3_NO_ERROR)
            elif event.stream_ended:
                p.server.send_headers(event.stream_id, [(b":status", b"204")], True)
        elif side == "server" and isinstance(event, DataReceived) and event.stream_ended:
            p.server.send_headers(event.stream_id, [(b":status", b"204")], True)
        elif side == "client":
            if isinstance(event, RequestStreamReset):
                resets[0] += 1
                finished.add(event.stream_id)
            elif isinstance(event, HeadersReceived) and event.stream_ended:
                finished.add(event.stream_id)

    p.handler = handler
    sent = 0
    while sent < n:
        while sent < n:
            try:
                sid = p.client.get_next_available_stream_id()
            except StreamLimitReached:
                break
            sent += 1
            what = "normal"
            if chaos is not None:
                what = chaos.choice(["normal", "client_cancel", "server_reset", "early_response"])
            fate[sid] = what
            if what == "normal":
                p.client.send_headers(sid, REQUEST, end_stream=True)
                continue
            p.client.send_headers(sid, [*REQUEST, (b"content-length", b"100000")])
            p.client.send_data(sid, b"b" * 1000)
            if what == "client_cancel":
                p.client.reset_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
                p.client.stop_stream(sid, H3ErrorCode.H3_REQUEST_CANCELLED)
                finished.add(sid)
        p.run(lambda sent=sent: len(finished) == sent)  # type: ignore[misc]
        p.settle(0.05)
    p.settle(1.0)
    return resets[0]


@pytest.mark.parametrize("n", [5_000, 20_000])
def test_finished_requests_leave_every_table(n: int) -> None:
    """20,000 finished requests once left 20,003 entries. After N and 4N exchanges both
    connections are back to their idle size (the peer's three critical streams)."""
    p = lean_pair()
    exchange(p, n)
    for conn in (p.client, p.server):
        assert idle_sizes(conn) == IDLE


def test_reset_and_stopped_requests_leave_every_table() -> None:
    """Random cancellations, server resets and early responses (STOP_SENDING for the
    rest of the body), N against 4N: the tables end at their idle size, and the memory
    h3 retains does not grow with N."""
    sizes = []
    for n in (1000, 4000):
        p = lean_pair()
        resets = exchange(p, 40, random.Random(1))  # warm up QPACK and the tables
        held = h3_retained(lambda n=n, p=p: exchange(p, n, random.Random(n)))  # type: ignore[misc]
        resets = exchange(p, 200, random.Random(2))
        assert resets > 0
        for conn in (p.client, p.server):
            assert idle_sizes(conn) == IDLE
        sizes.append(held)
    assert sizes[1] < 64 * 1024 and sizes[1] <= sizes[0] + 16 * 1024, sizes


def test_stopping_a_request_mid_frame_then_its_fin_keeps_the_connection() -> None:
    """The server stops reading a request in the middle of a DATA frame; the client's
    FIN arrives later. The stream is over for HTTP/3 (RFC 9114 §4.1.2): the partial
    frame is not a framing error of the connection."""
    from h3.events import HeadersReceived as _Headers
    from quic.buffer import encode_varint

    p = lean_pair()
    stopped: list[int] = []

    def handler(side: str, event: object) -> None:
        if side == "server" and isinstance(event, _Headers):
            p.server.stop_stream(event.stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
            stopped.append(event.stream_id)

    p.handler = handler
    sid = p.client.get_next_available_stream_id()
    post = [(b":method", b"POST"), *REQUEST[1:]]
    p.client.send_headers(sid, post)
    # a DATA frame that announces 100,000 bytes; only part of it is ever sent
    data_header = encode_varint(0x00) + encode_varint(100_000)  # DATA, length 100,000
    p.pair.client.send_stream_data(sid, data_header + b"x" * 5000)
    p.run(lambda: bool(stopped))
    assert stopped == [sid]
    # the rest and the FIN leave before the STOP_SENDING arrives (one-way delay 10 ms)
    p.pair.client.send_stream_data(sid, b"y" * 5000, end_stream=True)
    p.settle(0.5)
    assert p.terminated["client"] is None and p.terminated["server"] is None
