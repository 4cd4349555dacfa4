"""Benchmark-only switches for the aioquic-family adapters (aioquic 1.7.2 and qh3 2.x).

Theory of operation
-------------------
* qh3 is a fork of aioquic with the same module layout (``qh3.asyncio``, ``qh3.quic``,
  ``qh3.h3``, ``qh3.tls``). :func:`alias_qh3_as_aioquic` registers qh3's modules under
  the ``aioquic`` names in ``sys.modules`` so one adapter source serves both stacks; it
  must run before the adapter imports ``aioquic`` (``benchmarks/qh3_*.py`` do that).
  It runs in qh3's interpreter, where aioquic is not installed.
* Key shares: neither library has a setting for the ClientHello's key shares. aioquic
  1.7.2 offers four (P-256, P-384, x25519, x448); qh3 2.1 offers a GREASE share, an
  X25519MLKEM768 share and x25519. :func:`offer_x25519_only` wraps ``tls.Context``'s
  constructor so a client offers (and supports) x25519 alone — the "matched key
  shares" configuration of the handshake row. Default configurations leave it alone.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

QH3_MODULES = (
    "",
    ".tls",
    ".buffer",
    ".quic",
    ".quic.configuration",
    ".quic.connection",
    ".quic.events",
    ".quic.packet",
    ".quic.logger",
    ".asyncio",
    ".asyncio.protocol",
    ".asyncio.client",
    ".asyncio.server",
    ".h3",
    ".h3.connection",
    ".h3.events",
    ".h3.exceptions",
)


def alias_qh3_as_aioquic() -> str:
    """Make ``import aioquic.x`` load ``qh3.x``; returns qh3's version."""
    for suffix in QH3_MODULES:
        try:
            module = importlib.import_module("qh3" + suffix)
        except ImportError:
            continue
        sys.modules["aioquic" + suffix] = module
    version: str = getattr(sys.modules["aioquic"], "__version__", "?")
    return version


def offer_x25519_only() -> None:
    """Clients created from now on offer only an x25519 key share."""
    tls: Any = importlib.import_module("aioquic.tls")
    original = tls.Context.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._supported_groups = [tls.Group.X25519]

    tls.Context.__init__ = init


def default_key_shares() -> str:
    """The library's own client key shares, for the report."""
    if "qh3" in getattr(sys.modules.get("aioquic"), "__name__", "aioquic"):
        return "qh3 default: GREASE + X25519MLKEM768 + x25519"
    return "aioquic default: P-256 + P-384 + x25519 + x448"
