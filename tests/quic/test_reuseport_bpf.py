"""The SO_REUSEPORT steering program (quic/reuseport_bpf.py, quic/aio/reuseport.py).

The program is run by the pure interpreter against a table of header bytes → worker,
packs to ``struct sock_filter`` and back, and — on Linux — attached to two real
SO_REUSEPORT UDP sockets on 127.0.0.1 it sends each short-header datagram to the
socket its DCID names (skipped only when the kernel refuses the setsockopt).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys

import pytest

from quic.quiclb import WorkerCids
from quic.reuseport_bpf import (
    FALLBACK,
    JGE_K,
    LD_LEN,
    LDB_ABS,
    RET_A,
    RET_K,
    Insn,
    build_worker_program,
    pack,
    run,
    unpack,
)

K = 1  # worker byte at DCID offset 1 (a QUIC-LB CID: first octet, then server ID)
PROGRAM = build_worker_program(4, K)


def _short(dcid: bytes, rest: bytes = b"\x00" * 20) -> bytes:
    return b"\x40" + dcid + rest  # RFC 9000 §17.3: 0b01xxxxxx, then the DCID


@pytest.mark.parametrize(
    ("packet", "verdict"),
    [
        (_short(b"\x08\x00" + bytes(7)), 0),
        (_short(b"\x08\x01" + bytes(7)), 1),
        (_short(b"\x08\x03" + bytes(7)), 3),
        (_short(b"\x08\x04" + bytes(7)), FALLBACK),  # not one of 4 workers
        (_short(b"\x08\xff" + bytes(7)), FALLBACK),
        (b"\x5f\x00\x02", 2),  # shortest packet that still holds the worker byte
        (b"\x40\x00", FALLBACK),  # too short for the worker byte
        (b"", FALLBACK),
        (b"\xc0\x00\x00\x00\x01\x08\x00\x01" + bytes(30), FALLBACK),  # long header
        (b"\x80" + bytes(30), FALLBACK),
        (b"\xff\x01\x02", FALLBACK),
    ],
)
def test_program_verdicts(packet: bytes, verdict: int) -> None:
    assert run(PROGRAM, packet) == verdict


def test_every_offset_and_worker_count() -> None:
    for workers in (1, 2, 7, 256):
        for k in range(20):
            program = build_worker_program(workers, k)
            for w in {0, workers - 1, workers // 2}:
                dcid = bytearray(20)
                dcid[k] = w
                assert run(program, _short(bytes(dcid))) == w
                assert run(program, b"\xc1" + bytes(dcid)) == FALLBACK
            if workers < 256:
                dcid = bytearray(20)
                dcid[k] = workers
                assert run(program, _short(bytes(dcid))) == FALLBACK


def test_build_rejects_bad_parameters() -> None:
    for workers, k in ((0, 1), (257, 1), (2, -1), (2, 20)):
        with pytest.raises(ValueError):
            build_worker_program(workers, k)


def test_pack_layout_and_round_trip() -> None:
    data = pack(PROGRAM)
    assert len(data) == 8 * len(PROGRAM)  # sizeof(struct sock_filter) == 8
    assert unpack(data) == PROGRAM
    first = int.from_bytes(data[0:2], sys.byteorder)
    assert first == LD_LEN == 0x80
    assert int.from_bytes(data[-4:], sys.byteorder) == FALLBACK
    with pytest.raises(ValueError):
        pack([])
    with pytest.raises(ValueError):
        unpack(data[:-1])


def test_interpreter_semantics() -> None:
    # out-of-bounds load ends with 0 (classic BPF), unknown opcodes are refused
    assert run([Insn(LDB_ABS, k=5), Insn(RET_A)], b"abc") == 0
    assert run([Insn(LD_LEN), Insn(RET_A)], b"abc") == 3
    assert run([Insn(RET_K, k=7)], b"") == 7
    assert run([Insn(LD_LEN), Insn(JGE_K, 1, 0, 2), Insn(RET_K, k=1), Insn(RET_K, k=9)], b"ab") == 9
    with pytest.raises(ValueError):
        run([Insn(0x04)], b"")  # BPF_ALU: not emitted, not interpreted
    with pytest.raises(ValueError):
        run([Insn(LD_LEN)], b"")  # no return


def test_steps_bounded_by_program_length() -> None:
    # every jump is forward: a program of n instructions decides in <= n steps,
    # whatever the datagram size (N vs 4N bytes: same work)
    counted: list[int] = []

    class Counting(list[Insn]):
        def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
            counted.append(i)
            return super().__getitem__(i)

    for size in (1000, 4000):
        counted.clear()
        run(Counting(PROGRAM), _short(b"\x08\x02" + bytes(size)))
        assert len(counted) <= len(PROGRAM)
    assert len(counted) == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT CBPF is Linux")
def test_kernel_steers_datagrams_by_dcid() -> None:
    from quic.aio.reuseport import attach_reuseport_cbpf

    schemes = [WorkerCids(2, w) for w in range(2)]
    program = build_worker_program(2, schemes[0].worker_offset)
    socks: list[socket.socket] = []
    try:
        port = 0
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
            s.setblocking(False)
        try:
            attach_reuseport_cbpf(socks[0], program)
        except OSError as exc:
            pytest.skip(f"SO_ATTACH_REUSEPORT_CBPF refused: {errno.errorcode.get(exc.errno or 0)}")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(sender)
        sent: list[tuple[int, bytes]] = []
        for i in range(40):
            w = i % 2
            datagram = _short(schemes[w].new_cid(), os.urandom(24))
            sender.sendto(datagram, ("127.0.0.1", port))
            sent.append((w, datagram))
        got: list[set[bytes]] = [set(), set()]
        while len(got[0]) + len(got[1]) < len(sent):
            ready, _, _ = select.select(socks[:2], [], [], 2.0)
            if not ready:
                break
            for s in ready:
                got[socks.index(s)].add(s.recv(2048))
        for w, datagram in sent:
            assert datagram in got[w], f"worker {w} datagram not at socket {w}"
        assert not got[0] & got[1]
    finally:
        for s in socks:
            s.close()
