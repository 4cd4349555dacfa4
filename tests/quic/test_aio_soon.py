"""quic.aio.udp.soon_caller: what the pump schedules its flush with (issue 10: one
handle, made once, appended to asyncio's ready queue instead of a ``call_soon`` per
round trip) runs the callback as ``loop.call_soon`` would: at the loop's next
iteration, once per call, never before; and falls back to ``call_soon`` wherever the
ready queue is not asyncio's plain one."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from quic.aio.udp import soon_caller


def _run_once(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_the_callback_runs_at_the_next_iteration_once_per_call() -> None:
    loop = asyncio.new_event_loop()
    try:
        calls: list[int] = []
        soon = soon_caller(loop, lambda: calls.append(len(calls)))
        soon()
        soon()
        assert calls == []  # nothing runs before the loop does
        _run_once(loop)
        assert calls == [0, 1]
        _run_once(loop)
        assert calls == [0, 1]  # queued twice, ran twice: no leftover
    finally:
        loop.close()


def test_asyncio_loops_get_one_handle_reused() -> None:
    loop = asyncio.new_event_loop()
    try:
        soon = soon_caller(loop, lambda: None)
        soon()
        soon()
        ready = loop._ready  # type: ignore[attr-defined]
        assert len(ready) == 2 and ready[0] is ready[1]
        _run_once(loop)
    finally:
        loop.close()


def test_debug_mode_and_other_loops_get_call_soon() -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.set_debug(True)  # call_soon's checks and source tracebacks stay
        calls: list[str] = []
        soon = soon_caller(loop, lambda: calls.append("ran"))
        soon()
        soon()
        ready = loop._ready  # type: ignore[attr-defined]
        assert len(ready) == 2 and ready[0] is not ready[1]
        _run_once(loop)
        assert calls == ["ran", "ran"]
    finally:
        loop.close()

    class OtherLoop:  # no ready deque (uvloop and the like): its call_soon is used
        def __init__(self) -> None:
            self.scheduled: list[Callable[[], Any]] = []

        def call_soon(self, callback: Callable[[], Any]) -> None:
            self.scheduled.append(callback)

    other = OtherLoop()
    callback: Callable[[], None] = lambda: None  # noqa: E731
    soon_caller(other, callback)()  # type: ignore[arg-type]
    assert other.scheduled == [callback]


def test_the_callback_runs_in_a_context_of_its_own() -> None:
    """The handle is made once, so no caller's context is copied into it: the flush
    runs in an empty context (it reads no context variable)."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    loop = asyncio.new_event_loop()
    try:
        seen: list[str] = []
        soon = soon_caller(loop, lambda: seen.append(var.get()))

        async def caller() -> None:
            var.set("the caller's")
            soon()
            await asyncio.sleep(0)

        loop.run_until_complete(caller())
        assert seen == ["unset"]
    finally:
        loop.close()
