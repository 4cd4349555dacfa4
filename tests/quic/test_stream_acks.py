"""merging_fire_acked: contiguous STREAM frames of one stream told as one run."""

from __future__ import annotations

from typing import Any

from quic.recovery_state import SentPacket, fire_acked
from quic.stream_acks import merging_fire_acked


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def fate(self, acked: bool, *args: Any) -> None:
        self.calls.append(("fate", acked, *args))

    def other(self, acked: bool, *args: Any) -> None:
        self.calls.append(("other", acked, *args))


def _packet(pn: int, *handlers: Any) -> SentPacket:
    packet = SentPacket(3, pn, 1200)
    packet.handlers.extend(handlers)
    return packet


def test_contiguous_frames_of_one_stream_are_one_call() -> None:
    rec = _Recorder()
    fate = rec.fate
    send = object()
    packets = [_packet(i, (fate, (4, send, 1000 * i, 1000, False))) for i in range(5)]
    merging_fire_acked(fate)(packets)
    assert rec.calls == [("fate", True, 4, send, 0, 5000, False)]


def test_runs_end_at_gaps_fin_other_streams_and_other_handlers() -> None:
    rec = _Recorder()
    fate, other = rec.fate, rec.other
    a, b = object(), object()
    packets = [
        _packet(0, (fate, (0, a, 0, 100, False))),
        _packet(1, (fate, (0, a, 100, 100, False))),
        _packet(2, (fate, (0, a, 300, 100, False))),  # a gap: a new run
        _packet(3, (fate, (4, b, 400, 100, False))),  # another stream
        _packet(4, (other, (7,)), (fate, (4, b, 500, 50, False))),  # another handler first
        _packet(5, (fate, (4, b, 550, 50, True))),  # FIN: told on its own
        _packet(6, (fate, (0, a, 400, 10, False))),
    ]
    merging_fire_acked(fate)(packets)
    assert rec.calls == [
        ("fate", True, 0, a, 0, 200, False),
        ("fate", True, 0, a, 300, 100, False),
        ("fate", True, 4, b, 400, 100, False),
        ("other", True, 7),
        ("fate", True, 4, b, 500, 50, False),
        ("fate", True, 4, b, 550, 50, True),
        ("fate", True, 0, a, 400, 10, False),
    ]


def test_another_bound_method_of_the_same_fate_is_not_merged() -> None:
    rec = _Recorder()
    send = object()
    packets = [_packet(i, (rec.fate, (0, send, 10 * i, 10, False))) for i in range(3)]
    merging_fire_acked(rec.fate)(packets)  # a new bound method object each access
    assert len(rec.calls) == 3


def test_fire_acked_calls_every_handler_in_order() -> None:
    rec = _Recorder()
    packets = [_packet(0, (rec.other, (1,)), (rec.other, (2,))), _packet(1, (rec.other, (3,)))]
    fire_acked(packets)
    assert rec.calls == [("other", True, 1), ("other", True, 2), ("other", True, 3)]
