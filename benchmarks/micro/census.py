"""What a side of a burst did, counted: a measuring tool for ``bench_wt_burst``.

Counts that depend little on the machine's load tell where the work of a burst goes
(issue 10: the 1,000-session burst) better than CPU time does: how many 1-RTT packets
arrived and what they carried (``Ack``, ``Ack+StreamF``, ``ImmediateAck`` …), how
often the loss-detection timer fired and how often that was a PTO, how many ACK frames
were written because their deadline had passed (ahead of a reply, not with it), and how
many datagrams each read wake-up of the pump fed (with GRO one read holds many) and the
longest time one took to feed them to the endpoint.

:class:`Census` wraps a few methods of the stack (``FrameDispatcher.dispatch``,
``LossRecovery.on_loss_detection_timeout``, ``AckState.write``, the pump's batched
reader ``read_batch_ecn``) while it is installed; it counts only between
:meth:`Census.start` and :meth:`Census.stop`. It is a benchmark tool, never imported by
the library. In a server process of its own (``benchmarks.wt_ours server``) it is
installed when ``BENCH_CENSUS`` names a file: SIGUSR1 starts counting, SIGUSR2 stops and
writes the counts there as JSON (:func:`install_from_environment`). ``BENCH_PROFILE``
does the same with cProfile instead of the census, its stats dumped to the file it
names (:func:`install_profiler_from_environment`; ``bench_wt_burst --server-process
--profile``).
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import quic.aio.pump as pump
import quic.conn_acks as conn_acks
import quic.conn_dispatch as conn_dispatch
import quic.recovery as recovery
from quic.aio.udp import RECEIVE_BATCH
from quic.frames_decode import decode_frame
from quic.frames_defs import PaddingFrame, StreamFrame

__all__ = ["Census", "install_from_environment", "install_profiler_from_environment"]

_READ_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _bucket(count: int) -> str:
    for edge in _READ_BUCKETS:
        if count <= edge:
            return f"<={edge}"
    return f">{_READ_BUCKETS[-1]}"


def describe(payload: bytes) -> str:
    """A packet's frames as ``Ack+StreamF`` (PADDING left out; ``StreamF``: with FIN,
    ``Stream0``: without data)."""
    names = []
    pos = 0
    while pos < len(payload):
        frame, pos = decode_frame(payload, pos)
        if isinstance(frame, PaddingFrame):
            continue
        name = type(frame).__name__.removesuffix("Frame")
        if isinstance(frame, StreamFrame):
            name += ("F" if frame.fin else "") + ("" if frame.data else "0")
        names.append(name)
    return "+".join(names)


class Census:
    """Counts of one process's connections, between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.longest_read_ms = 0.0
        self.on = False
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        """Wrap the stack's methods (counting only while started)."""
        census = self
        counts = self.counts
        dispatch = conn_dispatch.FrameDispatcher.dispatch

        def counted_dispatch(
            self: Any, payload: bytes, index: int, packet_type: Any, dcid: bytes, now: float
        ) -> bool:
            if census.on and index == 2:
                counts["received " + describe(payload)] += 1
            return dispatch(self, payload, index, packet_type, dcid, now)

        timeout = recovery.LossRecovery.on_loss_detection_timeout

        def counted_timeout(self: Any, now: float) -> Any:
            before = self.pto_count
            result = timeout(self, now)
            if census.on:
                counts["PTO" if self.pto_count > before else "loss timer"] += 1
            return result

        write = conn_acks.AckState.write

        def counted_write(self: Any, asm: Any, index: int, now: float, *a: Any, **k: Any) -> Any:
            if census.on and index == 2:
                deadline = self.trackers[2].deadline
                late = deadline is not None and deadline <= now
                counts["ACK written at its deadline" if late else "ACK written early"] += 1
            return write(self, asm, index, now, *a, **k)

        read_batch_ecn = vars(pump)["read_batch_ecn"]  # the name the pump calls

        def counted_read_batch_ecn(
            sock: Any,
            feed: Any,
            on_error: Any,
            limit: int = RECEIVE_BATCH,
            feed_many: Any = None,
            now: float = 0.0,
        ) -> int:
            # the pump's batched reader, once per read wake-up: datagrams fed (each of a
            # GRO read) and the time the wake-up took to feed them to the endpoint
            if not census.on:
                return read_batch_ecn(sock, feed, on_error, limit, feed_many, now)
            fed = [0]

            def one(data: bytes, addr: Any, at: float, ecn: int) -> None:
                fed[0] += 1
                feed(data, addr, at, ecn)

            def many(datagrams: list[bytes], addr: Any, at: float, ecn: int) -> None:
                fed[0] += len(datagrams)
                feed_many(datagrams, addr, at, ecn)

            began = time.perf_counter()
            reads = read_batch_ecn(
                sock, one, on_error, limit, None if feed_many is None else many, now
            )
            took = (time.perf_counter() - began) * 1000
            counts[f"read wake-ups, datagrams {_bucket(fed[0])}"] += 1
            counts["datagrams read"] += fed[0]
            census.longest_read_ms = max(census.longest_read_ms, took)
            return reads

        for owner, name, wrapper in (
            (conn_dispatch.FrameDispatcher, "dispatch", counted_dispatch),
            (recovery.LossRecovery, "on_loss_detection_timeout", counted_timeout),
            (conn_acks.AckState, "write", counted_write),
            (pump, "read_batch_ecn", counted_read_batch_ecn),
        ):
            self._saved.append((owner, name, vars(owner)[name]))
            setattr(owner, name, wrapper)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def start(self) -> None:
        self.counts.clear()
        self.longest_read_ms = 0.0
        self.on = True

    def stop(self) -> None:
        self.on = False

    def report(self, per: int) -> dict[str, float]:
        """The counts divided by ``per`` (echoes), and the longest read wake-up."""
        result = {k: round(v / per, 3) for k, v in sorted(self.counts.items())}
        result["longest read wake-up feed (ms)"] = round(self.longest_read_ms, 1)
        return result


def install_from_environment() -> None:
    """In a server process: a :class:`Census` driven by signals when ``BENCH_CENSUS``
    names the file to write (SIGUSR1: collect the garbage and start; SIGUSR2: stop and
    write the raw counts)."""
    target = os.environ.get("BENCH_CENSUS")
    if not target:
        return
    census = Census()
    census.install()

    def finish() -> None:
        census.stop()
        raw = dict(census.counts)
        raw["longest read wake-up feed (ms)"] = census.longest_read_ms  # type: ignore[assignment]
        Path(target).write_text(json.dumps(raw))

    def start() -> None:
        gc.collect()  # as the harness's stats request does before its burst
        census.start()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, finish)


def install_profiler_from_environment() -> None:
    """In a server process: cProfile driven by signals when ``BENCH_PROFILE`` names the
    file to dump its stats to (SIGUSR1: collect the garbage and start; SIGUSR2: stop
    and dump)."""
    target = os.environ.get("BENCH_PROFILE")
    if not target:
        return
    profiler = cProfile.Profile()

    def start() -> None:
        gc.collect()  # as the harness's stats request does before its burst
        profiler.enable()

    def finish() -> None:
        profiler.disable()
        profiler.dump_stats(target)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, finish)
