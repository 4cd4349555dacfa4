"""Property tests for workers on one port (quic/workers.py): any datagram routes to
local, drop or a valid other worker — never raises, never to itself, never onward
when it came forwarded; any bytes decode as a forwarding frame or give None; frames
round-trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.quiclb import WorkerCids
from quic.workers import (
    DROP,
    LOCAL,
    WorkerRouting,
    decode_forwarded,
    encode_forwarded,
    route_datagram,
)

schemes = st.builds(
    lambda workers, data: WorkerCids(workers, data % workers),
    st.integers(1, 256),
    st.integers(0, 255),
)


@settings(max_examples=examples(500), deadline=None)
@given(schemes, st.binary(max_size=80), st.none() | st.integers(0, 255), st.booleans())
def test_route_any_datagram(
    scheme: WorkerCids, data: bytes, successor: int | None, forwarded: bool
) -> None:
    target = route_datagram(data, scheme, successor=successor, forwarded=forwarded)
    assert target in (LOCAL, DROP) or 0 <= target < max(scheme.workers, (successor or 0) + 1)
    assert target != scheme.worker
    if forwarded:
        assert target in (LOCAL, DROP)


@settings(max_examples=examples(300), deadline=None)
@given(schemes, st.data())
def test_a_cid_of_another_worker_is_forwarded_to_it(
    scheme: WorkerCids, data: st.DataObject
) -> None:
    owner = data.draw(st.integers(0, scheme.workers - 1))
    cid = WorkerCids(scheme.workers, owner).new_cid()
    datagram = bytes([0x40]) + cid + data.draw(st.binary(max_size=40))
    expected = LOCAL if owner == scheme.worker else owner
    assert route_datagram(datagram, scheme) == expected
    routing = WorkerRouting(scheme, max_pending=4)
    assert routing.divert(datagram, ("192.0.2.1", 443)) == expected
    assert routing.pending == (0 if owner == scheme.worker else 1)


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=64))
def test_decode_any_bytes(frame: bytes) -> None:
    decoded = decode_forwarded(frame)
    if decoded is not None:
        data, addr, ecn, local = decoded
        assert 0 <= ecn <= 3 and 0 <= local <= 255
        assert encode_forwarded(data, addr, ecn, local) == frame


@settings(max_examples=examples(300), deadline=None)
@given(
    st.binary(max_size=1500),
    st.ip_addresses(),
    st.integers(0, 65535),
    st.integers(0, 3),
    st.integers(0, 255),
)
def test_frames_round_trip(data: bytes, ip: object, port: int, ecn: int, local: int) -> None:
    addr = (str(ip), port) if ":" not in str(ip) else (str(ip), port, 0, 0)
    decoded = decode_forwarded(encode_forwarded(data, addr, ecn, local))
    assert decoded == (data, addr, ecn, local)
