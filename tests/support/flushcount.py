"""Counting a pump's scheduled flushes (``QuicEndpointProtocol._flush_soon``): how many
loop iterations a workload spent on a flush, without timing anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["count_flushes"]


def count_flushes(pump: Any) -> tuple[list[int], Callable[[], object]]:
    """From now on, each flush ``pump`` schedules adds one to the returned counter
    (``counter[0]``); the second item is the pump's own scheduler, to put back."""
    counter = [0]
    schedule: Callable[[], object] = pump._flush_soon

    def counting() -> object:
        counter[0] += 1
        return schedule()

    pump._flush_soon = counting
    return counter, schedule
