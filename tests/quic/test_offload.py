"""UDP segmentation offload (quic.aio.offload): GSO runs on send, GRO splitting on
receive, and the fallbacks; real sockets on 127.0.0.1 (Linux, where the kernel has
UDP_SEGMENT and UDP_GRO: any kernel since 5.0)."""

from __future__ import annotations

import errno
import socket
import sys
import time
from typing import Any

import pytest

from quic.aio import offload
from quic.aio.offload import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    enable_gro,
    gso_available,
    send_segmented,
    split_coalesced,
)
from quic.aio.udp import configure_path_options, read_batch_ecn

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="UDP_SEGMENT/UDP_GRO are Linux options"
)


def _pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    return tx, rx


def _receive_all(rx: socket.socket, n: int) -> list[bytes]:
    rx.settimeout(2.0)
    got: list[bytes] = []
    while len(got) < n:
        got.append(rx.recv(65536))
    return got


def _datagrams(sizes: list[int]) -> list[bytes]:
    return [bytes([i % 256]) * size for i, size in enumerate(sizes)]


class _Counting:
    """A socket stand-in that records each sendmsg/sendto and forwards it."""

    def __init__(self, sock: socket.socket, refuse_gso: bool = False) -> None:
        self._sock = sock
        self.family = sock.family
        self.calls: list[int] = []  # datagrams per system call
        self._refuse = refuse_gso

    def sendmsg(self, buffers: list[bytes], ancillary: list[Any], flags: int, addr: Any) -> int:
        if self._refuse and len(buffers) > 1:
            raise OSError(errno.EIO, "no segmentation here")
        self.calls.append(len(buffers))
        return self._sock.sendmsg(buffers, ancillary, flags, addr)

    def sendto(self, data: bytes, addr: Any) -> int:
        self.calls.append(1)
        return self._sock.sendto(data, addr)


def test_runs_of_equal_datagrams_go_in_one_system_call_each_and_arrive_intact() -> None:
    tx, rx = _pair()
    assert gso_available(tx)
    dest = rx.getsockname()
    sizes = [1452] * 40 + [700] + [1452] * 3 + [100, 100] + [1452] * 100
    out = [(d, dest, 0) for d in _datagrams(sizes)]
    counting = _Counting(tx)
    sent, gso = send_segmented(counting, out)  # type: ignore[arg-type]
    assert (sent, gso) == (len(out), True)
    # 40 + the shorter 700 end a run; 3 + a shorter 100; 100 alone; then 100 full ones
    # in runs of at most GSO_MAX_BYTES (44 x 1452 bytes)
    per_run = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // 1452)
    assert counting.calls == [41, 4, 1, per_run, per_run, 100 - 2 * per_run]
    assert _receive_all(rx, len(out)) == [d for d, _, _ in out]  # order and bytes kept


def test_other_destinations_and_codepoints_split_the_runs() -> None:
    tx, rx = _pair()
    rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx2.bind(("127.0.0.1", 0))
    configure_path_options(tx)
    a, b = rx.getsockname(), rx2.getsockname()
    data = _datagrams([1200] * 6)
    out = [(data[0], a, 2), (data[1], a, 2), (data[2], b, 2), (data[3], a, 2)]
    out += [(data[4], a, 0), (data[5], a, 0)]
    counting = _Counting(tx)
    assert send_segmented(counting, out) == (6, True)  # type: ignore[arg-type]
    assert counting.calls == [2, 1, 1, 2]
    assert _receive_all(rx, 5) == [data[0], data[1], data[3], data[4], data[5]]
    assert _receive_all(rx2, 1) == [data[2]]
    rx2.close()


def test_a_socket_that_refuses_segmentation_falls_back_to_single_datagrams() -> None:
    tx, rx = _pair()
    dest = rx.getsockname()
    out = [(d, dest, 0) for d in _datagrams([1000] * 10)]
    counting = _Counting(tx, refuse_gso=True)
    sent, gso = send_segmented(counting, out)  # type: ignore[arg-type]
    assert (sent, gso) == (10, False)  # GSO off from now on, nothing lost
    assert counting.calls == [1] * 10
    assert _receive_all(rx, 10) == [d for d, _, _ in out]


def test_a_full_socket_buffer_stops_the_batch_for_the_caller_to_queue() -> None:
    class Full(_Counting):
        def sendmsg(self, *args: Any) -> int:
            raise BlockingIOError(errno.EAGAIN, "full")

    tx, rx = _pair()
    out = [(d, rx.getsockname(), 0) for d in _datagrams([1000] * 5)]
    assert send_segmented(Full(tx), out) == (0, True)  # type: ignore[arg-type]


def test_gro_glued_datagrams_are_cut_apart_by_the_reader() -> None:
    tx, rx = _pair()
    rx.setblocking(False)
    assert configure_path_options(rx) is not None
    assert enable_gro(rx)
    sizes = [1452] * 30 + [500]
    out = [(d, rx.getsockname(), 0) for d in _datagrams(sizes)]
    assert send_segmented(tx, out)[0] == len(out)  # GSO sends are what GRO glues
    time.sleep(0.05)
    got: list[bytes] = []
    reads = 0
    while len(got) < len(out) and reads < 100:
        reads += read_batch_ecn(rx, lambda d, _a, _n, _e: got.append(d), lambda _e: None)
    assert got == [d for d, _, _ in out]
    assert reads < len(out)  # fewer reads than datagrams: GRO glued some together


def test_gro_glued_datagrams_go_to_feed_many_in_one_call() -> None:
    """With ``feed_many`` the datagrams of one glued read arrive in one call (the pump
    hands them to QuicEndpoint.receive_datagrams), in order; a lone one goes to feed."""
    tx, rx = _pair()
    rx.setblocking(False)
    assert configure_path_options(rx) is not None
    assert enable_gro(rx)
    sizes = [1452] * 30 + [500]
    out = [(d, rx.getsockname(), 0) for d in _datagrams(sizes)]
    assert send_segmented(tx, out)[0] == len(out)
    time.sleep(0.05)
    got: list[bytes] = []
    batches: list[int] = []

    def many(datagrams: list[bytes], _addr: object, _now: float, _ecn: int) -> None:
        batches.append(len(datagrams))
        got.extend(datagrams)

    reads = 0
    while len(got) < len(out) and reads < 100:
        reads += read_batch_ecn(
            rx, lambda d, _a, _n, _e: got.append(d), lambda _e: None, feed_many=many
        )
    assert got == [d for d, _, _ in out]
    assert batches and all(n > 1 for n in batches)  # glued reads only
    assert sum(batches) + (reads - len(batches)) == len(out)


def test_a_true_result_of_feed_many_ends_the_batch_and_leaves_the_rest() -> None:
    """``feed_many`` returning true (the pump's mark: quic.aio.glued) ends the read
    there; what was not read waits in the socket for the next batch, in order."""
    tx, rx = _pair()
    rx.setblocking(False)
    assert configure_path_options(rx) is not None
    assert enable_gro(rx)
    out = [(d, rx.getsockname(), 0) for d in _datagrams([1000] * 20)]
    assert send_segmented(tx, out[:10])[0] == 10  # two GSO sends: two glued reads
    assert send_segmented(tx, out[10:])[0] == 10
    time.sleep(0.05)
    got: list[bytes] = []

    def many(datagrams: list[bytes], _addr: object, _now: float, _ecn: int) -> bool:
        got.extend(datagrams)
        return True

    def feed(data: bytes, _addr: object, _now: float, _ecn: int) -> None:
        got.append(data)

    assert read_batch_ecn(rx, feed, lambda _e: None, feed_many=many) == 1
    assert got == [d for d, _, _ in out[:10]]
    assert read_batch_ecn(rx, feed, lambda _e: None, feed_many=many) == 1
    assert got == [d for d, _, _ in out]


def test_split_coalesced() -> None:
    assert split_coalesced(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert split_coalesced(b"abc", 3) == [b"abc"]
    assert split_coalesced(b"abc", 0) == [b"abc"]


def test_offload_can_be_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    tx, _ = _pair()
    monkeypatch.setenv("QUIC_UDP_OFFLOAD", "0")
    assert not gso_available(tx) and not enable_gro(tx)
    monkeypatch.delenv("QUIC_UDP_OFFLOAD")
    assert offload.gso_available(tx)
