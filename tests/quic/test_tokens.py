"""Address validation tokens (quic/tokens.py): RFC 9000 §8.1.1-§8.1.4.

The minter on a fake clock: Retry and NEW_TOKEN tokens round-trip, expire, are bound
to the client's address (IP and port for Retry, IP only for NEW_TOKEN), cannot be
tampered with or mistaken for each other, and the key table stays bounded; the client's
token store is bounded and never hands a token out twice.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from quic.tokens import (
    TokenKind,
    TokenMinter,
    TokenStore,
    address_binding,
    token_kind,
    token_store_key,
)

ADDR = ("192.0.2.7", 40000)
ODCID = bytes(range(8))
RSCID = bytes(range(8, 16))


def _minter(rng: random.Random | None = None, **kwargs: float) -> TokenMinter:
    rng = rng or random.Random(1)
    kwargs.setdefault("retry_lifetime", 10.0)
    kwargs.setdefault("new_token_lifetime", 86400.0)
    kwargs.setdefault("key_rotation", 3600.0)
    return TokenMinter(random_bytes=rng.randbytes, **kwargs)


def test_retry_token_round_trip() -> None:
    minter = _minter()
    token = minter.mint_retry(ADDR, ODCID, RSCID, 100.0)
    assert token_kind(token) is TokenKind.RETRY
    opened = minter.open_retry(token, ADDR, 101.0)
    assert opened is not None
    assert (opened.original_dcid, opened.retry_scid, opened.issued) == (ODCID, RSCID, 100.0)


def test_retry_token_expires_on_the_fake_clock() -> None:
    minter = _minter()
    token = minter.mint_retry(ADDR, ODCID, RSCID, 100.0)
    assert minter.open_retry(token, ADDR, 110.0) is not None
    assert minter.open_retry(token, ADDR, 110.001) is None  # RFC 9000 §8.1.4: short-lived
    assert minter.open_retry(token, ADDR, 99.0) is None  # from the future: not ours


def test_new_token_expires_on_the_fake_clock() -> None:
    minter = _minter(new_token_lifetime=3600.0)
    token = minter.mint_new_token(ADDR, 0.0)
    assert token_kind(token) is TokenKind.NEW_TOKEN
    assert minter.check_new_token(token, ADDR, 3600.0)
    assert not minter.check_new_token(token, ADDR, 3600.5)  # RFC 9000 §8.1.3: expires


def test_retry_token_bound_to_ip_and_port() -> None:
    minter = _minter()
    token = minter.mint_retry(ADDR, ODCID, RSCID, 0.0)
    assert minter.open_retry(token, ("192.0.2.8", 40000), 1.0) is None  # another IP
    assert minter.open_retry(token, ("192.0.2.7", 40001), 1.0) is None  # another port
    assert minter.open_retry(token, ("::ffff:192.0.2.7", 40000, 0, 0), 1.0) is not None


def test_new_token_bound_to_ip_only() -> None:
    minter = _minter()
    token = minter.mint_new_token(ADDR, 0.0)
    assert minter.check_new_token(token, ("192.0.2.7", 50000), 1.0)  # a later port
    assert not minter.check_new_token(token, ("192.0.2.8", 40000), 1.0)
    assert not minter.check_new_token(token, ("2001:db8::7", 40000, 0, 0), 1.0)


def test_kinds_are_not_interchangeable() -> None:
    """RFC 9000 §8.1.1, §8.1.3: a NEW_TOKEN token is never accepted as a Retry token
    and the other way round, even with the kind byte rewritten (it is authenticated)."""
    minter = _minter()
    retry = minter.mint_retry(ADDR, ODCID, RSCID, 0.0)
    new = minter.mint_new_token(ADDR, 0.0)
    assert not minter.check_new_token(retry, ADDR, 1.0)
    assert minter.open_retry(new, ADDR, 1.0) is None
    relabelled_retry = bytes((TokenKind.NEW_TOKEN,)) + retry[1:]
    relabelled_new = bytes((TokenKind.RETRY,)) + new[1:]
    assert not minter.check_new_token(relabelled_retry, ADDR, 1.0)
    assert minter.open_retry(relabelled_new, ADDR, 1.0) is None


def test_every_tampered_byte_is_rejected() -> None:
    minter = _minter()
    retry = minter.mint_retry(ADDR, ODCID, RSCID, 0.0)
    new = minter.mint_new_token(ADDR, 0.0)
    for i in range(len(retry)):
        bad = bytearray(retry)
        bad[i] ^= 0x40
        assert minter.open_retry(bytes(bad), ADDR, 1.0) is None, i
    for i in range(len(new)):
        bad = bytearray(new)
        bad[i] ^= 0x40
        assert not minter.check_new_token(bytes(bad), ADDR, 1.0), i
    assert minter.open_retry(retry[:-1], ADDR, 1.0) is None
    assert minter.open_retry(retry + b"\x00", ADDR, 1.0) is None
    assert minter.open_retry(b"", ADDR, 1.0) is None


def test_another_servers_token_is_rejected() -> None:
    """A token sealed with another key (another server, or a restarted one) fails."""
    ours, theirs = _minter(random.Random(1)), _minter(random.Random(2))
    assert theirs.open_retry(ours.mint_retry(ADDR, ODCID, RSCID, 0.0), ADDR, 1.0) is None
    assert not theirs.check_new_token(ours.mint_new_token(ADDR, 0.0), ADDR, 1.0)


def test_tokens_are_unique() -> None:
    """RFC 9000 §8.1.3: tokens are not linkable; a random nonce per token."""
    minter = _minter(random.Random())
    tokens = {minter.mint_new_token(ADDR, 0.0) for _ in range(1000)}
    assert len(tokens) == 1000


def test_key_rotation_keeps_old_tokens_valid_and_the_key_table_bounded() -> None:
    minter = _minter(retry_lifetime=10.0, new_token_lifetime=100.0, key_rotation=10.0)
    first = minter.mint_new_token(ADDR, 0.0)
    peak = 0
    now = 0.0
    for step in range(1, 2000):
        now = step * 1.0
        minter.mint_retry(ADDR, ODCID, RSCID, now)
        peak = max(peak, minter.key_count)
        if now <= 100.0:
            assert minter.check_new_token(first, ADDR, now)  # rotated, still valid
    assert not minter.check_new_token(first, ADDR, now)
    assert peak <= minter.max_keys == 12
    assert minter.key_count >= 2  # retired keys are kept while their tokens may live


def test_key_rotation_is_raised_to_fit_the_key_ids() -> None:
    minter = _minter(new_token_lifetime=86400.0, key_rotation=1.0)
    assert minter.max_keys <= 200
    peak = 0
    for step in range(0, 2 * 86400, 60):
        minter.mint_new_token(ADDR, float(step))
        peak = max(peak, minter.key_count)
    assert peak <= minter.max_keys
    token = minter.mint_new_token(ADDR, 2 * 86400.0)
    assert minter.check_new_token(token, ADDR, 2 * 86400.0 + 1)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_minter_rejects_bad_lifetimes(value: float) -> None:
    for key in ("retry_lifetime", "new_token_lifetime", "key_rotation"):
        with pytest.raises(ValueError):
            _minter(**{key: value})


def test_token_kind_of_foreign_tokens() -> None:
    assert token_kind(b"") is None
    assert token_kind(b"\x52" * 10) is None  # too short to be ours
    assert token_kind(b"\x00" * 64) is None


def test_address_binding_forms() -> None:
    assert address_binding(("10.0.0.1", 5), True) == bytes((10, 0, 0, 1)) + b"|5"
    assert address_binding(("10.0.0.1", 5), False) == bytes((10, 0, 0, 1))
    assert address_binding(("fe80::1%eth0", 5, 0, 2), False) == address_binding(
        ("fe80::1", 9), False
    )
    assert address_binding(("not-an-ip", 5), False) == b"not-an-ip"
    assert address_binding("unix", True) == b"'unix'|"


def test_address_binding_packs_as_ipaddress_does() -> None:
    """The bytes are the address's packed form (an IPv4-mapped IPv6 address binds as
    its IPv4 address, so a dual-stack socket's token fits either form), as
    ``ipaddress`` gives them."""
    for host in ("127.0.0.1", "192.0.2.255", "::1", "2001:db8::8:800:200c:417a", "fe80::1"):
        assert address_binding((host, 1), False) == ipaddress.ip_address(host).packed
    assert address_binding(("::ffff:192.0.2.1", 1), False) == bytes((192, 0, 2, 1))
    assert address_binding(("::ffff:192.0.2.1", 1), False) == address_binding(
        ("192.0.2.1", 2), False
    )
    assert address_binding(("::FFFF:192.0.2.1", 1), False) == bytes((192, 0, 2, 1))
    assert address_binding(("::ffff:c000:201", 1), False) == bytes((192, 0, 2, 1))
    for odd in ("1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.\u00b2", "::g", "a\x00b", ""):
        assert address_binding((odd, 1), False) == odd.encode()  # not an IP: the text


# -- the client's token store (RFC 9000 §8.1.3) -------------------------------------


def test_store_take_returns_newest_and_never_twice() -> None:
    store = TokenStore()
    key = token_store_key("example.com", ("192.0.2.1", 443))
    assert key == "example.com|443"
    store.put(key, b"a")
    store.put(key, b"b")
    store.put(key, b"b")  # a NEW_TOKEN retransmitted (§19.7): kept once
    store.put(key, b"")  # nothing to keep
    assert store.count(key) == 2
    assert store.take(key) == b"b"
    assert store.take(key) == b"a"
    assert store.take(key) is None
    assert len(store) == 0


def test_store_is_keyed_by_server() -> None:
    store = TokenStore()
    store.put(token_store_key(None, ("192.0.2.1", 443)), b"x")
    assert store.take(token_store_key(None, ("192.0.2.1", 444))) is None
    assert store.take(token_store_key("other", ("192.0.2.1", 443))) is None
    assert store.take(token_store_key(None, ("192.0.2.1", 443))) == b"x"


@pytest.mark.parametrize("n", [1000, 4000])
def test_store_is_bounded(n: int) -> None:
    """However many servers and tokens a client sees, the store holds at most
    max_servers x max_tokens_per_server; the least recently used server goes first."""
    store = TokenStore(max_servers=16, max_tokens_per_server=3)
    for i in range(n):
        store.put(f"s{i // 5}", i.to_bytes(4, "big"))  # five tokens from each server
    assert len(store) == 16
    assert sum(store.count(f"s{i}") for i in range(n // 5)) == 16 * 3
    assert store.count(f"s{n // 5 - 17}") == 0  # the least recently used: gone
    assert store.take(f"s{n // 5 - 1}") == (n - 1).to_bytes(4, "big")


def test_store_rejects_zero_bounds() -> None:
    with pytest.raises(ValueError):
        TokenStore(max_servers=0)
    with pytest.raises(ValueError):
        TokenStore(max_tokens_per_server=0)
