"""aioquic 1.7.2 peer for session resumption and 0-RTT tests (a standalone script).

Server (echo, with a ticket store, so aioquic issues tickets and accepts 0-RTT)::

    python tests/peers/aioquic_resume.py server --cert C --key K --alpn A

prints ``LISTENING <port>``, then for each connection ``HANDSHAKE {json}`` with
``session_resumed``, ``early_data_accepted`` and ``early_streams`` (streams whose first
data arrived before the handshake completed, i.e. in 0-RTT). Each client bidi stream
is echoed, FIN after the client's FIN. Stops at EOF on stdin.

Client (two connections: the second resumes with the first one's ticket)::

    python tests/peers/aioquic_resume.py client --port P --alpn A [--zerortt]

prints one JSON line: ``ok``, ``first_resumed``, ``second_resumed``,
``early_data_accepted``, ``echo_ok``. With ``--zerortt`` the second connection writes
its request before the handshake completes (0-RTT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)
from aioquic.tls import SessionTicket


class EchoServer(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early_streams: set[int] = set()
        self.done = False

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            if not self.done:
                self.early_streams.add(event.stream_id)
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()
        elif isinstance(event, HandshakeCompleted):
            self.done = True
            record = {
                "session_resumed": event.session_resumed,
                "early_data_accepted": event.early_data_accepted,
                "early_streams": sorted(self.early_streams),
            }
            print("HANDSHAKE " + json.dumps(record), flush=True)


class Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: dict[int, bytearray] = {}
        self.finished: dict[int, asyncio.Future[bytes]] = {}
        self.handshake: HandshakeCompleted | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            print(f"terminated: {event}", file=sys.stderr)
        if isinstance(event, HandshakeCompleted):
            self.handshake = event
        if isinstance(event, StreamDataReceived):
            self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.end_stream and event.stream_id in self.finished:
                self.finished[event.stream_id].set_result(bytes(self.received[event.stream_id]))

    async def echo(self, payload: bytes) -> bytes:
        sid = self._quic.get_next_available_stream_id()
        self.finished[sid] = asyncio.get_running_loop().create_future()
        self._quic.send_stream_data(sid, payload, end_stream=True)
        self.transmit()
        return await asyncio.wait_for(self.finished[sid], 10)


async def run_server(args: argparse.Namespace) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=[args.alpn])
    config.load_cert_chain(args.cert, args.key)
    tickets: dict[bytes, SessionTicket] = {}
    server = await serve(
        "127.0.0.1",
        args.port,
        configuration=config,
        create_protocol=EchoServer,
        session_ticket_fetcher=tickets.pop,
        session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
    )
    print(f"LISTENING {server._transport.get_extra_info('sockname')[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    tickets: list[SessionTicket] = []

    def config(ticket: SessionTicket | None) -> QuicConfiguration:
        cfg = QuicConfiguration(is_client=True, alpn_protocols=[args.alpn], verify_mode=0)
        cfg.server_name = "localhost"
        cfg.session_ticket = ticket
        return cfg

    result: dict[str, Any] = {}
    async with connect(
        "127.0.0.1",
        args.port,
        configuration=config(None),
        create_protocol=Client,
        session_ticket_handler=tickets.append,
    ) as first:
        assert isinstance(first, Client)
        echo1 = await first.echo(b"first request")
        for _ in range(100):
            if tickets:
                break
            await asyncio.sleep(0.02)
        result["first_resumed"] = bool(first.handshake and first.handshake.session_resumed)
    if not tickets:
        return {"ok": False, "error": "no session ticket"}
    async with connect(
        "127.0.0.1",
        args.port,
        configuration=config(tickets[-1]),
        create_protocol=Client,
        wait_connected=not args.zerortt,
    ) as second:
        assert isinstance(second, Client)
        echo2 = await second.echo(b"second request")
        for _ in range(100):
            if second.handshake is not None:
                break
            await asyncio.sleep(0.02)
        hs = second.handshake
        result["second_resumed"] = bool(hs and hs.session_resumed)
        result["early_data_accepted"] = bool(hs and hs.early_data_accepted)
    result["echo_ok"] = echo1 == b"first request" and echo2 == b"second request"
    result["ok"] = result["echo_ok"] and result["second_resumed"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--alpn", required=True)
    parser.add_argument("--zerortt", action="store_true")
    parser.add_argument("--mode", default="echo")  # (the PeerServer launcher passes it)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(run_server(args))
        return
    try:
        result = asyncio.run(asyncio.wait_for(run_client(args), 30))
    except Exception as exc:  # reported, not raised: the test reads the line
        import traceback

        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
