"""The middleware library: BearerAuth, CustomAuth, compose, RateLimit's bounded table,
and per-route composition in ServerApp (app-wide first, then the route's)."""

from __future__ import annotations

import asyncio
import hmac
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywebtransport import (
    BearerAuth,
    ClientConfig,
    CustomAuth,
    RateLimit,
    Rejection,
    ServerApp,
    SessionRejected,
    WebTransportClient,
    compose,
)
from pywebtransport.middleware import client_key, run_middleware
from tests.pwt.pwt_support import TIMEOUT, certificate, server_config


@dataclass
class FakeRequest:
    path: str = "/x"
    query: str = ""
    origin: str | None = None
    remote_address: tuple[str, int] = ("127.0.0.1", 5000)
    draft: str = "draft16"
    protocols: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def bearer(token: str) -> FakeRequest:
    return FakeRequest(headers={"authorization": f"Bearer {token}"})


# ======================================================================================
# BearerAuth
# ======================================================================================


async def test_bearer_header_tokens() -> None:
    auth = BearerAuth(["s3cret", "other"])
    assert await auth(bearer("s3cret")) is None  # type: ignore[arg-type]
    assert await auth(bearer("other")) is None  # type: ignore[arg-type]
    # the auth-scheme is case-insensitive (RFC 9110 §11.1), spaces around are trimmed
    req = FakeRequest(headers={"authorization": "  bEaReR   s3cret "})
    assert await auth(req) is None  # type: ignore[arg-type]

    missing = await auth(FakeRequest())  # type: ignore[arg-type]
    assert missing is not None and missing.status_code == 401
    assert missing.headers == {"www-authenticate": 'Bearer realm="webtransport"'}

    for bad in (bearer("s3cre"), bearer("s3cret2"), bearer("")):
        rejection = await auth(bad)  # type: ignore[arg-type]
        assert rejection is not None and rejection.status_code == 401
    wrong = await auth(bearer("nope"))  # type: ignore[arg-type]
    assert wrong is not None
    assert wrong.headers["www-authenticate"].endswith('error="invalid_token"')
    # another scheme is not a bearer token
    basic = await auth(FakeRequest(headers={"authorization": "Basic s3cret"}))  # type: ignore[arg-type]
    assert basic is not None and "invalid_token" not in basic.headers["www-authenticate"]


async def test_bearer_query_parameter_only_when_enabled() -> None:
    plain = BearerAuth(["tok"])
    rejection = await plain(FakeRequest(query="token=tok"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 401  # not read by default
    browser = BearerAuth(["tok"], query_param="token")
    assert await browser(FakeRequest(query="a=1&token=tok")) is None  # type: ignore[arg-type]
    rejection = await browser(FakeRequest(query="token=bad"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 401
    rejection = await browser(FakeRequest(query="token="))  # type: ignore[arg-type]
    assert rejection is not None and "invalid_token" not in rejection.headers["www-authenticate"]
    # the header wins over the query
    both = FakeRequest(query="token=bad", headers={"authorization": "Bearer tok"})
    assert await browser(both) is None  # type: ignore[arg-type]


async def test_bearer_verify_callable_plain_and_async() -> None:
    seen: list[str] = []

    def check(token: str) -> bool:
        seen.append(token)
        return token.startswith("ok-")

    async def acheck(token: str) -> bool:
        await asyncio.sleep(0)
        return token == "async-ok"

    auth = BearerAuth(verify=check)
    assert await auth(bearer("ok-1")) is None  # type: ignore[arg-type]
    assert await auth(bearer("bad")) is not None  # type: ignore[arg-type]
    assert seen == ["ok-1", "bad"]
    aauth = BearerAuth(verify=acheck, status_code=403, realm="chat")
    assert await aauth(bearer("async-ok")) is None  # type: ignore[arg-type]
    rejection = await aauth(bearer("x"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 403
    assert 'realm="chat"' in rejection.headers["www-authenticate"]
    with pytest.raises(ValueError):
        BearerAuth()
    with pytest.raises(ValueError):
        BearerAuth(["a"], verify=check)
    with pytest.raises(ValueError):
        BearerAuth(["a"], realm='x"y')


def test_bearer_compares_every_token_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured token is compared (hmac.compare_digest on equal-length digests)
    whether the presented token matches the first entry, the last or none."""
    tokens = [f"token-{i}" for i in range(50)]
    auth = BearerAuth(tokens)
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, expected in (("token-0", True), ("token-49", True), ("x" * 1000, False)):
        calls.clear()
        assert auth.matches(presented) is expected
        assert len(calls) == len(tokens)
        assert set(calls) == {(32, 32)}  # digests: the length of the token does not show


# ======================================================================================
# CustomAuth, compose
# ======================================================================================


async def test_custom_auth_results() -> None:
    async def check(request: Any) -> Any:
        return {"/ok": True, "/none": None, "/no": False, "/teapot": 418}.get(
            request.path, Rejection(451, {"x-why": "law"})
        )

    auth = CustomAuth(check)
    assert await auth(FakeRequest(path="/ok")) is None  # type: ignore[arg-type]
    assert await auth(FakeRequest(path="/none")) is None  # type: ignore[arg-type]
    assert await auth(FakeRequest(path="/no")) == Rejection(403, reason="refused by check")  # type: ignore[arg-type]
    assert await auth(FakeRequest(path="/teapot")) == Rejection(418)  # type: ignore[arg-type]
    rejection = await auth(FakeRequest(path="/else"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.headers == {"x-why": "law"}
    plain = CustomAuth(lambda request: request.origin == "https://a.test", status_code=401)
    assert await plain(FakeRequest(origin="https://a.test")) is None  # type: ignore[arg-type]
    rejection = await plain(FakeRequest(origin="https://b.test"))  # type: ignore[arg-type]
    assert rejection is not None and rejection.status_code == 401
    with pytest.raises(TypeError):
        await CustomAuth(lambda request: "yes")(FakeRequest())  # type: ignore[arg-type]


async def test_compose_runs_in_order_and_short_circuits() -> None:
    seen: list[str] = []

    def step(name: str, result: Any = None) -> Any:
        async def middleware(request: Any) -> Any:
            seen.append(name)
            return result

        return middleware

    chain = compose(step("a"), compose(step("b"), step("c", 429)), step("d"))
    rejection = await run_middleware([chain], FakeRequest())  # type: ignore[arg-type]
    assert rejection == Rejection(429)
    assert seen == ["a", "b", "c"]  # d never ran
    seen.clear()
    assert await compose(step("x"), step("y"))(FakeRequest()) is None  # type: ignore[arg-type]
    assert seen == ["x", "y"]


# ======================================================================================
# RateLimit: a bounded table with an exit
# ======================================================================================


def test_client_key() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("2001:db8:1:2::1", 128) == "2001:db8:1:2::1/128"
    assert client_key("not-an-ip") == "not-an-ip"


def _flood(limit: RateLimit, n: int, now: list[float], step: float = 0.001) -> int:
    """``n`` requests from ``n`` different IPv4 addresses, ``step`` s apart; the peak
    table size."""
    peak = 0
    for i in range(n):
        now[0] += step
        limit.take(client_key(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"))
        peak = max(peak, limit.tracked)
    return peak


def _retained(n: int, cap: int) -> tuple[int, int]:
    now = [0.0]
    limit = RateLimit(rate=0.01, burst=1, max_clients=cap, clock=lambda: now[0])
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peak = _flood(limit, n, now)
        retained = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert limit.evicted == n - cap
    return peak, retained


def test_scale_rate_limit_table_capped_for_n_and_4n_ips() -> None:
    """N and 4N client IPs (all above the cap): the table holds ``max_clients`` buckets
    either way and the memory it keeps does not grow with the number of IPs."""
    cap = 1_000
    peak_n, mem_n = _retained(4_000, cap)
    peak_4n, mem_4n = _retained(16_000, cap)
    assert peak_n == peak_4n == cap
    assert mem_4n < 1.3 * mem_n + 20_000, (mem_n, mem_4n)


def test_scale_idle_buckets_leave_the_table() -> None:
    """The exit: a bucket that has filled up again is removed; N or 4N clients that
    went quiet leave one bucket behind (the client of the request that pruned them),
    and under steady traffic the table holds only the clients of the last
    ``burst / rate`` seconds, however many came before."""
    for n in (2_000, 8_000):
        now = [0.0]
        limit = RateLimit(rate=10.0, burst=5, max_clients=100_000, clock=lambda t=now: t[0])
        assert _flood(limit, n, now, step=0.0) == n  # at once: all of them refilling
        now[0] += 0.5  # burst / rate = 0.5 s: every bucket is full again
        assert limit.take("203.0.113.1") == 0.0
        assert limit.tracked == 1
        # one new client per ms: a bucket (4 tokens left) is full again after 0.1 s
        assert _flood(limit, n, now, step=0.001) <= 102
        assert limit.evicted == 0


def test_rate_limit_ipv6_rotation_is_one_client() -> None:
    """A client rotating through N or 4N addresses of its /64 gets one bucket (and is
    limited), while other /64 networks keep theirs."""
    for n in (500, 2_000):
        now = [0.0]
        limit = RateLimit(rate=1.0, burst=3, clock=lambda t=now: t[0])
        refused = 0
        for i in range(n):
            request = FakeRequest(remote_address=(f"2001:db8:0:1::{i:x}", 443))
            if asyncio.run(limit(request)) is not None:  # type: ignore[arg-type]
                refused += 1
        assert limit.tracked == 1
        assert refused == n - 3
        other = FakeRequest(remote_address=("2001:db8:0:2::1", 443))
        assert asyncio.run(limit(other)) is None  # type: ignore[arg-type]
        assert limit.tracked == 2


def test_rate_limit_custom_key_and_validation() -> None:
    now = [0.0]
    limit = RateLimit(rate=1.0, burst=1, key=lambda r: r.path, clock=lambda: now[0])
    assert asyncio.run(limit(FakeRequest(path="/a"))) is None  # type: ignore[arg-type]
    assert asyncio.run(limit(FakeRequest(path="/a"))) is not None  # type: ignore[arg-type]
    assert asyncio.run(limit(FakeRequest(path="/b"))) is None  # type: ignore[arg-type]
    for bad in ({"rate": 0}, {"rate": 1, "max_clients": 0}, {"rate": 1, "ipv6_prefix": 129}):
        with pytest.raises(ValueError):
            RateLimit(**bad)


# ======================================================================================
# per-route composition, end to end
# ======================================================================================


@asynccontextmanager
async def serving(app: ServerApp) -> AsyncIterator[str]:
    task = asyncio.create_task(app.serve("127.0.0.1", 0))
    try:
        async with asyncio.timeout(TIMEOUT):
            port = await app.wait_started()
        yield f"https://127.0.0.1:{port}"
    finally:
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


@asynccontextmanager
async def client() -> AsyncIterator[WebTransportClient]:
    config = ClientConfig(server_certificate_hashes=[certificate().sha256], connect_timeout=5.0)
    async with WebTransportClient(config=config) as c:
        yield c


async def _ok(session: Any) -> None:
    stream = await session.create_bidirectional_stream()
    await stream.write(b"", end_stream=True)
    async with asyncio.timeout(TIMEOUT):
        assert await stream.read_all() == b"ok"


async def _answer(session: Any) -> None:
    async for stream in session.incoming_bidirectional_streams():
        await stream.read_all()
        await stream.write(b"ok", end_stream=True)


async def test_per_route_middleware_order_and_short_circuit() -> None:
    trace: list[str] = []

    def mark(name: str, refuse: dict[str, int] | None = None) -> Any:
        async def middleware(request: Any) -> int | None:
            trace.append(f"{name}:{request.path}")
            return (refuse or {}).get(request.path)

        return middleware

    app = ServerApp(
        config=server_config(shutdown_timeout=2.0),
        middleware=[mark("app1", {"/blocked": 403})],
    )
    app.add_middleware(mark("app2"))
    app.add_route(
        "/chat",
        _answer,
        middleware=[mark("chat1"), mark("chat2", {"/other": 400}), BearerAuth(["t"])],
    )
    app.add_route("/blocked", _answer, middleware=[mark("never")])
    app.add_route("/refuse", _answer, middleware=[mark("r1", {"/refuse": 429}), mark("never")])
    app.add_pattern_route(r"/rooms/(?P<room>\w+)", _answer, middleware=[mark("room")])
    app.add_route("/open", _answer)

    async with serving(app) as base, client() as c:
        session = await c.connect(f"{base}/chat", headers={"authorization": "Bearer t"})
        async with session:
            await _ok(session)
        assert trace == ["app1:/chat", "app2:/chat", "chat1:/chat", "chat2:/chat"]

        trace.clear()  # the route's BearerAuth refuses: 401 with its challenge
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/chat")
        assert info.value.status_code == 401
        assert info.value.headers.get("www-authenticate") == 'Bearer realm="webtransport"'
        assert trace == ["app1:/chat", "app2:/chat", "chat1:/chat", "chat2:/chat"]

        trace.clear()  # app-wide refusal: the route's middleware never runs
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/blocked")
        assert info.value.status_code == 403
        assert trace == ["app1:/blocked"]

        trace.clear()  # a route's refusal stops the rest of its chain
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/refuse")
        assert info.value.status_code == 429
        assert trace == ["app1:/refuse", "app2:/refuse", "r1:/refuse"]

        trace.clear()  # no route: refused after the app-wide chain, no route middleware
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/missing")
        assert info.value.status_code in (404, 405)  # 405: draft-16 §3.2 (main's drafts work)
        assert trace == ["app1:/missing", "app2:/missing"]

        trace.clear()
        async with await c.connect(f"{base}/rooms/blue") as session:
            await _ok(session)
        async with await c.connect(f"{base}/open") as session:
            await _ok(session)
        assert trace == [
            "app1:/rooms/blue",
            "app2:/rooms/blue",
            "room:/rooms/blue",
            "app1:/open",
            "app2:/open",
        ]
    assert app.sessions_rejected == 4


async def test_bearer_query_token_and_route_rate_limit_end_to_end() -> None:
    """What a browser does: the token in the URL's query; a per-route RateLimit."""
    app = ServerApp(config=server_config(shutdown_timeout=2.0))

    @app.route("/live", middleware=[BearerAuth(["abc"], query_param="token")])
    async def live(session: Any) -> None:
        await _answer(session)

    @app.route("/limited", middleware=[RateLimit(rate=0.001, burst=2)])
    async def limited(session: Any) -> None:
        await _answer(session)

    async with serving(app) as base, client() as c:
        async with await c.connect(f"{base}/live?token=abc") as session:
            await _ok(session)
        for bad in ("", "?token=abd", "?other=abc"):
            with pytest.raises(SessionRejected) as info:
                await c.connect(f"{base}/live{bad}")
            assert info.value.status_code == 401
        for _ in range(2):
            async with await c.connect(f"{base}/limited") as session:
                await _ok(session)
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/limited")
        assert info.value.status_code == 429
        assert info.value.headers.get("retry-after")
        async with await c.connect(f"{base}/live?token=abc") as session:  # other route
            await _ok(session)


async def test_route_middleware_that_raises_refuses_with_500() -> None:
    async def broken(request: Any) -> None:
        raise RuntimeError("bug in a route's middleware")

    app = ServerApp(config=server_config(shutdown_timeout=2.0))
    app.add_route("/x", _answer, middleware=[broken])
    async with serving(app) as base, client() as c:
        with pytest.raises(SessionRejected) as info:
            await c.connect(f"{base}/x")
        assert info.value.status_code == 500
