"""benchmarks.micro.census: the burst's per-echo counts are taken, on both sides."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks.micro import bench_wt_burst, census
from quic.frames import encode_ack_frame, encode_stream_frame_header


def _args(**kw: Any) -> argparse.Namespace:
    base = dict(
        sessions=10, rest=0.3, profile=False, sort="tottime", lines=0, no_burst=False,
        server_process=False, census=True,
    )  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(bench_wt_burst._run(args, Path(directory)))


def _stream_packets(counts: dict[str, float]) -> float:
    return sum(v for k, v in counts.items() if k.startswith("received") and "Stream" in k)


def test_in_process_census_sees_each_request_and_response() -> None:
    result = _run(_args())
    assert result["ok"] == 10
    counts = result["census_both_sides_per_echo"]
    assert _stream_packets(counts) >= 2.0  # the request and the response, at least
    assert counts["datagrams read"] >= 2.0
    assert sum(v for k, v in counts.items() if k.startswith("read wake-ups")) > 0


def test_server_process_census_is_written_and_read_back() -> None:
    result = _run(_args(server_process=True))
    assert result["ok"] == 10
    server = result["census_server_per_echo"]
    client = result["census_client_per_echo"]
    assert _stream_packets(server) >= 1.0  # every request
    assert _stream_packets(client) >= 1.0  # every response
    assert server["datagrams read"] >= 1.0 and client["datagrams read"] >= 1.0


def test_census_counts_only_while_started_and_uninstalls() -> None:
    from quic import conn_dispatch

    original = conn_dispatch.FrameDispatcher.dispatch
    tally = census.Census()
    tally.install()
    assert conn_dispatch.FrameDispatcher.dispatch is not original
    tally.counts["x"] = 3
    tally.start()
    assert not tally.counts  # start clears
    tally.stop()
    tally.uninstall()
    assert conn_dispatch.FrameDispatcher.dispatch is original


def test_describe_names_frames_and_leaves_padding_out() -> None:
    payload = encode_ack_frame([(0, 3)], 0) + bytes(5)  # and PADDING
    assert census.describe(payload) == "Ack"
    payload = encode_ack_frame([(0, 3)], 0) + encode_stream_frame_header(4, 0, 2, True) + b"hi"
    assert census.describe(payload) == "Ack+StreamF"


@pytest.mark.parametrize("count", [0, 1, 32, 33, 200])
def test_read_buckets(count: int) -> None:
    bucket = census._bucket(count)
    assert bucket.startswith("<=") or bucket == ">128"
    if count <= 128:
        assert count <= int(bucket[2:])
