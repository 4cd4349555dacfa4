"""The batched reader knows it has emptied the socket without a failing read
(quic.aio.udp: ``FIONREAD`` instead of a ``recvmsg`` that raises ``EAGAIN``).

Real loopback sockets; the receiving socket counts its reads. A wake-up that finds N
datagrams waiting makes N reads (the old reader made N + 1, the last one failing),
for both readers, with and without the ECN ancillary data, whatever N; the probe is
only a hint: where it fails the reader falls back to the failing read, and a batch
still stops at ``limit``.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

import pytest

from quic.aio import udp
from quic.aio.udp import configure_path_options, read_batch, read_batch_ecn

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="FIONREAD on UDP sockets: Linux semantics"
)


class _CountingSocket(socket.socket):
    """A UDP socket that counts its reads and the reads that found nothing."""

    reads = 0
    empty = 0

    def recvmsg(self, *args: Any) -> Any:
        self.reads += 1
        try:
            return super().recvmsg(*args)
        except BlockingIOError:
            self.empty += 1
            raise

    def recvfrom(self, *args: Any) -> Any:
        self.reads += 1
        try:
            return super().recvfrom(*args)
        except BlockingIOError:
            self.empty += 1
            raise


def _pair() -> tuple[socket.socket, _CountingSocket]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = _CountingSocket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return tx, rx


def _send(tx: socket.socket, rx: socket.socket, count: int) -> None:
    for i in range(count):
        tx.sendto(b"d%04d" % i + bytes(60), rx.getsockname())
    time.sleep(0.02)  # loopback delivers within sendto, normally; leave it time anyway


def _no_error(exc: OSError) -> None:
    pytest.fail(f"receive error: {exc!r}")


def _read(rx: socket.socket, ecn: bool, limit: int = udp.RECEIVE_BATCH) -> list[bytes]:
    got: list[bytes] = []
    if ecn:
        read_batch_ecn(rx, lambda d, _a, _n, _e: got.append(d), _no_error, limit)
    else:
        read_batch(rx, lambda d, _a: got.append(d), _no_error, limit)
    return got


@pytest.mark.parametrize("ecn", [False, True])
@pytest.mark.parametrize("count", [1, 4, 16])
def test_a_wake_up_reads_what_waits_and_nothing_more(ecn: bool, count: int) -> None:
    tx, rx = _pair()
    with tx, rx:
        if ecn:
            assert configure_path_options(rx).ecn
        _send(tx, rx, count)
        got = _read(rx, ecn)
        assert got == [b"d%04d" % i + bytes(60) for i in range(count)]
        assert rx.reads == count  # the old reader: count + 1, the last one failing
        assert rx.empty == 0
        _send(tx, rx, 4 * count)  # the same per datagram at 4x
        assert len(_read(rx, ecn, limit=1000)) == 4 * count
        assert rx.reads == 5 * count and rx.empty == 0


@pytest.mark.parametrize("ecn", [False, True])
def test_an_empty_socket_costs_one_failing_read(ecn: bool) -> None:
    """A wake-up with nothing to read (a spurious one, an error) reads once, as before."""
    tx, rx = _pair()
    with tx, rx:
        assert _read(rx, ecn) == []
        assert rx.reads == rx.empty == 1


@pytest.mark.parametrize("ecn", [False, True])
def test_the_batch_limit_still_holds(ecn: bool) -> None:
    tx, rx = _pair()
    with tx, rx:
        _send(tx, rx, 10)
        assert len(_read(rx, ecn, limit=4)) == 4
        assert rx.reads == 4
        assert len(_read(rx, ecn)) == 6
        assert rx.reads == 10 and rx.empty == 0


@pytest.mark.parametrize("ecn", [False, True])
def test_a_failing_probe_falls_back_to_the_failing_read(
    ecn: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, request: int, room: bytearray) -> int:
        raise OSError("no FIONREAD here")

    monkeypatch.setattr(udp, "_ioctl", refuse)
    tx, rx = _pair()
    with tx, rx:
        _send(tx, rx, 3)
        assert len(_read(rx, ecn)) == 3
        assert rx.reads == 4 and rx.empty == 1


@pytest.mark.parametrize("ecn", [False, True])
def test_no_probe_where_the_platform_has_none(ecn: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp, "_ioctl", None)
    tx, rx = _pair()
    with tx, rx:
        _send(tx, rx, 3)
        assert len(_read(rx, ecn)) == 3
        assert rx.reads == 4 and rx.empty == 1


def test_a_zero_length_datagram_waits_for_the_next_wake_up() -> None:
    """FIONREAD reads 0 for a waiting empty datagram: the batch ends there, the socket
    stays readable, and the next wake-up reads it and what follows."""
    tx, rx = _pair()
    with tx, rx:
        tx.sendto(b"first", rx.getsockname())
        tx.sendto(b"", rx.getsockname())
        tx.sendto(b"last", rx.getsockname())
        time.sleep(0.01)
        assert _read(rx, True) == [b"first"]
        assert _read(rx, True) == [b"", b"last"]
        assert _read(rx, True) == []


def test_the_pumps_ecn_messages_mark_as_send_marked_does() -> None:
    """udp.ecn_messages: the control messages send_marked passes, built once for an
    IPv4 socket (the pump sends with them itself, issue 10); none for IPv6."""
    assert udp.ecn_messages(socket.AF_INET6) is None
    messages = udp.ecn_messages(socket.AF_INET)
    assert messages is not None and len(messages) == 4
    tx, rx = _pair()
    with tx, rx:
        assert configure_path_options(rx).ecn
        tx.sendmsg([b"own"], messages[2], 0, rx.getsockname())  # ECT(0)
        udp.send_marked(tx, b"ref", rx.getsockname(), 2)
        tx.sendmsg([b"not"], messages[0], 0, rx.getsockname())
        time.sleep(0.02)  # loopback delivers within sendmsg, normally
        got: list[tuple[bytes, int]] = []
        read_batch_ecn(rx, lambda d, _a, _n, ecn: got.append((d, ecn)), _no_error)
    assert got == [(b"own", 2), (b"ref", 2), (b"not", 0)]


def test_read_batch_ecn_hands_every_datagram_the_batch_time() -> None:
    """The batch's ``now`` reaches each feed call as its third argument (the pump feeds
    ``QuicEndpoint.receive_datagram`` itself, no call between: issue 10)."""
    tx, rx = _pair()
    with tx, rx:
        assert configure_path_options(rx).ecn
        for payload in (b"one", b"two", b"three"):
            udp.send_marked(tx, payload, rx.getsockname(), 2)
        time.sleep(0.02)
        got: list[tuple[bytes, float, int]] = []
        count = read_batch_ecn(
            rx, lambda d, _a, now, ecn: got.append((d, now, ecn)), _no_error, now=12.5
        )
    assert count == 3
    assert got == [(b"one", 12.5, 2), (b"two", 12.5, 2), (b"three", 12.5, 2)]
