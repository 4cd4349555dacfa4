"""The deadline heap of a :class:`~quic.endpoint.QuicEndpoint`: when each of its
connections next needs :meth:`~quic.connection.QuicConnection.handle_timer`.

Theory of operation
-------------------
:class:`Deadlines` keeps ``(deadline, seq, connection)`` tuples in a heap. The deadline
of a connection is the earlier of its own timer and its handshake deadline (a half-open
server connection, :attr:`~quic.endpoint_entry.Entry.deadline`); its
:class:`~quic.endpoint_entry.Entry` holds the deadline filed (``timer``) and the
sequence number of that heap tuple (``seq``, 0: none). A tuple is valid while its
``seq`` is the entry's: re-filing a deadline pushes a new tuple and leaves the old one
stale (lazy invalidation), and stale tuples are popped when they reach the top (a
connection whose valid tuple is the top replaces it in place instead). When
the heap holds more than ``64 + 4 * connections`` tuples, it is rebuilt from the entries'
valid deadlines, so its size stays O(connections) at an amortised O(1) per push.
:meth:`earliest` is O(1) amortised, :meth:`due` touches only due connections.

Entries the endpoint leaves *unfiled* (a connection that received datagrams and will
be served, and so re-filed, by the next transmit; see the endpoint's ``_settle``) are
filed by :meth:`earliest` and :meth:`due` first, so both see the same deadlines as if
each had been filed at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from quic.connection import QuicConnection
from quic.endpoint_entry import Entry

__all__ = ["Deadlines"]


class Deadlines:
    """The endpoint's deadline heap, with lazy invalidation and the unfiled entries."""

    __slots__ = ("_entries", "_failed", "_heap", "_seq", "unfiled")

    def __init__(
        self,
        entries: dict[QuicConnection, Entry],
        failed: Callable[[Entry, Exception], None],
    ) -> None:
        # the endpoint's table of live entries (shared, read only here): the heap is
        # rebuilt from it, and entries no longer in it are skipped
        self._entries = entries
        self._failed = failed  # a connection whose get_timer raised (a bug)
        self._heap: list[tuple[float, int, QuicConnection]] = []
        self._seq = 0
        #: entries whose deadline is filed by the next earliest()/due() unless the
        #: endpoint files it first (an insertion-ordered set)
        self.unfiled: dict[Entry, None] = {}

    def __len__(self) -> int:
        """Heap tuples, stale ones included (bounded: see the module docstring)."""
        return len(self._heap)

    def schedule(self, entry: Entry, timer: float | None) -> None:
        """File ``entry``'s deadline: the earlier of ``timer`` (its connection's) and
        its handshake deadline; None, and no handshake deadline: none."""
        deadline = entry.deadline
        if deadline is not None and (timer is None or deadline < timer):
            timer = deadline
        if timer == entry.timer and (timer is None or entry.seq):
            return  # its heap entry is still right
        entry.timer = timer
        if timer is None:
            entry.seq = 0
            return
        seq = entry.seq
        self._seq += 1
        entry.seq = self._seq
        heap = self._heap
        if seq and heap and heap[0][1] == seq:
            # its own tuple is the top (one connection, a ping-pong): replaced in one
            # step, not left stale for earliest() to pop (issue 10)
            heapq.heapreplace(heap, (timer, self._seq, entry.conn))
            return
        heapq.heappush(heap, (timer, self._seq, entry.conn))
        if len(heap) > 64 + 4 * len(self._entries):
            # stale entries outnumber live ones: rebuild (amortised O(1) per push)
            self._heap = [
                (e.timer, e.seq, e.conn)
                for e in self._entries.values()
                if e.seq and e.timer is not None
            ]
            heapq.heapify(self._heap)

    def forget(self, entry: Entry) -> None:
        """``entry`` left the endpoint: its tuples are stale, it is no longer unfiled."""
        entry.seq = 0
        self.unfiled.pop(entry, None)

    def earliest(self) -> float | None:
        """The earliest valid deadline, or None (files the unfiled entries first; an
        entry whose connection's ``get_timer`` raises goes to the ``failed`` callback)."""
        if self.unfiled:
            self._file()
        heap = self._heap
        entries = self._entries
        while heap:
            when, seq, conn = heap[0]
            entry = entries.get(conn)
            if entry is not None and entry.seq == seq:
                return when
            heapq.heappop(heap)  # stale
        return None

    def due(self, now: float) -> list[Entry]:
        """Pop the entries whose deadline is at or before ``now``, earliest first; each
        is left with no deadline filed (files the unfiled entries first, as
        :meth:`earliest`)."""
        if self.unfiled:
            self._file()
        heap = self._heap
        entries = self._entries
        due: list[Entry] = []
        while heap and heap[0][0] <= now:
            _, seq, conn = heapq.heappop(heap)
            entry = entries.get(conn)
            if entry is not None and entry.seq == seq:
                entry.seq = 0
                entry.timer = None
                due.append(entry)
        return due

    def _file(self) -> None:
        """File the deadline of every unfiled entry still in the endpoint."""
        unfiled = self.unfiled
        self.unfiled = {}
        entries = self._entries
        for entry in unfiled:
            conn = entry.conn
            if conn in entries:
                try:
                    self.schedule(entry, conn.get_timer())
                except Exception as exc:
                    self._failed(entry, exc)
