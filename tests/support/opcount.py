"""Count work without a clock: Python line events executed by a call.

Scale tests compare the work of N inputs with 4N inputs; a count of executed lines is
deterministic (no timing noise) and grows with every Python-level loop iteration.
Work done inside C (memmove, memcpy) is not counted; tests that need it bound the bytes
involved instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

__all__ = ["count_lines"]

T = TypeVar("T")


def count_lines(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[int, T]:
    """Run ``fn(*args, **kwargs)``; return (Python lines executed inside it, result)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.settrace(previous)
    return count, result
