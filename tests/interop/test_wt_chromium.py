"""WebTransport interop with headless Chromium (draft-02 by default, and draft-07).

Every party is a separate process talking over real sockets on 127.0.0.1:

* our interop server, ``python -m pywebtransport serve --port 0`` (self-signed ECDSA
  certificate valid 13 days; the test reads its SHA-256 from the ``CERT-SHA256`` line);
* for the close tests, :func:`serve_custom` run as ``python -m
  tests.interop.test_wt_chromium serve`` — a :class:`~pywebtransport.app.ServerApp` with
  ``/record`` (echo, then prints ``SESSION-CLOSED {"path", "code", "reason",
  "by_peer"}`` when the session ends) and ``/close-me`` (reads ``CLOSE <code> <reason>``
  on a bidi stream and closes the session with them);
* :class:`PageServer`, the test's plain-HTTP server on 127.0.0.1: it serves
  ``wt_pages/wt.html`` (``http://127.0.0.1`` is a secure context) and collects the one
  JSON document the page POSTs (``--dump-dom`` would return before the asynchronous
  JavaScript ends);
* headless Chromium (``tests/interop/chromium.py``), ended by its PID. The page connects
  with ``new WebTransport(url, {serverCertificateHashes: [...]})``.

Per browser variant — default (draft-02) and ``--enable-features=
EnableWebTransportDraft07`` — the tests check: connect; bidi echo of a short message and
of 1 MB; datagram echo; a uni stream answered by the server's uni stream; the draft the
server negotiated (the page reads ``/stats``); a client close whose code and reason the
server sees; a server close whose code and reason ``transport.closed`` resolves with.

Chromium writes a net log (``--log-net-log``) into the test's temporary directory; on a
failure its WebTransport/QUIC events are summarised in the assertion message.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest

from pywebtransport.app import ServerApp
from pywebtransport.config import ServerConfig
from pywebtransport.interop import echo_handler
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed
from tests.interop.chromium import ChromiumProcess, find_chromium, netlog_events
from tests.interop.test_wt_aioquic import LineProcess

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "wt_pages"
PAGE_TIMEOUT = 90.0
DRAFT07_FLAG = "--enable-features=EnableWebTransportDraft07"
VARIANTS = {"draft02": [], "draft07": [DRAFT07_FLAG]}
CLIENT_CLOSE = (4001, "page says bye")  # must match wt.html
SERVER_CLOSE = (3003, "server says bye")  # must match wt.html


# ====================================================================== custom server


def serve_custom() -> None:
    """The close-test server (run in a child process): prints the ``serve`` lines."""
    cert = generate_self_signed(wall_clock(), hostnames=["localhost", "127.0.0.1"], days=13)
    config = ServerConfig(
        certificate_chain=[cert.certificate], private_key=cert.private_key, port=0
    )
    app = ServerApp(config=config)

    def emit(prefix: str, record: dict[str, Any]) -> None:
        print(f"{prefix} {json.dumps(record, sort_keys=True)}", flush=True)

    async def record(session: Any) -> None:
        echo = asyncio.create_task(echo_handler(session))
        info = await session.wait_closed()
        await echo
        emit(
            "SESSION-CLOSED",
            {"path": "/record", "code": info.code, "reason": info.reason, "by_peer": info.by_peer},
        )

    async def close_me(session: Any) -> None:
        stream = await session.accept_bidirectional_stream()
        command = (await stream.read_all()).decode()
        _, code, reason = command.split(" ", 2)
        await session.close(error_code=int(code), reason=reason)
        emit("SERVER-CLOSED", {"path": "/close-me", "code": int(code), "reason": reason})

    app.add_route("/echo", echo_handler)
    app.add_route("/record", record)
    app.add_route("/close-me", close_me)

    async def main() -> None:
        serving = asyncio.create_task(app.serve("127.0.0.1", 0))
        port = await app.wait_started()
        print(f"CERT-SHA256 {cert.sha256_hex}", flush=True)
        print(f"LISTENING {port}", flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.create_future()

        def watch_stdin() -> None:  # our parent died or closed the pipe: stop
            sys.stdin.read()
            loop.call_soon_threadsafe(stdin_closed.set_result, None)

        threading.Thread(target=watch_stdin, daemon=True).start()
        await asyncio.wait([serving, stdin_closed], return_when=asyncio.FIRST_COMPLETED)
        app.stop()
        await serving

    asyncio.run(main())


# ====================================================================== page server


class _PageHandler(BaseHTTPRequestHandler):
    server: _PageHTTPServer

    def do_GET(self) -> None:
        name = urlsplit(self.path).path.lstrip("/")
        target = (PAGES / name).resolve()
        if not name or not target.is_relative_to(PAGES) or not target.is_file():
            self._reply(404, b"not found\n", "text/plain")
            return
        self._reply(200, target.read_bytes(), "text/html; charset=utf-8")

    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), 1 << 20)
        body = self.rfile.read(length)
        try:
            record: Any = json.loads(body)
        except ValueError:
            record = {"unparsable": body.decode("utf-8", "replace")}
        self.server.results.put(record)
        self._reply(204, b"", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("access-control-allow-origin", "*")
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    results: queue.Queue[dict[str, Any]]


class PageServer:
    """Plain HTTP on 127.0.0.1:0: serves ``wt_pages/`` and collects the page's POST."""

    def __init__(self) -> None:
        self._server = _PageHTTPServer(("127.0.0.1", 0), _PageHandler)
        self._server.results = queue.Queue()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def page_url(self, mode: str, wt_port: int, cert_hash: str) -> str:
        fragment = (
            f"mode={mode}&base=https://127.0.0.1:{wt_port}&hash={cert_hash}"
            f"&report={self.origin}/result"
        )
        return f"{self.origin}/wt.html#{fragment}"

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            return self._server.results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the page POSTed nothing within {timeout} s") from None

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


# ====================================================================== fixtures


@pytest.fixture
def cli_server() -> Iterator[LineProcess]:
    server = LineProcess([sys.executable, "-m", "pywebtransport", "serve", "--port", "0"])
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def custom_server() -> Iterator[LineProcess]:
    server = LineProcess([sys.executable, "-m", "tests.interop.test_wt_chromium", "serve"])
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def _cert_hash(server: LineProcess) -> str:
    for line in server.seen:
        if line.startswith("CERT-SHA256 "):
            return str(line.split()[1])
    raise AssertionError(f"no CERT-SHA256 line in {server.seen}")


def _netlog_summary(path: Path) -> list[str]:
    """WebTransport / QUIC session events of a net log, for failure messages."""
    if not path.exists():
        return ["(no net log)"]
    try:
        events = netlog_events(path)
    except (ValueError, KeyError) as exc:
        return [f"(net log unreadable: {exc})"]
    keep = ("WEBTRANSPORT", "QUIC_SESSION_CLOSE", "QUIC_SESSION_PACKET_RECEIVED_ERROR", "HTTP3_")
    lines = []
    for name, params in events:
        if any(word in name for word in keep) and "FRAME_SENT" not in name:
            lines.append(f"{name} {json.dumps(params)[:300]}")
    return lines[-60:]


def run_page(
    pages: PageServer, mode: str, wt_port: int, cert_hash: str, flags: list[str]
) -> dict[str, Any]:
    """Load the page in headless Chromium; the JSON it POSTed (the net log on failure)."""
    with tempfile.TemporaryDirectory(prefix="wt-netlog-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        browser_flags = [
            *flags,
            f"--log-net-log={netlog}",
            "--net-log-capture-mode=Everything",
        ]
        url = pages.page_url(mode, wt_port, cert_hash)
        browser = ChromiumProcess(url, browser_flags)
        with browser:
            try:
                result = pages.wait(PAGE_TIMEOUT)
            except TimeoutError:
                result = {"ok": False, "error": "no result from the page"}
            output = browser.output()
        if not result.get("ok"):
            result["netlog"] = _netlog_summary(netlog)
            result["browser_output"] = output[-3000:]
        return result


def _explain(result: dict[str, Any], server: LineProcess) -> str:
    return (
        json.dumps(result, indent=1, default=str)[:20000]
        + "\nserver stderr:\n"
        + (server.stderr()[-5000:])
    )


# ====================================================================== tests


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_echo(variant: str, cli_server: LineProcess, pages: PageServer) -> None:
    result = run_page(pages, "echo", cli_server.port, _cert_hash(cli_server), VARIANTS[variant])
    why = _explain(result, cli_server)
    assert result.get("ok") is True, why
    steps = result["steps"]
    assert steps["ready"] is True
    assert steps["bidiSmall"] == {"sent": 20, "received": 20, "equal": True}, why
    assert steps["bidiLarge"] == {"sent": 1 << 20, "received": 1 << 20, "equal": True}, why
    datagrams = steps["datagrams"]
    # Loopback: all should come back; tolerate a little loss (datagrams are unreliable).
    assert datagrams["received"] >= 15 and datagrams["unexpected"] == 0, why
    assert datagrams["maxDatagramSize"] > 1000, why
    assert steps["uni"]["equal"] is True and steps["uni"]["received"] > 0, why
    # The draft our server negotiated, as /stats reports it.
    assert steps["stats"]["draft"] == variant, why
    assert steps["stats"]["path"] == "/stats", why


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_client_close(variant: str, custom_server: LineProcess, pages: PageServer) -> None:
    result = run_page(
        pages, "client-close", custom_server.port, _cert_hash(custom_server), VARIANTS[variant]
    )
    why = _explain(result, custom_server)
    assert result.get("ok") is True, why
    assert result["steps"]["bidiSmall"]["equal"] is True, why
    closed = custom_server.wait_json("SESSION-CLOSED", 10.0)
    code, reason = CLIENT_CLOSE
    assert closed == {"path": "/record", "code": code, "reason": reason, "by_peer": True}, why


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_server_close(variant: str, custom_server: LineProcess, pages: PageServer) -> None:
    result = run_page(
        pages, "server-close", custom_server.port, _cert_hash(custom_server), VARIANTS[variant]
    )
    why = _explain(result, custom_server)
    assert result.get("ok") is True, why
    code, reason = SERVER_CLOSE
    assert result["steps"]["closed"] == {"resolved": True, "closeCode": code, "reason": reason}, why
    assert custom_server.wait_json("SERVER-CLOSED", 5.0)["code"] == code


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve_custom()
