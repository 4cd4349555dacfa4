"""Property tests for address validation tokens (RFC 9000 §8.1.1-§8.1.4) and the
server's verdict on a new connection's Initial (quic/retry.py).

Arbitrary Token fields never raise and never validate an address; a genuine token opens
only for its own address, kind and lifetime, and any change to it makes it invalid.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.packet import PacketType, parse_header
from quic.packet_builder import PacketAssembler
from quic.protection import initial_keys
from quic.retry import AddressValidator
from quic.tokens import TokenKind, TokenMinter, token_kind
from quic.versions import QuicVersion
from tests.support.quicpair import server_config

V1 = int(QuicVersion.VERSION_1)

ADDR = ("192.0.2.1", 4000)
addresses = st.tuples(
    st.sampled_from(["192.0.2.1", "192.0.2.2", "::1", "2001:db8::1", "::ffff:192.0.2.1"]),
    st.integers(0, 65535),
)


def _minter() -> TokenMinter:
    return TokenMinter(
        retry_lifetime=10.0,
        new_token_lifetime=100.0,
        key_rotation=5.0,
        random_bytes=random.Random(3).randbytes,
    )


_MINTER = _minter()
_GENUINE = (
    _MINTER.mint_retry(ADDR, b"\x01" * 8, b"\x02" * 8, 0.0),
    _MINTER.mint_new_token(ADDR, 0.0),
)
kinds = st.sampled_from([TokenKind.RETRY, TokenKind.NEW_TOKEN, 0, 0xFF])
forged = st.builds(
    lambda kind, key_id, rest: bytes((kind, key_id)) + rest,
    kinds,
    st.one_of(st.just(0), st.integers(0, 255)),  # 0: the key id the minters below hold
    st.one_of(st.binary(max_size=120), st.binary(min_size=40, max_size=70)),
)


@settings(max_examples=examples(500))
@given(token=st.one_of(st.binary(max_size=200), forged), addr=addresses, now=st.floats(0, 200))
def test_arbitrary_tokens_never_raise_nor_validate(
    token: bytes, addr: tuple[str, int], now: float
) -> None:
    token_kind(token)
    assert _MINTER.open_retry(token, addr, now) is None
    assert not _MINTER.check_new_token(token, addr, now)


@settings(max_examples=examples(300))
@given(index=st.integers(0, 10_000), flip=st.integers(1, 255), which=st.integers(0, 1))
def test_any_change_to_a_genuine_token_invalidates_it(index: int, flip: int, which: int) -> None:
    token = bytearray(_GENUINE[which])
    token[index % len(token)] ^= flip
    assert _MINTER.open_retry(bytes(token), ADDR, 1.0) is None
    assert not _MINTER.check_new_token(bytes(token), ADDR, 1.0)


@settings(max_examples=examples(200), deadline=None)
@given(
    odcid=st.binary(min_size=0, max_size=20),
    rscid=st.binary(min_size=0, max_size=20),
    addr=addresses,
    other=addresses,
    issued=st.floats(0, 1000),
    age=st.floats(0, 20),
)
def test_retry_token_opens_only_where_and_when_it_should(
    odcid: bytes,
    rscid: bytes,
    addr: tuple[str, int],
    other: tuple[str, int],
    issued: float,
    age: float,
) -> None:
    minter = _minter()
    token = minter.mint_retry(addr, odcid, rscid, issued)
    opened = minter.open_retry(token, addr, issued + age)
    if age <= 10.0:
        assert opened is not None and (opened.original_dcid, opened.retry_scid) == (odcid, rscid)
    else:
        assert opened is None
    same = minter.open_retry(token, other, issued) is not None
    ip = lambda a: a[0].removeprefix("::ffff:")  # noqa: E731
    assert same == (ip(other) == ip(addr) and other[1] == addr[1])


_VALIDATORS = {
    mode: AddressValidator(server_config(retry=mode), 8, random.Random(4).randbytes)
    for mode in ("always", "never")
}
for _validator in _VALIDATORS.values():
    _validator.issue_new_token(ADDR, 0.0)  # a key (id 0) is held


def _initial(token: bytes, dcid: bytes) -> bytes:
    write, _ = initial_keys(V1, dcid, is_client=True)
    asm = PacketAssembler(1200)
    asm.begin_datagram(1200)
    assert asm.begin_packet(PacketType.INITIAL, V1, dcid, b"s", write, 0, 0, None, token=token)
    asm.push(b"\x01")  # PING
    asm.end_packet()
    asm.end_datagram(pad_initial=True)
    return asm.datagrams[0]


@settings(max_examples=examples(200), deadline=None)
@given(
    token=st.one_of(st.binary(min_size=1, max_size=100), forged),
    dcid=st.binary(min_size=8, max_size=20),
    mode=st.sampled_from(["always", "never"]),
    corrupt=st.booleans(),
)
def test_server_verdict_on_arbitrary_token(
    token: bytes, dcid: bytes, mode: str, corrupt: bool
) -> None:
    """An Initial with a Token that is not genuine is never admitted as validated: one
    with the form of our Retry tokens gets INVALID_TOKEN (or nothing if the packet
    does not authenticate, §8.1.2); anything else counts as no token (§8.1.3)."""
    data = bytearray(_initial(token, dcid))
    if corrupt:
        data[-1] ^= 1
    header = parse_header(bytes(data), 0, 8)
    verdict = _VALIDATORS[mode].check_initial(header, bytes(data), ADDR, 0, 1.0)
    assert not verdict.validated and verdict.original_dcid is None
    validator = _VALIDATORS[mode]
    if validator.minter.looks_like_retry(token, 8):  # a Retry token of ours, by its form
        assert not verdict.admit
        assert (verdict.reply is None) == corrupt
        if verdict.reply is not None:
            assert parse_header(verdict.reply, 0, 8).packet_type is PacketType.INITIAL
    elif mode == "always":
        assert verdict.reply is not None and not verdict.admit
        assert parse_header(verdict.reply, 0, 8).packet_type is PacketType.RETRY
    else:
        assert verdict.admit and verdict.reply is None


class TokenLifecycle(RuleBasedStateMachine):
    """A server minter over a fake clock: tokens are minted for clients, the clock
    moves, keys rotate; every token presented opens exactly when the model says so
    (its kind, its address — IP and port for Retry, IP for NEW_TOKEN — and its
    lifetime), and the key table never exceeds its bound."""

    def __init__(self) -> None:
        super().__init__()
        self.minter = TokenMinter(
            retry_lifetime=10.0,
            new_token_lifetime=60.0,
            key_rotation=7.0,
            random_bytes=random.Random(5).randbytes,
        )
        self.now = 0.0
        self.tokens: list[tuple[bytes, str, tuple[str, int], float]] = []

    @rule(addr=addresses, kind=st.sampled_from(["retry", "new"]))
    def mint(self, addr: tuple[str, int], kind: str) -> None:
        if kind == "retry":
            token = self.minter.mint_retry(addr, b"\x01" * 8, b"\x02" * 8, self.now)
        else:
            token = self.minter.mint_new_token(addr, self.now)
        if len(self.tokens) < 50:
            self.tokens.append((token, kind, addr, self.now))

    @rule(dt=st.floats(0.0, 30.0))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(
        index=st.integers(0, 49),
        where=st.sampled_from(["same", "other_port", "random"]),
        random_addr=addresses,
        flip=st.one_of(st.just(0), st.integers(1, 255)),
    )
    def present(self, index: int, where: str, random_addr: tuple[str, int], flip: int) -> None:
        if not self.tokens:
            return
        token, kind, minted_for, issued = self.tokens[index % len(self.tokens)]
        addr = {
            "same": minted_for,
            "other_port": (minted_for[0], (minted_for[1] + 1) % 65536),
            "random": random_addr,
        }[where]
        if flip:
            changed = bytearray(token)
            changed[flip % len(token)] ^= flip
            token = bytes(changed)

        def ip(a: tuple[str, int]) -> str:
            return a[0].removeprefix("::ffff:")

        same_ip = ip(addr) == ip(minted_for)
        if kind == "retry":
            expected = not flip and same_ip and addr[1] == minted_for[1]
            expected = expected and self.now <= issued + 10.0
            assert (self.minter.open_retry(token, addr, self.now) is not None) == expected
            assert not self.minter.check_new_token(token, addr, self.now)
        else:
            expected = not flip and same_ip and self.now <= issued + 60.0
            assert self.minter.check_new_token(token, addr, self.now) == expected
            assert self.minter.open_retry(token, addr, self.now) is None

    @invariant()
    def keys_bounded(self) -> None:
        assert self.minter.key_count <= self.minter.max_keys


TokenLifecycle.TestCase.settings = settings(
    max_examples=examples(100), stateful_step_count=30, deadline=None
)
TestTokenLifecycle = TokenLifecycle.TestCase
