"""Attach a classic-BPF program to a SO_REUSEPORT UDP socket group (Linux).

Theory of operation
-------------------
The driver half of :mod:`quic.reuseport_bpf` (which builds and checks the program,
pure): :func:`attach_reuseport_cbpf` hands the packed ``struct sock_filter`` array to
``setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, struct sock_fprog)`` (socket(7):
the same argument type as SO_ATTACH_FILTER). One socket of the group carries the
program for the whole group. Errors are the kernel's ``OSError`` (e.g. ENOPROTOOPT on
a kernel without the option), left to the caller.
"""

from __future__ import annotations

import ctypes
import socket

from quic.reuseport_bpf import Insn, pack

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "attach_reuseport_cbpf"]

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)  # asm-generic


class _SockFprog(ctypes.Structure):
    """``struct sock_fprog { unsigned short len; struct sock_filter *filter; }``."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def attach_reuseport_cbpf(sock: socket.socket, program: list[Insn]) -> None:
    """Attach ``program`` to the reuseport group of ``sock`` (raises OSError)."""
    code = pack(program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(program), ctypes.addressof(buffer))
    # the kernel copies the filter during the call; ``buffer`` outlives it
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))
