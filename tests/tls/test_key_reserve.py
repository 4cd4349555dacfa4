"""Ephemeral keys made ahead (:class:`quic.tls.groups.KeyReserve`, "Keys made ahead"):
each handed out once, made only for the kinds a process takes, bounded, and never a
parent's key in a forked child."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from quic.tls.groups import (
    KEYS_AHEAD,
    RESERVE_SIZE,
    KeyReserve,
    NamedGroup,
    generate_key_share,
    server_key_exchange,
)


def _x25519_public(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_a_key_made_ahead_is_handed_out_once() -> None:
    reserve = KeyReserve()
    assert not reserve.wanted and reserve.refill() == 0  # nothing taken: nothing made
    first, public = reserve.x25519()  # none ahead: made there and then
    assert public == _x25519_public(first)
    assert reserve.wanted and len(reserve) == 0
    assert reserve.refill() == RESERVE_SIZE and not reserve.wanted
    ahead = list(reserve._x25519)
    taken, taken_public = reserve.x25519()
    assert (taken, taken_public) == ahead[-1] and len(reserve) == RESERVE_SIZE - 1
    seen = {public, taken_public}
    for _ in range(20):  # taken and refilled: every public key new
        reserve.refill()
        key, key_public = reserve.x25519()
        assert key_public == _x25519_public(key) and key_public not in seen
        seen.add(key_public)


def test_only_the_kinds_taken_are_made_ahead() -> None:
    reserve = KeyReserve()
    reserve.x25519()
    assert reserve.refill() == RESERVE_SIZE
    assert len(reserve._x25519) == RESERVE_SIZE and not reserve._mlkem  # no ML-KEM key
    assert reserve.refill() == 0  # nothing taken since
    key, encapsulation_key = reserve.mlkem()
    assert encapsulation_key == key.public_key().public_bytes_raw()
    assert len(encapsulation_key) == 1184
    assert reserve.refill() == RESERVE_SIZE and len(reserve._mlkem) == RESERVE_SIZE
    assert len(reserve._x25519) == RESERVE_SIZE  # untouched: none taken


@pytest.mark.parametrize("takes", [25, 100])
def test_the_reserve_stays_bounded(takes: int) -> None:
    """N and 4N takes, each kind, refilled after each: never above the bound."""
    reserve = KeyReserve()
    for _ in range(takes):
        reserve.x25519()
        reserve.refill()
        assert len(reserve) <= 2 * RESERVE_SIZE
    for _ in range(takes // 25):  # ML-KEM keys are costlier: fewer
        reserve.mlkem()
        reserve.refill()
        assert len(reserve) <= 2 * RESERVE_SIZE


@pytest.mark.parametrize("group", [NamedGroup.x25519, NamedGroup.X25519MLKEM768])
def test_handshakes_take_their_keys_from_the_reserve(group: NamedGroup) -> None:
    """A client share and a server's answer made from keys made ahead: the reserve
    gives them up and the exchange agrees on the secret."""
    KEYS_AHEAD.clear()
    generate_key_share(group)  # takes (nothing ahead yet), so the refill makes some
    KEYS_AHEAD.refill()
    ahead = {public for _, public in KEYS_AHEAD._x25519}
    assert ahead and (group is NamedGroup.x25519) == (not KEYS_AHEAD._mlkem)
    share = generate_key_share(group)
    assert share.public[-32:] in ahead and not KEYS_AHEAD._x25519 and not KEYS_AHEAD._mlkem
    KEYS_AHEAD.refill()
    ahead = {public for _, public in KEYS_AHEAD._x25519}
    server_public, secret = server_key_exchange(group, share.public)
    assert server_public[-32:] in ahead  # the server's X25519 key too
    assert share.shared_secret(server_public) == secret


def test_keys_made_in_another_process_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork the hook did not see: the reserve notices the process changed."""
    reserve = KeyReserve()
    reserve.x25519()
    reserve.mlkem()
    reserve.refill()
    parents = {public for _, public in reserve._x25519 + reserve._mlkem}
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert reserve.x25519()[1] not in parents and reserve.mlkem()[1] not in parents
    reserve.refill()
    assert not parents & {public for _, public in reserve._x25519 + reserve._mlkem}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_starts_with_an_empty_reserve() -> None:
    KEYS_AHEAD.clear()
    KEYS_AHEAD.x25519()
    KEYS_AHEAD.refill()
    assert len(KEYS_AHEAD) == RESERVE_SIZE
    pid = os.fork()
    if pid == 0:  # the child: the hook emptied it
        os._exit(0 if len(KEYS_AHEAD) == 0 and not KEYS_AHEAD.wanted else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(KEYS_AHEAD) == RESERVE_SIZE  # the parent keeps its own
