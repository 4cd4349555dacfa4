"""The endpoint-wide qlog trace of a server endpoint: packets of no connection.

Theory of operation
-------------------
quic-events §"Events not belonging to a single connection": a server endpoint with
qlog on keeps one trace of its own (:func:`create_endpoint_logger`, file
``endpoint-<8 hex digits>.sqlog``), written by :class:`EndpointLogger`, a
:class:`~quic.qlog.QuicLogger` with the endpoint's hooks:

* :meth:`EndpointLogger.stateless_packet_sent` ``(now, packet_bytes)``: a Version
  Negotiation, Retry or stateless Initial it sends, read back from its bytes, flushed at
  once;
* :meth:`EndpointLogger.stateless_reset_sent`: a Stateless Reset (packet type
  ``stateless_reset`` with its token);
* :meth:`EndpointLogger.datagram_dropped`: a datagram dropped or refused without a
  connection (``transport:packet_dropped`` with a trigger).

``QuicEndpoint.close()`` (called by the asyncio pump when its socket is gone) ends the
trace: flushed and closed.

Bounded: every one of these events is caused by whoever can send us a datagram, so a
flood of garbage would grow the file without limit. The trace takes at most
:data:`MAX_EVENTS_PER_SECOND` of them per second of the endpoint's clock; the others are
counted (:attr:`EndpointLogger.suppressed`) and the next event logged carries how many
were left out before it (``suppressed_before``). Memory is constant; the file grows by
at most that many records a second whatever the flood.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quic.errors import QuicProtocolError
from quic.packet import PacketType, parse_header
from quic.qlog import (
    QlogFileSink,
    QlogSink,
    QuicLogger,
    _datagram_packet_type,
    _frameless,
    _packet_header,
    _reference_ms,
)

if TYPE_CHECKING:
    from quic.configuration import QuicConfiguration

__all__ = ["MAX_EVENTS_PER_SECOND", "EndpointLogger", "create_endpoint_logger"]

#: Endpoint-trace events per second of the endpoint's clock (see the module docstring).
MAX_EVENTS_PER_SECOND = 200


class EndpointLogger(QuicLogger):
    """The endpoint-wide trace (module docstring)."""

    _window = -1.0  # the second being counted (floor of ``now``)
    _in_window = 0
    _left_out = 0  # since the last event logged
    #: Events left out by the rate bound so far.
    suppressed = 0

    def _admit(self, now: float) -> int | None:
        """None: over this second's budget (counted); else how many were left out
        before this one."""
        second = float(int(now))
        if second != self._window:
            self._window = second
            self._in_window = 0
        if self._in_window >= MAX_EVENTS_PER_SECOND:
            self._left_out += 1
            self.suppressed += 1
            return None
        self._in_window += 1
        left_out, self._left_out = self._left_out, 0
        return left_out

    def _log_bounded(self, now: float, name: str, data: dict[str, Any]) -> bool:
        left_out = self._admit(now)
        if left_out is None:
            return False
        if left_out:
            data["suppressed_before"] = left_out
        self.log(now, name, data)
        return True

    def stateless_packet_sent(self, now: float, packet: bytes) -> None:
        """Hook for the endpoint: log a packet it sends without a connection, read from
        its bytes — Version Negotiation (with its versions), Retry (with its token), or
        a stateless Initial (header only: its payload is protected). Flushed at once."""
        try:
            header = parse_header(packet, 0, 0)
        except QuicProtocolError:
            return
        packet_type = header.packet_type
        if packet_type is None:
            return
        if packet_type in (PacketType.VERSION_NEGOTIATION, PacketType.RETRY):
            vn = packet_type is PacketType.VERSION_NEGOTIATION
            versions = header.supported_versions if vn else None
            token = None if vn else header.token
            data = _frameless(packet_type, header.dcid, header.scid, len(packet), versions, token)
        else:
            data = {
                "header": _packet_header(packet_type, None, header.dcid, header.scid),
                "raw": {"length": len(packet)},
            }
        if self._log_bounded(now, "transport:packet_sent", data):
            self._flush()

    def stateless_reset_sent(self, now: float, packet: bytes) -> None:
        """Hook for the endpoint: ``transport:packet_sent`` of a Stateless Reset it sends
        (RFC 9000 §10.3; quic-events §"packet_sent": packet type ``stateless_reset``
        with its ``stateless_reset_token``, the last 16 bytes)."""
        data = {
            "header": {"packet_type": "stateless_reset"},
            "stateless_reset_token": packet[-16:].hex(),
            "raw": {"length": len(packet)},
        }
        self._log_bounded(now, "transport:packet_sent", data)

    def datagram_dropped(
        self, now: float, trigger: str, datagram: bytes, reason: str | None = None
    ) -> None:
        """Hook for the endpoint: ``transport:packet_dropped`` of a datagram it drops
        without handing it to a connection (quic-events §"packet_dropped" triggers:
        ``invalid``, ``unsupported``, ``connection_unknown``, ``rejected``,
        ``decryption_failure``, ``internal_error``); the packet type is read from the
        first packet's unprotected bits, ``reason`` goes to ``details``."""
        data: dict[str, Any] = {
            "header": {"packet_type": _datagram_packet_type(datagram)},
            "raw": {"length": len(datagram)},
            "trigger": trigger,
        }
        if reason is not None:
            data["details"] = {"reason": reason}
        self._log_bounded(now, "transport:packet_dropped", data)


def create_endpoint_logger(
    configuration: QuicConfiguration, token_bytes: Callable[[int], bytes]
) -> EndpointLogger | None:
    """The endpoint-wide logger of a server endpoint (stateless packets), or None.

    In ``qlog_dir`` the file is ``endpoint-<8 random hex digits>.sqlog`` (from
    ``token_bytes``, called only then); a ``qlog_factory`` is asked with ``odcid=b""``.
    """
    factory = configuration.qlog_factory
    sink: QlogSink | None = None
    if factory is not None:
        sink = factory(configuration.is_client, b"")
    elif configuration.qlog_dir is not None:
        os.makedirs(configuration.qlog_dir, exist_ok=True)
        name = f"endpoint-{token_bytes(4).hex()}.sqlog"
        sink = QlogFileSink(os.path.join(configuration.qlog_dir, name))
    if sink is None:
        return None
    logger = EndpointLogger(
        sink,
        configuration.is_client,
        b"",
        title="pywebtransport endpoint",
        reference_time=_reference_ms(configuration),
        versions=configuration.supported_versions,
        alpns=configuration.alpn_protocols,
    )
    logger._flush()  # the endpoint trace stays open: its header is readable at once
    return logger
