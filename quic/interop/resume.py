"""Interop test cases ``resumption`` and ``zerortt``: two connections, the second one
resumed with the first one's session ticket.

Theory of operation
-------------------
The quic-interop-runner's ``resumption`` case asks the client to fetch the first URL on
one connection, then the other URLs on a second connection that resumes the TLS
session (RFC 9001 §4.5, RFC 9846 §2.2: a PSK handshake, no certificate); ``zerortt``
is the same with the second connection's requests sent as 0-RTT data (RFC 9001 §4.6),
before its handshake completes.

Client (:func:`run_resumption_client`): the first connection keeps the tickets the
server sends in an :class:`~quic.tls.tickets.InMemorySessionTicketStore` (it waits a
little after its download for the ticket, which follows the handshake); the second one
takes it from the store (same server name) and, for ``zerortt``, opens its streams at
once (``quic.aio`` opens streams in 0-RTT when the ticket allows it). If no ticket
arrived, or the second handshake did not resume, the run fails: the case cannot pass.

Server (:func:`enable_resumption`): ticket keys, so that each connection gets a ticket,
and for ``zerortt`` an anti-replay memory, without which 0-RTT is never accepted
(RFC 9846 §8).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from quic.aio import ConnectionClosed, QuicSession, connect
from quic.configuration import QuicConfiguration
from quic.interop.hq import ALPN, Download
from quic.interop.options import EXIT_FAILURE, EXIT_OK, InteropCase, InteropOptions
from quic.tls.antireplay import AntiReplay
from quic.tls.keylog import KeyLogFile
from quic.tls.tickets import InMemorySessionTicketStore, SessionTicketKeys

__all__ = ["RESUMPTION_CASES", "enable_resumption", "run_resumption_client"]

logger = logging.getLogger("quic.interop")

#: test case -> whether the second connection sends its requests in 0-RTT
RESUMPTION_CASES = {"resumption": False, "zerortt": True}

TICKET_WAIT = 2.0  # seconds to wait for the first connection's ticket


def enable_resumption(config: QuicConfiguration, case: InteropCase) -> None:
    """Server: issue tickets (and accept 0-RTT for ``zerortt``)."""
    if case.name not in RESUMPTION_CASES:
        return
    config.ticket_keys = SessionTicketKeys()
    if RESUMPTION_CASES[case.name]:
        config.anti_replay = AntiReplay()


async def _wait_for_ticket(session: QuicSession, store: InMemorySessionTicketStore) -> bool:
    try:
        async with asyncio.timeout(TICKET_WAIT):
            while not len(store):
                await session.wait_progress()
    except (TimeoutError, ConnectionClosed):
        pass
    return bool(len(store))


async def _connection(
    downloads: list[Download],
    config: QuicConfiguration,
    directory: Path,
    store: InMemorySessionTicketStore,
    *,
    resumed: bool,
    zero_rtt: bool,
) -> bool:
    from quic.interop.client import fetch

    host, port = downloads[0].authority
    try:
        async with connect(host, port, config, wait_connected=not zero_rtt) as session:
            if zero_rtt and not session.connection.early_data_possible:
                logger.error("the ticket does not allow 0-RTT")
                return False
            results = await asyncio.gather(*(fetch(session, d, directory) for d in downloads))
            await session.wait_connected()
            if session.alpn_protocol != ALPN:
                logger.error("server did not select ALPN %s", ALPN)
                return False
            tls = session.connection.tls
            if resumed and not tls.session_resumed:
                logger.error("the server did not resume the session")
                return False
            if zero_rtt:
                logger.info("0-RTT %s", "accepted" if tls.early_data_accepted else "rejected")
            if not resumed and not await _wait_for_ticket(session, store):
                logger.error("the server sent no session ticket")
                return False
            return all(results)
    except ConnectionClosed as exc:
        logger.error("connection to %s:%d failed: %s", host, port, exc)
    except OSError as exc:
        logger.error("cannot reach %s:%d: %s", host, port, exc)
    return False


async def run_resumption_client(
    options: InteropOptions,
    case: InteropCase,
    downloads: list[Download],
    keylog: KeyLogFile | None,
) -> int:
    """Fetch the first URL, then the others on a resumed connection; exit status."""
    from quic.interop.client import client_configuration

    zero_rtt = RESUMPTION_CASES[case.name]
    store = InMemorySessionTicketStore()
    first, rest = downloads[:1], downloads[1:]
    for group, resumed in ((first, False), (rest, True)):
        if not group:
            continue
        config = client_configuration(case, keylog, options.qlog_dir)
        config.session_ticket_store = store
        config.enable_early_data = zero_rtt
        ok = await _connection(
            group,
            config,
            options.downloads,
            store,
            resumed=resumed,
            zero_rtt=zero_rtt and resumed,
        )
        if not ok:
            return EXIT_FAILURE
    return EXIT_OK
