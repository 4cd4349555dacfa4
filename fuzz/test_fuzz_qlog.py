"""Tracing never breaks on peer input: arbitrary frames in authenticated packets, and
arbitrary datagrams (long-header garbage, Version Negotiation with random versions),
reach a traced connection; it never fails internally and every event of both traces
still passes the qlog schema checker (tests/support/qlog_schema.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from fuzz.test_fuzz_connection import _check, _inject
from quic.packet import encode_version_negotiation
from quic.qlog import QlogMemorySink
from tests.support.qlog_schema import check_events
from tests.support.quicpair import SERVER_ADDR, Pair, make_pair


def _traced() -> tuple[Pair, dict[str, QlogMemorySink]]:
    sinks: dict[str, QlogMemorySink] = {}

    def factory(role: str) -> Any:
        def make(is_client: bool, odcid: bytes) -> QlogMemorySink:
            return sinks.setdefault(role if odcid else f"{role}-endpoint", QlogMemorySink())

        return make

    pair = make_pair(
        client_kwargs={"qlog_factory": factory("client")},
        server_kwargs={"qlog_factory": factory("server")},
    )
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    return pair, sinks


def _valid(sinks: dict[str, QlogMemorySink]) -> None:
    for role, sink in sinks.items():
        errors = check_events(sink.events)
        assert not errors, (role, errors[:5])


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=300))
def test_traced_connection_with_random_frames(payload: bytes) -> None:
    pair, sinks = _traced()
    _inject(pair, payload)
    pair.run(max_time=0.5)
    _check(pair)
    _valid(sinks)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(min_size=1, max_size=1300).map(lambda b: bytes((0xC0 | (b[0] & 0x3F),)) + b),
        st.lists(st.integers(0, 2**32 - 1), max_size=8).map(lambda v: ("vn", v)),
    )
)
def test_traced_client_with_random_datagrams(datagram: Any) -> None:
    pair, sinks = _traced()
    client = pair.client
    if isinstance(datagram, tuple):
        datagram = encode_version_negotiation(client.host_cid, client.original_dcid, datagram[1])
    client.receive_datagram(datagram, SERVER_ADDR, pair.net.now)
    assert client.last_internal_error is None, repr(client.last_internal_error)
    _valid(sinks)
