"""Runner cases about paths: "rebind-port", "rebind-addr", "connectionmigration".

Theory of operation
-------------------
In "rebind-port" and "rebind-addr" the runner's network simulator moves the client to a
new port (and address) during a transfer; the endpoints run the ordinary transfer, and
the server follows each move (RFC 9000 §9.3: path validation with a PATH_CHALLENGE in
its first packet to the new address). Nothing here is needed for them.

In "connectionmigration" the *client* migrates actively (RFC 9000 §9.2) during the
download: :func:`start_migration` returns a task that waits until the handshake is
confirmed (§9: no migration before), lets the transfer start, then moves the
connection to a new UDP socket with :meth:`~quic.aio.session.QuicSession.migrate` —
a new local port and a new connection ID from the server's pool (§9.5), which the
runner checks. The server role of that case is the ordinary transfer.

The runner's older variant of "connectionmigration": the server offers a
preferred_address (``--preferred-address`` / ``$PREFERRED_ADDRESS`` of the server
role) and the client moves there (RFC 9000 §9.6.1: it validates the address once the
handshake is confirmed, then sends everything there with the address's connection ID).
When the server offers one, the client's migration task waits for that move instead of
migrating actively; the server moves to its preferred address once the client's
non-probing packets arrive there and the path is validated (§9.6.2).
"""

from __future__ import annotations

import asyncio
import logging

from quic.aio import QuicSession
from quic.conn_migrate import MigrationRefused
from quic.interop.options import InteropCase

__all__ = ["MIGRATE_AFTER", "start_migration"]

logger = logging.getLogger("quic.interop")

#: Seconds of transfer before the client migrates ("connectionmigration").
MIGRATE_AFTER = 0.1


async def _migrate(session: QuicSession, delay: float) -> bool:
    connection = session.connection
    while not connection.handshake_confirmed:
        if session.is_closed:
            return False
        await asyncio.sleep(0.005)
    params = connection.peer_params
    if params is not None and params.preferred_address is not None:
        return await _follow_preferred(session)
    await asyncio.sleep(delay)
    if session.is_closed:
        return False
    try:
        await session.migrate()
    except (MigrationRefused, OSError) as exc:
        logger.error("active migration failed: %s", exc)
        return False
    logger.info("migrated to a new local address (new connection ID)")
    return True


async def _follow_preferred(session: QuicSession) -> bool:
    """The older variant: wait until the connection moved to the server's preferred
    address (validated, RFC 9000 §9.6.1), or it failed (§8.2.4: 3 PTO)."""
    connection = session.connection
    paths = connection.paths
    while not session.is_closed:
        if paths.migrations:
            logger.info("migrated to the server's preferred address %s", paths.peer_address)
            return True
        if paths.preferred is None:  # not probed (declined, other family) or failed
            logger.error("the server's preferred address was not validated")
            return False
        await asyncio.sleep(0.005)
    return False


def start_migration(
    session: QuicSession, case: InteropCase, delay: float = MIGRATE_AFTER
) -> asyncio.Task[bool] | None:
    """The client's active migration for "connectionmigration"; None for other cases."""
    if case.name != "connectionmigration":
        return None
    return asyncio.ensure_future(_migrate(session, delay))
