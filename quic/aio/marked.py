"""The pump's way out when it marks datagrams: ECN codepoints and GSO runs.

:class:`~quic.aio.pump.QuicEndpointProtocol` sends the endpoint's datagrams with
:func:`send_marked_out`, its ``_send_marked`` method, when it holds the raw socket
(the socket supports ECN marking or UDP segmentation offload): runs of equal-size
datagrams leave in one ``sendmsg`` each (:func:`quic.aio.offload.send_segmented`), the
others one by one with their ECN codepoint (RFC 9000 §13.4.2,
:func:`quic.aio.udp.send_marked`). A datagram that cannot go out that way (the socket
buffer full, an error) is handed to the transport unmarked, which queues it; an
address the socket cannot reach is logged at debug level and dropped (UDP).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from quic.aio.offload import send_segmented
from quic.aio.udp import send_marked

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["send_marked_out"]

logger = logging.getLogger("quic")


def send_marked_out(self: QuicEndpointProtocol, out: list[tuple[bytes, Any, int]]) -> None:
    """Send with each datagram's ECN codepoint (RFC 9000 §13.4), runs of them in one
    ``sendmsg`` where GSO allows (see the module docstring for the fallback)."""
    transport = self.transport
    raw = self._raw
    if not out or transport is None or raw is None or transport.is_closing():
        return
    buffered = self._buffered
    if self._gso and len(out) > 1 and not buffered():  # a lone datagram: no run
        sent, self._gso = send_segmented(raw, out)
        if sent == len(out):
            return
        out = out[sent:]  # the socket buffer is full: the transport queues the rest
    messages = self._ecn_messages
    for data, addr, ecn in out:
        try:
            if ecn and not buffered():
                try:
                    if messages is not None:  # send_marked(), inline: IPv4
                        raw.sendmsg([data], messages[ecn], 0, addr)
                    else:
                        send_marked(raw, data, addr, ecn, self._family)
                    continue
                except OSError:
                    pass  # buffer full, or the path refused it: the transport decides
            transport.sendto(data, addr)
        except Exception as exc:  # e.g. an address the socket cannot reach
            logger.debug("UDP send to %r failed: %r", addr, exc)
