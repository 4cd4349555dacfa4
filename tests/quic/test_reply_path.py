"""The reply path of the send scheduler (issue 10, WT datagram ping-pong): a build whose
first datagram can only hold an ACK and DATAGRAM frames writes it in one short pass
(``SendScheduler._write_reply``). Its results must be exactly the general path's.

Each case drives a client connection into a random state (ACK ranges with random gaps
and ages from server packets lost on the way, queued datagrams of random sizes, and
sometimes other work the reply path must leave to the general path: a PING, stream
data, a full congestion window, an empty pacing bucket, a key update, a close), copies
the connection, and builds once with the reply path and once, on the copy, without
it. The datagrams must be byte-identical and the two connections' whole states equal
afterwards (loss recovery records, packet numbers, ACK state, queues, the pacer...).
"""

from __future__ import annotations

import collections
import copy
import random
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quic.conn_acks import AckState
from quic.conn_keys import APPLICATION
from quic.conn_timers import earliest_deadline
from quic.connection import QuicConnection
from quic.packet_builder import PacketAssembler
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

_DGRAM = {"max_datagram_frame_size": 65536}


def _confirmed_pair(seed: int, small_windows: bool = False) -> Pair:
    """``small_windows``: the client's stream and connection windows small enough that
    a few tens of KB consumed make it owe MAX_STREAM_DATA and MAX_DATA."""
    client_kwargs: dict[str, Any] = dict(_DGRAM)
    if small_windows:
        client_kwargs.update(initial_max_stream_data=16_384, initial_max_data=24_576)
    pair = make_pair(seed=seed, client_kwargs=client_kwargs, server_kwargs=dict(_DGRAM))
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    return pair


def _shared(root: object) -> dict[int, Any]:
    """A deepcopy memo that shares what cannot be copied (cipher and hash objects of
    ``cryptography``/``hashlib``: stateless for what a build does with them)."""
    memo: dict[int, Any] = {}
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if (type(obj).__module__ or "").startswith(("cryptography", "_hashlib")):
            memo[id(obj)] = obj
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            stack.extend(obj)
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
        elif not isinstance(obj, (str, bytes, int, float, type, types.FunctionType)):
            stack.extend(getattr(obj, "__dict__", {}).values())
            for cls in type(obj).__mro__:
                slots = getattr(cls, "__slots__", ())
                stack.extend(getattr(obj, name) for name in slots if hasattr(obj, name))
    return memo


def _snapshot(root: object) -> Any:
    """The object graph below ``root`` as plain nested data (objects in the order first
    met; a second visit is a back reference), for comparing two graphs."""
    order: dict[int, int] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, (str, bytes, bytearray, int, float, bool, type(None))):
            return obj
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            return ("code", getattr(obj, "__qualname__", repr(obj)))
        if (type(obj).__module__ or "").startswith(("cryptography", "_hashlib")):
            return ("shared", id(obj))  # the same object in both graphs
        if id(obj) in order:
            return ("ref", order[id(obj)])
        order[id(obj)] = len(order)
        if isinstance(obj, types.MethodType):
            return ("method", obj.__func__.__qualname__, walk(obj.__self__))
        if isinstance(obj, dict):
            return ("dict", [(walk(k), walk(v)) for k, v in obj.items()])
        if isinstance(obj, (list, tuple, collections.deque)):
            return (type(obj).__name__, [walk(x) for x in obj])
        if isinstance(obj, (set, frozenset)):
            return ("set", sorted(repr(walk(x)) for x in obj))
        if isinstance(obj, memoryview):
            return ("view", bytes(obj))
        fields = [(name, walk(value)) for name, value in getattr(obj, "__dict__", {}).items()]
        for cls in type(obj).__mro__:
            slots = getattr(cls, "__slots__", ())
            fields.extend(
                (name, walk(getattr(obj, name)))
                for name in slots
                if name != "__dict__" and hasattr(obj, name)
            )
        return (type(obj).__qualname__, fields)

    return walk(root)


_OTHER = (
    "none", "ping", "none", "stream", "none", "window", "none", "paced", "key", "close",
    "streams", "credit", "reset",
)  # fmt: skip


def _random_state(pair: Pair, rng: random.Random, other: str) -> tuple[QuicConnection, float]:
    """Drive the client into a random state with datagrams queued and ``other`` work
    owed; returns it and the time to build at."""
    conn, server, net = pair.client, pair.server, pair.net
    now = net.now
    # server packets, some lost: random ACK ranges and gaps on the client
    for _ in range(rng.randrange(1, 40)):
        server.send_datagram(b"s" * rng.randrange(1, 200))
        sent = server.datagrams_to_send(now)
        now += rng.choice((0.0, 0.0001, 0.003, 0.03))
        for data, _addr in sent:
            if rng.random() < 0.6:
                conn.receive_datagram(data, SERVER_ADDR, now)
        while conn.next_event() is not None:
            pass
        if rng.random() < 0.2:  # the client sends meanwhile (acknowledged or not)
            conn.send_datagram(b"c")
        if rng.random() < 0.5:  # ... or only the ACKs that are due (a run of ACK-only)
            conn.datagrams_to_send(now)
    now += rng.choice((0.0, 0.00002, 0.001, 0.03, 0.5))
    limit = conn.max_datagram_payload
    for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3, 8))):  # none: an ACK-only build
        size = rng.choice((0, 1, 64, rng.randrange(0, limit + 1), limit, limit - 40))
        conn.send_datagram(bytes(rng.randrange(256) for _ in range(max(0, size))))
    if other == "ping":
        conn.send_ping(7)
    elif other == "stream":  # a short request or response, its FIN with it or not
        size = rng.choice((1, 64, rng.randrange(1, 3000)))
        conn.send_stream_data(conn.create_stream(), b"x" * size, rng.random() < 0.5)
    elif other == "streams":  # several, one of them more than a datagram: the short loop
        for size in (rng.randrange(0, 200), rng.randrange(1, 20_000), rng.randrange(1, 900)):
            conn.send_stream_data(conn.create_stream(), b"y" * size, rng.random() < 0.5)
    elif other == "credit":  # flow-control credit owed (MAX_DATA, MAX_STREAM_DATA)
        sid = server.create_stream()
        server.send_stream_data(sid, b"z" * rng.randrange(20_000, 60_000), True)
        for _ in range(60):
            for data, _addr in server.datagrams_to_send(now):
                conn.receive_datagram(data, SERVER_ADDR, now)
            for data, _addr in conn.datagrams_to_send(now):
                server.receive_datagram(data, CLIENT_ADDR, now)
            now += 0.002
        while conn.next_event() is not None:
            pass
        # half the small window or more: credit is owed (see _confirmed_pair)
        conn.consume_stream_data(sid, rng.randrange(8_192, 16_385))
    elif other == "reset":  # a stream-state frame owed (RESET_STREAM)
        sid = conn.create_stream()
        conn.send_stream_data(sid, b"r" * rng.randrange(1, 500))
        conn.reset_stream(sid, 7)
    elif other == "window":
        cc = conn.recovery.congestion
        # less room than one datagram: nothing ack-eliciting may go
        cc.bytes_in_flight = cc.congestion_window - rng.randrange(0, conn.paths.max_datagram_size)
    elif other == "paced":
        pacer = conn.sender.pacer
        pacer.set_rate(1e5, conn.recovery.congestion.congestion_window, now)
        pacer.on_packet_sent(int(pacer.capacity) + rng.randrange(0, 1500), now)
    elif other == "key":
        conn.request_key_update()
    elif other == "close":
        conn.close(0, "bye")
    return conn, now


#: builds whose datagram _write_datagram_reply wrote (the reply pass without an assembler)
DATAGRAM_REPLIES = [0]


def _build_both(
    conn: QuicConnection, now: float
) -> tuple[list[Any], list[Any], QuicConnection, int]:
    """Build on ``conn`` (the reply path allowed) and on a copy (not allowed); returns
    both outputs, the copy and how many reply-path passes wrote a datagram."""
    twin = copy.deepcopy(conn, _shared(conn))
    taken = [0]
    real = conn.sender._write_reply
    real_datagram = conn.sender._write_datagram_reply

    def counted(*args: Any) -> Any:
        result = real(*args)
        taken[0] += result is not None
        return result

    def counted_datagram(*args: Any) -> Any:
        result = real_datagram(*args)
        taken[0] += result is not None
        DATAGRAM_REPLIES[0] += result is not None
        return result

    # instance attributes over the methods, removed again before the states are compared;
    # the copy takes neither the reply pass nor the short cut of a build owing nothing
    vars(twin.sender)["_reply_kind"] = lambda: 0
    vars(twin.sender)["_owes_nothing"] = lambda now: False
    vars(conn.sender)["_write_reply"] = counted
    vars(conn.sender)["_write_datagram_reply"] = counted_datagram
    fast = conn.datagrams_to_send(now)
    general = twin.datagrams_to_send(now)
    del vars(twin.sender)["_reply_kind"], vars(twin.sender)["_owes_nothing"]
    del vars(conn.sender)["_write_reply"], vars(conn.sender)["_write_datagram_reply"]
    return fast, general, twin, taken[0]


def test_reply_path_is_the_general_path() -> None:
    taken = declined = 0
    DATAGRAM_REPLIES[0] = 0
    kinds: collections.Counter[str] = collections.Counter()
    streamed: collections.Counter[str] = collections.Counter()
    for seed in range(78):
        rng = random.Random(seed)
        other = _OTHER[seed % len(_OTHER)]
        pair = _confirmed_pair(seed % 4, small_windows=other == "credit")
        conn, now = _random_state(pair, rng, other)
        fast, general, twin, passes = _build_both(conn, now)
        assert fast == general, (seed, other)
        assert conn.get_timer() == twin.get_timer()
        assert _snapshot(conn) == _snapshot(twin), (seed, other)
        taken += passes
        declined += not passes
        kinds[other] += 1
        if other in ("ping", "window", "paced", "close"):
            assert not passes, other  # the general path decides these
        streamed[other] += passes
    assert taken >= 20 and declined >= 5  # both ways were exercised
    assert DATAGRAM_REPLIES[0] >= 5  # ... and the one-function reply of a lone datagram
    assert len(kinds) == len(set(_OTHER))
    assert all(streamed[k] for k in ("stream", "streams", "credit", "reset"))


def test_after_a_streamed_reply_pass_only_streams_and_datagrams_are_asked() -> None:
    """After a streamed reply pass, build asks whether everything went by stream data,
    control frames and datagrams alone: _reply_kind's _short_only() ruled out the rest
    of _sent_everything() (other spaces, probes, PINGs, path, CRYPTO, HANDSHAKE_DONE,
    NEW_TOKEN, connection-ID and ACK_FREQUENCY frames), and the pass writes none of
    them. The same answer as the whole _sent_everything(), in random states."""
    answers: collections.Counter[bool] = collections.Counter()
    for seed in range(52):
        rng = random.Random(seed)
        other = _OTHER[seed % len(_OTHER)]
        pair = _confirmed_pair(seed % 4, small_windows=other == "credit")
        conn, now = _random_state(pair, rng, other)
        sender = conn.sender
        real = sender._write_reply

        def checked(*args: Any, _real: Any = real, _sender: Any = sender) -> Any:
            result = _real(*args)
            if result is not None and args[-1]:  # streamed
                streams = _sender._streams
                reduced = not (
                    _sender._datagrams.pending or streams.has_data() or streams.wants_control()
                )
                # counted, not asserted here: build's caller turns an exception into a close
                answers["differ"] += reduced != _sender._sent_everything()
                answers[reduced] += 1
            return result

        vars(sender)["_write_reply"] = checked
        for _ in range(3):
            conn.datagrams_to_send(now)
            if rng.random() < 0.7:  # a short request or more than a datagram
                size = rng.choice((1, 64, 1300, 5000))
                conn.send_stream_data(conn.create_stream(), b"w" * size, rng.random() < 0.5)
            if rng.random() < 0.3:
                conn.send_datagram(b"d" * rng.randrange(1, 300))
            now += 0.001
        del vars(sender)["_write_reply"]
    assert not answers["differ"]
    assert answers[True] >= 10 and answers[False] >= 5


def test_reply_path_writes_one_datagram_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone datagram (and its ACK) takes the reply path: no visit of the spaces, one
    packet, as the general path builds it, in one function without an assembler; a
    queue that does not fit one packet goes on in the general loop from its second
    datagram."""
    pair = _confirmed_pair(5)
    conn = pair.client
    calls: collections.Counter[str] = collections.Counter()
    for name in ("_write_space", "_write_reply", "_sent_everything", "_write_datagram_reply"):
        real = getattr(conn.sender, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(conn.sender, name, counted)
    assembled: collections.Counter[str] = collections.Counter()
    real_init = PacketAssembler.__init__

    def counted_init(self: PacketAssembler, size: int) -> None:
        assembled["asm"] += 1
        real_init(self, size)

    monkeypatch.setattr(PacketAssembler, "__init__", counted_init)
    conn.send_datagram(b"p" * 64)
    assert len(conn.datagrams_to_send(pair.net.now)) == 1
    assert calls == {"_write_datagram_reply": 1}
    assert not assembled
    calls.clear()
    limit = conn.max_datagram_payload
    for _ in range(3):
        conn.send_datagram(b"q" * limit)  # one per datagram
    assert len(conn.datagrams_to_send(pair.net.now)) == 3
    assert calls["_write_datagram_reply"] == 1  # declined: more than one queued
    assert calls["_write_reply"] == 1 and calls["_write_space"] >= 2
    assert assembled["asm"] == 1  # one assembler for that build call


def test_deadline_after_a_build_matches_its_parts() -> None:
    """The connection's deadline, asked after every build (its idle and key-rest parts
    computed without their wrappers), is the earliest of what the components wait for,
    in the random states above, before and after the build."""
    for seed in range(20):
        rng = random.Random(seed)
        pair = _confirmed_pair(seed % 4)
        conn, now = _random_state(pair, rng, _OTHER[seed % len(_OTHER)])
        for _ in range(2):
            expected = earliest_deadline(
                conn, conn.idle.idle_deadline(conn), conn.idle.rest_deadline(conn)
            )
            assert conn.get_timer() == expected
            conn.datagrams_to_send(now)


def test_ack_deadline_unrolled_matches_the_loop() -> None:
    """AckState.earliest_deadline (the three spaces unrolled): the earliest deadline of
    the spaces that can still send, for every mix of deadlines and keys."""
    rng = random.Random(1)
    acks = AckState(0.025, 3)
    choices = (None, 1.0, 2.0, 2.0, 3.5)
    for _ in range(2000):
        spaces = [types.SimpleNamespace(write=rng.choice((None, object()))) for _ in range(3)]
        for tracker in acks.trackers:
            tracker.deadline = rng.choice(choices)
        reference = [
            tracker.deadline
            for tracker, space in zip(acks.trackers, spaces, strict=True)
            if tracker.deadline is not None and space.write is not None
        ]
        expected = min(reference) if reference else None
        assert acks.earliest_deadline(spaces) == expected  # type: ignore[arg-type]


def test_ack_only_and_empty_builds_take_the_reply_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build with nothing ack-eliciting owed (a burst of short exchanges: the ACK of an
    echo, the answer to a probe, a build after a packet whose ACK may wait) skips the
    general loop: nothing while the ACK is not due (a build owing nothing, which skips
    the reply pass too), then one ACK-only datagram at its deadline in the reply pass;
    no packet number is spent on the empty build."""
    pair = _confirmed_pair(6)
    conn, server, now = pair.client, pair.server, pair.net.now
    pair.run(max_time=0.5)  # everything of the handshake acknowledged
    now = pair.net.now
    calls: collections.Counter[str] = collections.Counter()
    for name in ("_write_space", "_write_reply", "_owes_nothing"):
        real = getattr(conn.sender, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            result = _real(*args)
            calls[f"{_name} {result}" if _name == "_owes_nothing" else _name] += 1
            return result

        monkeypatch.setattr(conn.sender, name, counted)
    server.send_datagram(b"s" * 40)  # one ack-eliciting packet: its ACK may be delayed
    for data, _addr in server.datagrams_to_send(now):
        conn.receive_datagram(data, SERVER_ADDR, now)
    next_pn = conn.keys.spaces[2].next_pn
    assert conn.datagrams_to_send(now) == []
    assert conn.keys.spaces[2].next_pn == next_pn
    deadline = conn.acks.deadline(2)
    assert deadline is not None and deadline > now
    assert len(conn.datagrams_to_send(deadline)) == 1  # the ACK, at its deadline
    assert conn.keys.spaces[2].next_pn == next_pn + 1
    assert calls == {"_owes_nothing True": 1, "_owes_nothing False": 1, "_write_reply": 1}


def test_reply_path_writes_the_ecn_counts_as_the_general_path() -> None:
    """write_reply reads the ECN counts of its ACK inline (EcnController.counts): an
    ACK_ECN frame with them once any arrived, a plain ACK before."""
    taken = 0
    for seed in range(12):
        rng = random.Random(seed)
        pair = _confirmed_pair(seed % 4)
        conn, now = _random_state(pair, rng, "none")
        counts = conn.ecn.received_counts
        base = 3 * APPLICATION
        for i in range(3):
            counts[base + i] = rng.choice((0, 0, 1, 63, 64, 20_000))
        fast, general, twin, passes = _build_both(conn, now)
        assert fast == general, seed
        assert _snapshot(conn) == _snapshot(twin), seed
        taken += passes
    assert taken >= 6  # the reply path wrote most of them


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    received=st.lists(st.booleans(), min_size=1, max_size=30),
    size=st.integers(0, 1300),
    wait=st.sampled_from((0.0, 0.00002, 0.001, 0.03)),
    ecn=st.tuples(*[st.sampled_from((0, 1, 63, 64, 20_000))] * 3),
)
def test_datagram_reply_is_the_general_path(
    seed: int, received: list[bool], size: int, wait: float, ecn: tuple[int, int, int]
) -> None:
    """The reply pass of a lone datagram written in one function
    (``write_datagram_reply``): for server packets received or lost in any pattern
    (the ACK's ranges), ECN counts, datagram sizes up to the largest that fits, the
    same bytes and the same state afterwards as the general path — or declined."""
    pair = _confirmed_pair(seed)
    conn, server, now = pair.client, pair.server, pair.net.now
    for got in received:
        server.send_datagram(b"s" * 30)
        sent = server.datagrams_to_send(now)
        if got:
            for data, _addr in sent:
                conn.receive_datagram(data, SERVER_ADDR, now)
        now += 0.0001
    while conn.next_event() is not None:
        pass
    counts = conn.ecn.received_counts
    for i, count in enumerate(ecn):
        counts[3 * APPLICATION + i] = count
    conn.send_datagram(b"d" * min(size, conn.max_datagram_payload))
    before = DATAGRAM_REPLIES[0]
    fast, general, twin, _passes = _build_both(conn, now + wait)
    assert fast == general
    assert conn.get_timer() == twin.get_timer()
    assert _snapshot(conn) == _snapshot(twin)
    if size <= 1000 and not any(ecn) and len(received) < 20:
        assert DATAGRAM_REPLIES[0] == before + 1  # small enough: this path wrote it


def test_datagrams_queued_together_still_leave_in_one_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one-function reply takes a lone datagram only: datagrams the application
    queued in one go (one loop iteration) still leave from one build — small ones
    coalesced in one packet, full-sized ones as a run of equal-sized datagrams (one
    GSO send in the pump) — not one build per datagram."""
    pair = _confirmed_pair(7)
    conn = pair.client
    calls: collections.Counter[str] = collections.Counter()
    real = conn.sender._write_datagram_reply

    def counted(*args: Any) -> Any:
        result = real(*args)
        calls["taken" if result is not None else "declined"] += 1
        return result

    monkeypatch.setattr(conn.sender, "_write_datagram_reply", counted)
    for i in range(10):
        conn.send_datagram(bytes([i]) * 64)
    out = conn.datagrams_to_send(pair.net.now)
    assert len(out) == 1  # ten DATAGRAM frames in one packet
    assert calls == {"declined": 1}
    limit = conn.max_datagram_payload
    for i in range(6):
        conn.send_datagram(bytes([i]) * limit)
    out = conn.datagrams_to_send(pair.net.now)
    assert len(out) == 6
    assert len({len(data) for data, _addr in out}) == 1  # one GSO run
    assert calls == {"declined": 2}
    assert not conn.datagrams.pending
