"""A bounded record of ended session IDs.

Theory of operation
-------------------
A WebTransport stream or datagram names its session by the session's stream ID
(draft-ietf-webtrans-http3-16 §4). One that arrives for a session that is *over* is
refused with WT_SESSION_GONE (§6), while one for a session that has *not arrived yet*
is buffered (§4.7). Telling the two apart needs a record of ended session IDs; a set of
every such ID would grow with each session a long-lived connection ever carried.

Session IDs are client-initiated bidirectional stream IDs (0, 4, 8, ...), used by the
peer in increasing order (RFC 9000 §2.1, §3.2). :class:`EndedIds` keeps:

* a *floor*: every ID below it is over — an ended session, a WebTransport stream, a
  plain HTTP request or a refused CONNECT (none of them can become a session later);
* the IDs at or above the floor that are over (a set, plus a heap for its minimum).

Marking the floor's own ID advances the floor over the run of marked IDs above it, so
a connection whose sessions and streams end roughly in order keeps a handful of IDs.
A stream ID that never ends (a request the peer leaves open, a slow session) is a
*gap* that stops the floor. When more than ``limit`` IDs wait above the floor, the floor
jumps over the lowest gap: the IDs in it count as over from then on. Live sessions are
looked up in the session table first, so a jump never ends one; a CONNECT that only
arrives on a jumped-over stream is refused (H3_REQUEST_REJECTED), the price of bounded
memory for a peer that leaves more than ``limit`` IDs pending behind an idle stream.
"""

from __future__ import annotations

import heapq

__all__ = ["EndedIds"]

_STEP = 4  # consecutive stream IDs of one type (RFC 9000 §2.1)


class EndedIds:
    """IDs of sessions (and session-capable streams) that are over; see the module doc."""

    __slots__ = ("_above", "_heap", "floor", "limit")

    def __init__(self, limit: int = 1024) -> None:
        self.limit = max(1, limit)
        self.floor = 0  # every ID below this is over
        self._above: set[int] = set()
        self._heap: list[int] = []

    def __contains__(self, stream_id: int) -> bool:
        return stream_id < self.floor or stream_id in self._above

    def __len__(self) -> int:
        """IDs remembered individually (above the floor)."""
        return len(self._above)

    def add(self, stream_id: int) -> None:
        """Mark ``stream_id`` (a client-initiated bidirectional stream ID) as over."""
        if stream_id & 3 or stream_id in self:
            return
        self._above.add(stream_id)
        heapq.heappush(self._heap, stream_id)
        self._advance()
        while len(self._above) > self.limit:
            lowest = heapq.heappop(self._heap)  # jump over the gap below it
            self._above.discard(lowest)
            self.floor = lowest + _STEP
            self._advance()

    def _advance(self) -> None:
        heap, above = self._heap, self._above
        while heap and heap[0] == self.floor:
            above.discard(heapq.heappop(heap))
            self.floor += _STEP
