"""HTTP Datagrams of one HTTP/3 connection (RFC 9297 §2.1, §3; RFC 9114 §7.2.4.2).

Theory of operation
-------------------
:class:`H3Datagrams` is owned by :class:`~h3.connection.H3Connection`
(``H3Connection.datagrams``). It sends HTTP datagrams, receives them, and answers the
owner's per-datagram shortcut; the Quarter Stream ID codec is :mod:`h3.datagrams`'s.

* Sending (:meth:`send`): only if the peer enabled them with SETTINGS_H3_DATAGRAM — its
  SETTINGS, or in 0-RTT the ones remembered with the session ticket (RFC 9114
  §7.2.4.2) — as one QUIC DATAGRAM, the Quarter Stream ID in front of the payload. The
  largest payload (:meth:`max_payload`) is the QUIC connection's current one less that
  prefix, so it follows the path MTU.
* Receiving (:meth:`receive`): a QUIC DATAGRAM when we did not enable HTTP datagrams,
  or one whose Quarter Stream ID cannot be read, is H3_DATAGRAM_ERROR (RFC 9297 §2.1,
  §3); one for a stream whose receive side is closed is dropped silently (§2.1); any
  other is queued as :class:`~h3.events.DatagramReceived` through the owner's one way
  out. Nothing is held here.
* The shortcut (:meth:`route`): ``(stream ID, payload)`` when all :meth:`receive` would
  do is queue that event — the owner asks only when nothing is queued and it is not
  closed (``H3Connection.datagram_route``); no qlog to write, no 0-RTT policy holding
  events back (:attr:`h3.early.EarlyRequests.passes_through`), HTTP datagrams enabled,
  the stream open. A query: it changes nothing, so a caller that takes the answer
  delivers the payload itself and the owner's state is as if the event had been
  drained.

This is the hot path of every WebTransport datagram: the methods read their
collaborators from slots, without a call per check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from h3.datagrams import (
    QUARTER_PREFIX,
    decode_h3_datagram,
    encode_h3_datagram,
    max_h3_datagram_payload,
)
from h3.errors import H3ConnectionError, H3ErrorCode
from h3.events import DatagramReceived, H3Event
from h3.qlog import H3Logger
from h3.settings import SettingId
from h3.stream_state import StreamTable
from quic.connection import QuicConnection

if TYPE_CHECKING:
    from h3.connection import H3Configuration
    from h3.control import ControlStreams
    from h3.early import EarlyRequests

__all__ = ["H3Datagrams"]

_H3_DATAGRAM = int(SettingId.H3_DATAGRAM)  # RFC 9297 §2.1.1 (a plain int: no enum lookup)


class H3Datagrams:
    """HTTP datagrams of one HTTP/3 connection: send, receive, route."""

    __slots__ = ("_config", "_control", "_early", "_emit", "_qlog", "_quic", "_streams")

    def __init__(
        self,
        quic: QuicConnection,
        config: H3Configuration,
        control: ControlStreams,
        streams: StreamTable,
        early: EarlyRequests,
        emit: Callable[[H3Event], None],
        qlog: H3Logger | None,
    ) -> None:
        self._quic = quic
        self._config = config  # read per datagram: enable_datagrams (RFC 9297 §2.1.1)
        self._control = control  # the peer's SETTINGS, or the remembered ones
        self._streams = streams  # which streams are closed (RFC 9297 §2.1)
        self._early = early  # the 0-RTT policy: whether events pass straight through
        self._emit = emit  # the owner's one way out
        self._qlog = qlog

    def peer_enabled(self) -> bool:
        """SETTINGS_H3_DATAGRAM from the peer (in 0-RTT: remembered, RFC 9114 §7.2.4.2)."""
        control = self._control
        peer = control.peer_settings
        if peer is None:
            peer = control.memory.remembered
        return bool(peer and peer.get(_H3_DATAGRAM))

    def max_payload(self, stream_id: int) -> int:
        """Largest HTTP datagram payload for ``stream_id`` now (0: none); follows the
        path MTU (docs/datagrams.md)."""
        if not self.peer_enabled():
            return 0
        return max_h3_datagram_payload(self._quic.max_datagram_payload, stream_id)

    def send(self, stream_id: int, data: bytes | bytearray | memoryview) -> None:
        """Send an HTTP datagram for ``stream_id`` (RFC 9297 §2.1); ValueError if the
        peer did not enable them, or if it is larger than :meth:`max_payload`."""
        # peer_enabled(), inline: every datagram sent passes here
        control = self._control
        peer = control.peer_settings
        if peer is None:
            peer = control.memory.remembered
        if not (peer and peer.get(_H3_DATAGRAM)):
            raise ValueError("the peer did not enable HTTP datagrams")
        if 0 <= stream_id < 0x100 and not stream_id & 3:  # encode_h3_datagram, inline
            self._quic.send_datagram(QUARTER_PREFIX[stream_id >> 2] + data)  # bytes
        else:
            self._quic.send_datagram(encode_h3_datagram(stream_id, data))
        if self._qlog is not None:
            self._qlog.datagram(True, stream_id, len(data))

    def route(self, data: bytes) -> tuple[int, bytes] | None:
        """``(stream ID, payload)`` if all :meth:`receive` would do with this QUIC
        DATAGRAM payload is queue them as an event; else None. Changes nothing. The
        owner asks only when it is open and has nothing queued."""
        if self._qlog is not None or not self._early.passes_through:
            return None
        if data and data[0] < 0x40:  # decode_h3_datagram's one-byte case, inline
            sid = data[0] << 2
            payload = data[1:] if type(data) is bytes else bytes(data[1:])
        else:
            try:
                sid, payload = decode_h3_datagram(data)
            except H3ConnectionError:
                return None
        if not self._config.enable_datagrams:
            return None
        # StreamTable.is_closed(sid), inline: per datagram (tests/h3/test_conn_datagrams.py)
        closed = self._streams._closed[sid & 3]
        return (sid, payload) if closed is None or (sid >> 2) not in closed else None

    def receive(self, data: bytes) -> None:
        """A QUIC DATAGRAM payload: its event queued, dropped, or H3_DATAGRAM_ERROR."""
        if not self._config.enable_datagrams:
            raise H3ConnectionError(
                H3ErrorCode.H3_DATAGRAM_ERROR, "HTTP datagram without SETTINGS_H3_DATAGRAM"
            )
        stream_id, payload = decode_h3_datagram(data)
        if self._qlog is not None:
            self._qlog.datagram(False, stream_id, len(payload))
        if self._streams.is_closed(stream_id):
            return  # RFC 9297 §2.1: the receive side is closed, silently dropped
        self._emit(DatagramReceived(stream_id, payload))
