"""SentPacket's flat handler (``fate``, ``args``; the bulk send loop's STREAM frame, kept
without a list and a tuple per packet) is told exactly as the same handler first in
``handlers`` would be: acknowledged (merged or not), lost, dropped, ECN-tracked."""

from __future__ import annotations

from typing import Any

import pytest

from quic.conn_ecn import EcnController
from quic.packet_builder import _NO_HANDLERS
from quic.recovery_state import SentPacket, fire_acked, fire_lost
from quic.stream_acks import merging_fire_acked


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stream = self.fate  # bound once: merging finds its frames by identity

    def fate(self, acked: bool, *args: Any) -> None:
        self.calls.append(("fate", acked, *args))

    def other(self, acked: bool, *args: Any) -> None:
        self.calls.append(("other", acked, *args))


def _scenario(rec: _Recorder) -> list[list[Any]]:
    """Per packet, its handlers: runs, gaps, FIN, other streams and other handlers."""
    fate, other = rec.stream, rec.other
    a, b = "stream-a", "stream-b"
    return [
        [(fate, (4, a, 0, 100, False))],
        [(fate, (4, a, 100, 100, False))],
        [(fate, (4, a, 200, 100, False)), (other, (7,))],
        [(fate, (4, a, 300, 100, False))],
        [(fate, (4, a, 500, 100, False))],  # a gap
        [(fate, (8, b, 0, 50, False))],  # another stream
        [(fate, (8, b, 50, 50, True))],  # FIN: told alone
        [(other, (9,)), (fate, (8, b, 100, 10, False))],
        [(fate, (8, b, 110, 10, False))],
        [(other, (1, 2))],
    ]


def _packets(handlers: list[list[Any]], flat: bool) -> list[SentPacket]:
    out = []
    for pn, own in enumerate(handlers):
        packet = SentPacket(2, pn, 1200)
        if flat and own[0][0].__name__ == "fate":
            packet.fate, packet.args = own[0]
            packet.handlers = list(own[1:]) if len(own) > 1 else _NO_HANDLERS
        else:
            packet.handlers.extend(own)
        out.append(packet)
    return out


def _told(fire: str, flat: bool) -> list[tuple[Any, ...]]:
    rec = _Recorder()
    packets = _packets(_scenario(rec), flat)
    if fire == "merging":
        merging_fire_acked(rec.stream)(packets)
    elif fire == "acked":
        fire_acked(packets)
    else:
        fire_lost(packets)
    return rec.calls


@pytest.mark.parametrize("fire", ["merging", "acked", "lost"])
def test_flat_handler_is_told_as_the_first_listed_one(fire: str) -> None:
    listed, flat = _told(fire, False), _told(fire, True)
    assert flat == listed
    assert len(listed) >= 7  # the scenario reaches every branch
    if fire == "merging":  # the first run merged across both forms' packets
        assert listed[0] == ("fate", True, 4, "stream-a", 0, 300, False)


def test_frame_handlers_lists_the_flat_one_first() -> None:
    rec = _Recorder()
    listed, flat = _packets(_scenario(rec), False), _packets(_scenario(rec), True)
    for a, b in zip(listed, flat, strict=True):
        assert a.frame_handlers() == b.frame_handlers() == a.handlers
    assert flat[0].handlers == () and flat[0].fate is not None


def test_no_handlers_is_shared_and_refuses_appends() -> None:
    packet = SentPacket(2, 0, 1200)
    packet.handlers = _NO_HANDLERS
    with pytest.raises(AttributeError):
        packet.handlers.append((print, ()))
    assert _NO_HANDLERS == ()


def test_ecn_testing_adds_its_handler_after_the_flat_one() -> None:
    ecn = EcnController()
    rec = _Recorder()
    packets = _packets([[(rec.stream, (4, "s", 100 * i, 100, False))] for i in range(3)], True)
    ecn.on_packets_sent(packets, 2)
    for packet in packets:
        assert packet.fate is not None
        assert len(packet.handlers) == 1 and packet.handlers[0][1] == (2,)
    fire_acked(packets)
    assert ecn._newly_acked[2] == 3 and len(rec.calls) == 3
    assert packets[0].handlers is not packets[1].handlers  # a list each
