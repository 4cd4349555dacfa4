"""quic-interop-runner's WebTransport mode: ``python -m pywebtransport.interop``.

Theory of operation
-------------------
``server --testcase T --port P --certs DIR --www DIR [--protocols "p1 p2"]
[--requests "wt1/a wt1/b"] [--downloads DIR]`` binds (``cert.pem`` and ``priv.key`` of
``--certs``), prints ``LISTENING <port>`` and accepts sessions on any path whose first
segment names the endpoint, until SIGTERM/SIGINT (exit 0). Each session gets the
client's first offered protocol (``WT-Available-Protocols``) that ``--protocols`` also
lists, in ``WT-Protocol`` (draft-ietf-webtrans-http3-16 §3.3; the runner's handshake
check: "the client's first protocol that the server supports"), and a
:class:`~pywebtransport.interop.runner_peer.RunnerPeer` that answers its requests from
``<www>/<endpoint>/``. In ``handshake`` the chosen protocol (empty if none) is written to
``<downloads>/negotiated_protocol.txt``. In ``transfer-<kind>-send`` the server requests
the files of ``--requests`` (``<endpoint>/<name>``) of each session on that endpoint,
saves them to ``<downloads>/<endpoint>/<name>`` and closes the session (code 0) once all
arrived: that ends the runner's client.

``client --testcase T --downloads DIR [--protocols "..."] [--www DIR] URL...`` opens one
session per endpoint (the first segment of each URL's path; the rest names a file),
offering ``--protocols``. It trusts ``<certs>/ca.pem`` (the runner's CA; ``--insecure``
when there is none). ``handshake``: writes the protocol the server chose to
``<downloads>/negotiated_protocol.txt`` and closes. ``transfer-<kind>-receive``: requests
the URLs' files over that transport, saves them to ``<downloads>/<endpoint>/<name>``,
exit 0 when all arrived. ``transfer`` (and the ``-send`` cases): answers the server's
requests from ``<www>/<endpoint>/`` until the server closes every session (exit 0).
Several endpoints share one QUIC connection (the runner's rule: one handshake).

Exit status: 0 success, 1 failure, 127 unsupported test case (the runner's contract).
``SSLKEYLOGFILE`` / ``QLOGDIR`` write NSS key logs and one qlog file per connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pywebtransport.client import WebTransportClient
from pywebtransport.config import ClientConfig, ServerConfig
from pywebtransport.exceptions import WebTransportError
from pywebtransport.interop import _Tasks
from pywebtransport.interop.runner_options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    TESTCASES,
    RunnerCase,
    RunnerOptions,
    parse_options,
)
from pywebtransport.interop.runner_peer import RunnerPeer
from pywebtransport.interop.runner_wire import RunnerWireError, endpoint_of, split_request
from pywebtransport.server import SessionRequest, WebTransportServer
from pywebtransport.session import WebTransportSession

__all__ = [
    "NEGOTIATED_PROTOCOL_FILE",
    "choose_protocol",
    "main",
    "plan_requests",
    "run_client",
    "run_server",
]

logger = logging.getLogger("pywebtransport.interop.runner")

NEGOTIATED_PROTOCOL_FILE = "negotiated_protocol.txt"


def choose_protocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The client's first offered protocol that the server supports (or None)."""
    return next((p for p in offered if p in supported), None)


def plan_requests(requests: Sequence[str]) -> dict[str, list[str]]:
    """Endpoint → file names, in order, from URLs or ``<endpoint>/<name>`` paths; an
    endpoint with no file (``https://server/wt1``) maps to ``[]``."""
    plan: dict[str, list[str]] = {}
    for request in requests:
        endpoint, name = split_request(request)
        names = plan.setdefault(endpoint, [])
        if name is not None and name not in names:
            names.append(name)
    return plan


def _write_protocol(downloads: Path, protocol: str | None) -> None:
    downloads.mkdir(parents=True, exist_ok=True)
    (downloads / NEGOTIATED_PROTOCOL_FILE).write_text(protocol or "")


# ======================================================================================
# server
# ======================================================================================


class _RunnerServer:
    """Accepts sessions and runs a :class:`RunnerPeer` on each."""

    def __init__(self, options: RunnerOptions, case: RunnerCase) -> None:
        self.options = options
        self.case = case
        self.plan = plan_requests(options.requests) if case.requester == "server" else {}
        self.tasks = _Tasks()
        self.failures = 0

    async def run(self, server: WebTransportServer) -> None:
        async for request in server.incoming_sessions():
            self.tasks.spawn(self._handle(request))

    async def _handle(self, request: SessionRequest) -> None:
        options = self.options
        try:
            endpoint = endpoint_of(request.path)
        except RunnerWireError:
            await request.reject(404)
            return
        protocol = choose_protocol(request.protocols, options.protocols)
        session = await request.accept(protocol=protocol)
        logger.info("session on /%s, %s, protocol %r", endpoint, request.draft, protocol)
        if self.case.name == "handshake":
            _write_protocol(options.downloads, protocol)
        wanted = self.plan.get(endpoint, [])
        peer = RunnerPeer(
            session,
            endpoint,
            www=options.www,
            downloads=options.downloads,
            wanted=wanted,
            limits=options.limits,
        )
        peer.start()
        try:
            if wanted and self.case.transport is not None:
                peer.request(self.case.transport)
                try:
                    async with asyncio.timeout(options.timeout):
                        complete = await peer.wait_saved()
                except TimeoutError:
                    complete = False
                if complete:
                    logger.info("/%s: all %d files received", endpoint, len(wanted))
                    await session.wait_flushed(2.0)
                    await session.close(0)
                else:
                    self.failures += 1
                    logger.error("/%s: files missing: %s", endpoint, peer.missing)
            await session.wait_closed()
        finally:
            await peer.stop()


async def run_server(options: RunnerOptions, case: RunnerCase) -> int:
    """Serve until SIGTERM/SIGINT; the process exit status."""
    if not options.www.is_dir():
        logger.warning("www directory %s does not exist: requests are refused", options.www)
    config = ServerConfig(
        certfile=str(options.certs / "cert.pem"),
        keyfile=str(options.certs / "priv.key"),
        keylog_file=options.keylog_file,
        qlog_dir=options.qlog_dir,
        host=options.host,
        port=options.port,
    )
    server = WebTransportServer(config)
    try:
        try:
            await server.listen()
        except OSError:
            if options.host != "::":
                raise
            logger.info("no IPv6 socket; binding 0.0.0.0")
            server = WebTransportServer(config)
            await server.listen("0.0.0.0", options.port)
    except (OSError, ValueError, WebTransportError) as exc:
        logger.error("cannot start the server: %s", exc)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {server.port}", flush=True)
    logger.info("test case %s on port %d", case.name, server.port)
    runner = _RunnerServer(options, case)
    accepting = asyncio.create_task(runner.run(server))
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.shutdown(timeout=1.0)
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
        await runner.tasks.cancel()
    return EXIT_OK if runner.failures == 0 else EXIT_FAILURE


# ======================================================================================
# client
# ======================================================================================


def _client_config(options: RunnerOptions, sessions: int) -> ClientConfig:
    ca = options.certs / "ca.pem"
    if ca.is_file():
        trust: dict[str, object] = {"ca_certs": str(ca)}
    elif options.insecure:
        logger.warning("no %s: the server certificate is not verified (--insecure)", ca)
        trust = {"insecure": True}
    else:
        raise WebTransportError(f"no {ca} to verify the server with (use --insecure)")
    return ClientConfig(
        keylog_file=options.keylog_file,
        qlog_dir=options.qlog_dir,
        max_sessions=max(1, sessions),
        connect_timeout=min(options.timeout, 30.0),
        **trust,  # type: ignore[arg-type]
    )


def _session_urls(requests: Sequence[str]) -> dict[str, str]:
    """Endpoint → session URL (``https://authority/<endpoint>``) of each request URL."""
    urls: dict[str, str] = {}
    for request in requests:
        parts = urlsplit(request)
        if parts.scheme.lower() != "https" or not parts.netloc:
            raise ValueError(f"not an https URL: {request!r}")
        endpoint, _ = split_request(request)
        urls.setdefault(endpoint, f"https://{parts.netloc}/{endpoint}")
    return urls


async def _open_sessions(
    client: WebTransportClient, urls: dict[str, str], protocols: Sequence[str]
) -> dict[str, WebTransportSession]:
    """One session per endpoint, all on the first session's QUIC connection."""
    endpoints = list(urls)
    first = await client.connect(urls[endpoints[0]], protocols=protocols)
    sessions = {endpoints[0]: first}
    others = await asyncio.gather(
        *(client.connect(urls[e], protocols=protocols, pool_with=first) for e in endpoints[1:])
    )
    sessions.update(zip(endpoints[1:], others, strict=True))
    return sessions


async def _client_sessions(options: RunnerOptions, case: RunnerCase) -> int:
    plan = plan_requests(options.requests)
    urls = _session_urls(options.requests)
    config = _client_config(options, len(urls))
    receive = case.requester == "client" and case.transport is not None
    async with WebTransportClient(config) as client:
        sessions = await _open_sessions(client, urls, options.protocols)
        first = next(iter(sessions.values()))
        logger.info("%d session(s), %s, protocol %r", len(sessions), first.draft, first.protocol)
        if case.name == "handshake":
            _write_protocol(options.downloads, first.protocol)
            return EXIT_OK
        www = options.www if options.www.is_dir() else None
        peers = [
            RunnerPeer(
                session,
                endpoint,
                www=www,
                downloads=options.downloads,
                wanted=plan[endpoint] if receive else (),
                limits=options.limits,
            )
            for endpoint, session in sessions.items()
        ]
        try:
            for peer in peers:
                peer.start()
                if receive and case.transport is not None:
                    peer.request(case.transport)
            if receive:
                results = await asyncio.gather(*(peer.wait_saved() for peer in peers))
                for peer in peers:
                    if peer.missing:
                        logger.error("/%s: files missing: %s", peer.endpoint, peer.missing)
                return EXIT_OK if all(results) else EXIT_FAILURE
            # answer the server's requests until it closes every session
            await asyncio.gather(*(session.wait_closed() for session in sessions.values()))
            return EXIT_OK
        finally:
            for peer in peers:
                await peer.stop()


async def run_client(options: RunnerOptions, case: RunnerCase) -> int:
    """Run the client's part of ``case``; the process exit status."""
    if not options.requests:
        logger.error("no URL given (arguments or $REQUESTS)")
        return EXIT_FAILURE
    try:
        async with asyncio.timeout(options.timeout):
            return await _client_sessions(options, case)
    except TimeoutError:
        logger.error("gave up after %g s", options.timeout)
    except (WebTransportError, ValueError, OSError) as exc:
        logger.error("client failed: %s", exc)
    return EXIT_FAILURE


# ======================================================================================
# entry point
# ======================================================================================


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Run one endpoint; returns the process exit status."""
    options = parse_options(argv, environ)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    case = TESTCASES.get(options.testcase)
    if case is None:
        logger.error("test case %r is not supported", options.testcase)
        return EXIT_UNSUPPORTED
    runner = run_server if options.role == "server" else run_client
    try:
        return asyncio.run(runner(options, case))
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception:
        logger.exception("%s failed", options.role)
        return EXIT_FAILURE
