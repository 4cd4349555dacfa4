"""The per-stream objects built without their ``__init__`` frame (issue 10: a Python
frame less each, per stream and side) equal the ones ``__init__`` builds, slot by slot:
``SendStream``'s :class:`~quic.flow_control.SendCredit`, ``RecvStream``'s
:class:`~quic.flow_control.ReceiveWindow` and ``StreamManager._create``'s
:class:`~quic.stream.QuicStream`."""

from __future__ import annotations

import pytest

from quic.flow_control import ReceiveWindow, SendCredit
from quic.reassembly import ReassemblyBudget
from quic.stream import QuicStream
from quic.stream_manager import FRAME_STREAM, StreamLimits, StreamManager
from quic.stream_recv import RecvStream
from quic.stream_send import SendStream

LIMITS = StreamLimits(max_streams_bidi=4, max_streams_uni=4, max_stream_data_bidi_local=100,
                      max_stream_data_bidi_remote=200, max_stream_data_uni=300)  # fmt: skip


def _slots(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


@pytest.mark.parametrize("max_data", [0, 5, 1 << 20, (1 << 62) - 1])
def test_send_stream_credit_is_send_credit_init(max_data: int) -> None:
    credit = SendStream(4, max_data).credit
    assert type(credit) is SendCredit
    assert _slots(credit) == _slots(SendCredit(max_data))
    assert SendStream().credit.max_data == 0  # the defaults


@pytest.mark.parametrize(
    ("window", "max_window"),
    [(0, None), (100, None), (100, 50), (100, 100), (100, 1000), (0, 7)],
)
def test_recv_stream_window_is_receive_window_init(window: int, max_window: int | None) -> None:
    got = RecvStream(4, window, max_window).window
    assert type(got) is ReceiveWindow
    assert _slots(got) == _slots(ReceiveWindow(window, max_window))
    assert got.max_window == max(window, window if max_window is None else max_window)


def test_recv_stream_refuses_a_negative_window_as_receive_window_does() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        ReceiveWindow(-1)
    with pytest.raises(ValueError, match="non-negative"):
        RecvStream(4, -1)


@pytest.mark.parametrize("is_client", [True, False])
def test_manager_streams_are_quic_stream_init(is_client: bool) -> None:
    m = StreamManager(is_client, LIMITS, LIMITS)
    peer = 1 if is_client else 0  # the peer-initiated bit (RFC 9000 §2.1)
    sids = [m.open_stream(True), m.open_stream(False)]
    for sid in (peer, peer | 2):  # the peer's bidi and uni streams, opened by a frame
        assert m.stream_for_frame(sid, FRAME_STREAM) is not None
        sids.append(sid)
    kinds = set()
    for sid in sids:
        stream = m.get(sid)
        assert type(stream) is QuicStream
        reference = QuicStream(sid, stream.send, stream.recv)
        assert _slots(stream) == _slots(reference)
        kinds.add((stream.send is not None, stream.recv is not None))
    assert kinds == {(True, True), (True, False), (False, True)}  # every kind of stream


def test_recv_stream_takes_fragments_and_budget_by_position_as_by_keyword() -> None:
    budget = ReassemblyBudget(1000, 10)
    by_position = RecvStream(4, 100, 1000, 7, budget)
    by_keyword = RecvStream(4, 100, 1000, max_fragments=7, budget=budget)
    assert by_position._max_fragments == by_keyword._max_fragments == 7
    assert by_position._budget is by_keyword._budget is budget
    m = StreamManager(False, LIMITS, LIMITS, max_stream_fragments=9)
    recv = m.get(m.open_stream(True)).recv  # type: ignore[union-attr]
    assert recv is not None and recv._max_fragments == 9 and recv._budget is m.reassembly
