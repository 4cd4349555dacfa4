"""ServerApp: routing, pattern parameters, middleware, hooks, handler isolation, shutdown.

Routing and middleware are unit-tested on their own; the app is exercised end to end
with our WebTransportClient over UDP on 127.0.0.1 (port 0).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywebtransport.app import HANDLER_ERROR_CODE, ServerApp
from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig, ServerConfig
from pywebtransport.exceptions import SessionRejected
from pywebtransport.middleware import (
    OriginCheck,
    RateLimit,
    Rejection,
    RequestLogger,
    SessionLimit,
    run_middleware,
)
from pywebtransport.routing import Router, split_path
from quic.aio import wall_clock
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0


# ======================================================================================
# routing (unit)
# ======================================================================================


async def _h0(session: Any) -> None:
    return None


async def _h_room(session: Any, room: str) -> None:
    return None


async def _h_kw(session: Any, **params: str) -> None:
    return None


def test_split_path() -> None:
    assert split_path("/a/b?x=1#f") == "/a/b"
    assert split_path("/a#f?x") == "/a"
    assert split_path("/") == "/"


def test_router_exact_before_pattern_and_query_ignored() -> None:
    router = Router()
    router.add_pattern_route(r"/rooms/(?P<room>\w+)", _h_room)
    router.add_route("/rooms/lobby", _h0)
    match = router.resolve("/rooms/lobby?x=1")
    assert match is not None and match.handler is _h0 and match.params == {}
    match = router.resolve("/rooms/r42?token=abc")
    assert match is not None and match.handler is _h_room
    assert match.params == {"room": "r42"}
    assert router.resolve("/rooms/") is None
    assert router.resolve("/rooms/a/b") is None  # fullmatch, not search
    assert router.resolve("/nope") is None
    assert [r.name for r in router.routes] == ["/rooms/lobby", r"/rooms/(?P<room>\w+)"]


def test_router_patterns_in_registration_order_and_optional_groups() -> None:
    router = Router()
    router.add_pattern_route(r"/a/(?P<x>\d+)(?:/(?P<y>\d+))?", _h_kw)
    router.add_pattern_route(r"/a/.*", _h0)
    m = router.resolve("/a/1")
    assert m is not None and m.handler is _h_kw and m.params == {"x": "1"}
    m = router.resolve("/a/1/2")
    assert m is not None and m.params == {"x": "1", "y": "2"}
    m = router.resolve("/a/zz")
    assert m is not None and m.handler is _h0


def test_route_passes_only_declared_params() -> None:
    router = Router()
    r1 = router.add_pattern_route(r"/(?P<room>\w+)/(?P<user>\w+)", _h_room)
    assert r1.handler_kwargs({"room": "a", "user": "b"}) == {"room": "a"}
    r2 = router.add_pattern_route(r"/k/(?P<room>\w+)", _h_kw)
    assert r2.handler_kwargs({"room": "a", "user": "b"}) == {"room": "a", "user": "b"}
    r3 = router.add_pattern_route(r"/z/(?P<room>\w+)", _h0)
    assert r3.handler_kwargs({"room": "a"}) == {}
    with pytest.raises(ValueError):
        router.add_route("no-slash", _h0)


# ======================================================================================
# middleware (unit)
# ======================================================================================


@dataclass
class FakeRequest:
    path: str = "/x"
    origin: str | None = None
    remote_address: tuple[str, int] = ("127.0.0.1", 5000)
    draft: str = "draft16"
    protocols: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


async def test_run_middleware_chain_order_and_results() -> None:
    seen: list[str] = []

    async def a(request: Any) -> None:
        seen.append("a")

    def b(request: Any) -> int | None:  # plain functions work too
        seen.append("b")
        return 451 if request.path == "/bad" else None

    async def c(request: Any) -> Rejection:
        seen.append("c")
        return Rejection(429, {"retry-after": "3"})

    assert await run_middleware([a, b], FakeRequest()) is None  # type: ignore[arg-type]
    assert seen == ["a", "b"]
    seen.clear()
    rejection = await run_middleware([a, b, c], FakeRequest(path="/bad"))  # type: ignore[arg-type]
    assert rejection == Rejection(451)
    assert seen == ["a", "b"]  # c never ran
    rejection = await run_middleware([c], FakeRequest())  # type: ignore[arg-type]
    assert rejection is not None and rejection.headers == {"retry-after": "3"}

    async def bogus(request: Any) -> Any:
        return "yes"

    with pytest.raises(TypeError):
        await run_middleware([bogus], FakeRequest())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Rejection(200)


async def test_origin_check() -> None:
    check = OriginCheck(["https://example.com", "https://*.example.org/"])
    assert check.allows("https://example.com")
    assert check.allows("HTTPS://Example.com/")
    assert check.allows("https://a.example.org")
    assert not check.allows("https://example.org.evil.com")
    assert not check.allows("https://evil.com")
    assert check.allows(None)
    assert await check(FakeRequest(origin="https://example.com")) is None  # type: ignore[arg-type]
    rejection = await check(FakeRequest(origin="https://evil.com"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 403
    strict = OriginCheck(["*"], require_origin=True)
    assert strict.allows("https://anything.test")
    assert not strict.allows(None)


async def test_rate_limit_token_bucket() -> None:
    now = [100.0]
    limit = RateLimit(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limit.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.take("a") == pytest.approx(0.5)
    assert limit.take("b") == 0.0  # per key
    now[0] += 0.5  # one token back
    assert limit.take("a") == 0.0
    rejection = await limit(FakeRequest(remote_address=("127.0.0.1", 1)))  # type: ignore[arg-type]
    assert rejection is None  # a different key: 127.0.0.1
    for _ in range(3):
        await limit(FakeRequest(remote_address=("10.0.0.9", 1)))  # type: ignore[arg-type]
    rejection = await limit(FakeRequest(remote_address=("10.0.0.9", 2)))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 429
    assert rejection.headers["retry-after"] == "1"
    small = RateLimit(rate=1.0, max_clients=2, clock=lambda: now[0])
    for key in "xyz":
        small.take(key)
    assert len(small._buckets) == 2
    with pytest.raises(ValueError):
        RateLimit(rate=0)


async def test_session_limit_and_logger(caplog: pytest.LogCaptureFixture) -> None:
    count = [0]
    limit = SessionLimit(2, lambda: count[0])
    assert await limit(FakeRequest()) is None  # type: ignore[arg-type]
    count[0] = 2
    rejection = await limit(FakeRequest())  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 503
    with caplog.at_level(logging.INFO, logger="pywebtransport.app"):
        await RequestLogger()(FakeRequest(path="/logged", origin="o"))  # type: ignore[arg-type]
    assert "/logged" in caplog.text and "draft16" in caplog.text


# ======================================================================================
# end to end
# ======================================================================================


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return generate_self_signed(wall_clock())


def make_app(cert: SelfSignedCertificate, **kwargs: Any) -> ServerApp:
    config = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        port=0,
        shutdown_timeout=2.0,
    )
    return ServerApp(config=config, **kwargs)


@asynccontextmanager
async def serving(app: ServerApp) -> AsyncIterator[int]:
    task = asyncio.create_task(app.serve("127.0.0.1", 0))
    try:
        async with asyncio.timeout(TIMEOUT):
            port = await app.wait_started()
        yield port
    finally:
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


@asynccontextmanager
async def client_for(cert: SelfSignedCertificate) -> AsyncIterator[WebTransportClient]:
    config = ClientConfig(server_certificate_hashes=[cert.sha256], connect_timeout=5.0)
    async with WebTransportClient(config=config) as client:
        yield client


async def ask(session: Any, data: bytes = b"") -> bytes:
    """Open a bidi stream, send ``data`` + FIN, read the whole answer."""
    stream = await session.create_bidirectional_stream()
    await stream.write(data, end_stream=True)
    async with asyncio.timeout(TIMEOUT):
        return bytes(await stream.read_all())


async def test_route_and_pattern_route_with_params(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    seen: dict[str, Any] = {}

    @app.route("/chat")
    async def chat(session: Any) -> None:
        seen["chat_path"] = session.path
        async for stream in session.incoming_bidirectional_streams():
            data = await stream.read_all()
            await stream.write(b"chat:" + data, end_stream=True)

    @app.pattern_route(r"/rooms/(?P<room>\w+)/(?P<user>\w+)")
    async def room(session: Any, room: str) -> None:
        seen["params"] = dict(session.path_params)
        async for stream in session.incoming_bidirectional_streams():
            await stream.read_all()
            await stream.write(f"room={room}".encode(), end_stream=True)

    async def by_attr(session: Any) -> None:
        async for stream in session.incoming_bidirectional_streams():
            await stream.read_all()
            await stream.write(session.path_params["n"].encode(), end_stream=True)

    app.add_pattern_route(r"/n/(?P<n>\d+)", by_attr)

    async with serving(app) as port, client_for(cert) as client:
        base = f"https://127.0.0.1:{port}"
        async with await client.connect(f"{base}/chat") as session:
            assert await ask(session, b"hi") == b"chat:hi"
        async with await client.connect(url=f"{base}/rooms/blue/alice?token=1") as session:
            assert await ask(session) == b"room=blue"
        async with await client.connect(f"{base}/n/123") as session:
            assert await ask(session) == b"123"
    assert seen["chat_path"] == "/chat"
    assert seen["params"] == {"room": "blue", "user": "alice"}
    assert app.sessions_total == 3


async def test_unknown_path_rejected_405(cert: SelfSignedCertificate) -> None:
    """draft-16 §3.2: 405 when the target resource does not support WebTransport."""
    app = make_app(cert)
    app.add_route("/known", _h0)
    async with serving(app) as port, client_for(cert) as client:
        with pytest.raises(SessionRejected) as info:
            await client.connect(f"https://127.0.0.1:{port}/unknown")
        assert info.value.status_code == 405
        assert info.value.headers.get("allow") == ""  # RFC 9110 §15.5.6
    assert app.sessions_rejected == 1


async def test_middleware_rejections(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    calls: list[str] = []

    async def handler(session: Any) -> None:
        async for stream in session.incoming_bidirectional_streams():
            await stream.read_all()
            await stream.write(b"ok", end_stream=True)

    app.add_route("/open", handler)
    app.add_route("/secret", handler)
    app.add_route("/teapot", handler)
    app.add_route("/boom", handler)

    async def record(request: Any) -> None:
        calls.append(request.path)

    app.add_middleware(record)

    @app.middleware
    async def auth(request: Any) -> int | Rejection | None:
        if request.path.startswith("/secret"):
            return 401 if request.headers.get("authorization") != "Bearer t" else None
        if request.path == "/teapot":
            return Rejection(418, {"x-why": "short and stout"})
        if request.path == "/boom":
            raise RuntimeError("middleware bug")
        return None

    async with serving(app) as port, client_for(cert) as client:
        base = f"https://127.0.0.1:{port}"
        with pytest.raises(SessionRejected) as info:
            await client.connect(f"{base}/secret")
        assert info.value.status_code == 401
        with pytest.raises(SessionRejected) as info:
            await client.connect(f"{base}/teapot")
        assert info.value.status_code == 418
        with pytest.raises(SessionRejected) as info:
            await client.connect(f"{base}/boom")
        assert info.value.status_code == 500
        session = await client.connect(f"{base}/secret", headers={"authorization": "Bearer t"})
        async with session:
            assert await ask(session) == b"ok"
        async with await client.connect(f"{base}/open") as session:
            assert await ask(session) == b"ok"
    assert calls == ["/secret", "/teapot", "/boom", "/secret", "/open"]
    assert app.sessions_rejected == 3


async def test_origin_middleware_end_to_end(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    app.add_middleware(OriginCheck(["https://good.example"]))
    app.add_route("/x", _h_wait)
    async with serving(app) as port, client_for(cert) as client:
        url = f"https://127.0.0.1:{port}/x"
        with pytest.raises(SessionRejected) as info:
            await client.connect(url, headers={"origin": "https://evil.example"})
        assert info.value.status_code == 403
        session = await client.connect(url, headers={"origin": "https://good.example"})
        await session.close()


async def _h_wait(session: Any) -> None:
    await session.wait_closed()


async def test_startup_and_shutdown_hooks(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    events: list[str] = []

    @app.on_startup
    async def start_db() -> None:
        events.append("startup-async")
        assert not app.is_serving  # hooks run before the socket is bound

    @app.on_startup
    def start_sync() -> None:
        events.append("startup-sync")

    @app.on_shutdown
    async def stop_db() -> None:
        events.append("shutdown")
        assert app.active_session_count == 0

    app.add_route("/x", _h_wait)
    async with serving(app) as port, client_for(cert) as client:
        events.append(f"listening:{port == app.port}")
        session = await client.connect(f"https://127.0.0.1:{port}/x")
        await session.close()
    assert events == ["startup-async", "startup-sync", "listening:True", "shutdown"]
    assert not app.is_serving


async def test_startup_failure_propagates(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    shut: list[bool] = []

    @app.on_startup
    def fail() -> None:
        raise RuntimeError("no database")

    app.on_shutdown(lambda: shut.append(True))
    task = asyncio.create_task(app.serve("127.0.0.1", 0))
    with pytest.raises(RuntimeError, match="no database"):
        await app.wait_started()
    with pytest.raises(RuntimeError, match="no database"):
        await task
    assert shut == [True]


async def test_handler_exception_isolated(
    cert: SelfSignedCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(cert)

    @app.route("/crash")
    async def crash(session: Any) -> None:
        stream = await session.accept_bidirectional_stream()
        await stream.read_all()
        raise ValueError("handler bug")

    @app.route("/fine")
    async def fine(session: Any) -> None:
        async for stream in session.incoming_bidirectional_streams():
            await stream.write(await stream.read_all(), end_stream=True)

    with caplog.at_level(logging.ERROR, logger="pywebtransport.app"):
        async with serving(app) as port, client_for(cert) as client:
            base = f"https://127.0.0.1:{port}"
            survivor = await client.connect(f"{base}/fine")
            crashing = await client.connect(f"{base}/crash")
            stream = await crashing.create_bidirectional_stream()
            await stream.write(b"trigger", end_stream=True)
            async with asyncio.timeout(TIMEOUT):
                closed = await crashing.wait_closed()
            assert closed.code == HANDLER_ERROR_CODE
            assert closed.by_peer
            # the other session and the server are unaffected
            assert await ask(survivor, b"still here") == b"still here"
            async with await client.connect(f"{base}/fine") as again:
                assert await ask(again, b"new") == b"new"
            await survivor.close()
    assert app.handler_errors == 1
    assert "handler bug" in caplog.text


async def test_handler_return_closes_session(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)

    @app.route("/short")
    async def short(session: Any) -> None:
        stream = await session.create_unidirectional_stream()
        await stream.write(b"bye", end_stream=True)

    async with serving(app) as port, client_for(cert) as client:
        session = await client.connect(f"https://127.0.0.1:{port}/short")
        async with asyncio.timeout(TIMEOUT):
            uni = await session.accept_unidirectional_stream()
            assert await uni.read_all() == b"bye"
            closed = await session.wait_closed()
        assert closed.code == 0 and closed.by_peer


async def test_graceful_shutdown_drains_and_closes(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    handler_done = asyncio.Event()

    @app.route("/long")
    async def long(session: Any) -> None:
        try:
            await session.wait_closed()
        finally:
            handler_done.set()

    async with client_for(cert) as client:
        task = asyncio.create_task(app.serve("127.0.0.1", 0))
        port = await app.wait_started()
        session = await client.connect(f"https://127.0.0.1:{port}/long")
        draining = asyncio.ensure_future(session.events.wait_for("draining", timeout=TIMEOUT))
        await asyncio.sleep(0.05)
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            await draining  # the client was asked to wind down (DRAIN / GOAWAY)
            assert session.draining
            await session.close(0, "ok, leaving")  # the polite client leaves
            await task
        assert handler_done.is_set()
        assert not app.is_serving


async def test_shutdown_closes_sessions_that_stay(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    app.config.shutdown_timeout = 0.3
    app.add_route("/stay", _h_wait)
    async with client_for(cert) as client:
        task = asyncio.create_task(app.serve("127.0.0.1", 0))
        port = await app.wait_started()
        session = await client.connect(f"https://127.0.0.1:{port}/stay")
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            closed = await session.wait_closed()  # the client ignored the drain request
            await task
        assert closed.by_peer


async def test_serve_twice_refused_and_session_limit(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    app.add_middleware(SessionLimit(1, lambda: app.active_session_count))
    app.add_route("/x", _h_wait)
    async with serving(app) as port, client_for(cert) as client:
        with pytest.raises(RuntimeError):
            await app.serve("127.0.0.1", 0)
        first = await client.connect(f"https://127.0.0.1:{port}/x")
        with pytest.raises(SessionRejected) as info:
            await client.connect(f"https://127.0.0.1:{port}/x")
        assert info.value.status_code == 503
        stats = app.stats()
        assert stats["sessions_active"] == 1 and stats["sessions_rejected"] == 1
        await first.close()


async def test_cancelling_serve_shuts_down_gracefully(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    done: list[str] = []
    app.on_shutdown(lambda: done.append("shutdown"))
    app.add_route("/x", _h_wait)
    async with client_for(cert) as client:
        task = asyncio.create_task(app.serve("127.0.0.1", 0))
        port = await app.wait_started()
        session = await client.connect(f"https://127.0.0.1:{port}/x")
        task.cancel()
        async with asyncio.timeout(TIMEOUT):
            closed = await session.wait_closed()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert closed.by_peer
    assert done == ["shutdown"]
    assert not app.is_serving


async def test_serializers_over_a_real_session(cert: SelfSignedCertificate) -> None:
    from pywebtransport.serializers import (
        JSONSerializer,
        iter_messages,
        read_message,
        receive_datagram_message,
        send_datagram_message,
        write_message,
    )

    app = make_app(cert)
    json_ = JSONSerializer()

    @app.route("/rpc")
    async def rpc(session: Any) -> None:
        async def datagrams() -> None:
            while True:
                msg = await receive_datagram_message(session)
                await send_datagram_message(session, {"echo": msg})

        pump = asyncio.ensure_future(datagrams())
        try:
            async for stream in session.incoming_bidirectional_streams():
                async for request in iter_messages(stream, json_):
                    await write_message(stream, {"sum": sum(request["add"])}, json_)
                await stream.write(b"", end_stream=True)
        finally:
            pump.cancel()

    async with serving(app) as port, client_for(cert) as client:
        session = await client.connect(f"https://127.0.0.1:{port}/rpc")
        stream = await session.create_bidirectional_stream()
        async with asyncio.timeout(TIMEOUT):
            for numbers in ([1, 2], [10, 20, 30], []):
                await write_message(stream, {"add": numbers})
                assert await read_message(stream) == {"sum": sum(numbers)}
            await stream.write(b"", end_stream=True)
            with pytest.raises(EOFError):
                await read_message(stream)
            got = None
            for attempt in range(10):  # datagrams may be lost: retry
                await send_datagram_message(session, ["ping", attempt])
                try:
                    got = await asyncio.wait_for(receive_datagram_message(session), 0.5)
                    break
                except TimeoutError:
                    continue
            assert got is not None and got["echo"][0] == "ping"
        await session.close()
