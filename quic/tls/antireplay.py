"""0-RTT anti-replay for a server: freshness window + single-use tickets (RFC 9846 §8).

Theory of operation
-------------------
TLS gives 0-RTT data no replay protection of its own (RFC 9846 §8, RFC 9001 §9.2): an
attacker can send a captured ClientHello and its 0-RTT packets again. RFC 9846 §8 asks
a server to accept 0-RTT "for the same 0-RTT handshake at most once". Tickets here are
self-contained (:mod:`quic.tls.tickets`), so the server keeps no per-ticket state; this
module adds the little state that the guarantee needs, combining two mechanisms:

* **Freshness** (§8.3): the ticket carries its issue time; the client's obfuscated
  ticket age gives ``expected_arrival = issued_at + client's age``. 0-RTT is accepted
  only if the ClientHello arrives within ``window`` seconds of that (a replay made
  later than ``window`` after the original is refused without any memory).
* **Single use** (§8.1): the ticket's random ID is recorded when its 0-RTT is
  accepted; a second ClientHello with the same ticket is refused 0-RTT (it may still
  resume: a full (EC)DHE exchange cannot be completed by a replayer). An ID is
  remembered only until ``expected_arrival + window`` — after that, freshness refuses
  every copy of that ClientHello anyway — so the table holds at most the 0-RTT
  handshakes of the last ``2 * window`` seconds.

Why both: freshness alone lets every replay within the window through (§8.3: "could
include billions of replays"); single use alone must remember every ticket until it
expires (days). Together the memory is bounded by ``rate * 2 * window``, and
``max_entries`` caps it outright: when the table is full, 0-RTT is refused (the
handshake still completes in 1-RTT) rather than forgetting an entry early, which would
let a replay in.

Restarts (§8.2: "reject 0-RTT as long as any portion of their recording window overlaps
the startup time"): the memory starts empty, so tickets issued before it existed (by a
previous process sharing the ticket key) are refused 0-RTT; ``origin`` is the first time
the server issued a ticket or saw one.

Times are seconds of the injected wall clock (the clock tickets are stamped with).
"""

from __future__ import annotations

import heapq

__all__ = ["AntiReplay"]


class AntiReplay:
    """Which 0-RTT ClientHellos a server may accept (see the module docstring)."""

    __slots__ = ("_heap", "_seen", "max_entries", "origin", "refused", "window")

    def __init__(self, window: float = 10.0, max_entries: int = 10_000) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be positive and max_entries at least 1")
        self.window = window
        self.max_entries = max_entries
        self.origin: float | None = None  # when this memory started (server wall clock)
        self.refused = 0  # 0-RTT offers refused (stale, replayed, table full, too old)
        self._seen: dict[bytes, float] = {}  # ticket ID -> time it may be forgotten
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def start(self, now: float) -> None:
        """Note that the server is live at ``now`` (it issues a ticket)."""
        if self.origin is None:
            self.origin = now

    def admit(
        self, ticket_id: bytes, issued_at: float, expected_arrival: float, now: float
    ) -> bool:
        """True if 0-RTT may be accepted for this ticket now; records it if so."""
        self.start(now)
        self._expire(now)
        origin = self.origin
        assert origin is not None
        if (
            issued_at < origin  # issued before this memory existed (§8.2)
            or abs(now - expected_arrival) > self.window  # not fresh (§8.3)
            or ticket_id in self._seen  # used for 0-RTT already (§8.1)
            or len(self._seen) >= self.max_entries  # cannot remember it: refuse
        ):
            self.refused += 1
            return False
        forget_at = expected_arrival + self.window
        self._seen[ticket_id] = forget_at
        heapq.heappush(self._heap, (forget_at, ticket_id))
        return True

    def _expire(self, now: float) -> None:
        heap = self._heap
        seen = self._seen
        while heap and heap[0][0] < now:
            forget_at, ticket_id = heapq.heappop(heap)
            if seen.get(ticket_id) == forget_at:
                del seen[ticket_id]
