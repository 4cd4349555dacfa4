"""WebTransportClient ↔ low-level WebTransportServer over UDP on 127.0.0.1.

Every test runs a real server (port 0) and a real client in-process, on draft-16 and
on draft-02 where the behaviour depends on the draft.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import pytest

from h3.errors import H3ErrorCode
from pywebtransport import (
    CertificateError,
    ConnectionFailed,
    ConnectTimeout,
    DatagramTooLarge,
    EventType,
    SessionClosed,
    SessionRejected,
    SessionRequest,
    StreamReset,
    WebTransportClient,
    WebTransportServer,
)
from tests.pwt.pwt_support import (
    DRAFTS,
    TIMEOUT,
    Harness,
    client_config,
    echo,
    running,
    server_config,
)

pytestmark = pytest.mark.timeout(60)

# -- connect / reject ------------------------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
async def test_connect_negotiates_the_draft_and_reports_the_request(draft: str) -> None:
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        session = await client.connect(
            url=h.url("/chat?room=1"), headers={"x-token": "abc", "origin": "https://a.b"}
        )
        server_session = await h.next_session()
        request = h.requests[0]
        assert (request.path, request.query) == ("/chat", "room=1")
        assert request.headers["x-token"] == "abc"
        assert request.origin == "https://a.b"
        assert request.draft == draft and session.draft == draft
        assert request.remote_address[0] == "127.0.0.1"
        assert request.authority == f"127.0.0.1:{h.server.port}"
        assert session.path == "/chat?room=1" and server_session.path == "/chat"
        assert session.session_id == server_session.session_id == 0
        assert session.headers[":status"] == "200"
        assert h.server.sessions == [server_session]
        assert session.state == "connected"


async def test_protocol_negotiation_on_draft16() -> None:
    async def pick(request: SessionRequest) -> None:
        assert request.protocols == ["chat-v2", "chat-v1"]
        h.sessions.put_nowait(await request.accept(protocol="chat-v1"))

    async with running() as h, WebTransportClient(client_config("draft16")) as client:
        h.handler = pick
        session = await client.connect(h.url(), protocols=["chat-v2", "chat-v1"])
        assert session.protocol == "chat-v1"
        assert (await h.next_session()).protocol == "chat-v1"


@pytest.mark.parametrize("draft", DRAFTS)
async def test_reject_raises_session_rejected_with_status(draft: str) -> None:
    async def refuse(request: SessionRequest) -> None:
        await request.reject(status_code=403, headers={"x-why": "no"})

    async with running() as h, WebTransportClient(client_config(draft)) as client:
        h.handler = refuse
        with pytest.raises(SessionRejected) as info:
            await client.connect(h.url("/private"))
        assert info.value.status_code == 403 == info.value.code
        assert info.value.headers.get("x-why") == "no"
        assert h.server.stats()["sessions_rejected"] == 1


async def test_no_common_draft_is_rejected_with_status_0() -> None:
    async with (
        running(drafts=("draft16",)) as h,
        WebTransportClient(client_config("draft02")) as client,
    ):
        with pytest.raises(SessionRejected) as info:
            await client.connect(h.url())
        assert info.value.status_code == 0


async def test_wrong_pinned_hash_is_a_certificate_error() -> None:
    config = client_config(server_certificate_hashes=[hashlib.sha256(b"other").digest()])
    async with running() as h, WebTransportClient(config) as client:
        with pytest.raises(CertificateError) as info:
            await client.connect(h.url())
        assert info.value.code & 0xFF00 == 0x100  # QUIC CRYPTO_ERROR


async def test_insecure_mode_skips_verification() -> None:
    config = client_config(server_certificate_hashes=[], insecure=True)
    async with running() as h, WebTransportClient(config) as client:
        session = await client.connect(h.url())
        assert session.state == "connected"


async def test_connect_timeout_when_nobody_answers() -> None:
    config = client_config(connect_timeout=0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        async with WebTransportClient(config) as client:
            with pytest.raises(ConnectTimeout):
                await client.connect(f"https://127.0.0.1:{silent.getsockname()[1]}/echo")


# -- streams and datagrams -------------------------------------------------------------


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("size", [5, 1 << 20])
async def test_bidi_echo(draft: str, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        h.handler = echo
        session = await client.connect(h.url())
        stream = await session.create_bidirectional_stream()
        writer = asyncio.create_task(stream.write_all(payload))
        async with asyncio.timeout(TIMEOUT):
            received = await stream.read_all()
        await writer
        assert received == payload
        assert session.diagnostics()["bytes_received"] == size


@pytest.mark.parametrize("draft", DRAFTS)
async def test_uni_streams_both_ways(draft: str) -> None:
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        h.handler = echo
        session = await client.connect(h.url())
        out = await session.create_unidirectional_stream()
        await out.write_all(memoryview(b"one-way trip"))
        async with asyncio.timeout(TIMEOUT):
            incoming = await session.accept_unidirectional_stream()
            assert await incoming.read_all() == b"one-way trip"
        assert incoming.at_eof()


@pytest.mark.parametrize("draft", DRAFTS)
async def test_datagram_echo(draft: str) -> None:
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        h.handler = echo
        session = await client.connect(h.url())
        # the base size, or the 1452-byte PLPMTU once the server acknowledged the
        # client's probe (discovery is on by default; docs/datagrams.md)
        assert session.max_datagram_size in (1200 - 33, 1452 - 33)
        async with asyncio.timeout(TIMEOUT):
            for i in range(5):  # unreliable in general; loopback does not lose
                await session.send_datagram(data=b"ping %d" % i)
                assert await session.receive_datagram() == b"ping %d" % i
        with pytest.raises(DatagramTooLarge):
            session.send_datagram(bytes(session.max_datagram_size + 1))
        diag = session.diagnostics()
        assert diag["datagrams_sent"] == diag["datagrams_received"] == 5


@pytest.mark.parametrize("draft", DRAFTS)
async def test_streams_and_datagrams_the_server_sends_right_after_accept(draft: str) -> None:
    async def push(request: SessionRequest) -> None:
        session = await request.accept()
        session.send_datagram(b"welcome datagram")
        out = await session.create_unidirectional_stream()
        await out.write_all(b"welcome stream")
        bidi = await session.create_bidirectional_stream()
        await bidi.write(b"question?")
        assert await bidi.read_all() == b"answer!"
        h.sessions.put_nowait(session)

    async with running() as h, WebTransportClient(client_config(draft)) as client:
        h.handler = push
        session = await client.connect(h.url())
        async with asyncio.timeout(TIMEOUT):
            uni = await session.accept_unidirectional_stream()
            assert await uni.read_all() == b"welcome stream"
            bidi = await session.accept_bidirectional_stream()
            assert await bidi.readuntil(b"?") == b"question?"
            await bidi.write_all(b"answer!")
            assert await session.receive_datagram() == b"welcome datagram"
            await h.next_session()


# -- closing ---------------------------------------------------------------------------


async def test_a_cancelled_wait_closed_leaves_the_other_waiters() -> None:
    """Each ``wait_closed()`` waiter has a future of its own: cancelling one (a timed
    wait that gave up) leaves the others waiting, and they get the close's reason."""
    async with running() as h, WebTransportClient(client_config()) as client:
        session = await client.connect(h.url())
        server_session = await h.next_session()
        waiters = [asyncio.ensure_future(server_session.wait_closed()) for _ in range(3)]
        await asyncio.sleep(0)  # all three wait
        waiters[0].cancel()
        await asyncio.sleep(0)
        assert waiters[0].cancelled() and not waiters[1].done()
        late = asyncio.ensure_future(server_session.wait_closed())
        await asyncio.sleep(0)  # its arrival dropped the cancelled waiter
        assert len(server_session._closed or ()) == 3
        await session.close(error_code=17, reason="done")
        async with asyncio.timeout(TIMEOUT):
            for waiter in (*waiters[1:], late):
                info = await waiter
                assert (info.code, info.reason, info.by_peer) == (17, "done", True)
        assert server_session._closed is None


@pytest.mark.parametrize("draft", DRAFTS)
async def test_client_close_code_and_reason_reach_the_server(draft: str) -> None:
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        session = await client.connect(h.url())
        server_session = await h.next_session()
        await session.close(error_code=4242, reason="bye now")
        async with asyncio.timeout(TIMEOUT):
            info = await server_session.wait_closed()
        assert (info.code, info.reason, info.by_peer) == (4242, "bye now", True)
        assert session.state == "closed" and not (await session.wait_closed()).by_peer
        with pytest.raises(SessionClosed):
            await session.create_bidirectional_stream()


@pytest.mark.parametrize("draft", DRAFTS)
async def test_server_close_reaches_the_client_and_fails_its_readers(draft: str) -> None:
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        session = await client.connect(h.url())
        server_session = await h.next_session()
        stream = await session.create_bidirectional_stream()
        await stream.write(b"x")
        reader = asyncio.create_task(stream.read())
        await asyncio.sleep(0.05)
        await server_session.close(7, "server says bye")
        async with asyncio.timeout(TIMEOUT):
            info = await session.wait_closed()
            with pytest.raises((SessionClosed, StreamReset)) as failed:
                await reader
        assert (info.code, info.reason, info.by_peer) == (7, "server says bye", True)
        if isinstance(failed.value, StreamReset):  # the reset overtook the close capsule
            assert failed.value.http_code == H3ErrorCode.WT_SESSION_GONE
        else:
            assert failed.value.code == 7
        with pytest.raises(SessionClosed):
            await session.receive_datagram()


async def test_session_context_manager_closes() -> None:
    async with running() as h, WebTransportClient(client_config()) as client:
        async with await client.connect(h.url()) as session:
            server_session = await h.next_session()
        assert session.is_closed
        async with asyncio.timeout(TIMEOUT):
            assert (await server_session.wait_closed()).code == 0


@pytest.mark.parametrize("draft", DRAFTS)
async def test_stream_reset_codes_reach_both_sides(draft: str) -> None:
    code = 0xFF if draft == "draft02" else 0xDEADBEEF  # draft-02 codes are 8-bit
    async with running() as h, WebTransportClient(client_config(draft)) as client:
        session = await client.connect(h.url())
        server_session = await h.next_session()
        stream = await session.create_bidirectional_stream()
        await stream.write(b"partial")
        async with asyncio.timeout(TIMEOUT):
            peer = await server_session.accept_bidirectional_stream()
            assert await peer.readexactly(7) == b"partial"
            stream.reset(error_code=code)
            with pytest.raises(StreamReset) as reset:
                await peer.read()
            assert reset.value.code == code
            # and the other way: the server resets its half
            peer.reset(3)
            with pytest.raises(StreamReset) as back:
                await stream.read_all()
            assert back.value.code == 3 and back.value.stream_id == stream.stream_id


# -- events, diagnostics, shutdown ------------------------------------------------------


async def test_session_events() -> None:
    async with running() as h, WebTransportClient(client_config()) as client:
        session = await client.connect(h.url())
        server_session = await h.next_session()
        seen: list[str] = []
        server_session.events.on(EventType.STREAM, lambda e: seen.append("stream"))
        server_session.events.on("datagram", lambda e: seen.append(f"datagram {e.data!r}"))
        closed_later = asyncio.create_task(server_session.events.wait_for("closed", timeout=5))
        stream = await session.create_unidirectional_stream()
        await stream.write_all(b"hi")
        session.send_datagram(b"dg")
        async with asyncio.timeout(TIMEOUT):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
        assert sorted(seen) == ["datagram b'dg'", "stream"]
        await session.close(5, "done")
        event = await closed_later
        assert event.source is server_session and event.data.code == 5


async def test_diagnostics() -> None:
    async with running() as h, WebTransportClient(client_config("draft16")) as client:
        h.handler = echo
        session = await client.connect(h.url())
        stream = await session.create_bidirectional_stream()
        await stream.write_all(b"abc")
        async with asyncio.timeout(TIMEOUT):
            assert await stream.read_all() == b"abc"
        diag = session.diagnostics()
        assert diag["draft"] == "draft16" and diag["state"] == "connected"
        assert diag["bytes_sent"] == 3 and diag["bytes_received"] == 3
        assert diag["flow_control"] is True
        assert 0 < diag["rtt"] < 1 and diag["cwnd"] > 0
        stats = h.server.stats()
        assert stats["connections"] == 1 and stats["sessions"] == 1
        assert stats["bytes_received"] == 3 and stats["bytes_sent"] == 3


async def test_graceful_shutdown_drains_then_closes() -> None:
    server = WebTransportServer(server_config())
    await server.listen(port=0)
    harness = Harness(server)
    runner = asyncio.create_task(harness.run())
    async with WebTransportClient(client_config("draft16")) as client:
        polite = await client.connect(harness.url())
        stubborn = await client.connect(harness.url())
        drained = asyncio.Event()

        async def leave(event: Any) -> None:
            drained.set()
            await polite.close(0, "leaving")

        polite.events.on(EventType.DRAINING, leave)
        async with asyncio.timeout(TIMEOUT):
            await server.shutdown(code=99, reason="maintenance", timeout=0.5)
            assert drained.is_set() and stubborn.draining
            assert (await polite.wait_closed()).reason == "leaving"
            info = await stubborn.wait_closed()
        assert (info.code, info.reason) == (99, "maintenance")
        assert server.sessions == [] and server.stats()["connections"] == 0
        async with asyncio.timeout(TIMEOUT):
            await runner  # incoming_sessions() ended
        with pytest.raises(ConnectionFailed):  # the socket is closed
            await client.connect(harness.url(), timeout=0.3)
