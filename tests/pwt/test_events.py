"""EventEmitter: on/off/once, decorators, async handlers, failures, wait_for."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pywebtransport import Event, EventEmitter, EventType

pytestmark = pytest.mark.timeout(30)


def test_event_type_values_are_the_plain_names() -> None:
    assert str(EventType.STREAM) == "stream" and EventType("datagram") is EventType.DATAGRAM
    assert {e.value for e in EventType} >= {"stream", "datagram", "closed", "draining"}


async def test_on_emit_in_registration_order_with_source() -> None:
    source = object()
    emitter = EventEmitter(source)
    calls: list[tuple[str, object]] = []
    emitter.on("datagram", lambda e: calls.append(("first", e.data)))
    emitter.on(EventType.DATAGRAM, lambda e: calls.append(("second", e.data)))
    event = emitter.emit(EventType.DATAGRAM, b"payload")
    assert calls == [("first", b"payload"), ("second", b"payload")]
    assert event == Event("datagram", b"payload", source)
    assert event.source is source
    assert emitter.listener_count("datagram") == 2
    assert emitter.emit("nobody-listens").type == "nobody-listens"


async def test_off_removes_one_or_all() -> None:
    emitter = EventEmitter()
    calls: list[str] = []

    def a(e: Event) -> None:
        calls.append("a")

    def b(e: Event) -> None:
        calls.append("b")

    emitter.on("x", a)
    emitter.on("x", b)
    emitter.off("x", a)
    emitter.emit("x")
    assert calls == ["b"]
    emitter.off("x")
    emitter.emit("x")
    assert calls == ["b"] and emitter.listeners("x") == []
    emitter.off("never-registered", a)  # no error


async def test_once_runs_a_single_time() -> None:
    emitter = EventEmitter()
    calls: list[int] = []
    emitter.once("closed", lambda e: calls.append(e.data))
    emitter.on("closed", lambda e: calls.append(-e.data))
    emitter.emit("closed", 1)
    emitter.emit("closed", 2)
    assert calls == [1, -1, -2]


async def test_decorator_forms() -> None:
    emitter = EventEmitter()
    seen: list[str] = []

    @emitter.on("stream")
    def on_stream(e: Event) -> None:
        seen.append("on")

    @emitter.once("stream")
    def once_stream(e: Event) -> None:
        seen.append("once")

    emitter.emit("stream")
    emitter.emit("stream")
    assert seen == ["on", "once", "on"]
    assert callable(on_stream) and callable(once_stream)


async def test_async_handlers_run_as_tasks() -> None:
    emitter = EventEmitter()
    done = asyncio.Event()
    order: list[str] = []

    async def handler(e: Event) -> None:
        order.append("async start")
        await asyncio.sleep(0)
        order.append("async end")
        done.set()

    emitter.on("draining", handler)
    emitter.emit("draining")
    order.append("after emit")  # emit does not wait for the coroutine
    await asyncio.wait_for(done.wait(), 5)
    assert order == ["after emit", "async start", "async end"]


async def test_failing_handlers_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    emitter = EventEmitter()
    calls: list[str] = []

    def bad(e: Event) -> None:
        raise RuntimeError("sync boom")

    async def bad_async(e: Event) -> None:
        raise RuntimeError("async boom")

    emitter.on("x", bad)
    emitter.on("x", bad_async)
    emitter.on("x", lambda e: calls.append("still called"))
    with caplog.at_level(logging.ERROR, logger="pywebtransport"):
        emitter.emit("x")
        await asyncio.sleep(0.01)
    assert calls == ["still called"]
    messages = " ".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "sync boom" in messages and "async boom" in messages


async def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError):
        EventEmitter().on("x", 42)  # type: ignore[call-overload]


async def test_wait_for_with_condition_and_cleanup() -> None:
    emitter = EventEmitter()

    async def produce() -> None:
        for i in range(5):
            await asyncio.sleep(0)
            emitter.emit("datagram", i)

    producer = asyncio.create_task(produce())
    event = await emitter.wait_for("datagram", timeout=5, condition=lambda e: e.data >= 3)
    await producer
    assert event.data == 3
    assert emitter.listener_count("datagram") == 0  # its temporary handler is gone


async def test_wait_for_times_out() -> None:
    emitter = EventEmitter()
    with pytest.raises(TimeoutError):
        await emitter.wait_for("closed", timeout=0.05)
    assert emitter.listener_count("closed") == 0


async def test_wait_for_propagates_a_failing_condition() -> None:
    emitter = EventEmitter()

    def condition(e: Event) -> bool:
        raise ValueError("bad condition")

    waiter = asyncio.create_task(emitter.wait_for("x", timeout=5, condition=condition))
    await asyncio.sleep(0)
    emitter.emit("x")
    with pytest.raises(ValueError, match="bad condition"):
        await waiter


def test_listens_reports_registered_event_types() -> None:
    emitter = EventEmitter()
    assert not emitter.listens(EventType.DATAGRAM)
    handler = emitter.on(EventType.CLOSED, lambda event: None)
    assert emitter.listens(EventType.CLOSED) and emitter.listens("closed")
    assert not emitter.listens(EventType.DATAGRAM)  # a session's datagrams build no Event
    emitter.on("datagram", lambda event: None)
    assert emitter.listens(EventType.DATAGRAM)
    emitter.off(EventType.CLOSED, handler)
    emitter.off(EventType.DATAGRAM)
    assert not emitter.listens(EventType.DATAGRAM)
    assert not emitter.listens(EventType.CLOSED)  # its last handler went


def test_the_handlers_map_agrees_with_listens() -> None:
    """WebTransportSession.on_datagram tests ``events.handlers.get(DATAGRAM)`` instead
    of calling listens() (issue 10): the two agree through on, once, emit and off, for
    the member and its str key, and the map is never replaced."""
    emitter = EventEmitter()
    handlers = emitter.handlers

    def agree() -> None:
        for key in (EventType.DATAGRAM, "datagram", EventType.CLOSED):
            assert bool(handlers.get(key)) is emitter.listens(key)

    agree()
    assert not handlers.get(EventType.DATAGRAM)
    first = emitter.on(EventType.DATAGRAM, lambda event: None)
    agree()
    assert handlers.get(EventType.DATAGRAM)
    emitter.off("datagram", first)  # an emptied list stays in the map
    agree()
    assert not handlers.get(EventType.DATAGRAM)
    emitter.once("datagram", lambda event: None)
    agree()
    emitter.emit(EventType.DATAGRAM, b"x")  # the once handler went with the key
    agree()
    assert not handlers.get(EventType.DATAGRAM)
    emitter.on(EventType.CLOSED, lambda event: None)
    emitter.remove_all_listeners()
    agree()
    assert emitter.handlers is handlers
