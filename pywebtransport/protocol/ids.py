"""A bounded record of the stream IDs on which no new session can start.

Theory of operation
-------------------
A WebTransport stream or datagram names its session by the session's stream ID
(draft-ietf-webtrans-http3-16 §4). One that arrives for a session that is *over* is
refused with WT_SESSION_GONE (§6), while one for a session that has *not arrived yet*
is buffered (§4.7). Telling the two apart needs a record of session IDs that were
used; a set of every such ID would grow with each session a long-lived connection
ever carried.

Session IDs are client-initiated bidirectional stream IDs (0, 4, 8, ...), which also
carry plain HTTP requests and client-opened WebTransport streams. An ID is *claimed*
once it is known not to be a future session: a session was created on it (live or
over — live sessions are looked up in the session table first), it carries a
WebTransport stream or a plain request, or a CONNECT on it was refused. So "claimed and
not a live session" means "that session is over (or never was one)".

:class:`ClaimedIds` keeps a *floor* — every ID below it is claimed — and the claimed
IDs at or above the floor (a set, plus a heap for its minimum). Claiming the floor's
own ID advances the floor over the run of claimed IDs above it; since peers use stream
IDs in increasing order (RFC 9000 §2.1, §3.2), the set stays small. A stream ID that
is never claimed (a stream the peer opens and leaves idle, a request blocked on QPACK)
is a *gap* that stops the floor. When more than ``limit`` IDs wait above the floor, the
floor jumps over the lowest gap: the IDs in it count as claimed from then on, and a
CONNECT that only arrives on such a stream later is refused (H3_REQUEST_REJECTED) —
the price of bounded memory, paid only by a peer that leaves more than ``limit``
streams pending behind an idle one.
"""

from __future__ import annotations

import heapq

__all__ = ["ClaimedIds"]

_STEP = 4  # consecutive stream IDs of one type (RFC 9000 §2.1)


class ClaimedIds:
    """Stream IDs on which no new session can start; see the module docstring."""

    __slots__ = ("_above", "_heap", "floor", "limit")

    def __init__(self, limit: int = 1024) -> None:
        self.limit = max(1, limit)
        self.floor = 0  # every ID below this is claimed
        self._above: dict[int, None] = {}  # a dict as a set: 64 B empty, not 216
        # the IDs of _above as a heap; None while _above is empty (most of the time: one
        # object fewer per idle connection for the garbage collector, issue 10)
        self._heap: list[int] | None = None

    def __contains__(self, stream_id: int) -> bool:
        return not stream_id & 3 and (stream_id < self.floor or stream_id in self._above)

    def __len__(self) -> int:
        """IDs remembered individually (above the floor)."""
        return len(self._above)

    def add(self, stream_id: int) -> None:
        """Claim ``stream_id``; IDs that are not client-initiated bidirectional stream
        IDs (the only ones a session can have, §4) are ignored."""
        if stream_id & 3 or stream_id in self:
            return
        if stream_id == self.floor and not self._above:  # the next ID: every stream of a
            self.floor += _STEP  # burst, in order (no heap made and let go per stream)
            return
        self._above[stream_id] = None
        heap = self._heap
        if heap is None:
            heap = self._heap = []
        heapq.heappush(heap, stream_id)
        self._advance()
        while len(self._above) > self.limit:
            lowest = heapq.heappop(heap)  # jump over the gap below it
            self._above.pop(lowest, None)
            self.floor = lowest + _STEP
            self._advance()

    def _advance(self) -> None:
        heap, above = self._heap, self._above
        while heap and heap[0] == self.floor:
            above.pop(heapq.heappop(heap), None)
            self.floor += _STEP
        if not above:
            self._heap = None
