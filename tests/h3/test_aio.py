"""The asyncio HTTP/3 API (h3.aio): our client against our server, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from h3.aio import H3Client, H3ClientResponse, H3Request, H3Response, H3Server, serve_h3
from h3.connection import H3Configuration
from h3.errors import H3ErrorCode
from h3.qpack import FieldSectionTooLarge
from quic.aio import ConnectionClosed, wall_clock
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[H3Request], Awaitable[H3Response]]


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return generate_self_signed(wall_clock())


def server_config(cert: SelfSignedCertificate) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False)
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    return config


def client_config(cert: SelfSignedCertificate) -> QuicConfiguration:
    return QuicConfiguration(server_certificate_hashes=(cert.sha256,))


async def start(
    cert: SelfSignedCertificate, handler: Handler, h3_config: H3Configuration | None = None
) -> H3Server:
    return await serve_h3("127.0.0.1", 0, server_config(cert), handler, h3_configuration=h3_config)


async def echo(request: H3Request) -> H3Response:
    body = await request.read()
    headers = [("x-method", request.method), ("x-path", request.path)]
    headers += [(f"x-echo-{k.decode()}", v.decode()) for k, v in request.headers]
    return H3Response(201 if body else 200, headers, body)


async def test_get_and_post_round_trip(cert: SelfSignedCertificate) -> None:
    async with await start(cert, echo) as server:
        url = f"https://127.0.0.1:{server.port}/start"
        async with H3Client.connect(url, configuration=client_config(cert)) as client:
            assert client.authority == f"127.0.0.1:{server.port}"
            response = await client.get("/a/b?c=d", headers={"X-Custom": "v1"})
            assert response.status == 200
            assert response.header("x-method") == "GET"
            assert response.header("x-path") == "/a/b?c=d"
            assert response.header("x-echo-x-custom") == "v1"  # names sent lowercase
            assert response.content_length == 0 and await response.read() == b""
            assert all(not name.startswith(b":") for name, _ in response.headers)
            payload = os.urandom(300_000)
            response = await client.request("POST", url, [("a", "b")], payload)
            assert response.status == 201 and response.header("x-path") == "/start"
            assert response.header("x-echo-content-length") == str(len(payload))
            assert await response.read() == payload
            assert response.trailers is None


async def test_streamed_bodies_in_both_directions(cert: SelfSignedCertificate) -> None:
    size = 3 * 1024 * 1024 + 17

    async def chunks(total: int) -> AsyncIterator[bytes]:
        for offset in range(0, total, 100_000):
            yield hashlib.shake_128(offset.to_bytes(8, "big")).digest(min(100_000, total - offset))

    expected = b"".join([c async for c in chunks(size)])

    async def handler(request: H3Request) -> H3Response:
        digest = hashlib.sha256()
        async for chunk in request:
            digest.update(chunk)
        headers = [("content-length", str(size)), ("x-upload-sha256", digest.hexdigest())]
        return H3Response(200, headers, chunks(size))

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        response = await client.request("PUT", "/up", body=chunks(size))
        assert response.header("x-upload-sha256") == hashlib.sha256(expected).hexdigest()
        assert response.content_length == size
        received = bytearray()
        async for chunk in response:
            received += chunk
        assert bytes(received) == expected


async def test_concurrent_requests_on_one_connection(cert: SelfSignedCertificate) -> None:
    async def handler(request: H3Request) -> H3Response:
        n = int(request.path.strip("/"))
        await asyncio.sleep(0.001 * (n % 5))
        return H3Response(200, [], str(n).encode() * (n * 100 + 1))

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):

        async def one(n: int) -> bytes:
            return await (await client.get(f"/{n}")).read()

        bodies = await asyncio.gather(*(one(n) for n in range(40)))
        assert bodies == [str(n).encode() * (n * 100 + 1) for n in range(40)]
        assert not client.link.exchanges  # finished streams are forgotten


async def test_status_codes_head_and_handler_failure(cert: SelfSignedCertificate) -> None:
    async def handler(request: H3Request) -> H3Response:
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        if request.path == "/missing":
            return H3Response(404, {"content-type": "text/plain"}, b"nope\n")
        return H3Response(200, {"content-type": "text/plain"}, b"0123456789")

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        missing = await client.get("/missing")
        assert (missing.status, await missing.read()) == (404, b"nope\n")
        failed = await client.get("/boom")
        assert failed.status == 500 and b"internal" in await failed.read()
        head = await client.request("HEAD", "/file")
        assert head.status == 200 and head.content_length == 10
        assert await head.read() == b""  # HEAD: no body, length of the GET body


async def test_body_not_matching_content_length_is_an_error(cert: SelfSignedCertificate) -> None:
    async def short_body() -> AsyncIterator[bytes]:
        yield b"only this"

    async def handler(request: H3Request) -> H3Response:
        return H3Response(200, [("content-length", "1000")], short_body())

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        response = await client.get("/")
        with pytest.raises(StreamResetError) as info:
            await response.read()
        assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR


async def test_server_refuses_oversized_request_header_section(
    cert: SelfSignedCertificate,
) -> None:
    """RFC 9114 §4.2.2: above SETTINGS_MAX_FIELD_SECTION_SIZE the request is refused
    (stream reset with H3_EXCESSIVE_LOAD) and never reaches the handler."""
    seen: list[str] = []

    async def handler(request: H3Request) -> H3Response:
        seen.append(request.path)
        return H3Response(200, [], b"ok")

    limit = H3Configuration(max_field_section_size=2048)
    async with (
        await start(cert, handler, limit) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        settings = await asyncio.wait_for(client.link.peer_settings, 5)
        assert settings[0x06] == 2048  # SETTINGS_MAX_FIELD_SECTION_SIZE
        big = {"x-big": "v" * 4000}
        with pytest.raises(FieldSectionTooLarge):  # our client honours the setting
            await client.get("/big", headers=big)
        # a client that ignores the advice is refused by the server
        encoder = client.link.h3.encoder
        encoder.peer_max_field_section_size = None
        with pytest.raises(StreamResetError) as info:
            await asyncio.wait_for(client.get("/big", headers=big), 10)
        assert info.value.error_code == H3ErrorCode.H3_EXCESSIVE_LOAD
        response = await client.get("/small", headers={"x-small": "v" * 100})
        assert response.status == 200 and await response.read() == b"ok"
    assert seen == ["/small"]


async def test_graceful_shutdown_finishes_in_flight_requests(
    cert: SelfSignedCertificate,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    size = 2 * 1024 * 1024

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * (size // 2)
        await release.wait()
        yield b"b" * (size // 2)

    async def handler(request: H3Request) -> H3Response:
        started.set()
        return H3Response(200, [("content-length", str(size))], slow_body())

    server = await start(cert, handler)
    async with H3Client.connect(
        "127.0.0.1", server.port, configuration=client_config(cert)
    ) as client:
        response = await client.get("/slow")
        await started.wait()
        shutdown = asyncio.create_task(server.shutdown(timeout=10))
        for _ in range(100):  # GOAWAY arrives while the response is in flight
            if client.link.goaway_id is not None:
                break
            await asyncio.sleep(0.02)
        assert client.link.goaway_id == 4  # RFC 9114 §5.2: stream 0 is processed
        assert not shutdown.done()
        with pytest.raises(ConnectionClosed):
            await client.get("/new")  # no new requests after GOAWAY
        release.set()
        body = await response.read()
        assert body == b"a" * (size // 2) + b"b" * (size // 2)
        await asyncio.wait_for(shutdown, 10)
        term = await asyncio.wait_for(client.session.wait_closed(), 5)
        assert term.error_code == H3ErrorCode.H3_NO_ERROR and term.by_peer


async def test_early_response_stops_the_request_body(cert: SelfSignedCertificate) -> None:
    """RFC 9114 §4.1: a server that answers without reading the request asks the client
    to stop sending with H3_NO_ERROR; the client still gets the response."""

    async def handler(request: H3Request) -> H3Response:
        return H3Response(413, [], b"too much")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        response = await asyncio.wait_for(client.request("POST", "/", body=endless()), 20)
        assert response.status == 413 and await response.read() == b"too much"
        assert not client.link.exchanges  # the stopped request left the table too


async def test_connect_failures(cert: SelfSignedCertificate) -> None:
    with pytest.raises(ValueError):
        async with H3Client.connect("http://127.0.0.1/"):
            pass
    async with await start(cert, echo) as server:
        untrusted = QuicConfiguration()  # system trust store: the self-signed cert fails
        with pytest.raises(ConnectionClosed):
            async with H3Client.connect("127.0.0.1", server.port, configuration=untrusted):
                pass


async def test_server_closing_connection_fails_pending_request(
    cert: SelfSignedCertificate,
) -> None:
    never = asyncio.Event()

    async def handler(request: H3Request) -> H3Response:
        await never.wait()
        return H3Response()

    server = await start(cert, handler)
    async with H3Client.connect(
        "127.0.0.1", server.port, configuration=client_config(cert)
    ) as client:
        pending = asyncio.create_task(client.get("/hang"))
        await asyncio.sleep(0.2)
        await server.shutdown(timeout=0.5)  # the handler does not finish in time
        with pytest.raises((ConnectionClosed, StreamResetError)):
            await asyncio.wait_for(pending, 5)


WINDOW = 256 * 1024  # the client's stream flow-control window in the tests below


async def wait_for_size(get: Callable[[], int], at_least: int) -> int:
    """Poll until ``get()`` reaches ``at_least`` and stops growing; its last value."""
    for _ in range(500):
        if get() >= at_least:
            break
        await asyncio.sleep(0.01)
    last = -1
    while get() != last:  # what arrives once the window is full: nothing more
        last = get()
        await asyncio.sleep(0.2)
    return last


async def test_unread_response_holds_at_most_the_stream_window(
    cert: SelfSignedCertificate,
) -> None:
    """Credit returns when the application reads, not on receipt: a response body
    never read holds at most the stream window while the server tries to send 16x and
    64x that (N against 4N); reading it then gives every byte."""
    payloads = {n: os.urandom(n * WINDOW) for n in (16, 64)}

    async def handler(request: H3Request) -> H3Response:
        return H3Response(200, [], payloads[int(request.path.strip("/"))])

    config = client_config(cert)
    config.initial_max_stream_data = WINDOW
    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=config) as client,
    ):
        responses = {n: await client.get(f"/{n}") for n in payloads}
        held = {}
        for n, response in responses.items():
            body = response._exchange.body
            held[n] = await wait_for_size(lambda body=body: body.size, WINDOW // 2)
        assert all(0 < size <= WINDOW for size in held.values()), held
        for n, response in responses.items():
            assert await response.read() == payloads[n]
        assert not client.link.exchanges


async def test_unread_request_body_holds_at_most_the_stream_window(
    cert: SelfSignedCertificate,
) -> None:
    """The same on the server: a handler that has not read the request body yet holds
    at most the window of it; then it reads every byte."""
    upload = os.urandom(16 * WINDOW)
    go = asyncio.Event()
    held: list[int] = []

    async def handler(request: H3Request) -> H3Response:
        body = request._exchange.body
        held.append(await wait_for_size(lambda: body.size, WINDOW // 2))
        await go.wait()
        data = await request.read()
        return H3Response(200, [], hashlib.sha256(data).hexdigest().encode())

    config = server_config(cert)
    config.initial_max_stream_data = WINDOW
    server = await serve_h3("127.0.0.1", 0, config, handler)
    async with (
        server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):
        pending = asyncio.create_task(client.request("PUT", "/", body=upload))
        while not held:
            await asyncio.sleep(0.01)
        assert 0 < held[0] <= WINDOW
        go.set()
        response = await asyncio.wait_for(pending, 20)
        assert await response.read() == hashlib.sha256(upload).hexdigest().encode()


async def test_abandoned_bodies_return_their_credit(cert: SelfSignedCertificate) -> None:
    """Bodies nobody reads do not keep the connection's flow-control credit: responses
    closed or dropped unread, and request bodies a handler never read, are released
    (and stopped if still arriving), so more than a connection window of them passes;
    afterwards no exchange is left on either side."""
    big = os.urandom(WINDOW // 2)  # arrives whole even unread

    async def handler(request: H3Request) -> H3Response:
        if request.path == "/ignore-body":
            return H3Response(200, [], b"ignored")  # the request body is never read
        return H3Response(200, [], big)

    config = client_config(cert)
    config.initial_max_stream_data = WINDOW
    config.initial_max_data = 4 * WINDOW
    config.max_data_window = 4 * WINDOW
    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=config) as client,
    ):

        async def arrived(response: H3ClientResponse) -> None:
            while not response._exchange.recv_done:  # all of it, unread
                await asyncio.sleep(0.01)

        for i in range(16):  # 2x the connection window, never read
            response = await asyncio.wait_for(client.get(f"/{i}"), 10)
            await asyncio.wait_for(arrived(response), 10)
            if i % 3 == 0:
                response.close()
            elif i % 3 == 1:
                async with response:
                    pass
            else:  # dropped: the finalizer releases it
                del response
                gc.collect()
        for _ in range(6):  # request bodies the handler does not read
            response = await asyncio.wait_for(client.request("POST", "/ignore-body", body=big), 10)
            assert await response.read() == b"ignored"
        last = await asyncio.wait_for(client.get("/last"), 10)
        assert await asyncio.wait_for(last.read(), 10) == big
        await asyncio.sleep(0.2)
        assert not client.link.exchanges
        assert all(not link.exchanges for link in server.links)


async def test_no_exception_escapes_the_event_callbacks(cert: SelfSignedCertificate) -> None:
    """Garbage on request streams from a raw QUIC client is answered with HTTP/3 error
    codes; a bug in the link closes the connection with H3_INTERNAL_ERROR. Nothing
    reaches the event loop's exception handler."""
    from h3.aio_link import H3Link
    from quic.aio import connect

    loop = asyncio.get_running_loop()
    escaped: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    try:
        async with await start(cert, echo) as server:
            config = client_config(cert)
            config.alpn_protocols = ["h3"]
            async with connect("127.0.0.1", server.port, config) as session:
                _, writer = await session.create_stream()
                writer.write(b"\x01\x10" + b"\xff" * 16)  # HEADERS: undecodable section
                writer.write(b"\x00\x05hello")
                term = await asyncio.wait_for(session.wait_closed(), 5)
                assert term.error_code == H3ErrorCode.QPACK_DECOMPRESSION_FAILED
            original = H3Link._on_h3_event

            def broken(self: H3Link, event: Any) -> None:
                raise RuntimeError("a bug")

            H3Link._on_h3_event = broken  # type: ignore[method-assign]
            try:
                with pytest.raises(ConnectionClosed) as info:
                    async with H3Client.connect(
                        "127.0.0.1", server.port, configuration=client_config(cert)
                    ) as client:
                        await asyncio.wait_for(client.get("/"), 5)
                assert info.value.error_code == H3ErrorCode.H3_INTERNAL_ERROR
            finally:
                H3Link._on_h3_event = original  # type: ignore[method-assign]
    finally:
        loop.set_exception_handler(None)
    assert escaped == []


async def test_exchange_tables_return_to_idle(cert: SelfSignedCertificate) -> None:
    """Finding 9 in h3.aio: N and 4N requests, some with bodies the handler ignores,
    some closed unread by the client, some cancelled mid-request: afterwards no
    exchange is left on either side and both H3Connections are at their idle size."""
    from tests.h3.h3pair import IDLE, idle_sizes

    async def handler(request: H3Request) -> H3Response:
        if request.path.endswith("/read"):
            await request.read()
        return H3Response(200, [], b"r" * 3000)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"u" * 4096
            await asyncio.sleep(0)

    async with (
        await start(cert, handler) as server,
        H3Client.connect("127.0.0.1", server.port, configuration=client_config(cert)) as client,
    ):

        async def one(i: int) -> None:
            kind = i % 4
            if kind == 0:
                assert await (await client.get(f"/{i}")).read() == b"r" * 3000
            elif kind == 1:
                response = await client.request("POST", f"/{i}/read", body=b"p" * 5000)
                assert await response.read() == b"r" * 3000
            elif kind == 2:
                (await client.request("POST", f"/{i}", body=b"p" * 5000)).close()
            else:
                task = asyncio.create_task(client.request("POST", f"/{i}", body=endless()))
                await asyncio.sleep(0.01)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StreamResetError):
                    await task

        for n in (100, 400):
            for start_at in range(0, n, 50):
                await asyncio.wait_for(
                    asyncio.gather(*(one(i) for i in range(start_at, start_at + 50))), 30
                )
            for _ in range(100):
                await asyncio.sleep(0.02)
                links = [client.link, *server.links]
                if all(not link.exchanges for link in links) and all(
                    idle_sizes(link.h3) == IDLE for link in links
                ):
                    break
            assert not client.link.exchanges
            assert all(not link.exchanges for link in server.links)
            assert idle_sizes(client.link.h3) == IDLE
            assert all(idle_sizes(link.h3) == IDLE for link in server.links)
