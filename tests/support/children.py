"""Child processes of the test run that end with it.

A server started by a fixture is stopped by the fixture's teardown, but when pytest
itself is killed (a timeout of the caller, a CI job cancelled) no teardown runs and the
child would keep its port and its CPU for hours. :func:`die_with_parent` is a
``preexec_fn`` that asks Linux to SIGKILL the child when the process that started it
ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``subprocess.Popen(..., preexec_fn=die_with_parent)``: runs in the child."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
