"""Rooms across three ServerApps in one event loop joined by a MeshBackplane: the
``/rooms/<name>`` route of ``serve`` relays datagrams and stream messages to the members
on every app exactly once, ``/status`` shows local and total members, and serving
starts and closes the backplane."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pywebtransport.backplane import MeshBackplane
from pywebtransport.interop import add_interop_routes
from tests.pwt.test_app import TIMEOUT, cert, client_for, make_app, serving

__all__ = ["cert"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.timeout(90)


async def wait_for(condition: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


async def status_of(client: Any, port: int) -> dict[str, Any]:
    session = await client.connect(f"https://127.0.0.1:{port}/status")
    stream = await session.create_bidirectional_stream()
    await stream.write(b"", end_stream=True)
    async with asyncio.timeout(TIMEOUT):
        document: dict[str, Any] = json.loads(bytes(await stream.read_all()))
    await session.close()
    return document


async def test_rooms_route_across_three_apps_once_each(cert: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="bp") as directory:
        apps = [make_app(cert, backplane=MeshBackplane(i, 3, directory)) for i in range(3)]
        for app in apps:
            add_interop_routes(app)
        async with contextlib.AsyncExitStack() as stack:
            ports = [await stack.enter_async_context(serving(app)) for app in apps]
            assert sorted(p.name for p in Path(directory).iterdir()) == [
                "w0.sock",
                "w1.sock",
                "w2.sock",
            ]
            client = await stack.enter_async_context(client_for(cert))
            members = [await client.connect(f"https://127.0.0.1:{p}/rooms/blue") for p in ports]
            extra = await client.connect(f"https://127.0.0.1:{ports[0]}/rooms/blue")
            await wait_for(lambda: all(app.rooms.count("blue") == 4 for app in apps))

            # a stream message from app 0's member reaches app 0's other member and the
            # members on apps 1 and 2, once each
            stream = await members[0].create_bidirectional_stream()
            await stream.write(b"hello everywhere", end_stream=True)
            assert bytes(await stream.read_all()) == b""
            for session in (extra, members[1], members[2]):
                async with asyncio.timeout(TIMEOUT):
                    incoming = await session.accept_unidirectional_stream()
                    assert bytes(await incoming.read_all()) == b"hello everywhere"
            # a datagram from app 2's member reaches the three others
            members[2].send_datagram(b"dg")
            for session in (members[0], members[1], extra):
                assert await session.receive_datagram(timeout=TIMEOUT) == b"dg"
            await asyncio.sleep(0.3)  # nothing arrives twice, nor back at the sender
            assert [s.diagnostics()["datagrams_received"] for s in members] == [1, 1, 0]
            assert extra.diagnostics()["datagrams_received"] == 1
            sent = [app.rooms.get("blue").stats.messages_sent for app in apps]  # type: ignore[union-attr]
            assert sent == [1, 1, 1]

            document = await status_of(client, ports[1])
            rooms = document["rooms"]
            assert (rooms["count"], rooms["members"], rooms["total_members"]) == (1, 1, 4)
            assert rooms["backplane"]["remote_instances"] == 2

            await extra.close()
            await members[1].close()
            await wait_for(lambda: all(app.rooms.count("blue") == 2 for app in apps))
            for session in (members[0], members[2]):
                await session.close()
        # serving closed every backplane: its socket is gone
        assert list(Path(directory).iterdir()) == []
        assert all(app.backplane is not None for app in apps)


async def test_backplane_is_set_before_serving(cert: Any) -> None:
    app = make_app(cert)
    assert app.backplane is None and app.rooms.count("x") == 0
    with tempfile.TemporaryDirectory(prefix="bp") as directory:
        backplane = MeshBackplane(0, 1, directory)
        app.backplane = backplane
        assert app.rooms.backplane is backplane
        async with serving(app):
            with pytest.raises(RuntimeError):
                app.backplane = None
            assert (Path(directory) / "w0.sock").exists()
        assert not (Path(directory) / "w0.sock").exists()
