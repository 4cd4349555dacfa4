"""QUIC-LB connection IDs (quic/quiclb.py): draft-ietf-quic-load-balancers(-21) "First
CID Octet", "Unroutable Connection IDs", the plaintext, single-pass and four-pass
algorithms (checked against the draft's test vectors), :class:`QuicLbConfig`, and the
worker-ID scheme for ``--workers N`` (plaintext and encrypted).

The format round-trips and rejects what is not its own; the worker scheme names the
worker in every CID a real server connection issues when its ``token_bytes`` is used,
and the kernel program of quic/reuseport_bpf.py sends that connection's short-header
packets to that worker; making CIDs keeps no state (4N CIDs retain what N do).
"""

from __future__ import annotations

import random
import tracemalloc
from typing import Any

import pytest

from quic.quiclb import (
    MAX_CID_LENGTH,
    UNROUTABLE_CONFIG_ROTATION,
    FourPassCidConfig,
    PlaintextCidConfig,
    QuicLbConfig,
    SinglePassCidConfig,
    WorkerCids,
    config_rotation_of,
    is_unroutable,
    make_cid_format,
    make_unroutable_cid,
)
from quic.reuseport_bpf import FALLBACK, build_worker_program, run
from tests.support.netsim import Network
from tests.support.quicpair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    WakingEndpoint,
    client_config,
    server_config,
)


def _rng(seed: int = 1) -> Any:
    r = random.Random(seed)
    return r.randbytes


def test_plaintext_encode_layout_and_self_encoded_length() -> None:
    cfg = PlaintextCidConfig(config_rotation=2, server_id_length=3, nonce_length=5)
    cid = cfg.encode(b"\x01\x02\x03", b"abcde")
    assert len(cid) == cfg.cid_length == 9
    assert cid[0] >> 5 == 2  # "Config Rotation": the three high bits
    assert cid[0] & 0x1F == 8  # "Length Self-Description"
    assert cid[1:4] == b"\x01\x02\x03" and cid[4:] == b"abcde"
    assert cfg.decode(cid) == (b"\x01\x02\x03", b"abcde")
    assert config_rotation_of(cid) == 2
    assert config_rotation_of(b"") is None


def test_random_low_bits_when_length_not_self_encoded() -> None:
    cfg = PlaintextCidConfig(0, 1, 4, self_encode_length=False)
    lows = {cfg.encode(b"\x07", b"nnnn", low)[0] & 0x1F for low in range(64)}
    assert lows == set(range(32))
    for low in range(32):
        assert cfg.server_id_of(cfg.encode(b"\x07", b"nnnn", low)) == b"\x07"


def test_decode_rejects_other_configurations() -> None:
    cfg = PlaintextCidConfig(1, 2, 6)
    cid = cfg.encode(b"ab", b"123456")
    assert cfg.decode(cid[:-1]) is None  # wrong length
    assert cfg.decode(cid + b"x") is None
    other_rotation = bytes([cid[0] ^ 0x20]) + cid[1:]
    assert cfg.decode(other_rotation) is None
    bad_length_bits = bytes([cid[0] ^ 0x01]) + cid[1:]
    assert cfg.decode(bad_length_bits) is None
    assert cfg.decode(b"") is None


@pytest.mark.parametrize(
    ("rotation", "sid", "nonce"),
    [(7, 1, 4), (-1, 1, 4), (0, 0, 4), (0, 16, 4), (0, 1, 3), (0, 1, 19), (0, 15, 5)],
)
def test_configuration_limits(rotation: int, sid: int, nonce: int) -> None:
    # 0b111 is not a configuration; the draft's lengths; RFC 9000 §17.2: <= 20 bytes
    with pytest.raises(ValueError):
        PlaintextCidConfig(rotation, sid, nonce)


def test_longest_configuration_is_twenty_bytes() -> None:
    cfg = PlaintextCidConfig(6, 15, 4)
    assert cfg.cid_length == MAX_CID_LENGTH
    cid = cfg.generate(bytes(range(15)), _rng())
    assert cfg.server_id_of(cid) == bytes(range(15))


def test_encode_checks_field_lengths() -> None:
    cfg = PlaintextCidConfig(0, 2, 4)
    with pytest.raises(ValueError):
        cfg.encode(b"a", b"1234")
    with pytest.raises(ValueError):
        cfg.encode(b"ab", b"123")


def test_unroutable_cids() -> None:
    cid = make_unroutable_cid(8, _rng())
    assert len(cid) == 8 and is_unroutable(cid)
    assert cid[0] & 0x1F == 7  # "Configuration Failover": MUST self-encode the length
    assert config_rotation_of(cid) == UNROUTABLE_CONFIG_ROTATION
    assert is_unroutable(b"")
    assert not is_unroutable(PlaintextCidConfig(6, 1, 4).encode(b"\x00", b"0000"))
    for bad in (0, 21):
        with pytest.raises(ValueError):
            make_unroutable_cid(bad)


def test_generate_uses_injected_randomness() -> None:
    cfg = PlaintextCidConfig(0, 1, 8)
    assert cfg.generate(b"\x05", _rng(7)) == cfg.generate(b"\x05", _rng(7))
    assert cfg.generate(b"\x05", _rng(7)) != cfg.generate(b"\x05", _rng(8))


def test_worker_cids_name_their_worker() -> None:
    schemes = [WorkerCids(4, w, host_id=b"\xaa\xbb", random_bytes=_rng(w)) for w in range(4)]
    for w, scheme in enumerate(schemes):
        assert scheme.worker_offset == 3
        for _ in range(50):
            cid = scheme.new_cid()
            assert len(cid) == scheme.cid_length == 1 + 3 + 7
            assert cid[scheme.worker_offset] == w
            assert all(other.worker_of(cid) == w for other in schemes)


def test_worker_of_rejects_foreign_cids() -> None:
    mine = WorkerCids(2, 1, host_id=b"\x01")
    other_host = WorkerCids(2, 1, host_id=b"\x02")
    other_rotation = WorkerCids(2, 1, host_id=b"\x01", config_rotation=3)
    assert mine.worker_of(other_host.new_cid()) is None
    assert mine.worker_of(other_rotation.new_cid()) is None
    assert mine.worker_of(make_unroutable_cid(mine.cid_length)) is None
    assert mine.worker_of(b"") is None
    beyond = mine.config.encode(b"\x01\x05", bytes(7))  # worker 5 of 2
    assert mine.worker_of(beyond) is None
    with pytest.raises(ValueError):
        WorkerCids(2, 2)
    with pytest.raises(ValueError):
        WorkerCids(257, 0)


def test_token_bytes_only_shapes_connection_ids() -> None:
    scheme = WorkerCids(8, 3, random_bytes=_rng())
    cid = scheme.token_bytes(scheme.cid_length)
    assert scheme.worker_of(cid) == 3
    for n in (16, 32, 8, 1):  # reset tokens, keys, a client's original DCID ...
        assert len(scheme.token_bytes(n)) == n


class _Recording(WakingEndpoint):
    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        self.received: list[bytes] = []

    def receive_datagram(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        self.received.append(data)
        super().receive_datagram(data, addr, now, ecn)


@pytest.mark.parametrize("worker", [0, 2])
def test_server_connection_issues_worker_cids_and_bpf_routes_them(worker: int) -> None:
    """Wired through ``token_bytes`` (the shape quic/cid.py uses), every CID the server
    issues names its worker, and the reuseport program sends every short-header packet
    the client sends to that worker (long headers: the kernel's hash)."""
    from quic.endpoint import QuicEndpoint

    scheme = WorkerCids(4, worker, random_bytes=_rng(worker))
    net = Network(seed=worker)
    server = QuicEndpoint(
        server_config(connection_id_length=scheme.cid_length),
        token_bytes=scheme.token_bytes,
    )
    recording = _Recording(server)
    client = QuicEndpoint()
    net.add(SERVER_ADDR, recording)
    net.add(CLIENT_ADDR, WakingEndpoint(client))
    conn = client.connect(SERVER_ADDR, client_config(), net.now)
    net.run(lambda: conn.handshake_complete, max_time=10)
    net.settle(0.5)
    stream = conn.get_next_available_stream_id()
    conn.send_stream_data(stream, b"x" * 5000, end_stream=True)
    net.settle(1.0)
    (srv,) = server.connections
    local = [entry.cid for entry in srv.cids.local.values()]
    assert len(local) >= 2  # sequence 0 and NEW_CONNECTION_ID ones
    assert all(scheme.worker_of(cid) == worker for cid in local)
    assert all(scheme.worker_of(p.cid) == worker for p in conn.cids.peer.values())
    program = build_worker_program(4, scheme.worker_offset)
    verdicts = [run(program, d) for d in recording.received]
    short = [v for d, v in zip(recording.received, verdicts, strict=True) if not d[0] & 0x80]
    assert short and all(v == worker for v in short)
    assert FALLBACK in verdicts  # the Initial flight is hashed


def _retained_after(count: int) -> int:
    scheme = WorkerCids(16, 5, random_bytes=_rng())
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(count):
        scheme.worker_of(scheme.new_cid())
        scheme.token_bytes(16)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    return sum(s.size_diff for s in stats if "quiclb" in str(s.traceback))


def test_issuing_cids_keeps_no_state_n_vs_4n() -> None:
    n = 2_000
    assert _retained_after(4 * n) <= _retained_after(n) + 512
    assert len(WorkerCids.__slots__) == 5  # no table to grow


# The plaintext test vectors of the load-balancers draft ("Load Balancer Test Vectors",
# from a revision that called the nonce "server use" bytes; the layout is the same).
# Only those with a nonce of at least 4 bytes and config rotation 0 are valid today.
@pytest.mark.parametrize(
    ("sid_len", "self_len", "cid", "sid", "nonce"),
    [
        (1, True, "050c8f6d9129", "0c", "8f6d9129"),
        (2, False, "1d57dee8b888f3", "57de", "e8b888f3"),
        (3, True, "07966fb1f3cb535f", "966fb1", "f3cb535f"),
    ],
)
def test_draft_plaintext_vectors(
    sid_len: int, self_len: bool, cid: str, sid: str, nonce: str
) -> None:
    raw = bytes.fromhex(cid)
    cfg = PlaintextCidConfig(0, sid_len, len(raw) - 1 - sid_len, self_len)
    assert cfg.decode(raw) == (bytes.fromhex(sid), bytes.fromhex(nonce))
    assert cfg.encode(bytes.fromhex(sid), bytes.fromhex(nonce), raw[0] & 0x1F) == raw


# Block-cipher test vectors of the draft (16-byte server ID + nonce: single pass), from
# a revision with two config rotation bits: only those whose first octet is below 0x20
# (config rotation 0 with three bits as well) are used.
@pytest.mark.parametrize(
    ("key", "sid_len", "self_len", "cid", "sid", "nonce"),
    [
        (
            "411592e4160268398386af84ea7505d4",
            1,
            True,
            "10564f7c0df399f6d93bdddb1a03886f25",
            "23",
            "05231748a80884ed58007847eb9fd0",
        ),
        (
            "411592e4160268398386af84ea7505d4",
            1,
            True,
            "101a6ce13d48b14a77ecfd365595ad2582",
            "6c",
            "76ce4689b0745b956ef71c2608045d",
        ),
        (
            "92ce44aecd636aeeff78da691ef48f77",
            2,
            False,
            "043a8137331eacd2e78383279b202b9a6d",
            "4188",
            "5ac4b0e0b95f4e7473b49ee2d0dd",
        ),
        (
            "e787a3a491551fb2b4901a3fa15974f3",
            4,
            False,
            "1d202b5811af3e1dba9ea2950d27879a92",
            "b14e1307",
            "4902aba8b23a5f24616df3cf",
        ),
        (
            "d5a6d7824336fbe0f25d28487cdda57c",
            5,
            True,
            "108122fe80a6e546a285c475a3b8613ec9",
            "fbcc902c9d",
            "59c47946882a9a93981c15",
        ),
    ],
)
def test_draft_single_pass_vectors(
    key: str, sid_len: int, self_len: bool, cid: str, sid: str, nonce: str
) -> None:
    raw = bytes.fromhex(cid)
    cfg = SinglePassCidConfig(0, sid_len, bytes.fromhex(key), self_len)
    assert cfg.decode(raw) == (bytes.fromhex(sid), bytes.fromhex(nonce))
    assert cfg.encode(bytes.fromhex(sid), bytes.fromhex(nonce), raw[0] & 0x1F) == raw
    assert cfg.server_id_of(raw[:-1]) is None


def test_single_pass_round_trip_and_limits() -> None:
    key = bytes(range(16))
    cfg = SinglePassCidConfig(3, 12, key)
    cid = cfg.generate(b"S" * 12, _rng())
    assert len(cid) == 17 and cid[0] == (3 << 5) | 16
    assert cid[1:13] != b"S" * 12  # encrypted
    assert cfg.server_id_of(cid) == b"S" * 12
    assert SinglePassCidConfig(3, 12, bytes(16)).server_id_of(cid) != b"S" * 12
    assert SinglePassCidConfig(2, 12, key).server_id_of(cid) is None
    for bad in ((7, 1, key), (0, 0, key), (0, 13, key), (0, 1, key[:15])):
        with pytest.raises(ValueError):
            SinglePassCidConfig(*bad)
    with pytest.raises(ValueError):
        cfg.encode(b"S" * 11, b"n" * 5)


# -- four-pass encryption (draft-ietf-quic-load-balancers-21) ----------------------------

# "Encryption Example" of "General Case: Four-Pass Encryption" (as corrected in -20: the
# intermediate values of -19 were wrong). Odd length: the middle octet is shared.
EXAMPLE_KEY = "fdf726a9893ec05c0632d3956680baf0"


def test_draft_four_pass_encryption_example() -> None:
    cfg = FourPassCidConfig(0, 3, 4, bytes.fromhex(EXAMPLE_KEY))
    assert cfg.half_length == 4
    cid = cfg.encode(bytes.fromhex("31441a"), bytes.fromhex("9c69c275"))
    assert cid.hex() == "0767947d29be054a"
    assert cfg.decode(cid) == (bytes.fromhex("31441a"), bytes.fromhex("9c69c275"))
    # the draft's step 2: 0x7040b81b55ccf3 splits into 0x7040b810 and 0x0b55ccf3
    assert cfg._split(bytes.fromhex("7040b81b55ccf3")) == (0x7040B810, 0x0B55CCF3)
    assert cfg._join(0x7040B810, 0x0B55CCF3).hex() == "7040b81b55ccf3"


# "Load Balancer Test Vectors", "Encrypted CIDs" (one key for all; the server encodes
# the CID length). Rows 0, 1 and 3 are four pass (7, 15 and 18 bytes; row 1's server ID
# is longer than its nonce: decoding needs the fourth pass), row 2 is single pass.
VECTOR_KEY = "8f95f09245765f80256934e50c66207f"
ENCRYPTED_VECTORS = [
    (0, "ed793a", "ee080dbf", "0720b1d07b359d3c"),
    (1, "ed793a51d49b8f5fab65", "ee080dbf48", "2fcc381bc74cb4fbad2823a3d1f8fed2"),
    (2, "ed793a51d49b8f5f", "ee080dbf48c0d1e5", "504dd2d05a7b0de9b2b9907afb5ecf8cc3"),
    (3, "ed793a51d49b8f5fab", "ee080dbf48c0d1e55d", "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc"),
]


@pytest.mark.parametrize(("rotation", "sid", "nonce", "cid"), ENCRYPTED_VECTORS)
def test_draft_encrypted_vectors(rotation: int, sid: str, nonce: str, cid: str) -> None:
    server_id, nonce_bytes, raw = bytes.fromhex(sid), bytes.fromhex(nonce), bytes.fromhex(cid)
    if rotation == 3:
        # the draft prints this row's first octet as 0x12 (config rotation 0), which
        # contradicts its own cr_bits column (3 -> 0x72); the first octet is outside the
        # ciphertext, so the 18 encrypted bytes are checked under rotation 3
        assert raw[0] == 0x12
        raw = bytes([(3 << 5) | 18]) + raw[1:]
    fmt = make_cid_format(rotation, len(server_id), len(nonce_bytes), bytes.fromhex(VECTOR_KEY))
    assert isinstance(fmt, SinglePassCidConfig if rotation == 2 else FourPassCidConfig)
    assert fmt.encode(server_id, nonce_bytes) == raw
    assert fmt.decode(raw) == (server_id, nonce_bytes)
    assert fmt.server_id_of(raw) == server_id
    lb = QuicLbConfig(rotation, server_id, len(nonce_bytes), bytes.fromhex(VECTOR_KEY))
    assert lb.is_ours(raw) and lb.algorithm == ("single-pass" if rotation == 2 else "four-pass")


class _CountingFourPass(FourPassCidConfig):
    """Counts the AES rounds (no __slots__: a per-instance counter)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rounds = 0

    def _round(self, half: int, pass_number: int) -> int:
        self.rounds += 1
        return super()._round(half, pass_number)


@pytest.mark.parametrize(
    ("sid_len", "nonce_len", "passes"),
    [(3, 4, 3), (2, 5, 3), (4, 4, 3), (4, 5, 3), (5, 4, 4), (10, 5, 4), (9, 9, 3)],
)
def test_server_id_needs_three_passes_when_it_lies_in_the_left_half(
    sid_len: int, nonce_len: int, passes: int
) -> None:
    # draft "Load Balancer Actions": three passes when the server ID is entirely in
    # left_0 (for an odd length, left_0 ends with half an octet), else four
    cfg = _CountingFourPass(0, sid_len, nonce_len, bytes(range(16)))
    server_id = bytes(range(100, 100 + sid_len))
    cid = cfg.generate(server_id, _rng())
    assert cfg.rounds == 4
    cfg.rounds = 0
    assert cfg.server_id_of(cid) == server_id
    assert cfg.rounds == passes


def test_four_pass_limits() -> None:
    key = bytes(16)
    for bad in ((0, 8, 8, key), (0, 2, 4, key[:15]), (7, 2, 4, key), (0, 15, 5, key)):
        with pytest.raises(ValueError):
            FourPassCidConfig(*bad)
    cfg = FourPassCidConfig(5, 15, 4, key, self_encode_length=False)
    assert cfg.cid_length == MAX_CID_LENGTH
    cid = cfg.generate(b"s" * 15, _rng())
    assert cid[0] >> 5 == 5 and cfg.server_id_of(cid) == b"s" * 15
    assert cfg.server_id_of(cid[:-1]) is None
    assert cfg.server_id_of(bytes([cid[0] ^ 0x20]) + cid[1:]) is None
    with pytest.raises(ValueError):
        cfg.encode(b"s" * 14, b"nnnn")


# -- QuicLbConfig: one configuration type for the three algorithms ---------------------


def test_quic_lb_config_chooses_the_algorithm() -> None:
    key = bytes(range(16))
    plain = QuicLbConfig(1, b"\x0a\x0b", 6)
    assert plain.algorithm == "plaintext" and not plain.encrypted
    cid = plain.generate(_rng())
    assert cid[1:3] == b"\x0a\x0b" and plain.server_id_of(cid) == b"\x0a\x0b"
    single = QuicLbConfig(2, b"\x0a\x0b", 14, key)
    assert single.algorithm == "single-pass" and single.cid_length == 17
    four = QuicLbConfig(3, b"\x0a\x0b", 6, key)
    assert four.algorithm == "four-pass" and four.cid_length == 9
    for cfg in (plain, single, four):
        cids = {cfg.generate() for _ in range(200)}
        assert len(cids) == 200  # random nonces
        assert all(len(c) == cfg.cid_length and c[0] >> 5 == cfg.config_rotation for c in cids)
        assert all(c[0] & 0x1F == cfg.cid_length - 1 for c in cids)  # self-encoded length
        assert all(cfg.is_ours(c) for c in cids)
        assert cfg.token_bytes(cfg.cid_length)[0] >> 5 == cfg.config_rotation
        assert {len(cfg.token_bytes(n)) for n in (1, 16, 32)} == {1, 16, 32}
    encrypted = [c for c in (four.generate() for _ in range(200)) if c[1:3] == b"\x0a\x0b"]
    assert len(encrypted) < 5  # the server ID is not in the clear
    other = QuicLbConfig(3, b"\x0a\x0c", 6, key)
    assert not other.is_ours(four.generate()) and other.server_id_of(four.generate()) != (
        b"\x0a\x0c"
    )
    assert "key" not in repr(four) and key.hex() not in repr(four)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config_rotation": 7}, "0b111"),
        ({"config_rotation": -1}, "config rotation"),
        ({"server_id": b""}, "server ID length"),
        ({"server_id": bytes(16), "nonce_length": 4}, "server ID length"),
        ({"server_id": bytes(15), "nonce_length": 5}, "20 bytes"),  # a 21-byte CID
        ({"server_id": bytes(4), "nonce_length": 16}, "20 bytes"),
        ({"nonce_length": 3}, "nonce length"),
        ({"nonce_length": 19}, "nonce length"),
        ({"key": bytes(15)}, "16 bytes"),
        ({"key": bytes(17)}, "16 bytes"),
        ({"key": b""}, "16 bytes"),
    ],
)
def test_quic_lb_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"config_rotation": 0, "server_id": b"\x01", "nonce_length": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        QuicLbConfig(**args)


def test_encrypted_worker_cids_are_not_steerable_and_decrypt() -> None:
    key = bytes(range(16, 32))
    for nonce_length, fmt in ((7, FourPassCidConfig), (14, SinglePassCidConfig)):
        schemes = [WorkerCids(3, w, b"\x07", 2, nonce_length, _rng(w), key=key) for w in range(3)]
        assert all(isinstance(s.config, fmt) and not s.steerable for s in schemes)
        for w, scheme in enumerate(schemes):
            cids = [scheme.token_bytes(scheme.cid_length) for _ in range(100)]
            assert all(other.worker_of(c) == w for c in cids for other in schemes)
            # the worker byte is not readable where the kernel program would look
            assert sum(c[scheme.worker_offset] == w for c in cids) < 10
        plain = WorkerCids(3, 0, b"\x07", 2, nonce_length, _rng())
        assert plain.steerable and plain.worker_of(schemes[0].new_cid()) is None
        wrong_key = WorkerCids(3, 0, b"\x07", 2, nonce_length, key=bytes(16))
        assert sum(wrong_key.worker_of(schemes[0].new_cid()) == 0 for _ in range(50)) < 5
    with pytest.raises(ValueError, match="16 bytes"):
        WorkerCids(2, 0, key=bytes(8))


def _retained_by(make: Any, count: int) -> int:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(count):
        make()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    return sum(s.size_diff for s in stats if "quiclb" in str(s.traceback))


@pytest.mark.parametrize("key", [None, bytes(16)])
def test_quic_lb_cids_keep_no_state_and_linear_work_n_vs_4n(key: bytes | None) -> None:
    """Issuing and reading CIDs holds nothing (4N CIDs retain what N do) and the AES
    work is linear: four rounds to make a CID, at most four to read its server ID."""
    lb = QuicLbConfig(1, b"\x01\x02\x03", 5, key, random_bytes=_rng())
    n = 2_000

    def one() -> None:
        assert lb.is_ours(lb.token_bytes(lb.cid_length))

    assert _retained_by(one, 4 * n) <= _retained_by(one, n) + 512
    counting = _CountingFourPass(1, 3, 5, bytes(16))

    def rounds(count: int) -> int:
        counting.rounds = 0
        for _ in range(count):
            counting.server_id_of(counting.generate(b"\x01\x02\x03", _rng()))
        return counting.rounds

    assert rounds(4 * n) == 4 * rounds(n) == 4 * n * (4 + 3)
