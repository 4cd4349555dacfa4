"""The interop runner's ``http3`` test case: the ``transfer`` file transfer over HTTP/3.

Theory of operation
-------------------
ALPN is ``h3`` instead of ``hq-interop``; everything else follows the hq roles
(:mod:`quic.interop.server`, :mod:`quic.interop.client`):

* server: ``cert.pem`` / ``priv.key`` from the certificate directory, the files of the
  www directory served by :class:`h3.cli.StaticFileHandler` (GET and HEAD, 404 for a
  missing file or a path leaving the directory), ``LISTENING <port>`` on stdout, serve
  until SIGTERM/SIGINT, then a graceful HTTP/3 shutdown (GOAWAY);
* client: one connection per server (host, port); every URL of that server is a
  concurrent GET; a ``200`` body is streamed to ``DOWNLOADS/<basename>``; any other
  status, a reset or a closed connection fails that download and removes its file.
  Certificates are not verified (the runner's self-signed chain).

The QUIC endpoint (:mod:`quic.interop`) may not import HTTP/3, one layer above it: it
finds this case through the ``quic.interop.runners`` entry point that the package
metadata (``pyproject.toml``) declares, :data:`RUNNERS` — so ``python -m quic.interop``
serves every case while ``quic`` never names ``h3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from h3.aio import H3Client, H3Server, serve_h3
from h3.cli import StaticFileHandler
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError
from quic.interop.client import prepare_downloads
from quic.interop.hq import Download
from quic.interop.options import EXIT_FAILURE, EXIT_OK, InteropCase, InteropOptions
from quic.tls.keylog import KeyLogFile

__all__ = ["H3_ALPN", "RUNNERS", "fetch_h3", "run_http3_client", "run_http3_server"]

logger = logging.getLogger("quic.interop")

H3_ALPN = "h3"


def _configuration(
    is_client: bool, case: InteropCase, keylog: KeyLogFile | None, qlog_dir: str | None = None
) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[H3_ALPN],
        verify_certificates=not is_client,  # the runner's client does not verify
        keylog=keylog,
        qlog_dir=qlog_dir,  # one <ODCID hex>_<role>.sqlog per connection
    )
    if case.cipher_suites is not None:
        config.cipher_suites = case.cipher_suites
    return config


# -- server ------------------------------------------------------------------------------


async def _bind(options: InteropOptions, config: QuicConfiguration) -> H3Server:
    handler = StaticFileHandler(options.www)
    try:
        return await serve_h3(options.host, options.port, config, handler)
    except OSError:
        if options.host != "::":
            raise
        logger.info("no IPv6 socket; binding 0.0.0.0")
        return await serve_h3("0.0.0.0", options.port, config, handler)


async def run_http3_server(options: InteropOptions, case: InteropCase) -> int:
    """Serve ``options.www`` over HTTP/3 until SIGTERM/SIGINT; the exit status."""
    if not options.www.is_dir():
        logger.error("www directory %s does not exist", options.www)
        return EXIT_FAILURE
    keylog = KeyLogFile(options.keylog_file) if options.keylog_file else None
    config = _configuration(False, case, keylog, options.qlog_dir)
    try:
        config.load_cert_chain(str(options.certs / "cert.pem"), str(options.certs / "priv.key"))
    except (OSError, ValueError, TypeError) as exc:
        logger.error("cannot load certificate from %s: %s", options.certs, exc)
        return EXIT_FAILURE
    try:
        server = await _bind(options, config)
    except OSError as exc:
        logger.error("cannot bind [%s]:%d: %s", options.host, options.port, exc)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {server.port}", flush=True)
    logger.info(
        "test case %s: serving %s over HTTP/3 on port %d", case.name, options.www, server.port
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.shutdown()
        if keylog is not None:
            keylog.close()
    return EXIT_OK


# -- client ------------------------------------------------------------------------------


async def fetch_h3(client: H3Client, download: Download, directory: Path) -> bool:
    """GET one URL and store a 200 body; True on success."""
    destination = directory / download.filename
    try:
        response = await client.get(download.target)
        if response.status != 200:
            logger.error("%s: HTTP status %d", download.url, response.status)
            return False
        size = 0
        with destination.open("wb") as fp:
            async for chunk in response:
                size += len(chunk)
                fp.write(chunk)
    except StreamResetError as exc:
        logger.error("%s: stream reset (code %#x)", download.url, exc.error_code)
    except ConnectionError as exc:
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
        async with H3Client.connect(
            host, port, configuration=_configuration(True, case, keylog, qlog_dir)
        ) as client:
            results = await asyncio.gather(*(fetch_h3(client, d, directory) for d in downloads))
            return all(results)
    except ConnectionError as exc:
        logger.error("connection to %s:%d failed: %s", host, port, exc)
    except OSError as exc:
        logger.error("cannot reach %s:%d: %s", host, port, exc)
    return False


async def run_http3_client(options: InteropOptions, case: InteropCase) -> int:
    """Download every URL of ``options.requests`` over HTTP/3; the exit status."""
    downloads = prepare_downloads(options)
    if downloads is None:
        return EXIT_FAILURE
    groups: dict[tuple[str, int], list[Download]] = {}
    for download in downloads:
        groups.setdefault(download.authority, []).append(download)
    keylog = KeyLogFile(options.keylog_file) if options.keylog_file else None
    ok = True
    try:
        async with asyncio.timeout(options.timeout):
            for group in groups.values():
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


#: (server, client) for the ``quic.interop.runners`` entry point ``http3``
RUNNERS = (run_http3_server, run_http3_client)
