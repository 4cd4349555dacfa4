"""Draft-16 session flow control (§5): unit tests and in-memory pairs."""

from __future__ import annotations

import pytest

from h3.capsules import CapsuleType, encode_capsule, encode_varint_capsule
from h3.errors import H3ErrorCode
from pywebtransport.protocol import (
    Draft,
    FlowControlBlocked,
    FlowCreditAvailable,
    SessionAbort,
    SessionClosed,
    StreamData,
    StreamOpened,
)
from pywebtransport.protocol.flow import SessionFlowControl
from tests.wt.wtpair import config, establish, wt_pair

NO_FC = {"initial_max_data": 0, "initial_max_streams_bidi": 0, "initial_max_streams_uni": 0}


def test_receive_limits_raise_flow_control_error() -> None:
    flow = SessionFlowControl((100, 1, 2), (0, 0, 0))
    flow.on_peer_stream(True)
    with pytest.raises(SessionAbort) as info:
        flow.on_peer_stream(True)
    assert info.value.error_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR
    flow.on_peer_stream(False)
    flow.on_peer_stream(False)
    flow.on_data_received(100)
    with pytest.raises(SessionAbort):
        flow.on_data_received(1)


def test_send_limits_and_updates() -> None:
    flow = SessionFlowControl((0, 0, 0), (10, 1, 0))
    assert flow.can_open(True) and not flow.can_open(False)
    flow.on_open(True)
    assert not flow.can_open(True)
    assert flow.send_credit() == 10
    flow.on_sent(10)
    assert flow.send_credit() == 0
    blocked = flow.blocked_capsule("data")
    assert blocked == encode_varint_capsule(CapsuleType.WT_DATA_BLOCKED, 10)
    assert flow.blocked_capsule("data") is None  # once per limit
    assert flow.on_max_data(20) is True
    assert flow.on_max_streams(True, 2) is True
    assert flow.on_max_streams(False, 1) is True
    for bad in (lambda: flow.on_max_data(20), lambda: flow.on_max_streams(True, 2)):
        with pytest.raises(SessionAbort):
            bad()  # must increase (§5.6.2, §5.6.4)
    with pytest.raises(SessionAbort):
        flow.on_max_streams(True, (1 << 60) + 1)
    with pytest.raises(SessionAbort):
        SessionFlowControl.on_streams_blocked((1 << 60) + 1)
    SessionFlowControl.on_streams_blocked(1 << 60)


def test_credit_is_given_back() -> None:
    flow = SessionFlowControl((100, 4, 2), (0, 0, 0))
    assert flow.take_updates() == []
    flow.on_data_received(60)
    assert flow.take_updates() == []  # received is not consumed: no credit yet
    flow.on_data_consumed(60)
    assert flow.take_updates() == [encode_varint_capsule(CapsuleType.WT_MAX_DATA, 160)]
    flow.on_data_consumed(1000)  # never beyond what was received
    assert flow.consumed == 60
    flow.on_peer_stream(False)
    flow.on_peer_stream_closed(False)
    assert flow.take_updates() == [encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_UNI, 3)]
    for _ in range(2):
        flow.on_peer_stream(True)
        flow.on_peer_stream_closed(True)
    assert flow.take_updates() == [encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_BIDI, 6)]


@pytest.mark.parametrize("seed", range(20))
def test_due_flags_agree_with_take_updates(seed: int) -> None:
    """on_data_consumed / on_peer_stream_closed say True exactly when take_updates
    then writes the capsule they can make due (the connection flushes only then)."""
    import copy
    import random

    rng = random.Random(seed)
    windows = (rng.choice((0, 1, 7, 100, 1 << 20)), rng.choice((0, 1, 3, 100)),
               rng.choice((0, 1, 2, 100)))  # fmt: skip
    flow = SessionFlowControl(windows, (0, 0, 0))
    data_cap = encode_varint_capsule(CapsuleType.WT_MAX_DATA, 0)[:4]  # the type
    for _ in range(300):
        step = rng.randrange(4)
        if step == 0 and flow.received < flow.recv_max_data:
            flow.on_data_received(rng.randint(1, flow.recv_max_data - flow.received))
        elif step == 1:
            due = flow.on_data_consumed(rng.randint(0, 50))
            updates = copy.deepcopy(flow).take_updates()
            assert due == any(u.startswith(data_cap) for u in updates)
        elif step == 2:
            bidi = rng.random() < 0.5
            try:
                flow.on_peer_stream(bidi)
            except SessionAbort:
                continue
            due = flow.on_peer_stream_closed(bidi)
            kind = CapsuleType.WT_MAX_STREAMS_BIDI if bidi else CapsuleType.WT_MAX_STREAMS_UNI
            prefix = encode_varint_capsule(kind, 0)[:4]  # the type
            updates = copy.deepcopy(flow).take_updates()
            assert due == any(u.startswith(prefix) for u in updates)
        else:
            flow.take_updates()


def test_flow_control_needs_both_sides() -> None:
    assert wt_pair(config(), config()).client.flow_control
    assert not wt_pair(config(**NO_FC), config()).client.flow_control
    # a server offering draft-13 announces every window anyway (test_drafts_settings.py)
    no_13 = (Draft.DRAFT16, Draft.DRAFT07, Draft.DRAFT02)
    assert not wt_pair(config(), config(*no_13, **NO_FC)).client.flow_control


def test_stream_limit_blocks_and_is_raised() -> None:
    p = wt_pair(config(), config(initial_max_streams_uni=1))
    sid = establish(p)
    first = p.client.open_stream(sid, False)
    with pytest.raises(FlowControlBlocked) as info:
        p.client.open_stream(sid, False)
    assert info.value.kind == "uni"
    p.client.send_stream_data(first, b"bye", end_stream=True)
    p.run(lambda: bool(p.of(FlowCreditAvailable, "client")))
    assert p.of(FlowCreditAvailable, "client")[0].kind == "uni"
    p.client.open_stream(sid, False)


def test_data_limit_blocks_and_is_raised() -> None:
    p = wt_pair(config(), config(initial_max_data=100))
    sid = establish(p)
    stream = p.client.open_stream(sid, False)
    assert p.client.send_stream_data(stream, bytes(250), end_stream=True) == 100
    p.run(lambda: bool(p.of(FlowCreditAvailable, "client")))
    assert p.of(FlowCreditAvailable, "client")[0].kind == "data"
    assert p.client.send_stream_data(stream, bytes(150), end_stream=True) == 100
    assert p.client.send_stream_data(stream, bytes(50), end_stream=True) == 0
    p.run(lambda: len(p.of(FlowCreditAvailable, "client")) == 2)
    assert p.client.send_stream_data(stream, bytes(50), end_stream=True) == 50
    p.run(lambda: any(e.fin for e in p.of(StreamData)))
    assert sum(len(e.data) for e in p.of(StreamData)) == 250


def test_excess_data_is_flow_control_error() -> None:
    p = wt_pair(config(), config(initial_max_data=100))
    sid = establish(p)
    p.client._sessions[sid].flow.send_max_data = 10**6  # type: ignore[union-attr]  # misbehave
    stream = p.client.open_stream(sid, False)
    p.client.send_stream_data(stream, bytes(1000))
    p.run(lambda: bool(p.of(SessionClosed, "client")))
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR
    assert p.of(SessionClosed, "client")[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR


def test_excess_streams_is_flow_control_error() -> None:
    p = wt_pair(config(), config(initial_max_streams_bidi=1))
    sid = establish(p)
    # the client believes the server allowed 5 (the server announced 1)
    p.client._sessions[sid].flow.on_max_streams(True, 5)  # type: ignore[union-attr]
    for _ in range(2):
        p.client.send_stream_data(p.client.open_stream(sid, True), b"x")
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR
    assert len(p.of(StreamOpened)) == 1


@pytest.mark.parametrize(
    "capsule",
    [
        encode_varint_capsule(CapsuleType.WT_MAX_DATA, 5),  # does not increase
        encode_varint_capsule(CapsuleType.WT_MAX_STREAMS_UNI, 1),
        encode_varint_capsule(CapsuleType.WT_STREAMS_BLOCKED_BIDI, (1 << 60) + 1),
        encode_capsule(0x190B4D3E, b"\x01"),  # WT_MAX_STREAM_DATA is forbidden (§5.4)
    ],
)
def test_bad_flow_capsules_abort_the_session(capsule: bytes) -> None:
    p = wt_pair()
    sid = establish(p)
    p.client.h3.send_data(sid, capsule)
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR


def test_flow_capsules_ignored_without_flow_control() -> None:
    p = wt_pair(config(Draft.DRAFT16, **NO_FC), config())
    sid = establish(p)
    p.client.h3.send_data(sid, encode_varint_capsule(CapsuleType.WT_MAX_DATA, 0))
    p.client.close_session(sid, 1, "ok")
    p.run(lambda: bool(p.of(SessionClosed)))
    assert p.of(SessionClosed)[0].code == 1 and p.of(SessionClosed)[0].http_code is None


def test_draft07_has_no_flow_control() -> None:
    p = wt_pair(config(Draft.DRAFT07), config(initial_max_streams_uni=1))
    sid = establish(p)
    for _ in range(3):
        p.client.send_stream_data(p.client.open_stream(sid, False), b"x", end_stream=True)
    p.run(lambda: len(p.of(StreamOpened)) == 3)
