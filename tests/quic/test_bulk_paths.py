"""The bulk data paths do per-packet work only where a packet needs it (issue 10, raw
QUIC bulk throughput): counted on an in-memory upload of N and 4N bytes.

Each check counts calls of something that used to run once per packet and now runs
once per stream, once per write chunk, or not at all, for N and 4N bytes: a
regression to per-packet work (a count growing with the packets, ~4x) fails.
(One short-loop call per build call instead of one per datagram is checked in
tests/quic/test_sendpath.py.)"""

from __future__ import annotations

import os
from typing import Any

import pytest

from quic import frames_defs
from quic.stream_manager import StreamManager
from quic.stream_send import SendStream
from tests.support.quicpair import make_pair

N = 150_000  # ~110 full packets at 1,200-1,452 bytes


def _upload(size: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Send ``size`` bytes client -> server; count the watched calls."""
    counts = {"stream_frames": 0, "stream_for_frame": 0, "release": 0}
    # StreamFrame objects built while the transfer runs (the receive path decodes STREAM
    # frames into a tuple: none are built for data; before, one per packet)
    real_init = frames_defs.StreamFrame.__init__

    def counted_init(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["stream_frames"] += 1
        real_init(self, *args, **kwargs)

    def wrap(cls: type, name: str, key: str) -> None:
        real = getattr(cls, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)

    pair = make_pair(seed=3)
    pair.handshake()
    sid = pair.client.create_stream()
    pair.run(lambda: pair.client.handshake.confirmed, max_time=5)
    monkeypatch.setattr(frames_defs.StreamFrame, "__init__", counted_init)
    wrap(StreamManager, "stream_for_frame", "stream_for_frame")
    wrap(SendStream, "_release_to", "release")
    payload = os.urandom(size)
    for start in range(0, size, 65536):  # the application's 64 KiB writes
        end = min(size, start + 65536)
        pair.client.send_stream_data(sid, payload[start:end], end_stream=end == size)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    monkeypatch.undo()
    assert bytes(pair.data["server"][sid]) == payload
    counts["packets"] = pair.client.recovery.spaces[2].largest_sent
    return counts


def test_bulk_paths_do_not_work_per_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    small = _upload(N, monkeypatch)
    large = _upload(4 * N, monkeypatch)
    assert large["packets"] >= 3.5 * small["packets"]  # the work scaled with the data
    # receive: no frame object per STREAM packet; the stream's checks only when it opens
    assert small["stream_frames"] == large["stream_frames"] == 0
    assert large["stream_for_frame"] <= 2 and small["stream_for_frame"] <= 2
    # send: the write buffer is released once per 64 KiB chunk, not once per ACKed frame
    for run, size in ((small, N), (large, 4 * N)):
        assert run["release"] <= size // 65536 + 2
