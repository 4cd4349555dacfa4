"""What the WebTransport browser tests share: servers, the page server and the checks.

Theory of operation
-------------------
Both browser modules (``test_wt_chromium.py``, ``test_wt_firefox.py``) run the same page,
``wt_pages/wt.html``, against the same servers and judge its JSON with the same checks,
so the two browsers are held to one list (issue 11: connect, bidi echo small and large,
datagrams, uni both ways, close with code and reason both ways):

* our interop server, ``python -m pywebtransport serve --port 0`` (self-signed ECDSA
  certificate valid 13 days; :func:`cert_hash` reads its SHA-256 from the
  ``CERT-SHA256`` line), for the echo checks (``/echo``) and the draft it negotiated
  (``/stats``);
* :func:`serve_custom`, run as ``python -m tests.interop.wt_browser serve``: a
  :class:`~pywebtransport.app.ServerApp` with ``/echo``, ``/stats``, ``/record`` (echo,
  then prints ``SESSION-CLOSED {"path", "code", "reason", "by_peer"}`` when the session
  ends) and ``/close-me`` (reads ``CLOSE <code> <reason>`` on a bidi stream, closes the
  session with them and prints ``SERVER-CLOSED {...}``);
* :class:`PageServer`: plain HTTP on 127.0.0.1 (``http://127.0.0.1`` is a secure
  context) serving ``wt_pages/`` and collecting the one JSON document the page POSTs.
  The page runs one mode (``echo``, ``client-close``, ``server-close``) per load, or all
  three in one load (``all``: one browser start per module, what the Firefox module
  does). Parameters travel in the URL fragment (see :meth:`PageServer.page_url`);
* the ``check_*`` functions: the assertions on the page's steps, shared by both browsers.

Nothing here starts a browser: ``chromium.py`` and ``firefox.py`` do.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from pywebtransport.app import ServerApp
from pywebtransport.config import ServerConfig
from pywebtransport.interop import echo_handler, stats_handler
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed
from tests.interop.test_wt_aioquic import LineProcess

PAGES = Path(__file__).resolve().parent / "wt_pages"
POST_LIMIT = 1 << 20  # bytes accepted in one result POST
CLIENT_CLOSE = (4001, "page says bye")  # must match wt.html
SERVER_CLOSE = (3003, "server says bye")  # must match wt.html
DATAGRAMS = 20  # must match wt.html
DATAGRAMS_MIN = 15  # loopback, but datagrams are unreliable: tolerate a little loss
CUSTOM_SERVER = [sys.executable, "-m", "tests.interop.wt_browser", "serve"]
CLI_SERVER = [sys.executable, "-m", "pywebtransport", "serve", "--port", "0"]


# ====================================================================== custom server


def serve_custom(qlog_dir: str | None = None) -> None:
    """The close-test server (run in a child process): prints the ``serve`` lines;
    with ``qlog_dir``, each connection's qlog trace goes there (see :func:`qlog_tail`)."""
    cert = generate_self_signed(wall_clock(), hostnames=["localhost", "127.0.0.1"], days=13)
    config = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        port=0,
        qlog_dir=qlog_dir,
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
    app.add_route("/stats", stats_handler)
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


class CustomServer(LineProcess):
    """:func:`serve_custom` in a child process, tracing into its own qlog directory
    (removed by :meth:`close`); :func:`explain` adds the traces' ends."""

    def __init__(self) -> None:
        self._qlog = tempfile.TemporaryDirectory(prefix="wt-qlog-")
        self.qlog_dir = Path(self._qlog.name)
        super().__init__([*CUSTOM_SERVER, "--qlog", str(self.qlog_dir)])

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._qlog.cleanup()

    def __enter__(self) -> CustomServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: qlog events :func:`qlog_tail` leaves out (every packet's frames are there already)
_QLOG_SKIP = frozenset(
    {
        "transport:datagrams_received",
        "transport:datagrams_sent",
        "recovery:metrics_updated",
        "transport:stream_state_updated",
    }
)


def _qlog_event(record: dict[str, Any]) -> str:
    name = record.get("name", "?")
    data = record.get("data") or {}
    if name in ("transport:packet_sent", "transport:packet_received"):
        header = data.get("header") or {}
        frames = []
        for frame in data.get("frames") or []:
            kind = frame.get("frame_type", "?")
            fields = ",".join(
                f"{key}={frame[key]}"
                for key in ("stream_id", "offset", "length", "fin", "error_code")
                if key in frame
            )
            frames.append(f"{kind}({fields})" if fields else kind)
        detail = f"{header.get('packet_type')} #{header.get('packet_number')} {' '.join(frames)}"
    else:
        detail = json.dumps(data, sort_keys=True)[:200]
    return f"{record.get('time', 0.0):9.3f} {name} {detail}"


def qlog_tail(directory: Path, events: int = 60, traces: int = 4) -> str:
    """The last ``events`` events (packets with their frames, HTTP/3, recovery, state)
    of each of the ``traces`` newest connection traces in ``directory``."""
    paths = sorted(directory.glob("*_server.sqlog"), key=lambda path: path.stat().st_mtime)
    parts = []
    for path in paths[-traces:]:
        lines = []
        for text in path.read_text(encoding="utf-8", errors="replace").split("\x1e"):
            try:
                record = json.loads(text)
            except ValueError:
                continue  # the header's blank start, or a record cut short
            if isinstance(record, dict) and "name" in record and record["name"] not in _QLOG_SKIP:
                lines.append(_qlog_event(record))
        parts.append(f"qlog {path.name} (last {events} of {len(lines)} events):")
        parts.extend(lines[-events:])
    return "\n".join(parts) if parts else f"(no qlog trace in {directory})"


def cert_hash(server: LineProcess) -> str:
    """The hex SHA-256 of the server's certificate, from its ``CERT-SHA256`` line."""
    for line in server.seen:
        if line.startswith("CERT-SHA256 "):
            return str(line.split()[1])
    raise AssertionError(f"no CERT-SHA256 line in {server.seen}")


def explain(result: dict[str, Any], *servers: LineProcess, browser_output: str = "") -> str:
    """A failure message: the page's JSON, the browser's output, the servers' stderr."""
    parts = [json.dumps(result, indent=1, default=str)[:20000]]
    if browser_output:
        parts.append("browser output:\n" + browser_output[-5000:])
    for server in servers:
        parts.append(f"{' '.join(server.command[2:4])} stderr:\n" + server.stderr()[-5000:])
        if isinstance(server, CustomServer):
            parts.append(qlog_tail(server.qlog_dir))
    return "\n".join(parts)


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
        length = min(int(self.headers.get("content-length") or 0), POST_LIMIT)
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

    def page_url(
        self,
        mode: str,
        wt_port: int,
        hash_hex: str,
        *,
        close_port: int | None = None,
        close_hash: str | None = None,
        datagram_window: int = 0,
    ) -> str:
        """The page running ``mode`` against ``https://127.0.0.1:wt_port``.

        ``all`` runs the close modes against ``close_port`` (the custom server);
        ``datagram_window`` > 0 keeps at most that many datagrams unanswered at a time
        (0: all at once).
        """
        fragment = f"mode={mode}&base=https://127.0.0.1:{wt_port}&hash={hash_hex}"
        if close_port is not None:
            fragment += f"&closeBase=https://127.0.0.1:{close_port}&closeHash={close_hash}"
        if datagram_window:
            fragment += f"&dgWindow={datagram_window}"
        return f"{self.origin}/wt.html#{fragment}&report={self.origin}/result"

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


# ====================================================================== checks
# Each takes one run's record (``{"ok", "steps", "error", "failedStep", ...}``) and the
# failure message; both browser modules call them.


def check_ready(run: dict[str, Any], why: str) -> None:
    assert run.get("steps", {}).get("ready") is True, why


def check_bidi_small(run: dict[str, Any], why: str) -> None:
    assert run.get("steps", {}).get("bidiSmall") == {"sent": 20, "received": 20, "equal": True}, why


def check_bidi_large(run: dict[str, Any], why: str) -> None:
    large = {"sent": 1 << 20, "received": 1 << 20, "equal": True}
    assert run.get("steps", {}).get("bidiLarge") == large, why


def check_datagrams(run: dict[str, Any], why: str) -> None:
    datagrams = run.get("steps", {}).get("datagrams")
    assert datagrams is not None, why
    assert datagrams["sent"] == DATAGRAMS, why
    assert datagrams["received"] >= DATAGRAMS_MIN and datagrams["unexpected"] == 0, why
    assert datagrams["maxDatagramSize"] > 1000, why


def check_uni(run: dict[str, Any], why: str) -> None:
    """The page's uni stream reached the server, which answered on its own uni stream."""
    uni = run.get("steps", {}).get("uni")
    assert uni is not None, why
    assert uni["equal"] is True and uni["received"] == uni["sent"] > 0, why


def check_draft(run: dict[str, Any], draft: str, why: str) -> None:
    """The draft our server negotiated, as ``/stats`` reports it."""
    stats = run.get("steps", {}).get("stats")
    assert stats is not None, why
    assert stats["draft"] == draft, why
    assert stats["path"] == "/stats", why


def check_echo(run: dict[str, Any], draft: str, why: str) -> None:
    """Everything the ``echo`` mode checks, and its own clean close (code 0, "done")."""
    assert run.get("ok") is True, why
    check_ready(run, why)
    check_bidi_small(run, why)
    check_bidi_large(run, why)
    check_datagrams(run, why)
    check_uni(run, why)
    check_draft(run, draft, why)
    assert run["steps"]["closed"] == {"resolved": True, "closeCode": 0, "reason": "done"}, why


def check_client_close(run: dict[str, Any], draft: str, server: LineProcess, why: str) -> None:
    """The page closed ``/record`` with a code and reason; the server saw both.

    ``draft`` is what the custom server negotiated with the page (its ``/stats``), so a
    close is known to have been checked on that draft's wire format.
    """
    assert run.get("ok") is True, why
    check_draft(run, draft, why)
    assert run["steps"]["bidiSmall"]["equal"] is True, why
    closed = server.wait_json("SESSION-CLOSED", 10.0)
    code, reason = CLIENT_CLOSE
    assert closed == {"path": "/record", "code": code, "reason": reason, "by_peer": True}, why


def check_server_close(run: dict[str, Any], draft: str, server: LineProcess, why: str) -> None:
    """The server closed ``/close-me`` with a code and reason; ``transport.closed`` has both."""
    assert run.get("ok") is True, why
    check_draft(run, draft, why)
    code, reason = SERVER_CLOSE
    assert run["steps"]["closed"] == {"resolved": True, "closeCode": code, "reason": reason}, why
    assert server.wait_json("SERVER-CLOSED", 5.0) == {
        "path": "/close-me",
        "code": code,
        "reason": reason,
    }, why


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve_custom(sys.argv[3] if sys.argv[2:3] == ["--qlog"] else None)
