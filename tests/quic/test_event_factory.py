"""quic.events.event_factory: the bare-object constructor the per-delivery events of
every layer share (QUIC StreamDataReceived, H3 WebTransportStreamDataReceived, WT
StreamData)."""

from __future__ import annotations

import dataclasses

import pytest

from h3.events import WebTransportStreamDataReceived, webtransport_stream_data
from pywebtransport.protocol.events import StreamData, stream_data
from quic.events import StreamDataReceived, event_factory, event_factory3, stream_data_received


@dataclasses.dataclass(frozen=True, slots=True)
class _Four:
    w: int
    x: bytes
    y: bool
    z: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Three:
    a: int
    b: int
    c: int


def test_made_objects_equal_constructed_ones_and_stay_frozen() -> None:
    make = event_factory(_Four)
    event = make(7, b"ab", True, "s")
    assert type(event) is _Four
    assert event == _Four(7, b"ab", True, "s")
    assert repr(event) == repr(_Four(7, b"ab", True, "s"))
    assert hash(event) == hash(_Four(7, b"ab", True, "s"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.w = 8  # type: ignore[misc]
    assert make.__doc__ == "``_Four(w, x, y, z)``, made faster."


def test_fields_are_set_in_field_order_for_each_layer() -> None:
    assert stream_data_received(4, b"x", True, False) == StreamDataReceived(4, b"x", True, False)
    assert webtransport_stream_data(4, 0, b"x", True) == WebTransportStreamDataReceived(
        4, 0, b"x", True
    )
    assert stream_data(0, 4, b"x", False) == StreamData(0, 4, b"x", False)


def test_other_arities_are_refused() -> None:
    with pytest.raises(TypeError, match="3 fields, not 4"):
        event_factory(_Three)
    with pytest.raises(TypeError, match="4 fields, not 3"):
        event_factory3(_Four)


def test_three_field_objects_equal_constructed_ones_and_stay_frozen() -> None:
    make = event_factory3(_Three)
    event = make(1, 2, 3)
    assert type(event) is _Three
    assert event == _Three(1, 2, 3) and (event.a, event.b, event.c) == (1, 2, 3)
    assert repr(event) == repr(_Three(1, 2, 3)) and hash(event) == hash(_Three(1, 2, 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.a = 8  # type: ignore[misc]
    assert make.__doc__ == "``_Three(a, b, c)``, made faster."
