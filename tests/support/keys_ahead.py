"""Which keys a handshake found made ahead (:class:`quic.tls.groups.KeyReserve`)."""

from __future__ import annotations

import pytest

from quic.tls.groups import KeyReserve


def record_takes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per key taken from a reserve, in order: whether one of its kind was ready there."""
    ready: list[bool] = []
    real_x25519, real_mlkem = KeyReserve.x25519, KeyReserve.mlkem

    def x25519(self: KeyReserve) -> object:
        ready.append(bool(self._x25519))
        return real_x25519(self)

    def mlkem(self: KeyReserve) -> object:
        ready.append(bool(self._mlkem))
        return real_mlkem(self)

    monkeypatch.setattr(KeyReserve, "x25519", x25519)
    monkeypatch.setattr(KeyReserve, "mlkem", mlkem)
    return ready
