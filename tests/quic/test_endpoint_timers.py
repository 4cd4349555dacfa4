"""quic.endpoint_timers: the deadline heap of an endpoint on its own (lazy invalidation,
the rebuild bound, handshake deadlines, the unfiled entries). The endpoint-level
behaviour is in ``test_endpoint.py`` and ``test_endpoint_limits.py``."""

from __future__ import annotations

from typing import cast

from quic.connection import QuicConnection
from quic.endpoint_entry import Entry
from quic.endpoint_timers import Deadlines


class _Conn:
    """What the component reads of a connection: its identity and its timer."""

    def __init__(self, timer: float | None = None, fail: bool = False) -> None:
        self.timer = timer
        self.fail = fail
        self.asked = 0

    def get_timer(self) -> float | None:
        self.asked += 1
        if self.fail:
            raise RuntimeError("bug")
        return self.timer


def _add(entries: dict[QuicConnection, Entry], conn: _Conn, deadline: float | None = None) -> Entry:
    key = cast(QuicConnection, conn)
    entry = Entry(key, None, deadline)
    entries[key] = entry
    return entry


def _never(entry: Entry, exc: Exception) -> None:
    raise AssertionError(f"unexpected failure: {exc!r}")


def test_earliest_is_the_smallest_valid_deadline_and_refiling_makes_the_old_stale() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    a, b = _add(entries, _Conn()), _add(entries, _Conn())
    assert deadlines.earliest() is None
    deadlines.schedule(a, 3.0)
    deadlines.schedule(b, 2.0)
    assert deadlines.earliest() == 2.0
    deadlines.schedule(a, 4.0)  # a's 3.0 tuple is not the top: it stays, stale
    assert len(deadlines) == 3
    deadlines.schedule(b, 5.0)  # b's 2.0 tuple is the top: replaced in place
    assert len(deadlines) == 3
    assert deadlines.earliest() == 4.0
    assert len(deadlines) == 2  # the stale 3.0 reached the top and was popped
    deadlines.schedule(a, None)
    assert a.seq == 0 and a.timer is None
    assert deadlines.earliest() == 5.0
    assert deadlines.due(5.0) == [b] and deadlines.earliest() is None


def test_a_lone_connection_refiling_its_deadline_keeps_one_tuple() -> None:
    """The ping-pong case: the connection's own tuple is the top, replaced in place."""
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    a = _add(entries, _Conn())
    for step in range(1, 100):
        deadlines.schedule(a, float(step))
        assert len(deadlines) == 1
        assert deadlines.earliest() == float(step)
    deadlines.schedule(a, 0.5)  # earlier also replaces it
    assert len(deadlines) == 1 and deadlines.earliest() == 0.5


def test_an_unchanged_deadline_pushes_nothing() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    a = _add(entries, _Conn())
    deadlines.schedule(a, 1.0)
    seq = a.seq
    deadlines.schedule(a, 1.0)
    assert len(deadlines) == 1 and a.seq == seq


def test_a_handshake_deadline_earlier_than_the_timer_wins() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    half_open = _add(entries, _Conn(), deadline=4.0)
    deadlines.schedule(half_open, 9.0)
    assert deadlines.earliest() == 4.0
    deadlines.schedule(half_open, None)  # no timer: the handshake deadline still holds
    assert deadlines.earliest() == 4.0
    deadlines.schedule(half_open, 1.0)
    assert deadlines.earliest() == 1.0


def test_due_pops_only_valid_due_entries_earliest_first() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    a, b, c = (_add(entries, _Conn()) for _ in range(3))
    deadlines.schedule(a, 2.0)
    deadlines.schedule(b, 1.0)
    deadlines.schedule(c, 7.0)
    deadlines.schedule(a, 1.5)  # a's 2.0 is stale
    assert deadlines.due(0.5) == []
    assert deadlines.due(3.0) == [b, a]
    assert (a.seq, a.timer, b.seq, b.timer) == (0, None, 0, None)
    assert deadlines.earliest() == 7.0
    assert len(deadlines) == 1  # b, a and a's stale tuple are gone


def test_forgotten_and_removed_entries_never_come_due() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    a, b = _add(entries, _Conn()), _add(entries, _Conn())
    deadlines.schedule(a, 1.0)
    deadlines.schedule(b, 2.0)
    deadlines.forget(a)
    del entries[a.conn]
    del entries[b.conn]  # removed with its seq left as it was
    assert deadlines.due(10.0) == []
    assert deadlines.earliest() is None


def test_the_heap_is_rebuilt_before_stale_tuples_outnumber_live_ones() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    live = [_add(entries, _Conn()) for _ in range(10)]
    peak = 0
    for step in range(1000):
        deadlines.schedule(live[step % 10], float(step))
        peak = max(peak, len(deadlines))
    assert peak <= 64 + 4 * 10 + 1
    assert len(deadlines) < 64 + 4 * 10
    assert deadlines.earliest() == 990.0  # the rebuild kept exactly the valid ones
    assert deadlines.due(995.0) == live[:6]  # filed at 990.0 ... 995.0


def test_unfiled_entries_are_filed_before_earliest_and_due() -> None:
    entries: dict[QuicConnection, Entry] = {}
    deadlines = Deadlines(entries, _never)
    conn = _Conn(timer=3.0)
    entry = _add(entries, conn)
    gone = _add(entries, _Conn(timer=1.0))
    deadlines.unfiled[entry] = None
    deadlines.unfiled[gone] = None
    del entries[gone.conn]  # removed before it was filed: skipped
    assert deadlines.earliest() == 3.0
    assert conn.asked == 1 and not deadlines.unfiled
    deadlines.unfiled[entry] = None
    conn.timer = 0.5
    assert deadlines.due(1.0) == [entry]
    assert conn.asked == 2


def test_a_connection_whose_timer_raises_is_reported_and_the_rest_filed() -> None:
    entries: dict[QuicConnection, Entry] = {}
    failures: list[tuple[Entry, Exception]] = []
    deadlines = Deadlines(entries, lambda e, exc: failures.append((e, exc)))
    bad = _add(entries, _Conn(fail=True))
    good = _add(entries, _Conn(timer=2.0))
    deadlines.unfiled.update({bad: None, good: None})
    assert deadlines.earliest() == 2.0
    assert [(e, type(exc)) for e, exc in failures] == [(bad, RuntimeError)]
