"""What a QUIC endpoint answers without a connection (RFC 9000 §5.2.2, §6.1, §8.1, §10.3).

Theory of operation
-------------------
:class:`StatelessReplies` is owned by :class:`~quic.endpoint.QuicEndpoint`. The
endpoint hands it every datagram that no connection claims (:meth:`unknown`); it keeps
no state for any of them beyond a bounded queue of replies:

* a short header gets a Stateless Reset (§10.3) when it could be a packet of a
  connection we forgot; :class:`~quic.stateless_reset.StatelessResetter` sizes and
  rate-limits them (§10.3.3) and derives every token from one static key;
* a long header of a version we do not speak gets a Version Negotiation packet, only
  if the datagram is at least 1200 bytes (§6.1, §14.1) and is not itself a VN;
* an Initial of a supported version, in a datagram of at least 1200 bytes (§14.1) with
  a Destination Connection ID of at least 8 bytes (§7.2), is returned to the endpoint,
  which applies its admission limits and then asks :meth:`validate` — address
  validation (:mod:`quic.retry`, §8.1): a stateless Retry or INVALID_TOKEN close, a
  drop, or a verdict that admits it;
* anything else is dropped and counted (garbage never raises).

The replies wait in one queue, at most ``max_pending_stateless_packets`` long (a full
queue drops the trigger instead: replying is work an attacker chooses, §21.1.1.2), and
leave it with :meth:`take`, which the endpoint calls first on each transmit. Every drop
and refusal is counted here and logged to the endpoint's qlog (``packet_dropped``), as
is every reply sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quic.configuration import QuicConfiguration
from quic.errors import QuicProtocolError
from quic.packet import PacketHeader, PacketType, encode_version_negotiation, parse_header
from quic.qlog_endpoint import EndpointLogger
from quic.retry import AddressValidator, InitialVerdict
from quic.stateless_reset import StatelessResetter

__all__ = ["StatelessReplies"]

_MIN_INITIAL = 1200  # RFC 9000 §14.1
_GREASE_VERSION = 0x1A2A3A4A  # RFC 9000 §15: reserved versions exercise negotiation
_CLIENT_QUEUE = 256  # a client endpoint has no configuration for it: resets only


class StatelessReplies:
    """The endpoint's stateless path: VN, Retry, INVALID_TOKEN, Stateless Reset, drops."""

    __slots__ = (
        "_limit",
        "_queue",
        "_resetter",
        "config",
        "connection_id_length",
        "dropped",
        "pending",
        "qlog",
        "refused",
        "resets_sent",
        "resets_suppressed",
        "validator",
    )

    def __init__(
        self,
        config: QuicConfiguration | None,
        connection_id_length: int,
        token_bytes: Callable[[int], bytes],
        qlog: EndpointLogger | None,
    ) -> None:
        self.config = config
        self.connection_id_length = connection_id_length
        #: Retry and address validation tokens (:mod:`quic.retry`); None for a client
        self.validator: AddressValidator | None = (
            AddressValidator(config, connection_id_length, token_bytes)
            if config is not None
            else None
        )
        key = config.stateless_reset_key if config is not None else None
        self._resetter = StatelessResetter(  # RFC 9000 §10.3 (quic.stateless_reset)
            key if key else token_bytes(32),
            connection_id_length,
            float(config.stateless_reset_burst if config else 64),
            config.stateless_reset_rate if config else 32.0,
            token_bytes,
        )
        self.qlog = qlog
        self._queue: list[tuple[bytes, Any]] = []
        #: Replies wait to be sent (an attribute kept with the queue: read per transmit).
        self.pending = False
        self._limit = config.max_pending_stateless_packets if config else _CLIENT_QUEUE
        self.dropped = 0  # datagrams dropped: garbage, unroutable, too small, not authentic
        self.refused = 0  # Initials refused by an admission limit
        self.resets_sent = 0  # Stateless Resets sent (RFC 9000 §10.3)
        self.resets_suppressed = 0  # ... not sent: rate limit or queue full

    # -- the queue ------------------------------------------------------------------------

    def take(self) -> list[tuple[bytes, Any]]:
        """The replies to send, ``(data, addr)``; the queue is left empty."""
        queue = self._queue
        self._queue = []
        self.pending = False
        return queue

    # -- counting and logging -------------------------------------------------------------

    def drop(self, now: float, trigger: str, data: bytes, reason: str | None = None) -> None:
        """Count a datagram dropped without a connection; log it (``packet_dropped``)."""
        self.dropped += 1
        if self.qlog is not None:
            self.qlog.datagram_dropped(now, trigger, data, reason)

    def refuse(self, now: float, data: bytes, reason: str) -> None:
        """Count an Initial refused by an admission limit; log it (trigger ``rejected``)."""
        self.refused += 1
        if self.qlog is not None:
            self.qlog.datagram_dropped(now, "rejected", data, reason)

    # -- the unrouted datagram ------------------------------------------------------------

    def unknown(self, data: bytes, addr: Any, now: float) -> PacketHeader | None:
        """A datagram no connection claims: answered or dropped here (None), or the
        header of an Initial that may open a server connection."""
        try:
            header = parse_header(data, 0, self.connection_id_length)
        except QuicProtocolError:
            self.drop(now, "invalid", data, "bad header")
            return None
        if not header.is_long:
            self._stateless_reset(data, header.dcid, addr, now)  # RFC 9000 §10.3
            return None
        if header.version == 0:
            self.drop(now, "connection_unknown", data)  # a VN for nobody (§6.1)
            return None
        config = self.config
        versions = config.supported_versions if config is not None else ()
        if header.version not in versions:
            if config is not None and len(data) >= _MIN_INITIAL and len(self._queue) < self._limit:
                vn = encode_version_negotiation(
                    header.scid, header.dcid, [*versions, _GREASE_VERSION], 0x15
                )
                self._queue.append((vn, addr))  # RFC 9000 §6.1
                self.pending = True
                if self.qlog is not None:
                    self.qlog.stateless_packet_sent(now, vn)
            else:
                self.drop(now, "unsupported", data)  # too small for a VN reply
            return None
        if (
            config is None
            or header.packet_type is not PacketType.INITIAL
            or len(data) < _MIN_INITIAL  # RFC 9000 §14.1
            or len(header.dcid) < 8  # RFC 9000 §7.2
        ):
            self.drop(now, "connection_unknown", data)
            return None
        return header

    def validate(
        self, header: PacketHeader, data: bytes, addr: Any, half_open: int, now: float
    ) -> InitialVerdict | None:
        """Address validation of an admissible Initial (RFC 9000 §8.1, :mod:`quic.retry`):
        the verdict that admits it, or None when it was answered statelessly (Retry,
        INVALID_TOKEN) or dropped."""
        validator = self.validator
        assert validator is not None and header.version is not None
        verdict = validator.check_initial(header, data, addr, half_open, now)
        if verdict.reply is not None:
            if len(self._queue) < self._limit:
                self._queue.append((verdict.reply, addr))
                self.pending = True
                if self.qlog is not None:  # Retry or INVALID_TOKEN close
                    self.qlog.stateless_packet_sent(now, verdict.reply)
            else:
                self.drop(now, "rejected", data, "stateless queue full")
            return None
        if not verdict.admit:
            self.drop(now, "rejected", data, "address validation")
            return None
        return verdict

    # -- stateless reset (RFC 9000 §10.3) -------------------------------------------------

    def reset_token(self, cid: bytes) -> bytes:
        """The stateless reset token of ``cid`` (RFC 9000 §10.3.2)."""
        return self._resetter.token(cid)

    def _stateless_reset(self, data: bytes, dcid: bytes, addr: Any, now: float) -> None:
        """Answer a short-header datagram of an unknown connection (quic.stateless_reset
        has the size and rate rules)."""
        reset = self._resetter.reset_for(data, dcid, now, len(self._queue) < self._limit)
        if reset == "too small":
            self.drop(now, "connection_unknown", data)  # too small for a reset
        elif isinstance(reset, str):
            self.resets_suppressed += 1  # RFC 9000 §10.3.3: a bounded number of resets
            self.drop(now, "rejected", data, "reset rate limit")
        else:
            self._queue.append((reset, addr))
            self.pending = True
            self.resets_sent += 1
            if self.qlog is not None:
                self.qlog.stateless_reset_sent(now, reset)
