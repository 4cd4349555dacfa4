"""quic.conn_timers.IdleTimer: the idle timeout (RFC 9000 §10.1) and the key rest of a
connection on their own, then driven by a connection pair."""

from __future__ import annotations

import collections
import random
from typing import Any, cast

import pytest

from quic.conn_timers import IdleTimer, earliest_deadline
from quic.connection import QuicConnection
from tests.support.quicpair import make_pair


class _Rtt:
    def __init__(self, pto: float) -> None:
        self.pto = pto

    def pto_base(self) -> float:
        return self.pto


class _Part:
    """A stand-in component: the attributes the deadlines read."""

    def __init__(self, **attrs: object) -> None:
        self.__dict__.update(attrs)


def _conn(pto: float = 0.1, confirmed: bool = True, resident: bool = True) -> QuicConnection:
    fake = _Part(
        recovery=_Part(rtt=_Rtt(pto)),
        handshake=_Part(confirmed=confirmed),
        keys=_Part(resident=resident),
    )
    return cast(QuicConnection, fake)


def test_the_idle_timeout_is_the_minimum_of_both_sides() -> None:
    idle = IdleTimer(30.0, None)
    idle.set_peer_timeout(60.0)
    assert idle.timeout == 30.0
    idle.set_peer_timeout(10.0)
    assert idle.timeout == 10.0
    ours_off = IdleTimer(0.0, None)  # no timeout of ours: the peer's applies
    ours_off.set_peer_timeout(5.0)
    assert ours_off.timeout == 5.0


def test_idle_deadline_counts_from_the_last_activity_and_is_never_under_three_ptos() -> None:
    idle = IdleTimer(1.0, None)
    conn = _conn(pto=0.1)
    assert idle.idle_deadline(conn) is None  # not started
    idle.last_activity = 5.0
    assert idle.idle_deadline(conn) == 6.0
    assert idle.idle_deadline(_conn(pto=0.5)) == 6.5  # three PTOs: 1.5 s
    assert IdleTimer(0.0, None).idle_deadline(conn) is None  # no idle timeout at all


def test_rest_deadline_needs_a_delay_confirmed_handshake_and_resident_keys() -> None:
    idle = IdleTimer(30.0, 2.0)
    idle.last_activity = 10.0
    assert idle.rest_deadline(_conn()) == 12.0
    assert idle.rest_deadline(_conn(confirmed=False)) is None
    # activity since the last rest went through the keys, which rebuilt their contexts:
    # the deadline does not ask them (at worst one rest timer that finds nothing to do)
    assert idle.rest_deadline(_conn(resident=False)) == 12.0
    idle.rested_at = 11.0  # at most once per delay
    assert idle.rest_deadline(_conn()) == 13.0
    assert idle.rest_deadline(_conn(resident=False)) is None  # rested, nothing since
    disabled = IdleTimer(30.0, None)
    disabled.last_activity = 10.0
    assert disabled.rest_deadline(_conn()) is None


def test_a_connection_deadline_and_firing_go_through_its_idle_timer() -> None:
    pair = make_pair(seed=5, client_kwargs={"key_rest_delay": 0.5, "idle_timeout": 3.0})
    pair.handshake()
    pair.run(lambda: pair.client.handshake.confirmed and pair.server.handshake.confirmed, 5)
    client = pair.client
    idle = client.idle
    assert idle.timeout == 3.0 and idle.last_activity is not None
    expected = earliest_deadline(client, idle.idle_deadline(client), idle.rest_deadline(client))
    assert client.get_timer() == idle.deadline(client) == expected
    rest = idle.rest_deadline(client)
    assert rest is not None
    idle.fire(client, rest)  # due: the keys rest, once
    assert idle.rested_at == rest and not client.keys.resident
    assert idle.rest_deadline(client) is None
    idle_end = idle.idle_deadline(client)
    assert idle_end is not None
    idle.fire(client, idle_end)  # RFC 9000 §10.1: the connection ends silently
    assert client.is_closed
    assert client.get_timer() is None


def test_fire_computes_the_rest_and_idle_deadlines_as_their_methods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """IdleTimer.fire reads rest_deadline() and idle_deadline() inline: in random
    states (activity, rests, delays, timeouts, confirmation, keys at rest or
    resident, the time it fires at) it rests exactly when rest_deadline() is due, and
    hands fire_due() the idle deadline idle_deadline() says."""
    from quic import conn_timers

    rested: list[float] = []
    handed: list[float | None] = []
    monkeypatch.setattr(conn_timers, "rest_connection", lambda conn: rested.append(1.0))
    monkeypatch.setattr(conn_timers, "fire_due", lambda conn, now, idle: handed.append(idle))
    after: list[float | None] = [None]  # what deadline() says after a rest: the idle part
    monkeypatch.setattr(IdleTimer, "deadline", lambda self, conn: after[0])
    rng = random.Random(3)
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(3000):
        conn = _conn(
            pto=rng.choice((0.001, 0.1, 5.0)),
            confirmed=rng.random() < 0.8,
            resident=rng.random() < 0.6,
        )
        cast(Any, conn).recovery.waiting_ack = None
        idle = IdleTimer(rng.choice((0.0, 0.5, 10.0)), rng.choice((None, 0.0, 0.2, 3.0)))
        idle.last_activity = rng.choice((None, 1.0, 4.0))
        idle.rested_at = rng.choice((0.0, 2.0, 6.0))
        now = rng.choice((0.5, 1.2, 3.9, 4.3, 7.5, 30.0))
        rest, end = idle.rest_deadline(conn), idle.idle_deadline(conn)
        due = rest is not None and now >= rest
        after[0] = end
        rested.clear()
        handed.clear()
        owed = idle.fire(conn, now)
        assert bool(rested) == due
        assert (idle.rested_at == now) if due else idle.rested_at in (0.0, 2.0, 6.0)
        quiet_after = due and (end is None or end > now)
        assert owed == (not quiet_after)
        assert handed == ([] if quiet_after else [end])
        seen["rest"] += due
        seen["quiet after"] += quiet_after
        seen["idle"] += end is not None
        seen["fired"] += owed
    assert all(seen[key] > 50 for key in ("rest", "quiet after", "idle", "fired"))
