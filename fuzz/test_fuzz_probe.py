"""Property tests for the probe's raw SETTINGS reader (``pywebtransport.probe.wire``):
whatever bytes a server's unidirectional streams carry, in whatever chunks, the sniffer
never raises, never holds more than MAX_SETTINGS_BYTES per stream, and a well-formed
control stream yields exactly the pairs that were sent, duplicates included; the SETTINGS
checks judge any pairs without raising. ``FUZZ_PROFILE=deep`` for >= 100,000 examples."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from h3.frames import FrameType, encode_frame
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.probe.checks_settings import TransportFacts, settings_checks
from pywebtransport.probe.report import Outcome
from pywebtransport.probe.wire import MAX_SETTINGS_BYTES, ControlStreamSniffer
from quic.buffer import VARINT_MAX, encode_varint

varints = st.integers(min_value=0, max_value=VARINT_MAX)
pairs_strategy = st.lists(st.tuples(varints, varints), max_size=40)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=examples(300), deadline=None)
@given(
    streams=st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.binary(max_size=3000)),
        max_size=30,
    )
)
def test_sniffer_never_raises_and_stays_bounded(streams: list[tuple[int, bytes]]) -> None:
    sniffer = ControlStreamSniffer()
    for index, data in streams:
        sniffer.feed(4 * index + 3, data)
        held = [b for b in sniffer._buffers.values() if b is not None]
        assert all(len(b) <= MAX_SETTINGS_BYTES for b in held)
        assert len(sniffer._buffers) <= 16
    if sniffer.done:
        assert not sniffer._buffers


@settings(max_examples=examples(300), deadline=None)
@given(pairs=pairs_strategy, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_sniffer_reads_settings_as_sent(pairs: list[tuple[int, int]], cuts: list[int]) -> None:
    payload = b"".join(encode_varint(s) + encode_varint(v) for s, v in pairs)
    data = encode_uni_stream_header(StreamType.CONTROL) + encode_frame(FrameType.SETTINGS, payload)
    sniffer = ControlStreamSniffer()
    for chunk in _chunks(data, cuts):
        sniffer.feed(3, chunk)
    assert sniffer.done and sniffer.error is None
    assert sniffer.pairs == pairs
    results = settings_checks(pairs, None, TransportFacts(1200, True))
    duplicate = next(r for r in results if r.check == "h3.settings.duplicate")
    has_duplicate = len({s for s, _ in pairs}) != len(pairs)
    assert (duplicate.outcome is Outcome.FAIL) == has_duplicate
