"""aioquic 1.7.2 HTTP/3 client sending requests in 0-RTT (a standalone script).

    python tests/peers/aioquic_h3_early.py --port P

Two connections to an HTTP/3 server on 127.0.0.1: the first one (1-RTT) sends a GET and
keeps the session ticket; the second resumes with it and, before its handshake
completes (0-RTT), sends a POST with a body and a GET. A request answered 425 (Too
Early) is sent again once after the handshake (RFC 8470 §5.2). Prints one JSON line:
``ok``, ``first`` (status of the first GET), ``early_data_accepted``, ``zero_rtt``
(statuses of the 0-RTT POST and GET), ``retried`` (status of the POST sent again, if it
was), and the ``x-early`` header of each response (the server echoes whether it saw
the request as early data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent
from aioquic.tls import SessionTicket


class Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.handshake: asyncio.Future[HandshakeCompleted] = (
            asyncio.get_running_loop().create_future()
        )
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.done: dict[int, asyncio.Future[None]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted) and not self.handshake.done():
            self.handshake.set_result(event)
        for h3_event in self.h3.handle_event(event):
            self._on_h3(h3_event)

    def _on_h3(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self.heads[event.stream_id] = dict(event.headers)
        if isinstance(event, (HeadersReceived, DataReceived)) and event.stream_ended:
            future = self.done.get(event.stream_id)
            if future is not None and not future.done():
                future.set_result(None)

    def send(self, method: str, body: bytes = b"") -> int:
        sid = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/early"),
        ]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h3.send_data(sid, body, end_stream=True)
        self.done[sid] = asyncio.get_running_loop().create_future()
        self.transmit()
        return sid

    async def status(self, sid: int) -> tuple[int, str]:
        await asyncio.wait_for(self.done[sid], 10)
        head = self.heads[sid]
        return int(head[b":status"]), head.get(b"x-early", b"").decode()


def configuration(ticket: SessionTicket | None) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=0)
    config.server_name = "localhost"
    config.session_ticket = ticket
    return config


async def run(port: int) -> dict[str, Any]:
    tickets: list[SessionTicket] = []
    result: dict[str, Any] = {}
    async with connect(
        "127.0.0.1",
        port,
        configuration=configuration(None),
        create_protocol=Client,
        session_ticket_handler=tickets.append,
    ) as first:
        assert isinstance(first, Client)
        result["first"] = await first.status(first.send("GET"))
        for _ in range(100):
            if tickets:
                break
            await asyncio.sleep(0.02)
    if not tickets:
        return {"ok": False, "error": "no session ticket"}
    async with connect(
        "127.0.0.1",
        port,
        configuration=configuration(tickets[-1]),
        create_protocol=Client,
        wait_connected=False,
    ) as second:
        assert isinstance(second, Client)
        post = second.send("POST", b"early body")  # before the handshake: 0-RTT
        get = second.send("GET")
        handshake = await asyncio.wait_for(second.handshake, 10)
        result["early_data_accepted"] = handshake.early_data_accepted
        result["zero_rtt"] = [await second.status(post), await second.status(get)]
        if result["zero_rtt"][0][0] == 425:  # RFC 8470 §5.2: again, after the handshake
            result["retried"] = await second.status(second.send("POST", b"early body"))
    result["ok"] = True
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        result = asyncio.run(asyncio.wait_for(run(args.port), 30))
    except Exception as exc:  # reported, not raised: the test reads the line
        import traceback

        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
