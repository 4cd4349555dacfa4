"""hq-interop client role: download URLs over HTTP/0.9 into a directory.

Theory of operation
-------------------
:func:`run_client` parses every URL into a :class:`~quic.interop.hq.Download`, then
splits them into connections: one per URL, one after the other, when the test case asks
for it (``multiconnect``); otherwise one connection per server (host, port), and all of
that server's URLs are requested concurrently on their own bidirectional streams
(``transfer``). Each connection offers ALPN ``hq-interop`` and the test case's cipher
suites, and does not verify the server's certificate (the runner's self-signed chain):
an explicit opt-out, ``verify_certificates=False``.

Each response body is streamed to ``DOWNLOADS/<basename>``; a reset stream, a closed
connection or a local I/O error fails that download and removes its partial file. The
whole run is bounded by ``options.timeout``. Exit status 0 only if every file arrived.

``keyupdate``: a :class:`KeyUpdater` watches the response data of the connection and,
once the handshake is confirmed and a packet of the current key phase has been
acknowledged (RFC 9001 §6.1: the connection refuses an update before that), starts
one 1-RTT key update — early in the transfer, as the runner asks — and wakes the
connection so that the next packet carries the new Key Phase. The server answers with
its own update (RFC 9001 §6.2); the runner checks both sides sent Key Phase 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from quic.aio import ConnectionClosed, QuicSession, connect
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.interop.hq import ALPN, Download, encode_request, parse_url
from quic.interop.migration import start_migration
from quic.interop.options import EXIT_FAILURE, EXIT_OK, InteropCase, InteropOptions
from quic.interop.resume import RESUMPTION_CASES, run_resumption_client
from quic.tls.keylog import KeyLogFile

__all__ = [
    "KeyUpdater",
    "client_configuration",
    "fetch",
    "plan_connections",
    "prepare_downloads",
    "run_client",
]

logger = logging.getLogger("quic.interop")

READ_CHUNK = 256 * 1024


def client_configuration(
    case: InteropCase, keylog: KeyLogFile | None = None, qlog_dir: str | None = None
) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        verify_certificates=False,  # the runner's client does not verify certificates
        keylog=keylog,
        qlog_dir=qlog_dir,  # one <ODCID hex>_<role>.sqlog per connection
    )
    if case.cipher_suites is not None:
        config.cipher_suites = case.cipher_suites
    if case.versions is not None:
        config.supported_versions = case.versions
        config.initial_version = case.initial_version
    return config


def plan_connections(downloads: list[Download], case: InteropCase) -> list[list[Download]]:
    """The URLs of each connection, in the order the connections are made."""
    if case.connection_per_url:
        return [[download] for download in downloads]
    groups: dict[tuple[str, int], list[Download]] = {}
    for download in downloads:
        groups.setdefault(download.authority, []).append(download)
    return list(groups.values())


class KeyUpdater:
    """Starts one 1-RTT key update on a connection as soon as it is allowed."""

    def __init__(self, session: QuicSession) -> None:
        self.session = session
        self.done = False

    def on_data(self) -> None:
        """Called for each chunk of response data: try the update until it happened."""
        if self.done:
            return
        try:
            self.session.connection.request_key_update()
        except RuntimeError:
            return  # not confirmed yet, or the current phase is not acknowledged yet
        self.done = True
        logger.info("key update started")
        self.session.schedule_flush()


async def fetch(
    session: QuicSession,
    download: Download,
    directory: Path,
    key_updater: KeyUpdater | None = None,
) -> bool:
    """Request one file on a new stream and store its body; True on success."""
    destination = directory / download.filename
    try:
        reader, writer = await session.create_stream()
        writer.write(encode_request(download.target))
        writer.write_eof()
        size = 0
        with destination.open("wb") as fp:
            write = fp.write
            while chunk := await reader.read(READ_CHUNK):
                size += len(chunk)
                write(chunk)
                if key_updater is not None:
                    key_updater.on_data()
    except StreamResetError as exc:
        logger.error("%s: stream reset by the server (code %d)", download.url, exc.error_code)
    except ConnectionClosed as exc:
        logger.error("%s: connection closed: %s", download.url, exc)
    except OSError as exc:
        logger.error("%s: %s", download.url, exc)
    else:
        logger.info("%s: %d bytes → %s", download.url, size, destination)
        return True
    with contextlib.suppress(OSError):
        destination.unlink(missing_ok=True)
    return False


async def _run_connection(
    downloads: list[Download],
    case: InteropCase,
    directory: Path,
    keylog: KeyLogFile | None,
    qlog_dir: str | None = None,
) -> bool:
    host, port = downloads[0].authority
    try:
        async with connect(host, port, client_configuration(case, keylog, qlog_dir)) as session:
            if session.alpn_protocol != ALPN:
                logger.error("server did not select ALPN %s", ALPN)
                return False
            updater = KeyUpdater(session) if case.key_update else None
            migration = start_migration(session, case)  # "connectionmigration" only
            results = await asyncio.gather(
                *(fetch(session, d, directory, updater) for d in downloads)
            )
            if updater is not None and not updater.done:
                logger.error("the transfer ended before a key update was allowed")
                return False
            if migration is not None and not await migration:
                return False
            return all(results)
    except ConnectionClosed as exc:
        logger.error("connection to %s:%d failed: %s", host, port, exc)
    except OSError as exc:
        logger.error("cannot reach %s:%d: %s", host, port, exc)
    return False


def prepare_downloads(options: InteropOptions) -> list[Download] | None:
    """Parse the requested URLs and create the downloads directory; None on failure
    (the reason is logged)."""
    try:
        downloads = [parse_url(url) for url in options.requests]
    except ValueError as exc:
        logger.error("%s", exc)
        return None
    if not downloads:
        logger.error("no URLs to fetch (arguments or $REQUESTS)")
        return None
    try:
        options.downloads.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.error("cannot create %s: %s", options.downloads, exc)
        return None
    return downloads


async def run_client(options: InteropOptions, case: InteropCase) -> int:
    """Download every URL of ``options.requests``; the process exit status."""
    downloads = prepare_downloads(options)
    if downloads is None:
        return EXIT_FAILURE
    keylog = KeyLogFile(options.keylog_file) if options.keylog_file else None
    ok = True
    try:
        async with asyncio.timeout(options.timeout):
            groups = plan_connections(downloads, case)
            if case.name in RESUMPTION_CASES:  # two connections, the second resumed
                ok = await run_resumption_client(options, case, downloads, keylog) == EXIT_OK
                groups = []
            for group in groups:
                if not await _run_connection(
                    group, case, options.downloads, keylog, options.qlog_dir
                ):
                    ok = False
    except TimeoutError:
        logger.error("gave up after %.1f s", options.timeout)
        ok = False
    finally:
        if keylog is not None:
            keylog.close()
    return EXIT_OK if ok else EXIT_FAILURE
