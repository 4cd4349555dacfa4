"""The end of a connection: closing, draining, idle timeout, stateless reset (RFC 9000 §10).

Theory of operation
-------------------
:class:`CloseState` holds what the end of a connection needs and reports it — one
:class:`~quic.events.ConnectionTerminated` on the connection's event queue and the
qlog record. Each transition returns the connection's new state, which the connection
keeps in its ``state`` attribute (read per datagram) (RFC 9000 §10):

* *closing* (§10.2.1): we close, by the application's request or because an error was
  raised (the connection turns errors into a close in one place). The
  CONNECTION_CLOSE frame is remembered; it is sent once, then again, at most 8 times,
  each time a datagram arrives (a rate-limited answer to a peer that did not see it).
  The closing period lasts three PTOs from the first CONNECTION_CLOSE sent;
* *draining* (§10.2.2): the peer closed, or sent a stateless reset (§10.3.1): nothing
  is sent any more, and the connection lingers for three PTOs;
* *idle timeout* (§10.1): the connection ends at once and silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.conn_state import ConnectionState
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated, QuicEvent

if TYPE_CHECKING:
    from quic.qlog import QuicLogger

__all__ = ["CloseFrame", "CloseState"]

#: (application, error code, frame type, reason) of the CONNECTION_CLOSE to send.
CloseFrame = tuple[bool, int, int, str]

_CLOSING = ConnectionState.CLOSING
_DRAINING = ConnectionState.DRAINING

_MAX_CLOSE_RESENDS = 8  # answers to datagrams received while closing (RFC 9000 §10.2.1)


def _trigger(code: int, application: bool) -> str:
    """qlog ``connection_closed`` trigger (quic-events §"connection_closed")."""
    if application:
        return "application"
    return "error" if code else "clean"


class CloseState:
    """The CONNECTION_CLOSE to send and the end-of-connection deadline."""

    __slots__ = ("_events", "_pending", "_qlog", "_resends", "deadline", "frame")

    def __init__(self, events: list[QuicEvent], qlog: QuicLogger | None) -> None:
        self._events = events
        self._qlog = qlog
        self.frame: CloseFrame | None = None  # what we close with (None: peer closed)
        self.deadline: float | None = None  # end of the closing or draining period
        self._pending = False
        self._resends = 0

    def begin_closing(
        self, application: bool, code: int, frame_type: int, reason: str, by_peer: bool
    ) -> ConnectionState:
        """We close (RFC 9000 §10.2.1); the deadline starts when the frame is sent.
        Returns the new state, CLOSING."""
        self.frame = (application, code, frame_type, reason)
        self._pending = True
        self.deadline = None
        self._events.append(
            ConnectionTerminated(
                code, reason, None if application else frame_type, application, by_peer
            )
        )
        if self._qlog is not None:  # flushed once the CONNECTION_CLOSE is sent
            self._qlog.connection_closing(
                by_peer=by_peer,
                application=application,
                code=code,
                reason=reason,
                trigger=_trigger(code, application),
            )
        return _CLOSING

    def begin_draining(
        self,
        now: float,
        linger: float,
        code: int,
        reason: str,
        frame_type: int | None,
        application: bool,
    ) -> ConnectionState:
        """The peer closed (RFC 9000 §10.2.2): stay silent for ``linger`` seconds.
        Returns the new state, DRAINING."""
        self.deadline = now + linger
        self._events.append(ConnectionTerminated(code, reason, frame_type, application, True))
        if self._qlog is not None:
            self._qlog.connection_closing(
                by_peer=True,
                application=application,
                code=code,
                reason=reason,
                trigger=_trigger(code, application),
            )
            self._qlog.flush_close(now)
        return _DRAINING

    def on_stateless_reset(self, now: float, linger: float) -> ConnectionState:
        """RFC 9000 §10.3.1: the peer lost its state; drain at once (returns DRAINING)."""
        self.deadline = now + linger
        self._events.append(
            ConnectionTerminated(TransportErrorCode.NO_ERROR, "stateless reset", by_peer=True)
        )
        if self._qlog is not None:
            self._qlog.connection_closed(
                now, trigger="stateless_reset", reason="stateless reset", by_peer=True
            )
        return _DRAINING

    def on_idle_timeout(self, now: float) -> None:
        """RFC 9000 §10.1: the connection ends silently."""
        if self._qlog is not None:
            self._qlog.connection_closed(
                now, trigger="idle_timeout", reason="idle timeout", by_peer=False
            )
        self._events.append(
            ConnectionTerminated(TransportErrorCode.NO_ERROR, "idle timeout", idle_timeout=True)
        )

    def on_datagram_while_closing(self) -> None:
        """Answer a datagram with our CONNECTION_CLOSE again, rate limited (§10.2.1)."""
        if self._resends < _MAX_CLOSE_RESENDS:
            self._resends += 1
            self._pending = True

    def take_pending(self) -> CloseFrame | None:
        """The CONNECTION_CLOSE to send now, if one is owed."""
        if not self._pending or self.frame is None:
            return None
        self._pending = False
        return self.frame

    def send(
        self,
        now: float,
        build: Callable[[float, int, CloseFrame], list[bytes]],
        version: int,
        linger: float,
    ) -> list[bytes]:
        """While closing: the datagrams of the CONNECTION_CLOSE owed now (``build(now,
        version, frame)`` makes them), or none; the closing period starts with the
        first (RFC 9000 §10.2.1)."""
        frame = self.take_pending()
        if frame is None:
            return []
        datagrams = build(now, version, frame)
        self.on_close_sent(now, linger)
        return datagrams

    def on_close_sent(self, now: float, linger: float) -> None:
        if self.deadline is None:
            self.deadline = now + linger  # RFC 9000 §10.2: three PTOs
        if self._qlog is not None:
            self._qlog.flush_close(now)

    def expired(self, now: float) -> bool:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return False
        if self._qlog is not None:
            self._qlog.flush_close(now)
        return True
