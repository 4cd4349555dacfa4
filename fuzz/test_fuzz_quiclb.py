"""Property tests for QUIC-LB connection IDs (quic/quiclb.py) and the reuseport
steering program (quic/reuseport_bpf.py).

Any valid plaintext configuration round-trips any server ID and nonce; so does every
encrypted one (single pass and four pass, every allowed pair of server ID and nonce
lengths, any key): the server ID a load balancer reads back — in three passes or four —
is the one encoded; arbitrary bytes never make decode raise and decode only to what
re-encodes to the same CID; a worker
CID names its worker to ``worker_of`` and to the BPF program; arbitrary datagrams give
the program a worker index or the fallback, never anything else.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.quiclb import (
    FourPassCidConfig,
    PlaintextCidConfig,
    QuicLbConfig,
    SinglePassCidConfig,
    WorkerCids,
    make_cid_format,
)
from quic.reuseport_bpf import FALLBACK, build_worker_program, run


@st.composite
def configs(draw: st.DrawFn) -> PlaintextCidConfig:
    sid = draw(st.integers(1, 15))
    nonce = draw(st.integers(4, 19 - sid))
    return PlaintextCidConfig(draw(st.integers(0, 6)), sid, nonce, draw(st.booleans()))


@settings(max_examples=examples(300), deadline=None)
@given(configs(), st.data())
def test_plaintext_round_trip(cfg: PlaintextCidConfig, data: st.DataObject) -> None:
    server_id = data.draw(st.binary(min_size=cfg.server_id_length, max_size=cfg.server_id_length))
    nonce = data.draw(st.binary(min_size=cfg.nonce_length, max_size=cfg.nonce_length))
    low = data.draw(st.integers(0, 31))
    cid = cfg.encode(server_id, nonce, low)
    assert 1 < len(cid) <= 20
    assert cfg.decode(cid) == (server_id, nonce)
    assert cid[0] >> 5 == cfg.config_rotation


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(0, 6),
    st.integers(1, 12),
    st.binary(min_size=16, max_size=16),
    st.booleans(),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 31),
)
def test_single_pass_round_trip(
    rotation: int, sid_len: int, key: bytes, self_len: bool, block: bytes, low: int
) -> None:
    cfg = SinglePassCidConfig(rotation, sid_len, key, self_len)
    cid = cfg.encode(block[:sid_len], block[sid_len:], low)
    assert len(cid) == 17 and cid[0] >> 5 == rotation
    assert cfg.decode(cid) == (block[:sid_len], block[sid_len:])


@st.composite
def lengths(draw: st.DrawFn) -> tuple[int, int]:
    """Every (server ID, nonce) length pair the draft allows: 1..15, 4..18, sum <= 19."""
    sid = draw(st.integers(1, 15))
    return sid, draw(st.integers(4, 19 - sid))


@settings(max_examples=examples(400), deadline=None)
@given(
    lengths(),
    st.integers(0, 6),
    st.binary(min_size=16, max_size=16),
    st.booleans(),
    st.data(),
)
def test_encrypted_round_trip_every_length(
    sizes: tuple[int, int], rotation: int, key: bytes, self_len: bool, data: st.DataObject
) -> None:
    sid_len, nonce_len = sizes
    fmt = make_cid_format(rotation, sid_len, nonce_len, key, self_len)
    assert isinstance(fmt, SinglePassCidConfig if sid_len + nonce_len == 16 else FourPassCidConfig)
    server_id = data.draw(st.binary(min_size=sid_len, max_size=sid_len))
    nonce = data.draw(st.binary(min_size=nonce_len, max_size=nonce_len))
    cid = fmt.encode(server_id, nonce, data.draw(st.integers(0, 31)))
    assert len(cid) == 1 + sid_len + nonce_len and cid[0] >> 5 == rotation
    assert fmt.decode(cid) == (server_id, nonce)
    assert fmt.server_id_of(cid) == server_id
    lb = QuicLbConfig(rotation, server_id, nonce_len, key, self_encode_length=self_len)
    assert lb.is_ours(lb.generate(lambda n: data.draw(st.binary(min_size=n, max_size=n))))


@settings(max_examples=examples(300), deadline=None)
@given(lengths(), st.binary(min_size=16, max_size=16), st.data())
def test_four_pass_is_a_permutation(
    sizes: tuple[int, int], key: bytes, data: st.DataObject
) -> None:
    """Feistel rounds are invertible: decrypt(encrypt(x)) == x and encrypt(decrypt(y))
    == y for every byte string of the configured length (odd lengths included)."""
    sid_len, nonce_len = sizes
    if sid_len + nonce_len == 16:
        return  # single pass
    fmt = FourPassCidConfig(0, sid_len, nonce_len, key)
    size = sid_len + nonce_len
    block = data.draw(st.binary(min_size=size, max_size=size))
    assert fmt.decrypt(fmt.encrypt(block)) == block
    assert fmt.encrypt(fmt.decrypt(block)) == block
    assert len(fmt.encrypt(block)) == size


@settings(max_examples=examples(300), deadline=None)
@given(lengths(), st.binary(min_size=16, max_size=16), st.binary(max_size=24))
def test_encrypted_decode_arbitrary_bytes(sizes: tuple[int, int], key: bytes, cid: bytes) -> None:
    fmt = make_cid_format(0, sizes[0], sizes[1], key)
    decoded = fmt.decode(cid)
    assert (decoded is None) == (fmt.server_id_of(cid) is None)
    if decoded is not None:
        assert fmt.encode(decoded[0], decoded[1], cid[0] & 0x1F) == cid
        assert fmt.server_id_of(cid) == decoded[0]


@settings(max_examples=examples(300), deadline=None)
@given(configs(), st.binary(max_size=24))
def test_decode_arbitrary_bytes(cfg: PlaintextCidConfig, cid: bytes) -> None:
    decoded = cfg.decode(cid)
    if decoded is not None:
        server_id, nonce = decoded
        assert cfg.encode(server_id, nonce, cid[0] & 0x1F) == cid


@settings(max_examples=examples(300), deadline=None)
@given(
    st.integers(1, 256),
    st.data(),
    st.binary(max_size=4),
    st.integers(4, 14),
    st.binary(max_size=32),
)
def test_worker_cids_route_to_their_worker(
    workers: int, data: st.DataObject, host: bytes, nonce_length: int, tail: bytes
) -> None:
    worker = data.draw(st.integers(0, workers - 1))
    seed = data.draw(st.binary(min_size=64, max_size=64))
    pool = iter(seed * 4)

    def random_bytes(n: int) -> bytes:
        return bytes(next(pool) for _ in range(n))

    scheme = WorkerCids(workers, worker, host, nonce_length=nonce_length, random_bytes=random_bytes)
    cid = scheme.new_cid()
    assert scheme.worker_of(cid) == worker
    program = build_worker_program(workers, scheme.worker_offset)
    assert run(program, bytes([0x40 | (seed[0] & 0x3F)]) + cid + tail) == worker
    assert run(program, bytes([0x80 | seed[1]]) + cid + tail) == FALLBACK


@settings(max_examples=examples(500), deadline=None)
@given(st.integers(1, 256), st.integers(0, 19), st.binary(max_size=64))
def test_program_verdict_is_a_worker_or_fallback(workers: int, k: int, packet: bytes) -> None:
    verdict = run(build_worker_program(workers, k), packet)
    short_and_long_enough = len(packet) > 1 + k and not packet[0] & 0x80
    if short_and_long_enough and packet[1 + k] < workers:
        assert verdict == packet[1 + k]
    else:
        assert verdict == FALLBACK


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(1, 256),
    st.data(),
    st.binary(max_size=4),
    st.integers(4, 13),  # the other host prefix is one byte longer
    st.binary(min_size=16, max_size=16),
)
def test_encrypted_worker_cids_name_their_worker(
    workers: int, data: st.DataObject, host: bytes, nonce_length: int, key: bytes
) -> None:
    """With a key the worker byte is encrypted: ``worker_of`` decrypts it for every
    worker of every host prefix, and the scheme says it cannot be steered."""
    worker = data.draw(st.integers(0, workers - 1))
    pool = iter(data.draw(st.binary(min_size=64, max_size=64)) * 4)

    def random_bytes(n: int) -> bytes:
        return bytes(next(pool) for _ in range(n))

    scheme = WorkerCids(workers, worker, host, 1, nonce_length, random_bytes, key=key)
    assert not scheme.steerable
    cid = scheme.token_bytes(scheme.cid_length)
    assert len(cid) == scheme.cid_length and scheme.worker_of(cid) == worker
    other_host = WorkerCids(workers, worker, host + b"\x00", 1, nonce_length, key=key)
    assert other_host.worker_of(cid) is None  # another length: not of its configuration
