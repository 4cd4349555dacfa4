"""hq-interop server role: serve the files of one directory over HTTP/0.9.

Theory of operation
-------------------
:func:`run_server` loads ``cert.pem`` / ``priv.key`` from the certificate directory,
binds one UDP socket (``::`` dual-stack by default, ``0.0.0.0`` if the host has no
IPv6), prints ``LISTENING <port>`` on stdout and serves until SIGTERM or SIGINT, then
closes every connection.

:class:`HqFileServer` runs one task per connection that accepts the client's streams
(streams arriving together with the handshake's end are queued by the session, so none
is lost) and one task per stream: read the request line (at most
:data:`~quic.interop.hq.MAX_REQUEST_SIZE` bytes, up to LF or FIN), map it to a file with
:func:`~quic.interop.hq.resolve_path`, and stream the file with backpressure
(``write`` + ``drain``) before FIN. A bad request or unknown file gets RESET_STREAM (and
STOP_SENDING if the request side is still open) with a :class:`HqErrorCode`.

Handshakes may be slow here: the runner's ``handshakeloss`` and ``handshakecorruption``
lose or damage 30 % of the datagrams each way, and PTO backoff (RFC 9002 §6.2.1) can
stretch a handshake well past the endpoint's default ``handshake_timeout`` (10 s from
the first Initial, meant to bound half-open state under a flood). A server that drops
a handshake the client is still making leaves the client talking to a connection ID
nobody knows until its idle timeout. So the interop server allows
:data:`HANDSHAKE_TIMEOUT` (twice the idle timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from quic.aio import (
    ConnectionClosed,
    QuicServer,
    QuicSession,
    QuicStreamReader,
    QuicStreamWriter,
    serve,
)
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.interop.hq import (
    ALPN,
    MAX_REQUEST_SIZE,
    HqErrorCode,
    HqRequestError,
    parse_request,
    resolve_path,
)
from quic.interop.options import EXIT_FAILURE, EXIT_OK, InteropCase, InteropOptions
from quic.interop.resume import enable_resumption
from quic.tls.keylog import KeyLogFile

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HqFileServer",
    "read_request",
    "run_server",
    "server_configuration",
]

logger = logging.getLogger("quic.interop")

FILE_CHUNK = 256 * 1024
#: seconds from a client's first Initial to handshake complete (see the module docstring)
HANDSHAKE_TIMEOUT = 60.0


async def read_request(reader: QuicStreamReader) -> bytes:
    """Bytes of the request: up to the first LF, the FIN, or just past the size limit."""
    data = bytearray()
    while len(data) <= MAX_REQUEST_SIZE:
        chunk = await reader.read(MAX_REQUEST_SIZE + 1 - len(data))
        if not chunk:
            break
        data += chunk
        if b"\n" in chunk:
            break
    return bytes(data)


class HqFileServer:
    """Answers hq-interop requests with files below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0  # responses completed (FIN sent)
        self.refused = 0  # requests answered with RESET_STREAM

    async def serve_session(self, session: QuicSession) -> None:
        """Accept the client's streams until the connection closes."""
        while True:
            try:
                reader, writer = await session.accept_stream()
            except ConnectionClosed:
                if session.connection.paths.current.local:
                    logger.info("the connection had moved to the preferred address")
                return
            task = asyncio.create_task(self._guarded(session, reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(
        self, session: QuicSession, reader: QuicStreamReader, writer: QuicStreamWriter
    ) -> None:
        try:
            await self.handle_stream(session, reader, writer)
        except (ConnectionClosed, StreamResetError, asyncio.IncompleteReadError) as exc:
            logger.debug("stream %d abandoned: %s", writer.stream_id, exc)
        except Exception:
            logger.exception("stream %d failed", writer.stream_id)
            with contextlib.suppress(Exception):
                self._refuse(session, reader, writer, HqErrorCode.INTERNAL_ERROR)

    async def handle_stream(
        self, session: QuicSession, reader: QuicStreamReader, writer: QuicStreamWriter
    ) -> None:
        sid = writer.stream_id
        if sid & 0x2:  # RFC 9000 §2.1: unidirectional; hq-interop uses none
            session.stop_stream(sid, HqErrorCode.BAD_REQUEST)
            return
        try:
            path = parse_request(await read_request(reader))
        except HqRequestError as exc:
            logger.info("stream %d: bad request: %s", sid, exc.reason)
            self._refuse(session, reader, writer, exc.error_code)
            return
        target = resolve_path(self.root, path)
        if target is None:
            logger.info("stream %d: GET %s: not found", sid, path)
            self._refuse(session, reader, writer, HqErrorCode.NOT_FOUND)
            return
        try:
            size = await self._send_file(writer, target)
        except OSError as exc:
            logger.warning("stream %d: GET %s: %s", sid, path, exc)
            self._refuse(session, reader, writer, HqErrorCode.INTERNAL_ERROR)
            return
        self.served += 1
        logger.info("stream %d: GET %s: %d bytes", sid, path, size)

    @staticmethod
    async def _send_file(writer: QuicStreamWriter, target: Path) -> int:
        size = 0
        with target.open("rb") as fp:
            read = fp.read
            while chunk := read(FILE_CHUNK):
                size += len(chunk)
                writer.write(chunk)
                await writer.drain()
        writer.write_eof()
        return size

    def _refuse(
        self,
        session: QuicSession,
        reader: QuicStreamReader,
        writer: QuicStreamWriter,
        code: HqErrorCode,
    ) -> None:
        """RESET_STREAM (RFC 9000 §19.4), plus STOP_SENDING (§19.5) while the request
        side is still open."""
        self.refused += 1
        if not session.is_closed:
            writer.reset(code)
            if not reader.at_eof():
                session.stop_stream(writer.stream_id, code)


def server_configuration(
    options: InteropOptions, case: InteropCase, keylog: KeyLogFile | None = None
) -> QuicConfiguration:
    """ALPN hq-interop, the certificate directory's ``cert.pem`` and ``priv.key``."""
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        keylog=keylog,
        qlog_dir=options.qlog_dir,
        handshake_timeout=HANDSHAKE_TIMEOUT,
    )
    if case.cipher_suites is not None:
        config.cipher_suites = case.cipher_suites
    if case.retry is not None:
        config.retry = case.retry
    if case.versions is not None:
        config.supported_versions = case.versions
        config.initial_version = case.initial_version
    config.load_cert_chain(str(options.certs / "cert.pem"), str(options.certs / "priv.key"))
    enable_resumption(config, case)  # tickets for resumption / zerortt
    # RFC 9000 §9.6: the runner's older "connectionmigration" (the client moves to it)
    config.preferred_address = options.preferred_address
    return config


async def _bind(
    options: InteropOptions, config: QuicConfiguration, files: HqFileServer
) -> QuicServer:
    try:
        return await serve(options.host, options.port, config, files.serve_session)
    except OSError:
        if options.host != "::":
            raise
        logger.info("no IPv6 socket; binding 0.0.0.0")
        return await serve("0.0.0.0", options.port, config, files.serve_session)


async def run_server(options: InteropOptions, case: InteropCase) -> int:
    """Serve ``options.www`` until SIGTERM/SIGINT; the process exit status."""
    if not options.www.is_dir():
        logger.error("www directory %s does not exist", options.www)
        return EXIT_FAILURE
    keylog = KeyLogFile(options.keylog_file) if options.keylog_file else None
    try:
        config = server_configuration(options, case, keylog)
    except (OSError, ValueError, TypeError) as exc:
        logger.error("cannot load certificate from %s: %s", options.certs, exc)
        return EXIT_FAILURE
    files = HqFileServer(options.www)
    try:
        server = await _bind(options, config, files)
    except OSError as exc:
        logger.error("cannot bind [%s]:%d: %s", options.host, options.port, exc)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {server.port}", flush=True)
    logger.info("test case %s: serving %s on port %d", case.name, files.root, server.port)
    if config.preferred_address is not None:
        logger.info("preferred address %s:%d", *config.preferred_address)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.shutdown()
        if keylog is not None:
            keylog.close()
    return EXIT_OK
