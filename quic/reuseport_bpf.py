"""A classic-BPF program that steers QUIC datagrams to the worker their DCID names.

Theory of operation
-------------------
With ``--workers N`` every worker binds its own UDP socket to the same address with
SO_REUSEPORT; the kernel picks one socket of the group per datagram. By default it
hashes the 4-tuple, which breaks a connection whose client migrates or is rebound by a
NAT. A program attached with SO_ATTACH_REUSEPORT_CBPF (socket(7), Linux >= 4.5 for
UDP) chooses instead: its return value is the index of the socket (the order in
which the sockets joined the group), and "if the BPF program returns an invalid index,
socket selection will fall back to the plain SO_REUSEPORT mechanism" (socket(7)) — so
:data:`FALLBACK` (0xFFFFFFFF, never a valid index) means "hash as usual".

What the program sees: for a UDP reuseport group the kernel pulls the UDP header
before it runs the program (net/core/sock_reuseport.c runs it with ``hdr_len`` =
``sizeof(struct udphdr)`` pulled), so offset 0 is the first byte of the UDP payload,
i.e. the first byte of the QUIC packet.

:func:`build_worker_program` emits, for a worker byte at offset ``k`` of the DCID
(the :attr:`quic.quiclb.WorkerCids.worker_offset`)::

    0: ld  len                      ; datagram length
    1: jge #2+k        ? 2 : 7      ; too short for the worker byte: fall back
    2: ldb [0]                      ; first byte
    3: jset #0x80      ? 7 : 4      ; long header (RFC 9000 §17.2): fall back
    4: ldb [1+k]                    ; short header: DCID starts at byte 1 (§17.3)
    5: jge #workers    ? 7 : 6      ; not a worker index: fall back
    6: ret a
    7: ret #0xffffffff

Long-header packets (Initial, 0-RTT, Handshake) fall back to the hash: their DCID is
client-chosen for the first flight, and a 4-tuple hash keeps a handshake on one worker
as long as the client does not migrate during it (RFC 9000 §9: it may not).
A short-header packet whose DCID names no worker also falls back: the load-balancers
draft ("Unroutable Connection IDs") lets a load balancer drop it, but a reuseport
program can only choose a socket, so the worker the hash picks deals with it (drop or
stateless reset, RFC 9000 §10.3).

:func:`run` is a small interpreter for exactly the opcodes emitted (classic BPF
semantics: a load beyond the packet ends the program with 0) so that tests can run the
program without a kernel; :func:`pack` gives the ``struct sock_filter`` array that
``quic.aio.reuseport.attach_reuseport_cbpf`` hands to setsockopt. Pure: no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FALLBACK",
    "Insn",
    "build_worker_program",
    "pack",
    "run",
    "unpack",
]

# linux/filter.h / linux/bpf_common.h classic BPF opcode parts
BPF_LD = 0x00
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_W = 0x00
BPF_B = 0x10
BPF_ABS = 0x20
BPF_LEN = 0x80
BPF_K = 0x00
BPF_A = 0x10
BPF_JGE = 0x30
BPF_JSET = 0x40

LD_LEN = BPF_LD | BPF_W | BPF_LEN  # A = packet length
LDB_ABS = BPF_LD | BPF_B | BPF_ABS  # A = packet[k]
JGE_K = BPF_JMP | BPF_JGE | BPF_K  # pc += (A >= k) ? jt : jf
JSET_K = BPF_JMP | BPF_JSET | BPF_K  # pc += (A & k) ? jt : jf
RET_A = BPF_RET | BPF_A
RET_K = BPF_RET | BPF_K

#: socket(7): an index >= the group size falls back to the plain reuseport hash
FALLBACK = 0xFFFFFFFF
_LONG_HEADER_BIT = 0x80  # RFC 9000 §17.2: Header Form bit
_MAX_INSNS = 4096  # BPF_MAXINSNS
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt, jf; u32 k}


@dataclass(frozen=True, slots=True)
class Insn:
    """One ``struct sock_filter``: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


def build_worker_program(workers: int, worker_offset: int) -> list[Insn]:
    """The program that returns the worker index carried at ``worker_offset`` of the
    DCID of a short-header packet, and :data:`FALLBACK` otherwise (see module doc)."""
    if not 1 <= workers <= 256:
        raise ValueError("workers must be 1..256 (one byte names the worker)")
    if not 0 <= worker_offset < 20:  # RFC 9000 §17.2: DCID at most 20 bytes
        raise ValueError("worker offset must lie inside a 20-byte connection ID")
    at = 1 + worker_offset  # short header: flags byte, then the DCID (§17.3)
    return [
        Insn(LD_LEN),
        Insn(JGE_K, 0, 5, at + 1),
        Insn(LDB_ABS, k=0),
        Insn(JSET_K, 3, 0, _LONG_HEADER_BIT),
        Insn(LDB_ABS, k=at),
        Insn(JGE_K, 1, 0, workers),
        Insn(RET_A),
        Insn(RET_K, k=FALLBACK),
    ]


def pack(program: list[Insn]) -> bytes:
    """The native-endian ``struct sock_filter[]`` of ``program`` (for sock_fprog)."""
    if not 0 < len(program) <= _MAX_INSNS:
        raise ValueError(f"a classic BPF program has 1..{_MAX_INSNS} instructions")
    return b"".join(_SOCK_FILTER.pack(i.code, i.jt, i.jf, i.k) for i in program)


def unpack(data: bytes) -> list[Insn]:
    """The inverse of :func:`pack`."""
    if not data or len(data) % _SOCK_FILTER.size:
        raise ValueError("not a whole number of struct sock_filter")
    return [Insn(*fields) for fields in _SOCK_FILTER.iter_unpack(data)]


def run(program: list[Insn], packet: bytes) -> int:
    """Run ``program`` on ``packet`` (the UDP payload) as the kernel would; only the
    opcodes :func:`build_worker_program` emits are known (others: ValueError).
    Returns the 32-bit return value. Every jump is forward, so this ends in at most
    ``len(program)`` steps."""
    acc = 0
    pc = 0
    while pc < len(program):
        insn = program[pc]
        pc += 1
        code = insn.code
        if code == LD_LEN:
            acc = len(packet)
        elif code == LDB_ABS:
            if insn.k >= len(packet):
                return 0  # classic BPF: an out-of-bounds load ends the program with 0
            acc = packet[insn.k]
        elif code == JGE_K:
            pc += insn.jt if acc >= insn.k else insn.jf
        elif code == JSET_K:
            pc += insn.jt if acc & insn.k else insn.jf
        elif code == RET_A:
            return acc & 0xFFFFFFFF
        elif code == RET_K:
            return insn.k & 0xFFFFFFFF
        else:
            raise ValueError(f"opcode {code:#06x} not supported by this interpreter")
    raise ValueError("program ran off its end without a return")
