"""The endpoint's address validation path: Retry and tokens (RFC 9000 §8.1, §17.2.5).

Theory of operation
-------------------
:class:`AddressValidator` belongs to a server :class:`~quic.endpoint.QuicEndpoint`.
The endpoint asks it about every Initial packet that would open a new connection
(:meth:`AddressValidator.check_initial`), before any connection exists, and it answers
with an :class:`InitialVerdict`, keeping no state of its own for the packet:

* a **Retry token** (one with the form of ours: :meth:`~quic.tokens.TokenMinter.
  looks_like_retry` — its kind byte, a key id we hold, a Retry token's length; a
  token of another kind or server is not treated as one) that is valid — ours, from the
  same IP address and port, not expired, minted for this Initial's Destination
  Connection ID — admits the connection with its address validated (§8.1.2) and the
  connection IDs the transport parameters must carry (``original_destination_
  connection_id`` from the token and ``retry_source_connection_id``, §7.3). The client
  will not accept a second Retry and the connection cannot go on without those IDs, so
  any other Retry token (forged, tampered with, replayed from another address, expired)
  is answered — if the Initial packet authenticates, i.e. "is otherwise valid" — with a
  stateless Initial packet holding CONNECTION_CLOSE with INVALID_TOKEN, as RFC 9000
  §8.1.2 recommends (SHOULD) over letting the client time out; the server "has not
  established any state for the connection" and keeps none. An Initial that does not
  authenticate gets nothing (§12.2, §21.2). The close is smaller than the 1200-byte
  datagram that triggered it, so it amplifies nothing (§8.1).
* a valid **NEW_TOKEN token** (same IP address, any port, not expired) admits the
  connection with its address validated: no anti-amplification limit and no Retry
  (§8.1.3). Anything else in the Token field — a NEW_TOKEN token that is invalid,
  expired or from another IP address, or a token that is not ours — is treated as no
  token at all (§8.1.3: "proceed as if the client did not have a validated address,
  including potentially sending a Retry packet").
* without a usable token, the Initial gets a **Retry** when Retry is required —
  ``QuicConfiguration.retry`` is ``"always"``, or ``"auto"`` and at least
  ``retry_threshold`` handshakes are in flight (the endpoint's half-open count) — and
  is admitted, unvalidated, otherwise. A Retry costs no connection, no TLS work and no
  decryption: a new random Source Connection ID, a token sealed for the client's
  address, the integrity tag (RFC 9001 §5.8). It is one packet per datagram (§17.2.5.1)
  and smaller than the datagram it answers.

Tokens come from a :class:`~quic.tokens.TokenMinter` held here; a connection the
endpoint admits gets :meth:`AddressValidator.issue_new_token` to mint the NEW_TOKEN it
sends once its handshake is complete (§8.1.3).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quic.configuration import QuicConfiguration
from quic.errors import TransportErrorCode
from quic.frames import encode_connection_close_frame
from quic.packet import PacketHeader, PacketType, encode_retry
from quic.packet_builder import MIN_INITIAL_DATAGRAM, PacketAssembler
from quic.protection import DecryptionError, append_retry_integrity_tag, initial_keys
from quic.tokens import TokenKind, TokenMinter, token_kind

__all__ = ["RETRY_MODES", "AddressValidator", "InitialVerdict"]

#: values of ``QuicConfiguration.retry``
RETRY_MODES = ("never", "always", "auto")

_MIN_SERVER_CID = 8  # RFC 9000 §7.2: the client's next DCID, as unpredictable as its first


@dataclass(frozen=True, slots=True)
class InitialVerdict:
    """What to do with an Initial that would open a connection.

    ``reply``: a stateless packet to send back (Retry, or CONNECTION_CLOSE); nothing is
    kept. ``admit``: open the connection, with ``original_dcid`` and ``retry_scid`` for
    its transport parameters (None: no Retry happened) and ``validated`` if a token
    proved the client's address. Neither: drop the datagram.
    """

    admit: bool = False
    validated: bool = False
    original_dcid: bytes | None = None
    retry_scid: bytes | None = None
    reply: bytes | None = None


_DROP = InitialVerdict()
_ADMIT = InitialVerdict(admit=True)
_ADMIT_VALIDATED = InitialVerdict(admit=True, validated=True)


class AddressValidator:
    """Retry, token checks and NEW_TOKEN minting of one server endpoint."""

    def __init__(
        self,
        config: QuicConfiguration,
        cid_length: int,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if config.retry not in RETRY_MODES:
            raise ValueError(f"retry must be one of {RETRY_MODES}, not {config.retry!r}")
        self.mode = config.retry
        self.threshold = config.retry_threshold
        self.send_new_token = config.send_new_token
        self._cid_length = max(_MIN_SERVER_CID, cid_length)
        self._random = random_bytes
        self.minter = TokenMinter(
            retry_lifetime=config.retry_token_lifetime,
            new_token_lifetime=config.new_token_lifetime,
            key_rotation=config.token_key_rotation,
            random_bytes=random_bytes,
        )
        # counters (observability and tests)
        self.retries = 0  # Retry packets made
        self.invalid_tokens = 0  # Initials closed with INVALID_TOKEN
        self.retry_validated = 0  # connections admitted with a valid Retry token
        self.token_validated = 0  # connections admitted with a valid NEW_TOKEN token

    def retry_required(self, half_open: int) -> bool:
        """Does an Initial without a usable token get a Retry now?"""
        mode = self.mode
        return mode == "always" or (mode == "auto" and half_open >= self.threshold)

    def check_initial(
        self, header: PacketHeader, data: bytes, addr: Any, half_open: int, now: float
    ) -> InitialVerdict:
        """The verdict on a new connection's first Initial (see the module docstring)."""
        token = header.token
        if token:
            if self.minter.looks_like_retry(token, self._cid_length):
                return self._check_retry_token(header, data, addr, now)
            if token_kind(token) is TokenKind.NEW_TOKEN and self.minter.check_new_token(
                token, addr, now
            ):
                self.token_validated += 1
                return _ADMIT_VALIDATED  # RFC 9000 §8.1.3
        if self.retry_required(half_open):
            return InitialVerdict(reply=self._retry(header, addr, now))
        return _ADMIT

    def issue_new_token(self, addr: Any, now: float) -> bytes:
        """A NEW_TOKEN token for the client at ``addr`` (RFC 9000 §8.1.3)."""
        return self.minter.mint_new_token(addr, now)

    # -- Retry (RFC 9000 §8.1.2, §17.2.5) ---------------------------------------------

    def _retry(self, header: PacketHeader, addr: Any, now: float) -> bytes:
        assert header.version is not None
        scid = self._random(self._cid_length)
        while scid == header.dcid:  # RFC 9000 §17.2.5.1: MUST NOT equal the client's DCID
            scid = self._random(self._cid_length)
        token = self.minter.mint_retry(addr, header.dcid, scid, now)
        packet = encode_retry(
            header.version, header.scid, scid, token, first_byte_random=self._random(1)[0]
        )
        self.retries += 1
        return append_retry_integrity_tag(header.version, header.dcid, packet)  # RFC 9001 §5.8

    def _check_retry_token(
        self, header: PacketHeader, data: bytes, addr: Any, now: float
    ) -> InitialVerdict:
        opened = self.minter.open_retry(header.token, addr, now)
        if opened is not None and opened.retry_scid == header.dcid:
            self.retry_validated += 1
            return InitialVerdict(
                admit=True,
                validated=True,
                original_dcid=opened.original_dcid,
                retry_scid=opened.retry_scid,
            )
        if not _authentic(header, data):
            return _DROP  # RFC 9000 §12.2, §21.2: not authenticated, discarded
        self.invalid_tokens += 1
        return InitialVerdict(reply=_invalid_token_close(header))


def _authentic(header: PacketHeader, data: bytes) -> bool:
    """Does the Initial packet at the start of ``data`` authenticate (RFC 9001 §5.2)?"""
    assert header.version is not None
    _, read = initial_keys(header.version, header.dcid, is_client=False)
    try:
        read.decrypt_packet(memoryview(data)[: header.end], header.pn_offset, -1)
    except (DecryptionError, ValueError):
        return False
    return True


def _invalid_token_close(header: PacketHeader) -> bytes:
    """A stateless Initial packet with CONNECTION_CLOSE (INVALID_TOKEN), RFC 9000
    §8.1.2, §10.2.3; not ack-eliciting, so not padded (§14.1)."""
    assert header.version is not None
    write, _ = initial_keys(header.version, header.dcid, is_client=False)
    asm = PacketAssembler(MIN_INITIAL_DATAGRAM)
    asm.begin_datagram(MIN_INITIAL_DATAGRAM)
    opened = asm.begin_packet(
        PacketType.INITIAL, header.version, header.scid, header.dcid, write, 0, 0, None
    )
    assert opened  # an empty datagram always has room
    asm.push(encode_connection_close_frame(TransportErrorCode.INVALID_TOKEN, 0, b""))
    asm.end_packet()
    asm.end_datagram(pad_initial=False)
    return asm.datagrams[0]
