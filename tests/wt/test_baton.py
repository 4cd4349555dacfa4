"""Devious Baton end to end over UDP on 127.0.0.1: our client against our server route
(both drafts, several parameter sets, a seeded lossy link), and each error rule of
draft-frindell-webtrans-devious-baton-00 against our server with a deliberately broken
client (and against our client with a broken server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pywebtransport.app import ServerApp
from pywebtransport.baton import (
    DEFAULT_PATH,
    BatonConfig,
    BatonOutcome,
    SessionErrorCode,
    StreamErrorCode,
    add_baton_route,
    encode_baton,
    run_baton_client,
)
from pywebtransport.baton.codec import BatonDecoder, BatonMessage
from pywebtransport.client import WebTransportClient
from pywebtransport.exceptions import SessionClosed, SessionRejected, StreamReset
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import WebTransportReceiveStream, WebTransportStream
from quic.interop.impair import Fate, Impairment, Scenario
from quic.interop.proxy import ImpairmentProxy
from tests.pwt.pwt_support import client_config, server_config

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 20.0
DRAFTS = ["draft16", "draft07", "draft02"]


class BatonServer:
    """Our ServerApp with the baton route, on a free port; outcomes collected."""

    def __init__(self, config: BatonConfig | None = None) -> None:
        self.app = ServerApp(config=server_config())
        self.outcomes: list[BatonOutcome] = []
        add_baton_route(self.app, config=config, on_outcome=self.outcomes.append)
        self.port = 0

    def url(self, query: str = "", port: int | None = None) -> str:
        target = f"https://127.0.0.1:{port or self.port}{DEFAULT_PATH}"
        return f"{target}?{query}" if query else target

    async def outcome(self, after: int = 0) -> BatonOutcome:
        """The newest outcome, once there are more than ``after`` (the count before
        the run whose outcome is wanted)."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.outcomes) <= after:
                await asyncio.sleep(0.01)
        return self.outcomes[-1]


@asynccontextmanager
async def baton_server(config: BatonConfig | None = None) -> AsyncIterator[BatonServer]:
    server = BatonServer(config)
    task = asyncio.create_task(server.app.serve("127.0.0.1", 0))
    try:
        async with asyncio.timeout(TIMEOUT):
            server.port = await server.app.wait_started()
        yield server
    finally:
        server.app.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


@asynccontextmanager
async def raw_session(url: str, draft: str = "draft16", **kwargs: Any) -> AsyncIterator[
    WebTransportSession
]:  # fmt: skip
    async with WebTransportClient(client_config(draft, **kwargs)) as client:
        yield await client.connect(url)


async def closed_code(session: WebTransportSession) -> SessionClosed:
    async with asyncio.timeout(TIMEOUT):
        return await session.wait_closed()


async def read_message(stream: WebTransportReceiveStream | WebTransportStream) -> BatonMessage:
    decoder = BatonDecoder()
    async with asyncio.timeout(TIMEOUT):
        decoder.feed(await stream.read_all())
    return decoder.finish()


async def first_baton(session: WebTransportSession) -> int:
    """Take the server's first unidirectional stream and its baton (§4.1)."""
    async with asyncio.timeout(TIMEOUT):
        stream = await session.accept_unidirectional_stream()
    return (await read_message(stream)).value


# ======================================================================================
# the game completes
# ======================================================================================


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize(
    ("count", "baton", "padding"),
    [(None, None, 0), (1, 250, 0), (4, 3, 0), (8, None, 0), (3, 120, 20000)],
)
async def test_game_completes(
    draft: str, count: int | None, baton: int | None, padding: int
) -> None:
    async with baton_server(BatonConfig(padding=padding // 2)) as server:
        result = await run_baton_client(
            server.url(),
            count=count,
            baton=baton,
            config=client_config(draft),
            baton_config=BatonConfig(padding=padding),
        )
        outcome = await server.outcome()
    expected = count or 1
    assert result.ok, result.summary()
    assert result.draft == draft
    assert (result.count, result.completed, result.reset) == (expected, expected, 0)
    assert outcome.ok, outcome
    assert (outcome.count, outcome.completed, outcome.reset) == (expected, expected, 0)
    # every message one side sent, the other received (nothing lost, nothing invented)
    assert result.messages_sent == outcome.messages_received
    assert outcome.messages_sent == result.messages_received
    if baton is not None:  # 256 - baton messages + the 0, per baton
        assert result.messages_sent + outcome.messages_sent == expected * (257 - baton)
    assert outcome.peak_incoming <= expected
    assert outcome.peak_tasks <= 2 * expected + 5
    if baton == 3:  # values = 0 and 1 mod 7 pass both ways
        assert result.datagrams_sent > 0 and result.datagrams_received > 0
        assert outcome.datagrams_sent > 0 and outcome.datagrams_received > 0


@pytest.mark.parametrize("seed", [1, 2])
async def test_game_completes_on_a_lossy_link(seed: int) -> None:
    """A seeded impaired link (loss with bursts, reordering, delay) between the two."""
    link = Impairment(delay=0.002, loss=0.05, max_burst=2, reorder=0.05, reorder_delay=0.004)
    scenario = Scenario("baton-lossy", to_server=link, to_client=link)
    async with baton_server() as server:
        proxy = ImpairmentProxy(("127.0.0.1", server.port), scenario, seed=seed)
        await proxy.start()
        try:
            result = await run_baton_client(
                server.url(port=proxy.port), count=4, baton=180, config=client_config()
            )
            outcome = await server.outcome()
        finally:
            await proxy.close()
    assert result.ok, result.summary()
    assert outcome.ok and outcome.completed == 4
    assert result.messages_sent + outcome.messages_sent == 4 * (257 - 180)
    lost = sum(1 for record in proxy.records if record.fate is Fate.LOST)
    assert lost > 0, proxy.summary()  # the link did lose datagrams


async def test_scale_batons_linear_and_bounded() -> None:
    """count N vs 4N: the messages grow 4x (linear work) and the server never holds
    more tasks than 2 x count + 5 nor reads more peer streams at once than count."""
    results = {}
    async with baton_server() as server:
        for count in (4, 16):
            before = len(server.outcomes)
            result = await run_baton_client(
                server.url(), count=count, baton=200, config=client_config()
            )
            outcome = await server.outcome(after=before)  # this run's, not the last one's
            assert result.ok and outcome.ok, (result.summary(), outcome)
            assert outcome.peak_tasks <= 2 * count + 5
            assert outcome.peak_incoming <= count
            results[count] = (result.messages_sent + outcome.messages_sent, outcome.peak_tasks)
        # the last session's close may still be on its way (a loaded machine): no leak
        # means it leaves within a few seconds, not that it left before the outcome
        for _ in range(500):
            if server.app.active_session_count == 0:
                break
            await asyncio.sleep(0.01)
        assert server.app.active_session_count == 0
    (small, small_tasks), (large, large_tasks) = results[4], results[16]
    assert large / small == 4  # 57 messages per baton from 200
    assert large_tasks / small_tasks < 6


# ======================================================================================
# the server's error rules, against a broken client
# ======================================================================================


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", SessionErrorCode.BRUH),  # an empty stream
        (b"\x05\x00\x00", SessionErrorCode.BRUH),  # padding cut short by FIN
        (b"\x40", SessionErrorCode.BRUH),  # padding length cut short
        (b"\x0a" + bytes(5) + b"\x0b", SessionErrorCode.BRUH),  # padding shorter than said
        (encode_baton(11) + b"\x00", SessionErrorCode.BRUH),  # bytes after the baton
        (encode_baton(12), SessionErrorCode.SUS),  # not baton + 1
        (encode_baton(11, 3000), SessionErrorCode.BORED),  # padding above our limit
    ],
    ids=["empty", "short-padding", "short-length", "bad-padding", "trailing", "wrong", "long"],
)
async def test_bad_message_closes_the_session(payload: bytes, code: SessionErrorCode) -> None:
    async with (
        baton_server(BatonConfig(max_padding=2000)) as server,
        raw_session(server.url("baton=10")) as session,
    ):
        assert await first_baton(session) == 10
        stream = await session.create_bidirectional_stream()
        await stream.write(payload, end_stream=True)
        info = await closed_code(session)
        outcome = await server.outcome()
    assert info.by_peer and info.code == code, info
    assert outcome.error_code == code and not outcome.ok


async def test_answer_on_the_wrong_stream_kind_is_sus() -> None:
    """§4.2: a message on a unidirectional stream is answered on a bidirectional one."""
    async with baton_server() as server, raw_session(server.url("baton=10")) as session:
        assert await first_baton(session) == 10
        stream = await session.create_unidirectional_stream()
        await stream.write(encode_baton(11), end_stream=True)
        info = await closed_code(session)
    assert info.by_peer and info.code == SessionErrorCode.SUS


@pytest.mark.parametrize("data", [b"", b"\x05", encode_baton(3) + b"x"])
async def test_malformed_datagram_is_bruh(data: bytes) -> None:
    async with baton_server() as server, raw_session(server.url("baton=10")) as session:
        assert await first_baton(session) == 10
        session.send_datagram(data)
        info = await closed_code(session)
    assert info.by_peer and info.code == SessionErrorCode.BRUH


@pytest.mark.parametrize(
    "query",
    ["version=1", "version=x", "baton=0", "baton=256", "baton=abc", "count=0", "count=-2",
     "count=257", "count=2&count=3"],
)  # fmt: skip
async def test_bad_query_is_rejected_with_400(query: str) -> None:
    async with baton_server() as server:
        result = await run_baton_client(server.url(query), config=client_config())
        with pytest.raises(SessionRejected) as info:
            async with raw_session(server.url(query)):
                pass
    assert not result.ok and result.rejected_status == 400
    assert info.value.status_code == 400
    assert server.outcomes == []  # no session was played


async def test_no_stream_credit_is_da_yamn() -> None:
    """§4.1: the server cannot open a unidirectional stream per baton: DA_YAMN."""
    config = BatonConfig(stream_credit_timeout=0.2)
    async with (
        baton_server(config) as server,
        # QUIC: 3 for HTTP/3's own streams + 2; draft-16: 2 WebTransport streams
        raw_session(
            server.url("count=5"), initial_max_streams_uni=5, wt_initial_max_streams_uni=2
        ) as session,
    ):
        info = await closed_code(session)  # we never read the streams: no credit back
    assert info.by_peer and info.code == SessionErrorCode.DA_YAMN


async def test_silent_client_is_bored() -> None:
    async with (
        baton_server(BatonConfig(idle_timeout=0.3)) as server,
        raw_session(server.url()) as session,
    ):
        info = await closed_code(session)
    assert info.by_peer and info.code == SessionErrorCode.BORED


async def _flood(streams: int) -> BatonOutcome:
    async with baton_server() as server, raw_session(server.url("count=2")) as session:
        opened = []
        for _ in range(streams):
            try:
                stream = await session.create_bidirectional_stream()
                await stream.write(b"\x40")  # a padding length cut short: no message yet
            except SessionClosed:
                break
            opened.append(stream)
        info = await closed_code(session)
        assert info.by_peer and info.code == SessionErrorCode.SUS
        return await server.outcome()


async def test_scale_stream_flood_is_sus_and_bounded() -> None:
    """N vs 4N peer streams that never finish a message with 2 batons in play: the
    server closes with SUS at the third; what it holds does not grow with the flood."""
    small = await _flood(8)
    large = await _flood(32)
    for outcome in (small, large):
        assert outcome.error_code == SessionErrorCode.SUS
        assert outcome.peak_incoming <= 3
    assert max(small.peak_tasks, large.peak_tasks) <= 2 * 2 + 5  # whatever the flood


async def test_stop_sending_is_answered_with_whatever() -> None:
    """§4.7: STOP_SENDING (IDC) on the stream the server answers on: the stream is
    reset (by our QUIC layer, with WHATEVER: the code the player set beforehand, see
    tests/wt/test_sessions.py::test_stop_sending_answered_with_the_code_the_application_
    chose), the baton counts as reset and, the last one, the session ends cleanly."""
    config = BatonConfig(padding=8 << 20)  # the server is still writing when we stop
    async with baton_server(config) as server, raw_session(server.url("baton=10")) as session:
        async with asyncio.timeout(TIMEOUT):
            stream = await session.accept_unidirectional_stream()
            await stream.read_all()  # 8 MiB of padding and 10
        bidi = await session.create_bidirectional_stream()
        await bidi.write(encode_baton(11), end_stream=True)
        bidi.stop_receiving(StreamErrorCode.IDC)
        info = await closed_code(session)
        outcome = await server.outcome()
    assert info.code == 0 and info.by_peer, info
    assert outcome.ok and outcome.reset == 1 and outcome.completed == 0


async def test_reset_on_a_bidi_stream_is_answered_with_whatever() -> None:
    """§4.7: the client resets (I_LIED) a bidirectional stream: the server resets its
    half with WHATEVER; that baton is reset, the other one goes on."""
    async with baton_server() as server, raw_session(server.url("baton=10&count=2")) as session:
        await first_baton(session)
        bidi = await session.create_bidirectional_stream()
        await bidi.write(b"\x05")  # part of a message
        bidi.reset(StreamErrorCode.I_LIED)
        with pytest.raises(StreamReset) as info:
            async with asyncio.timeout(TIMEOUT):
                await bidi.read_all()
        assert info.value.code == StreamErrorCode.WHATEVER
        assert not session.is_closed  # one baton is still in play
        await session.close(0)
        outcome = await server.outcome()
    assert outcome.reset == 1


# ======================================================================================
# our client's rules, against a broken server
# ======================================================================================


@asynccontextmanager
async def app_with(handler: Callable[[WebTransportSession], Awaitable[None]]) -> AsyncIterator[
    int
]:  # fmt: skip
    app = ServerApp(config=server_config())
    app.add_route(DEFAULT_PATH, handler)
    task = asyncio.create_task(app.serve("127.0.0.1", 0))
    try:
        async with asyncio.timeout(TIMEOUT):
            yield await app.wait_started()
    finally:
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


async def test_client_wrong_initial_baton_is_sus() -> None:
    closed: list[SessionClosed] = []

    async def handler(session: WebTransportSession) -> None:
        stream = await session.create_unidirectional_stream()
        await stream.write(encode_baton(9), end_stream=True)  # the client asked for 5
        closed.append(await session.wait_closed())

    async with app_with(handler) as port:
        result = await run_baton_client(
            f"https://127.0.0.1:{port}", baton=5, config=client_config()
        )
    assert not result.ok and result.error_code == SessionErrorCode.SUS
    assert not result.closed_by_peer
    assert closed and closed[0].code == SessionErrorCode.SUS and closed[0].by_peer


async def test_client_reports_the_servers_error() -> None:
    async def handler(session: WebTransportSession) -> None:
        await session.close(int(SessionErrorCode.BRUH), "bad")

    async with app_with(handler) as port:
        result = await run_baton_client(f"https://127.0.0.1:{port}", config=client_config())
    assert not result.ok and result.closed_by_peer
    assert result.error_code == SessionErrorCode.BRUH
    assert "BRUH" in result.summary()


async def test_client_clean_close_with_batons_left_fails() -> None:
    async def handler(session: WebTransportSession) -> None:
        await session.close(0)

    async with app_with(handler) as port:
        result = await run_baton_client(
            f"https://127.0.0.1:{port}", count=2, config=client_config()
        )
    assert not result.ok and "still active" in result.error
