"""A deterministic network simulator for Sans-I/O endpoints on a fake clock.

Endpoints expose the driving API of DESIGN.md::

    receive_datagram(data, addr, now)
    datagrams_to_send(now) -> iterable of (data, addr)
    get_timer() -> float | None
    handle_timer(now)

:class:`Network` moves datagrams between registered endpoints through :class:`Link`
models (delay, jitter → reordering, loss, duplication, corruption, MTU) seeded by a
``random.Random``; the clock jumps to the next delivery or timer, so a 10-second
transfer runs in milliseconds of real time and every run with the same seed is the same.

Address changes (connection migration tests): :meth:`Network.rebind` puts an endpoint
behind a NAT that maps it to a new external address (its datagrams come from there,
and only datagrams to it reach the endpoint); :attr:`Network.tap` sees every datagram
before its link and may drop, copy or re-address it (an on-path attacker).

ECN (RFC 3168 field of the IP header): an endpoint whose ``datagrams_to_send`` yields
``(data, addr, ecn)`` triples sends with that codepoint; a link may mark ECT packets CE
(``ecn_ce``, a probability: a congested router), clear the field (``ecn_bleach``),
rewrite an ECT codepoint (``ecn_remark``) or drop marked datagrams (``ecn_drop``). A
datagram that arrives with a non-zero codepoint is delivered as
``receive_datagram(data, addr, now, ecn=codepoint)``; one without (and every datagram
of an endpoint that yields pairs) as before, so endpoints that know nothing of ECN are
unaffected. ``mtu`` is the largest datagram a link carries (larger ones are dropped, as
with the Don't Fragment bit set); it may be changed mid-run to model a path MTU drop.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

Addr = tuple[str, int]


class SansIoEndpoint(Protocol):
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> Any: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass
class Link:
    """One direction of a path."""

    delay: float = 0.010
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    mtu: int = 1500
    bandwidth: float | None = None  # bytes/s; None = unlimited
    # bytes that may wait for the bandwidth-limited link; beyond: drop-tail. None: no limit
    buffer: int | None = None
    drop_first: int = 0  # drop the first N datagrams (e.g. lose the first Initial)
    ecn_ce: float = 0.0  # probability that an ECT datagram is marked CE
    ecn_bleach: bool = False  # clear the ECN field of every datagram
    ecn_remark: int | None = None  # rewrite ECT(0)/ECT(1) to this codepoint
    ecn_drop: bool = False  # drop every ECT-marked datagram (a broken middlebox)
    # statistics
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    overflowed: int = 0  # dropped because the buffer was full (counted in dropped too)
    max_queue_delay: float = 0.0  # longest wait for the bandwidth-limited link, seconds
    dropped_mtu: int = 0  # of ``dropped``: above the MTU
    ce_marked: int = 0
    _busy_until: float = field(default=0.0, repr=False)

    def schedule(self, data: bytes, now: float, rng: random.Random) -> list[tuple[float, bytes]]:
        """Return the (arrival time, payload) pairs this datagram turns into."""
        self.sent += 1
        if self.drop_first > 0:
            self.drop_first -= 1
            self.dropped += 1
            return []
        if len(data) > self.mtu:
            self.dropped += 1
            self.dropped_mtu += 1
            return []
        if self.loss and rng.random() < self.loss:
            self.dropped += 1
            return []
        start = now
        if self.bandwidth:
            start = max(now, self._busy_until)
            wait = start - now
            if self.buffer is not None and wait * self.bandwidth + len(data) > self.buffer:
                self.dropped += 1
                self.overflowed += 1
                return []
            if wait > self.max_queue_delay:
                self.max_queue_delay = wait
            self._busy_until = start + len(data) / self.bandwidth
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        out = []
        for _ in range(copies):
            payload = data
            if self.corrupt and rng.random() < self.corrupt:
                buf = bytearray(data)
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
                payload = bytes(buf)
            arrival = start + self.delay + (rng.random() * self.jitter if self.jitter else 0.0)
            out.append((arrival, payload))
        return out

    def mark(self, ecn: int, rng: random.Random) -> int:
        """The ECN codepoint a datagram sent with ``ecn`` arrives with."""
        if self.ecn_bleach:
            return 0
        if ecn in (1, 2):
            if self.ecn_remark is not None:
                ecn = self.ecn_remark
            if self.ecn_ce and rng.random() < self.ecn_ce:
                self.ce_marked += 1
                return 3
        return ecn


class Network:
    """Endpoints by address; links by (src, dst); one fake clock."""

    def __init__(self, seed: int = 0, start: float = 1000.0) -> None:
        self.rng = random.Random(seed)
        self.now = start
        self.endpoints: dict[Addr, SansIoEndpoint] = {}
        self.links: dict[tuple[Addr, Addr], Link] = {}
        self._queue: list[tuple[float, int, Addr, Addr, bytes, int]] = []
        self._seq = 0
        # Called after each flush, before the clock moves: the test application reacts to
        # the events of that flush (e.g. consumes data and so returns flow-control credit).
        # True means it changed something, and the endpoints are flushed once more.
        self.after_flush: Any = None
        # NAT: endpoint address -> the address its datagrams come from, and back
        self._external: dict[Addr, Addr] = {}
        self._internal: dict[Addr, Addr] = {}
        # tap(src, dst, data) -> [(src, dst, data), ...] replaces each datagram sent
        self.tap: Any = None

    def rebind(self, addr: Addr, external: Addr) -> None:
        """NAT rebinding: the endpoint at ``addr`` is now seen as ``external``; its
        previous external address stops working."""
        previous = self._external.get(addr)
        if previous is not None:
            self._internal.pop(previous, None)
        self._external[addr] = external
        self._internal[external] = addr

    def _resolve(self, dst: Addr) -> SansIoEndpoint | None:
        real = self._internal.get(dst)
        if real is not None:
            return self.endpoints.get(real)
        if dst in self._external:
            return None  # an endpoint behind a NAT is reachable only through it
        return self.endpoints.get(dst)

    def add(self, addr: Addr, endpoint: SansIoEndpoint) -> None:
        self.endpoints[addr] = endpoint

    def link(self, src: Addr, dst: Addr) -> Link:
        key = (src, dst)
        if key not in self.links:
            self.links[key] = Link()
        return self.links[key]

    def _flush(self) -> None:
        for addr, endpoint in self.endpoints.items():
            src = self._external.get(addr, addr)
            for item in endpoint.datagrams_to_send(self.now):
                data, dst = item[0], item[1]
                sent_ecn = item[2] if len(item) > 2 else 0
                sends = [(src, dst, bytes(data))]
                if self.tap is not None:
                    sends = self.tap(src, dst, bytes(data))
                for s, d, datagram in sends:
                    link = self.link(s, d)
                    if sent_ecn and link.ecn_drop:
                        link.sent += 1
                        link.dropped += 1
                        continue
                    for when, payload in link.schedule(datagram, self.now, self.rng):
                        ecn = link.mark(sent_ecn, self.rng)
                        self._seq += 1
                        heapq.heappush(self._queue, (when, self._seq, s, d, payload, ecn))

    def _next_timer(self) -> float | None:
        timers = [t for ep in self.endpoints.values() if (t := ep.get_timer()) is not None]
        return min(timers) if timers else None

    def _flush_and_react(self) -> None:
        self._flush()
        hook = self.after_flush
        if hook is not None and hook():
            self._flush()

    def step(self) -> bool:
        """Advance to the next event; False when nothing is left to happen."""
        self._flush_and_react()
        timer = self._next_timer()
        arrival = self._queue[0][0] if self._queue else None
        if timer is None and arrival is None:
            return False
        if arrival is not None and (timer is None or arrival <= timer):
            when, _, src, dst, payload, ecn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            target = self._resolve(dst)
            if target is not None:
                self.link(src, dst).delivered += 1
                if ecn:
                    target.receive_datagram(payload, src, self.now, ecn=ecn)  # type: ignore[call-arg]
                else:
                    target.receive_datagram(payload, src, self.now)
        else:
            assert timer is not None
            self.now = max(self.now, timer)
            for ep in list(self.endpoints.values()):
                t = ep.get_timer()
                if t is not None and t <= self.now:
                    ep.handle_timer(self.now)
        self._flush_and_react()
        return True

    def settle(self, duration: float) -> None:
        """Run every event due within ``duration`` simulated seconds, and no later one
        (unlike :meth:`run`, the clock never jumps past the end to a far timer)."""
        end = self.now + duration
        while True:
            self._flush_and_react()
            timer = self._next_timer()
            arrival = self._queue[0][0] if self._queue else None
            due = [t for t in (timer, arrival) if t is not None]
            if not due or min(due) > end:
                break
            self.step()
        self.now = max(self.now, end)

    def run(self, until: Any = None, max_time: float = 60.0, max_steps: int = 2_000_000) -> None:
        """Step until ``until()`` is true, or quiet, or ``max_time`` simulated seconds pass."""
        deadline = self.now + max_time
        for _ in range(max_steps):
            if until is not None and until():
                return
            if self.now > deadline or not self.step():
                break
        if until is not None and not until():
            raise TimeoutError(f"condition not met by simulated t={self.now:.3f}")
