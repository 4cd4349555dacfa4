"""The datagrams of one GRO read fed to a :class:`~quic.endpoint.QuicEndpoint`
(RFC 9000 §5.2, §12.2): one after another with the short-header connection ID of the
one before go to that connection in one call (``QuicConnection.receive_datagrams``), and
a connection fed a long run of them (``BUSY_RUN``: a bulk transfer's) is noted for
:meth:`~quic.endpoint.QuicEndpoint.take_busy`. The endpoint takes these functions as its
methods ``receive_datagrams``, ``_feed_run`` and ``take_busy``.

:func:`quiet` tells the endpoint's serve which pending connections it need not build:
a connection is pending after every datagram it was fed, and about a third of the
builds of a burst of short exchanges then wrote nothing (an ACK-only packet received, a
request whose reply the application has not written yet, an ACK not due: issue 10,
two builds per echo on each side of the 1,000-session burst).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from quic.conn_state import ConnectionState

if TYPE_CHECKING:
    from quic.connection import QuicConnection
    from quic.endpoint import QuicEndpoint
    from quic.endpoint_entry import Entry

__all__ = ["BUSY_RUN", "feed_run", "quiet", "receive_datagrams", "take_busy"]

logger = logging.getLogger("quic.endpoint")

#: A run of this many datagrams for one connection in one GRO read (a bulk transfer's)
#: marks the connection busy (:meth:`~quic.endpoint.QuicEndpoint.take_busy`).
BUSY_RUN = 16

_FIRST = itemgetter(0)
_CONNECTED = ConnectionState.CONNECTED
_STARTSWITH = bytes.startswith


def _one_run(datagrams: list[bytes], dcid: bytes) -> bool:
    """Every datagram of ``datagrams`` has a short header (RFC 9000 §17.3) with
    ``dcid`` first: they go to one connection together. Checked in C (``map``), not a
    Python loop per datagram."""
    try:
        return all(map(_STARTSWITH, datagrams, repeat(dcid), repeat(1))) and (
            max(map(_FIRST, datagrams)) < 0x80
        )
    except Exception:  # not bytes: the loop's per-datagram handling
        return False


def receive_datagrams(
    endpoint: QuicEndpoint,
    datagrams: Iterable[bytes],
    addr: Any,
    now: float,
    ecn: int = 0,
    local: int = 0,
) -> None:
    """:meth:`~quic.endpoint.QuicEndpoint.receive_datagram` for datagrams that arrived
    together from one address with one ECN field (a GRO read); never raises. One with
    the short-header ID of the one before goes to the same established connection at
    once (routes change only when the endpoint settles; the batch's bookkeeping is noted
    already)."""
    receive = endpoint._receive
    entry: Entry | None = None  # the previous datagram's, if _receive returned it
    dcid = b""
    end = 1 + endpoint.connection_id_length
    run: list[bytes] = []  # datagrams for entry's connection, fed in one call
    if type(datagrams) is list and len(datagrams) > 2:
        # The bulk case: the first datagram routed to a connection and every other
        # with its short-header connection ID: one run, without the loop below.
        first = datagrams[0]
        try:
            entry = receive(first, addr, now, ecn, local)
        except Exception:
            entry = None
            endpoint._drop(now, "internal_error", first)
            logger.exception("QUIC endpoint failed on a datagram; dropped it")
        rest = datagrams[1:]
        if entry is not None:
            dcid = first[1:end]
            if _one_run(rest, dcid):
                feed_run(endpoint, entry, rest, addr, now, ecn, local)
                return
        datagrams = rest  # the loop takes the rest, knowing the first's connection
    for data in datagrams:
        try:
            if entry is not None and data.startswith(dcid, 1) and not data[0] & 0x80:
                run.append(data)
                continue
            if run:
                entry = feed_run(endpoint, entry, run, addr, now, ecn, local)
                run = []
            entry = receive(data, addr, now, ecn, local)
            if entry is not None:
                dcid = data[1:end]
        except Exception:
            entry = None
            endpoint._drop(now, "internal_error", data)
            logger.exception("QUIC endpoint failed on a datagram; dropped it")
    if run:
        feed_run(endpoint, entry, run, addr, now, ecn, local)


def feed_run(
    endpoint: QuicEndpoint,
    entry: Entry | None,
    run: list[bytes],
    addr: Any,
    now: float,
    ecn: int,
    local: int,
) -> Entry | None:
    """Feed ``run`` (datagrams with the short-header ID of the one ``entry``'s connection
    just took) to that connection in one call; the entry, or None if the connection
    failed on them."""
    assert entry is not None
    if len(run) >= BUSY_RUN:
        endpoint._busy[entry.conn] = None
    try:
        entry.conn.receive_datagrams(run, addr, now, ecn, local)
    except Exception as exc:
        endpoint._internal_error(entry, exc)
        return None
    return entry


def take_busy(endpoint: QuicEndpoint) -> dict[QuicConnection, None]:
    """The connections fed a run of ``BUSY_RUN`` or more datagrams in one
    :meth:`receive_datagrams` call since the last call or the last full
    ``*datagrams_to_send`` call (which empties the set too): for an I/O layer in the
    middle of a long read, which serves these — their ACKs are due (the ACK-eliciting
    threshold, RFC 9000 §13.2.1 and ACK_FREQUENCY) — and not every connection fed."""
    busy = endpoint._busy
    if busy:
        endpoint._busy = {}
    return busy


def quiet(conn: QuicConnection, now: float) -> bool:
    """A build of ``conn`` now would send nothing: it is connected (not closing: no
    CONNECTION_CLOSE owed, RFC 9000 §10.2), has no path but the current one to serve
    (RFC 9000 §8.2, §9), no connection-ID routing change to report, and its sender
    owes nothing (:meth:`~quic.conn_send.SendScheduler.owes_nothing`: no ACK due, no
    frame queued, no probe); not under a controller told of application-limited
    periods by every build (BBR, RFC 9002 §7.8). The endpoint's serve then leaves it
    unbuilt."""
    return (
        conn.state is _CONNECTED
        and not conn.paths.others
        # has_routing_changes(), inline: per connection served (test_endpoint_quiet.py)
        and not ((cids := conn.cids)._issued_cids or cids._retired_cids)
        and not conn.recovery.congestion.app_limited_hook
        and conn.sender.owes_nothing(now)  # its first test: no datagram's build owed
    )
