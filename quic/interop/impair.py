"""Seeded models of an impaired link: what the interop runner's network simulator does.

Theory of operation
-------------------
The quic-interop-runner puts an ns-3 simulator between client and server; each test
case picks a *scenario* (``simple-p2p``, ``drop-rate``, ``corrupt-rate``, ``droplist``,
``blackhole``, ``rebind``...) that delays, drops, corrupts or rewrites the datagrams of
each direction. This module is the Sans-I/O half of our stand-in for it: a
:class:`LinkModel` is one direction of the link. It is given every datagram with the
time it arrived (``process(data, now)``) and answers with a :class:`Decision`: the
datagram's :class:`Fate` and the ``(deliver_at, payload)`` copies to hand on (none when
dropped, two when duplicated). It reads no clock and draws every random number from its
own ``random.Random(seed)``, in a fixed order, so the same seed and the same input
sequence always give the same decisions — whatever the other direction does.

What one direction does (:class:`Impairment`), in this order per datagram:

1. *blackhole*: within a ``[start, end)`` period (seconds after the link's epoch, the
   first datagram the caller saw) every datagram is dropped (the ``blackhole``
   scenario: ``--on`` seconds up, ``--off`` seconds down, ``--repeat`` times);
   *path MTU*: a datagram with a UDP payload larger than ``mtu`` is dropped, as a
   router drops a packet too big for its next hop when Don't Fragment is set (not a
   runner scenario: our DPLPMTUD checks; ``mtu_from`` seconds after the epoch, so the
   path MTU can drop mid-connection);
2. *drop list*: the datagrams whose 1-based index (in this direction) is listed are
   dropped (the ``droplist`` scenario, ``--drops_to_server=2,3,4``);
3. *loss*: dropped with probability ``loss`` (``drop-rate``), never more than
   ``max_burst`` in a row;
4. *bandwidth and queue*: a link of ``bandwidth`` bits/s serialises datagrams one after
   the other; a datagram arriving while ``queue`` datagrams wait is dropped (tail drop,
   the simulator's ``--bandwidth`` and ``--queue``);
5. *corruption*: with probability ``corrupt`` (``corrupt-rate``), never more than
   ``max_burst`` in a row, one byte at a uniformly chosen position among the first 51
   (``[0, min(50, size - 1)]``) is replaced by a different random value — so the QUIC
   header is often hit. Version Negotiation packets are never corrupted (the simulator
   spares them too: a client must ignore a VN listing the version it offered);
6. *duplication* (probability ``duplicate``: a second copy is delivered as well) and
   *reordering* (probability ``reorder``: held back ``reorder_delay`` seconds more, so
   later datagrams overtake it);
7. *delay*: every copy arrives ``delay`` seconds after it left the link.

The simulator's burst cap lets one more through than its parameter says (it forwards
once the count of impairments in a row *exceeds* ``--burst``): its ``--burst_to_server=3``
allows four in a row, so :func:`runner_impairment` maps ``burst=N`` to ``max_burst=N+1``.

:data:`SCENARIOS` holds the scenario of every runner test case (delay 15 ms, 10 Mbit/s,
queue of 25 unless the case says otherwise) as a pair of impairments plus the rebinding
schedule; :func:`parse_duration` reads ns-3 style durations (``15ms``, ``2s``).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum

__all__ = [
    "CORRUPT_WINDOW",
    "SCENARIOS",
    "Decision",
    "Fate",
    "Impairment",
    "LinkModel",
    "Rebinding",
    "Scenario",
    "parse_duration",
    "runner_impairment",
]

#: Corruption hits one of the bytes at offsets 0..50 of the UDP payload.
CORRUPT_WINDOW = 50


class Fate(Enum):
    """What the link did to one datagram."""

    FORWARDED = "forwarded"
    CORRUPTED = "corrupted"  # forwarded with one byte changed
    LOST = "lost"  # random loss
    LISTED = "listed"  # dropped by the drop list
    BLACKHOLE = "blackhole"  # dropped during a blackhole period
    QUEUE = "queue"  # tail drop: the link's queue was full
    TOO_BIG = "too_big"  # larger than the path MTU (Don't Fragment set)

    @property
    def dropped(self) -> bool:
        return self not in (Fate.FORWARDED, Fate.CORRUPTED)


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one direction of the link does to the datagrams crossing it."""

    delay: float = 0.0  # one-way delay, seconds
    loss: float = 0.0  # probability of a random drop, 0..1
    corrupt: float = 0.0  # probability of corrupting one byte, 0..1
    max_burst: int | None = None  # at most this many losses (or corruptions) in a row
    drops: frozenset[int] = frozenset()  # 1-based indices of datagrams to drop
    duplicate: float = 0.0  # probability of delivering a second copy
    reorder: float = 0.0  # probability of holding a datagram back...
    reorder_delay: float = 0.0  # ...this many extra seconds
    bandwidth: float | None = None  # bits per second; None: unlimited
    queue: int | None = None  # datagrams waiting for the link; None: unbounded
    blackholes: tuple[tuple[float, float], ...] = ()  # [start, end) after the epoch
    mtu: int | None = None  # largest UDP payload forwarded; None: any
    mtu_from: float = 0.0  # seconds after the epoch from which ``mtu`` applies

    def __post_init__(self) -> None:
        for name in ("loss", "corrupt", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {value}")
        if self.delay < 0 or self.reorder_delay < 0:
            raise ValueError("delays must not be negative")
        if self.max_burst is not None and self.max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")
        if self.queue is not None and self.queue < 0:
            raise ValueError("queue must not be negative")
        if self.mtu is not None and self.mtu < 1:
            raise ValueError("mtu must be positive")
        if any(i < 1 for i in self.drops):
            raise ValueError("drop indices start at 1")
        for start, end in self.blackholes:
            if end < start:
                raise ValueError(f"blackhole period ends before it starts: {start}..{end}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The fate of one datagram and the copies to deliver: ``(deliver_at, payload)``."""

    index: int  # 1-based position of the datagram in this direction
    fate: Fate
    deliveries: tuple[tuple[float, bytes], ...] = ()
    corrupted_at: int | None = None  # offset of the changed byte


def _is_version_negotiation(data: bytes) -> bool:
    # RFC 8999 §6: a long header (first bit set) with version 0
    return len(data) >= 5 and data[0] & 0x80 != 0 and data[1:5] == b"\x00\x00\x00\x00"


class LinkModel:
    """One direction of an impaired link (see the module docstring). Sans-I/O: the
    caller passes the arrival time of each datagram; decisions depend only on the
    seed, the impairment and the sequence of ``(data, now)`` given."""

    def __init__(self, impairment: Impairment, seed: int = 0) -> None:
        self.impairment = impairment
        self._rng = random.Random(seed)
        self.epoch: float | None = None  # arrival time of the first datagram
        self.count = 0  # datagrams seen
        self._lost_in_a_row = 0
        self._corrupted_in_a_row = 0
        self._busy_until = 0.0  # when the link finishes serialising what it holds
        self._departures: deque[float] = deque()  # serialisation end of datagrams queued
        self.fates: dict[Fate, int] = dict.fromkeys(Fate, 0)

    def in_blackhole(self, now: float) -> bool:
        if self.epoch is None:
            return False
        elapsed = now - self.epoch
        return any(start <= elapsed < end for start, end in self.impairment.blackholes)

    def process(self, data: bytes, now: float) -> Decision:
        """Decide the fate of one datagram that arrived at ``now``."""
        imp = self.impairment
        if self.epoch is None:
            self.epoch = now
        self.count += 1
        index = self.count
        if imp.blackholes and self.in_blackhole(now):
            return self._drop(index, Fate.BLACKHOLE)
        if imp.mtu is not None and len(data) > imp.mtu and now - self.epoch >= imp.mtu_from:
            return self._drop(index, Fate.TOO_BIG)
        if index in imp.drops:
            return self._drop(index, Fate.LISTED)
        if imp.loss and self._burst_allows(self._lost_in_a_row) and self._chance(imp.loss):
            self._lost_in_a_row += 1
            return self._drop(index, Fate.LOST)
        self._lost_in_a_row = 0
        leave = self._serialise(len(data), now)
        if leave is None:
            return self._drop(index, Fate.QUEUE)
        fate = Fate.FORWARDED
        corrupted_at: int | None = None
        if imp.corrupt and not _is_version_negotiation(data):
            if self._burst_allows(self._corrupted_in_a_row) and self._chance(imp.corrupt):
                self._corrupted_in_a_row += 1
                data, corrupted_at = self._corrupt(data)
                fate = Fate.CORRUPTED
            else:
                self._corrupted_in_a_row = 0
        copies = 1
        if imp.duplicate and self._chance(imp.duplicate):
            copies = 2
        extra = 0.0
        if imp.reorder and self._chance(imp.reorder):
            extra = imp.reorder_delay
        first = leave + imp.delay + extra
        deliveries = tuple((first, data) for _ in range(copies))
        self.fates[fate] += 1
        return Decision(index, fate, deliveries, corrupted_at)

    # -- parts ------------------------------------------------------------------------

    def _drop(self, index: int, fate: Fate) -> Decision:
        self.fates[fate] += 1
        return Decision(index, fate)

    def _chance(self, probability: float) -> bool:
        return self._rng.random() < probability

    def _burst_allows(self, in_a_row: int) -> bool:
        cap = self.impairment.max_burst
        return cap is None or in_a_row < cap

    def _serialise(self, size: int, now: float) -> float | None:
        """When the datagram has left the link (before the propagation delay), or None
        when the queue is full."""
        imp = self.impairment
        if imp.bandwidth is None:
            return now
        departures = self._departures
        while departures and departures[0] <= now:
            departures.popleft()
        # the datagram being serialised is on the link, the others wait in the queue
        waiting = max(0, len(departures) - 1)
        if imp.queue is not None and waiting >= imp.queue:
            return None
        start = max(now, self._busy_until)
        self._busy_until = start + size * 8 / imp.bandwidth
        departures.append(self._busy_until)
        return self._busy_until

    def _corrupt(self, data: bytes) -> tuple[bytes, int]:
        if not data:
            return data, 0
        position = self._rng.randint(0, min(CORRUPT_WINDOW, len(data) - 1))
        old = data[position]
        new = self._rng.randrange(255)
        if new >= old:
            new += 1  # uniform over the 255 values that differ from the old one
        changed = bytearray(data)
        changed[position] = new
        return bytes(changed), position


@dataclass(frozen=True, slots=True)
class Rebinding:
    """When the NAT in front of the client changes the client's port (and address, with
    ``address``) as the server sees it: first after ``first`` seconds, then every
    ``every`` seconds (None: once) — the ``rebind`` scenario."""

    first: float
    every: float | None = None
    address: bool = False

    def times(self, until: float) -> list[float]:
        """Rebinding times (seconds after the epoch) up to ``until``."""
        out = [self.first]
        if self.every:
            while out[-1] + self.every <= until:
                out.append(out[-1] + self.every)
        return [t for t in out if t <= until]


@dataclass(frozen=True, slots=True)
class Scenario:
    """Both directions of the link, and the rebinding schedule, of one test case."""

    name: str
    to_server: Impairment = field(default_factory=Impairment)
    to_client: Impairment = field(default_factory=Impairment)
    rebinding: Rebinding | None = None
    description: str = ""

    def scaled(self, *, bandwidth: bool = True) -> Scenario:
        """The same scenario without the bandwidth limit (``bandwidth=False``): a
        loopback test that wants the losses but not the 10 Mbit/s bottleneck."""
        if bandwidth:
            return self
        return replace(
            self,
            to_server=replace(self.to_server, bandwidth=None, queue=None),
            to_client=replace(self.to_client, bandwidth=None, queue=None),
        )


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of an ns-3 style duration: ``15ms``, ``2s``, ``750ms``, ``0.5`` (seconds)."""
    value = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = value[: -len(unit)]
            try:
                return float(number) * _UNITS[unit]
            except ValueError:
                break
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"invalid duration {text!r}") from None


def runner_impairment(
    *,
    delay: str = "15ms",
    bandwidth_mbps: float | None = 10.0,
    queue: int | None = 25,
    rate: int = 0,
    burst: int | None = None,
    corrupt: bool = False,
    drops: tuple[int, ...] = (),
    blackholes: tuple[tuple[float, float], ...] = (),
) -> Impairment:
    """One direction as the simulator's scenario arguments describe it (``rate`` in
    percent; ``burst`` as the simulator counts it, see the module docstring)."""
    probability = rate / 100.0
    return Impairment(
        delay=parse_duration(delay),
        loss=0.0 if corrupt else probability,
        corrupt=probability if corrupt else 0.0,
        max_burst=None if burst is None else burst + 1,
        drops=frozenset(drops),
        bandwidth=None if bandwidth_mbps is None else bandwidth_mbps * 1e6,
        queue=queue,
        blackholes=blackholes,
    )


def _symmetric(name: str, description: str, **kwargs: object) -> Scenario:
    one = runner_impairment(**kwargs)  # type: ignore[arg-type]
    return Scenario(name, one, one, description=description)


def _blackhole(on: float, off: float, repeat: int = 1) -> tuple[tuple[float, float], ...]:
    """The simulator's blackhole: up ``on`` s, then down ``off`` s, ``repeat`` times."""
    return tuple(((on + off) * i + on, (on + off) * (i + 1)) for i in range(repeat))


_BASE = "--delay=15ms --bandwidth=10Mbps --queue=25"
_P2P = f"simple-p2p {_BASE}"
_BURST = "--burst_to_server=3 --burst_to_client=3"
_RATE30 = f"--rate_to_server=30 --rate_to_client=30 {_BURST}"
_RATE2 = f"--rate_to_server=2 --rate_to_client=2 {_BURST}"
_REBIND = f"rebind {_BASE} --first-rebind=1s --rebind-freq=5s"

#: The network of each runner test case (testcases_quic.py ``scenario()``).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _symmetric("simple-p2p", _P2P),
        _symmetric(
            "longrtt", "simple-p2p --delay=750ms --bandwidth=10Mbps --queue=25", delay="750ms"
        ),
        Scenario(
            "amplificationlimit",
            runner_impairment(drops=(2, 3, 4, 5, 6, 7)),
            runner_impairment(),
            description=f"droplist {_BASE} --drops_to_server=2,3,4,5,6,7",
        ),
        _symmetric(
            "blackhole", f"blackhole {_BASE} --on=5s --off=2s", blackholes=_blackhole(5.0, 2.0)
        ),
        _symmetric("handshakeloss", f"drop-rate {_BASE} {_RATE30}", rate=30, burst=3),
        _symmetric("transferloss", f"drop-rate {_BASE} {_RATE2}", rate=2, burst=3),
        _symmetric(
            "handshakecorruption", f"corrupt-rate {_BASE} {_RATE30}", rate=30, burst=3, corrupt=True
        ),
        _symmetric(
            "transfercorruption", f"corrupt-rate {_BASE} {_RATE2}", rate=2, burst=3, corrupt=True
        ),
        Scenario(
            "rebind-port",
            runner_impairment(),
            runner_impairment(),
            Rebinding(first=1.0, every=5.0),
            _REBIND,
        ),
        Scenario(
            "rebind-addr",
            runner_impairment(),
            runner_impairment(),
            Rebinding(first=1.0, every=5.0, address=True),
            f"{_REBIND} --rebind-addr",
        ),
    )
}
