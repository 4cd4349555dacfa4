"""Stateless Resets an endpoint sends (RFC 9000 §10.3): their tokens, size and rate.

Theory of operation
-------------------
:class:`StatelessResetter` is owned by :class:`~quic.endpoint.QuicEndpoint`. It gives
every connection ID the endpoint issues a stateless reset token derived from one static
key — HMAC-SHA256(key, connection ID), first 16 bytes (§10.3.2) — so a restarted server
with the same ``stateless_reset_key`` can still end its old connections, and it builds
the reset that answers a short-header datagram of an unknown connection:

* always shorter than the datagram that triggered it (§10.3.3: no loop between two
  endpoints resetting each other) and at most :data:`MAX_RESET` bytes, so it is not
  distinguishable from a packet by size; never below :data:`MIN_RESET` bytes (38
  unpredictable bits and the token, §10.3);
* none for a datagram too small to be a real 1-RTT packet of ours: one byte, our
  connection ID length, and :data:`MIN_SHORT_TAIL` bytes (a header-protection sample,
  RFC 9001 §5.4.2);
* at most ``burst`` at once, refilled at ``rate`` per second of the endpoint's clock (a
  token bucket, §10.3.3: "an endpoint MUST limit the number of Stateless Resets");
* the first byte looks like a short header, the rest before the token is random.

It keeps three numbers of state whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Callable

from quic.tls.hkdf import hmac_digest

__all__ = ["MAX_RESET", "MIN_RESET", "MIN_SHORT_TAIL", "StatelessResetter"]

MIN_RESET = 21  # RFC 9000 §10.3: 5 unpredictable bytes (38 bits) + a 16-byte token
MAX_RESET = 43  # RFC 9000 §10.3: not distinguishable from a packet (above 41 bytes)
MIN_SHORT_TAIL = 20  # smallest 1-RTT packet after its DCID: 4-byte sample offset + 16


class StatelessResetter:
    """Tokens and Stateless Resets of one endpoint (module docstring)."""

    __slots__ = ("_allowance", "_burst", "_cid_length", "_key", "_last", "_random", "_rate")

    def __init__(
        self,
        key: bytes,
        cid_length: int,
        burst: float,
        rate: float,
        token_bytes: Callable[[int], bytes],
    ) -> None:
        self._key = key
        self._cid_length = cid_length
        self._burst = burst
        self._rate = rate
        self._random = token_bytes
        self._allowance = burst
        self._last: float | None = None

    def token(self, cid: bytes) -> bytes:
        """The stateless reset token of ``cid`` (RFC 9000 §10.3.2)."""
        return hmac_digest(self._key, cid, "sha256")[:16]

    def reset_for(self, datagram: bytes, dcid: bytes, now: float, room: bool) -> bytes | str:
        """The Stateless Reset answering ``datagram`` (addressed to ``dcid``), or why
        none is sent: ``"too small"`` or ``"rate limit"`` (``room``: the caller can
        queue one more stateless packet; no allowance is spent otherwise)."""
        size = min(len(datagram) - 1, MAX_RESET)  # RFC 9000 §10.3, §10.3.3: smaller
        if len(datagram) < 1 + self._cid_length + MIN_SHORT_TAIL or size < MIN_RESET:
            return "too small"
        last = self._last
        allowance = self._allowance
        if last is not None and now > last:
            allowance = min(self._burst, allowance + (now - last) * self._rate)
        self._last = now if last is None or now > last else last
        if allowance < 1.0 or not room:
            self._allowance = allowance
            return "rate limit"
        self._allowance = allowance - 1.0
        unpredictable = bytearray(self._random(size - 16))
        unpredictable[0] = 0x40 | (unpredictable[0] & 0x3F)  # a short header (§10.3)
        return bytes(unpredictable) + self.token(dcid)
