"""Live server output for ``python -m pywebtransport serve`` and ``demo``.

Theory of operation
-------------------
A :class:`LiveOutput` watches a running :class:`~pywebtransport.app.ServerApp` through
its public surface only: the ``session`` event of the low-level
:class:`~pywebtransport.server.WebTransportServer` (``app.server.events``), each
session's ``closed`` event, and ``app.stats()``. It writes whole lines through one
``write`` callable (by default ``print(..., flush=True)`` on stdout):

``SESSION-OPENED path=/echo peer=127.0.0.1:50000 draft=draft16``
    one per accepted session, when ``sessions`` is on (``-v``);
``SESSION-CLOSED path=/echo peer=127.0.0.1:50000 draft=draft16 duration=1.234s code=0
by=peer reason="done"``
    one per ended session (``by=peer`` or ``by=server``; ``http=`` is added when the
    session ended abruptly: reset CONNECT stream or lost connection);
``STATS sessions=1 total=5 rejected=0 connections=1 streams=2 streams_total=9
bytes_in=... bytes_out=... datagrams_in=... datagrams_out=...``
    the periodic summary (``sessions`` open now, ``total`` accepted since start,
    ``streams`` open now, ``streams_total`` opened by either side since start).

The periodic summary runs every :func:`summary_interval` seconds: by default every
:data:`DEFAULT_STATS_INTERVAL` seconds when stdout is a terminal and never otherwise;
``--stats-interval S`` forces it (``0`` turns it off).

Bounded state: the monitor keeps one entry per *open* session (its start time), the
same sessions the server already tracks; an ended session leaves the table in its
``closed`` handler, and once every session ended the table is a new empty dict (a dict
keeps the size of its peak otherwise). Its stream counts
are folded into one integer. Time comes from an injected clock (the event loop's).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pywebtransport.app import ServerApp
from pywebtransport.events import Event, EventType
from pywebtransport.exceptions import SessionClosed

__all__ = [
    "DEFAULT_STATS_INTERVAL",
    "LiveOutput",
    "summary_interval",
]

#: Seconds between two summaries when stdout is a terminal and no interval was asked for.
DEFAULT_STATS_INTERVAL = 10.0


def summary_interval(
    requested: float | None, is_tty: bool, default: float = DEFAULT_STATS_INTERVAL
) -> float | None:
    """Seconds between two ``STATS`` lines, or None for none.

    ``requested`` is ``--stats-interval`` (None when not given; 0 or less: off). Without
    it the summary is printed every ``default`` seconds on a terminal only, so logs
    redirected to a file stay quiet.
    """
    if requested is not None:
        return requested if requested > 0 else None
    return default if is_tty else None


def _print(line: str) -> None:
    print(line, flush=True)


def _peer(address: Any) -> str:
    if not address:
        return "-"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LiveOutput:
    """Session lines and periodic summaries of one :class:`ServerApp`; see the module
    docstring. Call :meth:`attach` once the app listens (``await app.wait_started()``)."""

    def __init__(
        self,
        app: ServerApp,
        *,
        sessions: bool,
        clock: Callable[[], float],
        write: Callable[[str], None] = _print,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self._clock = clock
        self._write = write
        self._open: dict[Any, float] = {}  # open session -> start time
        self._streams_ended = 0  # streams of sessions that ended
        self.lines_written = 0

    # ------------------------------------------------------------------ sessions

    def attach(self) -> None:
        """Start watching: every session the app's server accepts from now on."""
        self.app.server.events.on(EventType.SESSION, self._on_session)

    @property
    def open_sessions(self) -> int:
        """Sessions being watched (open ones): the size of the monitor's only table."""
        return len(self._open)

    def _on_session(self, event: Event) -> None:
        session = event.data
        self._open[session] = self._clock()
        session.events.on(EventType.CLOSED, lambda closed: self._on_closed(session, closed))
        if self.sessions:
            self.emit(f"SESSION-OPENED {self._describe(session)}")

    def _on_closed(self, session: Any, event: Event) -> None:
        started = self._open.pop(session, None)
        if started is None:
            return
        if not self._open:  # a dict never shrinks: give back the table of a past peak
            self._open = {}
        self._streams_ended += session.streams_opened + session.streams_accepted
        if not self.sessions:
            return
        info = event.data
        parts = [f"SESSION-CLOSED {self._describe(session)}"]
        parts.append(f"duration={self._clock() - started:.3f}s")
        if isinstance(info, SessionClosed):
            parts.append(f"code={info.code}")
            parts.append(f"by={'peer' if info.by_peer else 'server'}")
            if info.http_code is not None:
                parts.append(f"http={info.http_code}")
            parts.append(f"reason={json.dumps(info.reason, ensure_ascii=False)}")
        self.emit(" ".join(parts))

    @staticmethod
    def _describe(session: Any) -> str:
        return f"path={session.path} peer={_peer(session.remote_address)} draft={session.draft}"

    # ------------------------------------------------------------------ summaries

    def summary(self) -> str:
        """One ``STATS`` line from ``app.stats()`` and the watched sessions."""
        stats = self.app.stats()
        server = stats.get("server") or {}
        streams_total = self._streams_ended + sum(
            s.streams_opened + s.streams_accepted for s in self._open
        )
        fields = (
            ("sessions", server.get("sessions", stats.get("sessions_active", 0))),
            ("total", server.get("sessions_total", stats.get("sessions_total", 0))),
            ("rejected", stats.get("sessions_rejected", 0)),
            ("connections", server.get("connections", 0)),
            ("streams", server.get("streams", 0)),
            ("streams_total", streams_total),
            ("bytes_in", server.get("bytes_received", 0)),
            ("bytes_out", server.get("bytes_sent", 0)),
            ("datagrams_in", server.get("datagrams_received", 0)),
            ("datagrams_out", server.get("datagrams_sent", 0)),
        )
        return "STATS " + " ".join(f"{name}={value}" for name, value in fields)

    async def run_summaries(self, interval: float) -> None:
        """Write :meth:`summary` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if self.app.is_serving:
                self.emit(self.summary())

    def emit(self, line: str) -> None:
        self.lines_written += 1
        self._write(line)
