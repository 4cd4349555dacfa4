"""``python -m pywebtransport demo``: WebTransport on the first run, in a browser and in a
terminal.

Theory of operation
-------------------
:func:`run_demo` starts three things in one event loop and prints what to do with them:

1. the interop server of ``serve`` (:func:`pywebtransport.cli.build_app`: ``/echo``,
   ``/stats``, ``/status``, Devious Baton) on 127.0.0.1, a random free UDP port unless
   ``--port``, with a fresh self-signed ECDSA P-256 certificate valid 13 days — W3C
   WebTransport ``serverCertificateHashes`` accepts at most 14 days, so a browser can
   pin it without any CA;
2. :class:`PageServer`, plain HTTP/1.1 on ``http://127.0.0.1:PORT/`` (loopback is a
   secure context, where ``WebTransport`` exists): ``/`` is ``demo_page/index.html``
   with the server's URL and certificate hash injected as JSON, ``/demo.js`` its
   script; the page connects to ``/echo`` and shows streams and datagrams live (a bidi
   echo of a text box, datagrams with counters, a uni-stream round trip, the
   negotiated draft read from ``/stats``, close with a code and reason). The page
   POSTs the result of its first tour to ``/report``, which prints one ``BROWSER``
   line; ``--no-browser-page`` leaves the page server out;
3. :func:`self_check`: our own client connects to ``/echo`` with the hash pinned and
   does a bidi echo, a datagram echo and a uni-stream round trip, printing one
   ``SELF-CHECK OK ...`` (or ``SELF-CHECK FAIL ...``) line, so a terminal-only user
   sees WebTransport work.

The stdout lines, in order (each flushed; ``serve``'s first lines included)::

    CERT-SHA256 <hex>   CERT-SHA256-BASE64 ...   SPKI-SHA256-BASE64 ...   JS ...
    LISTENING <udp port>
    PAGE http://127.0.0.1:<http port>/          (not with --no-browser-page)
    SELF-CHECK OK draft16: bidi echo 33 B, datagram echo after 1 sent, uni echo 33 B, 12 ms
    BROWSER OK {...}                           (each time a page reports its tour)

plus the live output of ``serve`` (:mod:`pywebtransport.live`: ``-v`` session lines,
``STATS`` summaries). SIGINT (Ctrl-C) or SIGTERM end it gracefully: the WebTransport
server drains and closes its sessions, the page server closes, exit status 0 (3 when
the self-check failed or a socket could not be bound).

The page server is reachable by anything on the machine, so it holds nothing a client
can grow without bound (:class:`PageLimits`): one request per connection, a bounded
request head and body, a read deadline, and a cap on connections served at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pywebtransport import __version__
from pywebtransport.cli import (
    DEFAULT_HOST,
    EXIT_FAILURE,
    EXIT_OK,
    add_stats_interval_option,
    build_app,
    js_snippet,
    server_config,
    start_live_output,
    stop_live_output,
    url_host,
)
from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig

__all__ = [
    "PageLimits",
    "PageServer",
    "SelfCheckResult",
    "configure_demo_parser",
    "page_files",
    "render_page",
    "report_line",
    "run_demo",
    "self_check",
]

#: Text the self-check sends on each of its streams and datagrams.
SELF_CHECK_TEXT = b"hello from the pywebtransport self-check"
#: Seconds the whole self-check may take.
SELF_CHECK_TIMEOUT = 10.0
#: Datagrams the self-check sends, one at a time, until one is echoed.
SELF_CHECK_DATAGRAMS = 10
_CONFIG_MARK = "{{DEMO_CONFIG}}"


# ====================================================================== the page server


@dataclass(frozen=True, slots=True)
class PageLimits:
    """What one client of the demo's page server can make it hold (docs/limits.md).

    RFC 9110 §15.5.14 (413) and RFC 6585 §5 (431) allow refusing larger requests;
    RFC 9112 §9.6 lets the server close a connection after one response.
    """

    #: bytes of request line plus header fields (431 beyond)
    max_head: int = 8192
    #: bytes of a request body, i.e. a page's report (413 beyond)
    max_body: int = 65536
    #: seconds to receive a whole request (the connection is closed after it)
    read_timeout: float = 10.0
    #: connections served at once; further ones are closed at once
    max_connections: int = 32


def page_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, packaged in ``pywebtransport/demo_page``: name -> (bytes, type)."""
    folder = resources.files("pywebtransport").joinpath("demo_page")
    return {
        "index.html": (folder.joinpath("index.html").read_bytes(), "text/html; charset=utf-8"),
        "demo.js": (
            folder.joinpath("demo.js").read_bytes(),
            "text/javascript; charset=utf-8",
        ),
    }


def render_page(template: bytes, config: dict[str, Any]) -> bytes:
    """``index.html`` with ``config`` injected as JSON into its config script element
    (``<`` escaped, so no value can end the element)."""
    text = json.dumps(config, separators=(",", ":")).replace("<", "\\u003c")
    return template.replace(_CONFIG_MARK.encode(), text.encode())


_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


class PageServer:
    """Plain HTTP/1.1 server of the demo page; see the module docstring.

    ``on_report(record)`` is called with each JSON document POSTed to ``/report``.
    """

    def __init__(
        self,
        config: dict[str, Any],
        on_report: Any = None,
        limits: PageLimits | None = None,
    ) -> None:
        self.limits = limits or PageLimits()
        files = page_files()
        index, index_type = files.pop("index.html")
        self._routes: dict[str, tuple[bytes, str]] = {
            "/": (render_page(index, config), index_type),
            "/index.html": (render_page(index, config), index_type),
            **{f"/{name}": value for name, value in files.items()},
        }
        self._on_report = on_report
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.requests = 0
        self.refused = 0

    @property
    def connections(self) -> int:
        """Connections being served now (bounded by ``limits.max_connections``)."""
        return len(self._connections)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); the bound port."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=self.limits.max_head
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.max_connections:
            self.refused += 1
            writer.close()
            return
        self._connections.add(writer)
        try:
            answer = await self.answer(reader)
            if answer is None:
                return  # nothing (whole) to answer
            self.requests += 1
            status, body, kind = answer
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"content-type: {kind}\r\ncontent-length: {len(body)}\r\n"
                "cache-control: no-store\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str] | None:
        """The (status, body, content type) for the request ``reader`` carries, or None
        when it ended or stalled before a whole request. Never raises on any input."""
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                return await self._request(reader)
        except (asyncio.LimitOverrunError, ValueError):
            return 431, b"", "text/plain"  # no end of the head within max_head
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _request(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, b"", "text/plain"
        method, target = parts[0], parts[1].split("?", 1)[0]
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip()
        if method == "POST" and target == "/report":
            return await self._report(reader, fields)
        if method not in ("GET", "HEAD"):
            return 405, b"", "text/plain"
        if target == "/favicon.ico":
            return 204, b"", "text/plain"
        found = self._routes.get(target)
        if found is None:
            return 404, b"not found\n", "text/plain"
        body, kind = found
        return 200, b"" if method == "HEAD" else body, kind

    async def _report(
        self, reader: asyncio.StreamReader, fields: dict[str, str]
    ) -> tuple[int, bytes, str]:
        try:
            length = int(fields.get("content-length", ""))
        except ValueError:
            return 400, b"", "text/plain"  # chunked or missing: reports are small and sized
        if length < 0:
            return 400, b"", "text/plain"
        if length > self.limits.max_body:
            return 413, b"", "text/plain"
        body = await reader.readexactly(length)
        try:
            record = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's
            return 400, b"", "text/plain"
        if not isinstance(record, dict):
            return 400, b"", "text/plain"
        if self._on_report is not None:
            self._on_report(record)
        return 204, b"", "text/plain"


def report_line(record: dict[str, Any]) -> str:
    """The ``BROWSER`` line of a page's report."""
    verdict = "OK" if record.get("ok") is True else "FAIL"
    return f"BROWSER {verdict} {json.dumps(record, separators=(',', ':'), sort_keys=True)}"


# ====================================================================== the self-check


@dataclass(frozen=True, slots=True)
class SelfCheckResult:
    """What :func:`self_check` found."""

    ok: bool
    draft: str = ""
    bidi_bytes: int = 0
    datagrams_sent: int = 0
    datagram_echoed: bool = False
    uni_bytes: int = 0
    elapsed: float = 0.0
    error: str = ""

    def line(self) -> str:
        """The ``SELF-CHECK`` line."""
        if not self.ok:
            return f"SELF-CHECK FAIL {self.error}"
        return (
            f"SELF-CHECK OK {self.draft}: bidi echo {self.bidi_bytes} B, datagram echo "
            f"after {self.datagrams_sent} sent, uni echo {self.uni_bytes} B, "
            f"{self.elapsed * 1000:.0f} ms"
        )


async def _check_session(session: Any, found: dict[str, Any]) -> None:
    found["draft"] = session.draft
    stream = await session.create_bidirectional_stream()
    await stream.write(SELF_CHECK_TEXT, end_stream=True)
    echoed = await stream.read_all()
    if echoed != SELF_CHECK_TEXT:
        raise ValueError(f"bidi echo returned {echoed!r}")
    found["bidi_bytes"] = len(echoed)
    for attempt in range(1, SELF_CHECK_DATAGRAMS + 1):  # datagrams may be lost: retry
        found["datagrams_sent"] = attempt
        session.send_datagram(SELF_CHECK_TEXT)
        try:
            if await session.receive_datagram(timeout=0.5) == SELF_CHECK_TEXT:
                found["datagram_echoed"] = True
                break
        except TimeoutError:
            continue
    if not found.get("datagram_echoed"):
        raise ValueError(f"no datagram echoed of {SELF_CHECK_DATAGRAMS} sent")
    out = await session.create_unidirectional_stream()
    await out.write_all(SELF_CHECK_TEXT)
    back = await session.accept_unidirectional_stream()
    echoed = await back.read_all()
    if echoed != SELF_CHECK_TEXT:
        raise ValueError(f"uni echo returned {echoed!r}")
    found["uni_bytes"] = len(echoed)


async def self_check(url: str, certificate_hash: bytes) -> SelfCheckResult:
    """Connect to the ``/echo`` route at ``url`` pinning ``certificate_hash``; bidi,
    datagram and uni round trips. Never raises for a failed check."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    found: dict[str, Any] = {}
    config = ClientConfig(server_certificate_hashes=[certificate_hash])
    try:
        async with asyncio.timeout(SELF_CHECK_TIMEOUT):
            async with WebTransportClient(config=config) as client:
                session = await client.connect(url)
                async with session:
                    await _check_session(session, found)
    except Exception as exc:  # reported, not raised: the demo keeps serving
        step = "connect" if "draft" not in found else "echo"
        return SelfCheckResult(ok=False, error=f"{step}: {type(exc).__name__}: {exc}", **found)
    return SelfCheckResult(ok=True, elapsed=loop.time() - started, **found)


# ====================================================================== the command


def configure_demo_parser(parser: argparse.ArgumentParser) -> None:
    """The options of the ``demo`` subcommand of ``python -m pywebtransport``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="WebTransport UDP port (default: any free)"
    )
    parser.add_argument(
        "--http-port", type=int, default=0, help="page server TCP port (default: any free)"
    )
    parser.add_argument(
        "--no-browser-page", action="store_true", help="no page server: the self-check only"
    )
    parser.add_argument("--keylog", metavar="FILE", help="append TLS secrets (NSS key log)")
    parser.add_argument(
        "--qlog-dir", metavar="DIR", help="write a qlog trace of each connection into DIR"
    )
    add_stats_interval_option(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log to stderr; print a line per session opened/closed",
    )
    parser.set_defaults(cert=None, key=None, drafts=None, max_sessions=100, shutdown_timeout=2.0)


def _page_config(url: str, certificate_hash: bytes) -> dict[str, Any]:
    return {
        "server": url,
        "echoPath": "/echo",
        "statsPath": "/stats",
        "certHash": certificate_hash.hex(),
        "version": __version__,
    }


def _is_loopback(host: str) -> bool:
    """Whether browsers treat ``http://host`` as a secure context (W3C Secure Contexts
    §3.1: loopback addresses and ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _start_page(
    args: argparse.Namespace, url: str, certificate_hash: bytes
) -> PageServer | None:
    if args.no_browser_page:
        return None
    page = PageServer(
        _page_config(url, certificate_hash),
        on_report=lambda record: print(report_line(record), flush=True),
    )
    http_port = await page.start(args.host, args.http_port)
    host = url_host(args.host)
    print(f"PAGE http://{host}:{http_port}/", flush=True)
    print(
        "     open it in Chromium, Chrome, Edge or Firefox on this machine "
        "(127.0.0.1 is a secure context)",
        flush=True,
    )
    if not _is_loopback(host):
        print(
            f"     note: http://{host} is not a secure context, where browsers offer no "
            "WebTransport: open the page through 127.0.0.1 (e.g. an SSH tunnel)",
            flush=True,
        )
    return page


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until SIGINT/SIGTERM; the exit status."""
    print(f"pywebtransport {__version__} demo: WebTransport over HTTP/3", flush=True)
    config, cert = server_config(args)  # self-signed: no file to get wrong
    assert cert is not None
    app = build_app(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.stop)
    serving = asyncio.create_task(app.serve(args.host, args.port))
    page: PageServer | None = None
    summaries: asyncio.Task[None] | None = None
    status = EXIT_OK
    try:
        what = f"UDP port {args.port} (WebTransport)"
        try:
            port = await app.wait_started()
            url = f"https://{url_host(args.host)}:{port}"
            print(f"JS {js_snippet(url + '/echo', cert.sha256)}", flush=True)
            print(f"LISTENING {port}", flush=True)
            _, summaries = start_live_output(app, args)
            what = f"TCP port {args.http_port} (the page; --http-port)"
            page = await _start_page(args, url, cert.sha256)
        except OSError as exc:
            print(f"error: cannot bind {args.host} {what}: {exc}", file=sys.stderr)
            app.stop()
            return EXIT_FAILURE
        result = await self_check(url + "/echo", cert.sha256)
        print(result.line(), flush=True)
        if not result.ok:
            status = EXIT_FAILURE
        print("Ctrl-C stops the demo.", flush=True)
        await serving
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await stop_live_output(summaries)
        if page is not None:
            await page.close()
        if not serving.done():
            serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    return status
