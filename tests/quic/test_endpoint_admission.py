"""quic.endpoint_admission: the admission limits and the half-open table of an endpoint,
on their own (RFC 9000 §5.2.2, §8.1, §21.1.1.2). The endpoint-level behaviour under
floods is in ``test_endpoint_limits.py``."""

from __future__ import annotations

from typing import Any, cast

import pytest

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.endpoint_admission import Admission
from quic.endpoint_entry import Entry


class _Conn:
    """What the component reads of a connection: its identity and packets processed."""

    def __init__(self) -> None:
        self.packets_processed = 0


def _config(**kwargs: Any) -> QuicConfiguration:
    kwargs.setdefault("max_half_open_connections", 3)
    kwargs.setdefault("max_connections_per_address", 2)
    kwargs.setdefault("handshake_timeout", 10.0)
    return QuicConfiguration(is_client=False, **kwargs)


def _entry(host: str, deadline: float | None = 5.0) -> Entry:
    return Entry(cast(QuicConnection, _Conn()), host, deadline)


def test_per_address_limit_counts_source_ips_not_ports() -> None:
    admission = Admission(_config(), max_connections=100)
    admission.added(_entry("10.0.0.1"), True)
    assert admission.admits(("10.0.0.1", 1), 1)
    admission.added(_entry("10.0.0.1"), True)
    assert not admission.admits(("10.0.0.1", 2), 2)  # two from that IP already
    assert admission.admits(("10.0.0.2", 1), 2)
    assert admission.per_address == {"10.0.0.1": 2}


def test_half_open_table_full_admits_only_while_one_can_be_evicted() -> None:
    admission = Admission(_config(), max_connections=100)
    entries = [_entry(f"10.0.0.{i}") for i in range(3)]
    for entry in entries:
        admission.added(entry, True)
    assert admission.half_open == 3 and admission.evictable == 3
    assert not admission.room(3)
    assert admission.admits("10.0.1.1", 3)  # full, but the oldest can give way
    for entry in entries:
        admission.heard_again(entry.conn)  # every client answered: live
    assert admission.evictable == 0
    assert not admission.admits("10.0.1.1", 3)
    assert admission.evict() is None and admission.evicted == 0


def test_evicts_oldest_first_and_never_a_validated_or_live_one() -> None:
    admission = Admission(_config(max_half_open_connections=10), max_connections=100)
    validated, live, first, second = (_entry(f"10.0.0.{i}") for i in range(4))
    admission.added(validated, False)  # admitted with a valid token
    admission.added(live, True)
    admission.heard_again(live.conn)
    admission.added(first, True)
    admission.added(second, True)
    assert admission.evict() is first.conn
    assert admission.evict() is second.conn
    assert admission.evict() is None
    assert admission.evicted == 2
    # evicting takes it off the set only; the endpoint's removal releases its counts
    assert admission.half_open == 4
    for entry in (first, second):
        admission.removed(entry)
    assert admission.half_open == 2 and set(admission.per_address) == {"10.0.0.0", "10.0.0.1"}


def test_max_connections_counts_every_connection() -> None:
    admission = Admission(_config(), max_connections=2)
    assert admission.room(1) and not admission.room(2)
    assert admission.admits("10.0.0.1", 1) and not admission.admits("10.0.0.1", 2)
    admission.added(_entry("10.0.0.9"), True)  # one evictable: one more may come
    assert admission.admits("10.0.0.1", 2) and not admission.admits("10.0.0.1", 3)


def test_a_client_endpoint_admits_nothing() -> None:
    admission = Admission(None, max_connections=10)
    assert not admission.admits("10.0.0.1", 0) and not admission.room(0)
    client = Entry(cast(QuicConnection, _Conn()), None, None)  # no address, no deadline
    admission.added(client, False)
    assert admission.half_open == 0 and admission.per_address == {}
    admission.removed(client)
    assert admission.half_open == 0


def test_handshake_done_leaves_the_half_open_table() -> None:
    admission = Admission(_config(), max_connections=100)
    entry = _entry("10.0.0.1")
    admission.added(entry, True)
    admission.handshake_done(entry)
    assert not entry.half_open and entry.deadline is None
    assert admission.half_open == 0 and admission.evictable == 0
    admission.handshake_done(entry)  # idempotent
    assert admission.half_open == 0
    admission.removed(entry)
    assert admission.half_open == 0 and admission.per_address == {}


def test_progress_restarts_the_deadline_only_on_new_packets() -> None:
    admission = Admission(_config(handshake_timeout=10.0), max_connections=100)
    entry = _entry("10.0.0.1", deadline=10.0)
    admission.added(entry, True)
    admission.progress(entry, 3.0)
    assert entry.deadline == 10.0  # nothing processed since: no restart
    cast(Any, entry.conn).packets_processed = 4
    admission.progress(entry, 3.0)
    assert entry.deadline == pytest.approx(13.0) and entry.progress == 4
    admission.progress(entry, 8.0)
    assert entry.deadline == pytest.approx(13.0)  # the same packets: no second restart


def test_every_table_empties_when_every_entry_is_removed() -> None:
    admission = Admission(_config(max_half_open_connections=50), max_connections=100)
    entries = [_entry(f"10.0.0.{i % 7}") for i in range(40)]
    for i, entry in enumerate(entries):
        admission.added(entry, i % 3 != 0)
        if i % 5 == 0:
            admission.handshake_done(entry)
    assert admission.half_open == 32 and len(admission.per_address) == 7
    for entry in entries:
        admission.removed(entry)
    assert admission.half_open == 0 and admission.per_address == {}
    assert admission.evictable == 0
