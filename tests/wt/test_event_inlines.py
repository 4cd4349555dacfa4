"""WebTransport events made without their dataclass __init__ on the per-chunk path."""

from __future__ import annotations

import pytest

from pywebtransport.protocol import StreamData, StreamOpened
from pywebtransport.protocol.events import stream_data, stream_opened


@pytest.mark.parametrize("args", [(0, 1, b"", False), (4, 8, b"abc", True)])
def test_stream_data_equals_the_dataclass_one(args: tuple[int, int, bytes, bool]) -> None:
    made, ref = stream_data(*args), StreamData(*args)
    assert made == ref and type(made) is StreamData
    assert repr(made) == repr(ref) and hash(made) == hash(ref)
    assert (made.session_id, made.stream_id, made.data, made.fin) == args
    with pytest.raises(AttributeError):
        made.data = b"x"  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize("args", [(0, 1, True), (4, 11, False)])
def test_stream_opened_equals_the_dataclass_one(args: tuple[int, int, bool]) -> None:
    made, ref = stream_opened(*args), StreamOpened(*args)
    assert made == ref and type(made) is StreamOpened
    assert repr(made) == repr(ref) and hash(made) == hash(ref)
    assert (made.session_id, made.stream_id, made.bidirectional) == args
    with pytest.raises(AttributeError):
        made.bidirectional = False  # type: ignore[misc]  # still frozen
