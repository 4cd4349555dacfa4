"""The structured-messaging wire format as a browser speaks it: headless Chromium runs
the JavaScript reader/writer printed in docs/messaging.md (the first ``js`` block,
taken from the file, so the documentation is what is tested) against an in-process
ServerApp route with BearerAuth(query_param="token") and a MessageRegistry.

The page: a session without the token is refused (401); with ``?token=`` it sends a
Join and a Chat on a bidirectional stream, ends it, and reads the server's typed
answers until the stream ends; then a Chat as a datagram comes back upper-cased. The
page POSTs what it saw to a small plain-HTTP server of the test (which also serves the
page: WebTransport needs a secure context, and http://127.0.0.1 is one).
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pywebtransport import (
    BearerAuth,
    MessageRegistry,
    ServerApp,
    StructuredDatagramTransport,
    StructuredStream,
)
from tests.interop.chromium import ChromiumProcess, find_chromium
from tests.pwt.pwt_support import certificate, server_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "messaging.md"
PAGE_TIMEOUT = 90.0
TOKEN = "s3cret-token"


@dataclass
class Chat:
    text: str
    room: str = "lobby"


@dataclass
class Join:
    user: str
    tags: list[str] = field(default_factory=list)


def _registry() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(1, Chat)
    registry.register(2, Join)
    return registry


def doc_javascript() -> str:
    """The first ``js`` block of docs/messaging.md: frame, datagram, parse, messages."""
    match = re.search(r"```js\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match is not None, "docs/messaging.md has no js block"
    code = match.group(1)
    for name in ("function frame", "function datagram", "function parse", "messages("):
        assert name in code, name
    return code


PAGE = """<!doctype html><meta charset="utf-8"><title>structured</title>
<script type="module">
%(library)s
const params = new URLSearchParams(location.hash.slice(1));
const base = params.get("base"), report = params.get("report");
const hash = Uint8Array.from(params.get("hash").match(/../g), (h) => parseInt(h, 16));
const options = {serverCertificateHashes: [{algorithm: "sha-256", value: hash}]};
const out = {ok: false};
const later = (ms) => new Promise((resolve) => setTimeout(() => resolve(null), ms));

async function run() {
  try {
    const refused = new WebTransport(`${base}/chat`, options);
    await refused.ready;
    out.withoutToken = "accepted";
    refused.close();
  } catch (e) {
    out.withoutToken = "refused";
  }
  const wt = new WebTransport(`${base}/chat?token=${params.get("token")}`, options);
  await wt.ready;
  const {readable, writable} = await wt.createBidirectionalStream();
  const writer = writable.getWriter();
  await writer.write(frame(2, {user: "ann", tags: ["x"]}));
  await writer.write(frame(1, {text: "hi", room: "r"}));
  await writer.close();
  out.received = [];
  for await (const message of messages(readable)) out.received.push(message);

  const dw = wt.datagrams.writable.getWriter();
  const dr = wt.datagrams.readable.getReader();
  let pending = dr.read();
  for (let i = 0; i < 30 && !out.datagram; i++) {
    await dw.write(datagram(1, {text: `dg ${i}`, room: "d"}));
    const got = await Promise.race([pending, later(300)]);
    if (got && got.value) out.datagram = parse(got.value);
  }
  wt.close();
  out.ok = true;
}
run()
  .catch((e) => { out.error = String(e); })
  .finally(() => fetch(report, {method: "POST", mode: "no-cors", body: JSON.stringify(out)}));
</script>
"""


class _Handler(BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        body = self.server.page.encode("utf-8")
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), 1 << 20)
        self.server.results.put(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.send_header("access-control-allow-origin", "*")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PageServer(ThreadingHTTPServer):
    daemon_threads = True
    page: str
    results: queue.Queue[dict[str, Any]]


def make_app() -> ServerApp:
    registry = _registry()
    app = ServerApp(config=server_config(shutdown_timeout=2.0))

    @app.route("/chat", middleware=[BearerAuth([TOKEN], query_param="token")])
    async def chat(session: Any) -> None:
        async def datagrams() -> None:
            async with StructuredDatagramTransport(
                session, registry, skip_malformed=True
            ) as transport:
                async for message in transport:
                    if isinstance(message, Chat):
                        await transport.send(Chat(message.text.upper(), message.room))

        pump = asyncio.create_task(datagrams())
        try:
            async for raw in session.incoming_bidirectional_streams():
                async with StructuredStream(raw, registry) as stream:
                    async for message in stream:
                        if isinstance(message, Join):
                            await stream.send(Chat(f"welcome {message.user}", "lobby"))
                            await stream.send(Join("server", message.tags))
                        else:
                            await stream.send(Chat(message.text.upper(), message.room))
        finally:
            pump.cancel()

    return app


async def test_browser_speaks_the_documented_wire_format() -> None:
    app = make_app()
    serve = asyncio.create_task(app.serve("127.0.0.1", 0))
    pages = _PageServer(("127.0.0.1", 0), _Handler)
    pages.page = PAGE % {"library": doc_javascript()}
    pages.results = queue.Queue()
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    try:
        async with asyncio.timeout(10):
            port = await app.wait_started()
        origin = f"http://127.0.0.1:{pages.server_address[1]}"
        url = (
            f"{origin}/page.html#base=https://127.0.0.1:{port}"
            f"&hash={certificate().sha256.hex()}&token={TOKEN}&report={origin}/result"
        )
        with ChromiumProcess(url) as browser:
            try:
                result = await asyncio.to_thread(pages.results.get, True, PAGE_TIMEOUT)
            except queue.Empty:
                result = {"ok": False, "error": "no result", "output": browser.output()[-3000:]}
    finally:
        pages.shutdown()
        pages.server_close()
        app.stop()
        async with asyncio.timeout(10):
            await serve
    assert result.get("ok"), result
    assert result["withoutToken"] == "refused", result
    assert result["received"] == [
        {"tag": 1, "value": {"text": "welcome ann", "room": "lobby"}},
        {"tag": 2, "value": {"user": "server", "tags": ["x"]}},
        {"tag": 1, "value": {"text": "HI", "room": "r"}},
    ], result
    assert result["datagram"]["tag"] == 1, result
    assert result["datagram"]["value"]["text"].startswith("DG "), result
    assert app.sessions_rejected >= 1
