"""Sending from several local addresses: a server's preferred address (RFC 9000 §9.6).

Theory of operation
-------------------
A server that offers a preferred address owns a second socket (the pump's
``extra_sockets``); each connection chooses the local address its datagrams leave
from (RFC 9000 §9.6.2: after migrating to the preferred address, the server sends from
it). The endpoint hands those datagrams over as ``(data, addr, ecn, local)``
(:meth:`quic.endpoint.QuicEndpoint.routed_datagrams_to_send`). :func:`send_routed`
sends each from the socket of its ``local`` index: index 0 (or one no longer open) is
the main socket, whose datagrams keep their ECN codepoint when the pump can mark them;
the others leave unmarked through their transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("quic")


def send_routed(
    out: list[tuple[bytes, Any, int, int]],
    main: asyncio.DatagramTransport | None,
    extra: Sequence[asyncio.DatagramTransport],
    send_marked: Callable[[list[tuple[bytes, Any, int]]], None] | None,
) -> None:
    """Send each datagram of ``out`` from the socket of its ``local`` index (``main``
    for 0, else ``extra[local - 1]``); ``send_marked``: how the main socket's datagrams
    keep their ECN codepoint (None: a socket that cannot mark them)."""
    if not out or main is None or main.is_closing():
        return
    marked: list[tuple[bytes, Any, int]] = []
    for data, addr, ecn, local in out:
        if local == 0 and send_marked is not None:
            marked.append((data, addr, ecn))
            continue
        transport = main if local == 0 or local > len(extra) else extra[local - 1]
        try:
            transport.sendto(data, addr)
        except Exception as exc:  # e.g. an address the socket cannot reach
            logger.debug("UDP send to %r failed: %r", addr, exc)
    if marked and send_marked is not None:
        send_marked(marked)
