"""HTTP/3 events made without their dataclass __init__ on the per-chunk path."""

from __future__ import annotations

import pytest

from h3.events import WebTransportStreamDataReceived, webtransport_stream_data


@pytest.mark.parametrize("args", [(1, 0, b"", False), (4, 8, b"abc", True)])
def test_webtransport_stream_data_equals_the_dataclass_one(
    args: tuple[int, int, bytes, bool],
) -> None:
    made, ref = webtransport_stream_data(*args), WebTransportStreamDataReceived(*args)
    assert made == ref and type(made) is WebTransportStreamDataReceived
    assert repr(made) == repr(ref) and hash(made) == hash(ref)
    assert (made.stream_id, made.session_id, made.data, made.stream_ended) == args
    with pytest.raises(AttributeError):
        made.data = b"x"  # type: ignore[misc]  # still frozen
