"""``python -m h3 get|serve``: a command-line HTTP/3 client and static file server.

Theory of operation
-------------------
``get URL [-o FILE] [--cafile F | --insecure]`` connects with ALPN ``h3`` (certificate
verified against the system trust store, or ``--cafile``; ``--insecure`` opts out),
sends one GET and streams the body to FILE or to stdout. A progress bar goes to stderr
when stderr is a terminal and the body is large. Exit status: 0 for a status below
400, :data:`EXIT_HTTP_ERROR` for 400 and above (the body is not written), and
:data:`EXIT_FAILURE` when the connection or the transfer fails (a partial FILE is
removed); argparse's 2 for usage errors.

``serve --root DIR [--port P] [--host H] [--cert C --key K]`` serves the files under
DIR (:class:`StaticFileHandler`). Without ``--cert`` a self-signed certificate is
generated (:func:`quic.tls.selfsigned.generate_self_signed`) and its hashes are
printed first. The stdout contract, one flushed line each, in this order::

    CERT-SHA256 <64 hex digits>        (self-signed only: SHA-256 of the certificate DER)
    SPKI-SHA256-BASE64 <base64>        (self-signed only: --ignore-certificate-errors-spki-list)
    LISTENING <port>

The server runs until SIGINT or SIGTERM, then shuts down gracefully (GOAWAY, in-flight
requests finish) and exits 0.

Both commands take ``--keylog FILE`` (append the TLS secrets in the NSS key log format,
for Wireshark); without it, ``$SSLKEYLOGFILE`` is honoured (:mod:`quic.aio`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import mimetypes
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from h3.aio import ALPN, H3Client, H3Request, H3Response, H3Server, serve_h3
from h3.errors import H3Error
from quic.aio import wall_clock
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.tls.keylog import shared_keylog_file
from quic.tls.selfsigned import generate_self_signed

__all__ = [
    "DEFAULT_PORT",
    "EXIT_FAILURE",
    "EXIT_HTTP_ERROR",
    "EXIT_OK",
    "StaticFileHandler",
    "build_parser",
    "main",
    "resolve_file",
    "run_get",
    "run_serve",
]

logger = logging.getLogger("h3.cli")

DEFAULT_PORT = 4433
EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_FAILURE = 3
FILE_CHUNK = 256 * 1024
PROGRESS_MIN_SIZE = 1 << 20  # show a progress bar for bodies at least this large


# ======================================================================================
# static files
# ======================================================================================


def resolve_file(root: Path, path: str) -> Path | None:
    """The regular file the decoded request ``path`` names below ``root`` (resolved).

    A directory means its ``index.html``. None for anything missing or outside ``root``
    after following ``..`` and symbolic links.
    """
    try:
        candidate = (root / path.lstrip("/")).resolve()
        if candidate.is_dir():
            candidate = (candidate / "index.html").resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate
    except (OSError, RuntimeError, ValueError):  # symlink loop, name too long
        return None


_NOT_FOUND = "not found\n"
_KEYLOG_HELP = "append TLS secrets (NSS key log) to FILE (default: $SSLKEYLOGFILE)"


def _text(status: int, message: str) -> H3Response:
    return H3Response(status, [("content-type", "text/plain; charset=utf-8")], message.encode())


class StaticFileHandler:
    """An :func:`~h3.aio.serve_h3` handler serving the files below ``root``.

    GET and HEAD only (405 otherwise); 400 for a path that is not valid percent-encoded
    UTF-8 or holds NUL; 404 for a missing file or one outside ``root``. Responses carry
    ``content-length`` and a ``content-type`` guessed from the file name.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    async def __call__(self, request: H3Request) -> H3Response:
        if request.method not in ("GET", "HEAD"):
            response = _text(405, "method not allowed\n")
            response.headers = [*response.headers, ("allow", "GET, HEAD")]
            return response
        raw = request.path.partition("#")[0].partition("?")[0]
        try:
            path = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return _text(400, "bad path\n")
        if not path.startswith("/") or "\x00" in path:
            return _text(400, "bad path\n")
        target = resolve_file(self.root, path)
        if target is None:
            logger.info("%s %s 404 %d", request.method, path, len(_NOT_FOUND))
            return _text(404, _NOT_FOUND)
        try:
            size = target.stat().st_size
            fp = target.open("rb")
        except OSError as exc:
            logger.warning("%s: %s", target, exc)
            return _text(404, "not found\n")
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        logger.info("%s %s 200 %d", request.method, path, size)
        headers = [("content-type", content_type), ("content-length", str(size))]
        return H3Response(200, headers, _file_chunks(fp, size))


async def _file_chunks(fp: BinaryIO, size: int) -> AsyncIterator[bytes]:
    with fp:
        remaining = size
        while remaining > 0:
            chunk = fp.read(min(FILE_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


# ======================================================================================
# get
# ======================================================================================


class _Progress:
    """A one-line progress bar on a terminal."""

    def __init__(self, stream: BinaryIO | None, total: int | None) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.start = self.shown = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.stream is not None and now - self.shown >= 0.1:
            self.shown = now
            self._show(now)

    def _show(self, now: float) -> None:
        assert self.stream is not None
        mib = self.done / (1 << 20)
        rate = mib / max(now - self.start, 1e-6)
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            bar = "#" * int(fraction * 30)
            line = f"\r[{bar:<30}] {fraction:4.0%} {mib:8.1f} MiB {rate:6.1f} MiB/s"
        else:
            line = f"\r{mib:8.1f} MiB {rate:6.1f} MiB/s"
        self.stream.write(line.encode())
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self._show(time.monotonic())
            self.stream.write(b"\n")
            self.stream.flush()


def _client_configuration(args: argparse.Namespace) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN])
    if args.keylog:
        config.keylog = shared_keylog_file(args.keylog)
    if args.insecure:
        config.verify_certificates = False
    elif args.cafile:
        config.cafile = args.cafile
    return config


async def run_get(args: argparse.Namespace) -> int:
    """Fetch ``args.url``; the exit status."""
    output: Path | None = Path(args.output) if args.output else None
    try:
        async with asyncio.timeout(args.timeout):
            async with H3Client.connect(args.url, configuration=_client_configuration(args)) as c:
                response = await c.get(args.url, headers=args.header)
                if response.status >= 400:
                    print(f"error: HTTP {response.status}", file=sys.stderr)
                    return EXIT_HTTP_ERROR
                size = response.content_length
                terminal = sys.stderr.isatty() and (size is None or size >= PROGRESS_MIN_SIZE)
                progress = _Progress(sys.stderr.buffer if terminal else None, size)
                with output.open("wb") if output else contextlib.nullcontext() as fp:
                    sink = fp if fp is not None else sys.stdout.buffer
                    async for chunk in response:
                        sink.write(chunk)
                        progress.update(len(chunk))
                    sink.flush()
                progress.finish()
                logger.info("HTTP %d, %d bytes", response.status, progress.done)
                return EXIT_OK
    except (ConnectionError, StreamResetError, H3Error, OSError, TimeoutError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        print(f"error: {reason}", file=sys.stderr)
    if output is not None:
        with contextlib.suppress(OSError):
            output.unlink(missing_ok=True)
    return EXIT_FAILURE


# ======================================================================================
# serve
# ======================================================================================


def _server_configuration(args: argparse.Namespace) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    if args.keylog:
        config.keylog = shared_keylog_file(args.keylog)
    if args.cert:
        config.load_cert_chain(args.cert, args.key)
        return config
    cert = generate_self_signed(wall_clock())
    config.certificate_chain = [cert.certificate]
    config.private_key = cert.private_key
    print(f"CERT-SHA256 {cert.sha256_hex}", flush=True)
    print(f"SPKI-SHA256-BASE64 {cert.spki_sha256_base64}", flush=True)
    return config


async def _bind(args: argparse.Namespace, config: QuicConfiguration) -> H3Server:
    handler = StaticFileHandler(Path(args.root))
    try:
        return await serve_h3(args.host, args.port, config, handler)
    except OSError:
        if args.host != "::":
            raise
        logger.info("no IPv6 socket; binding 0.0.0.0")
        return await serve_h3("0.0.0.0", args.port, config, handler)


async def run_serve(args: argparse.Namespace) -> int:
    """Serve ``args.root`` until SIGINT/SIGTERM; the exit status."""
    if not Path(args.root).is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return EXIT_FAILURE
    try:
        config = _server_configuration(args)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot load the certificate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        server = await _bind(args, config)
    except OSError as exc:
        print(f"error: cannot bind [{args.host}]:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.shutdown()
    return EXIT_OK


# ======================================================================================
# command line
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m h3", description="HTTP/3 client and server")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("get", help="fetch a URL with GET")
    get.add_argument("url", help="https://host[:port]/path")
    get.add_argument("-o", "--output", metavar="FILE", help="write the body here, not stdout")
    get.add_argument("--keylog", metavar="FILE", help=_KEYLOG_HELP)
    trust = get.add_mutually_exclusive_group()
    trust.add_argument("--cafile", help="PEM file of trusted CA certificates")
    trust.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    get.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header_arg,
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    get.add_argument("--timeout", type=float, default=300.0, help="give up after SECONDS")
    serve = commands.add_parser("serve", help="serve the files of a directory")
    serve.add_argument("--root", required=True, help="directory to serve")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="UDP port (0: any)")
    serve.add_argument("--host", default="::", help="address to bind (default :: dual-stack)")
    serve.add_argument("--cert", help="PEM certificate chain (default: self-signed)")
    serve.add_argument("--key", help="PEM private key (default: in --cert)")
    serve.add_argument("--keylog", metavar="FILE", help=_KEYLOG_HELP)
    return parser


def _header_arg(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'NAME: VALUE', got {text!r}")
    return name.strip().lower(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "get" and not urlsplit(args.url).hostname:
        print(f"error: no host in URL {args.url!r}", file=sys.stderr)
        return 2
    runner = run_get if args.command == "get" else run_serve
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return EXIT_FAILURE
