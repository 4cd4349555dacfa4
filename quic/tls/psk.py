"""Resumption PSKs: binders, the server's ticket decisions, tickets in and out.

Theory of operation
-------------------
The rules of session resumption shared by :mod:`quic.tls.client` and
:mod:`quic.tls.server` (RFC 9846 §2.2, §4.3.10, §4.3.11, §4.7.1, §8; RFC 9001 §4.5,
§4.6), kept here so that the two state machines only call them:

* Binders (RFC 9846 §4.3.11.2): an HMAC, keyed with the ``res binder`` key of the PSK,
  over the transcript up to and including the ClientHello truncated before its binders
  list. :func:`binder_for` computes it for the client (which writes it into the
  ClientHello it sends, :func:`with_binder`) and the server (which compares).
* The server opens the ticket of the first PSK identity (:func:`open_ticket`): a
  ticket that does not open, is past its lifetime or was issued for another cipher
  suite hash or server name is an unknown PSK and ignored (full handshake, §4.3.11).
  A ticket that opens but whose binder does not verify aborts with ``decrypt_error``
  (§4.3.11.2, §6.2).
* 0-RTT (:func:`early_data_refusal`): accepted only on the first ClientHello, for the
  first identity, when the ticket allows it, the server is willing, the ALPN protocol is
  the ticket's (§4.3.10), QUIC agrees with the remembered transport parameters (RFC 9000
  §7.4.1) and the anti-replay memory admits the ClientHello (§8). Each refusal has a
  name (for tests and logs).
* After the handshake the server issues one ticket (:func:`issue_ticket`): sealed
  :class:`~quic.tls.tickets.TicketState` with ``max_early_data_size`` 0xffffffff when
  0-RTT is allowed (RFC 9001 §4.6.1). The client turns a NewSessionTicket into a
  :class:`~quic.tls.tickets.SessionTicket` (:func:`ticket_from_message`).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import replace
from datetime import datetime

from quic.tls.alerts import AlertDescription
from quic.tls.config import TlsConfig
from quic.tls.extensions import OfferedPsks, PskIdentity, PskKeyExchangeMode, encode_binders
from quic.tls.handshake import alert
from quic.tls.key_schedule import KeySchedule, Transcript, resumption_psk, verify_data
from quic.tls.messages import ClientHello, NewSessionTicket, encode_handshake
from quic.tls.suites import SUITE_HASH, CipherSuite
from quic.tls.tickets import (
    MAX_TICKET_LIFETIME,
    QUIC_MAX_EARLY_DATA,
    SessionTicket,
    TicketState,
    unix_ms,
)

__all__ = [
    "binder_for",
    "check_binder",
    "early_data_refusal",
    "issue_ticket",
    "offer",
    "open_ticket",
    "ticket_from_message",
    "with_binder",
]

_TICKET_NONCE = b"\x00"  # one ticket per connection: the nonce need not vary (§4.7.1)


def binder_for(suite: CipherSuite, psk: bytes, transcript: Transcript, truncated: bytes) -> bytes:
    """The binder of ``psk`` over ``transcript`` followed by ``truncated``, the framed
    ClientHello without its binders list (RFC 9846 §4.3.11.2)."""
    hash_name = SUITE_HASH[suite]
    binder_key = KeySchedule(suite, psk).binder_key()
    partial = transcript.digest_with(truncated, hash_name)
    return verify_data(hash_name, binder_key, partial)


# -- client -----------------------------------------------------------------------------


def offer(ticket: SessionTicket, now: datetime) -> OfferedPsks:
    """The pre_shared_key offer of ``ticket`` with a placeholder binder."""
    identity = PskIdentity(ticket.ticket, ticket.obfuscated_age(now))
    size = KeySchedule(ticket.cipher_suite).hash_len
    return OfferedPsks((identity,), (bytes(size),))


def with_binder(
    ch: ClientHello, ticket: SessionTicket, transcript: Transcript
) -> tuple[ClientHello, bytes]:
    """``ch`` with the binder of its (single) PSK filled in, and its framed bytes.

    Encoded once, with the placeholder binder of :func:`offer` (as long as the real one):
    the binders list ends the message (pre_shared_key is the last extension, RFC 9846
    §4.3.11), so the binder is computed over the bytes before it (§4.3.11.2) and the
    list written again after them, not the whole ClientHello a second time.
    """
    psks = ch.pre_shared_key
    assert psks is not None
    raw = encode_handshake(ch)
    truncated = raw[: len(raw) - psks.binders_length()]
    binder = binder_for(ticket.cipher_suite, ticket.psk, transcript, truncated)
    if len(binder) != len(psks.binders[0]):  # the lengths in ``truncated`` would be wrong
        raise ValueError("the placeholder binder is not as long as the binder")
    bound = OfferedPsks(psks.identities, (binder,))
    return replace(ch, pre_shared_key=bound), truncated + encode_binders(bound)


def ticket_from_message(
    nst: NewSessionTicket,
    config: TlsConfig,
    suite: CipherSuite,
    resumption_secret: bytes,
    alpn: str | None,
    server_transport_parameters: bytes,
    now: datetime,
) -> SessionTicket | None:
    """What a client keeps of a NewSessionTicket; None if it cannot be used."""
    lifetime = min(nst.ticket_lifetime, MAX_TICKET_LIFETIME)
    if lifetime == 0 or config.server_name is None:  # §4.7.1: zero means discard
        return None
    return SessionTicket(
        server_name=config.server_name,
        ticket=nst.ticket,
        psk=resumption_psk(SUITE_HASH[suite], resumption_secret, nst.ticket_nonce),
        cipher_suite=suite,
        alpn_protocol=alpn,
        ticket_age_add=nst.ticket_age_add,
        lifetime=lifetime,
        received_at=now,
        max_early_data_size=nst.max_early_data_size,
        transport_parameters=server_transport_parameters,
    )


# -- server -----------------------------------------------------------------------------


def open_ticket(config: TlsConfig, ch: ClientHello, now: datetime) -> TicketState | None:
    """The state of the client's first PSK if we can resume it (else None: ignored)."""
    psks = ch.pre_shared_key
    keys = config.ticket_keys
    if psks is None or keys is None or config.clock is None:
        return None
    if PskKeyExchangeMode.psk_dhe_ke not in (ch.psk_key_exchange_modes or ()):
        return None  # we only resume with (EC)DHE (psk_dhe_ke, §4.3.9)
    plaintext = keys.open(psks.identities[0].identity)
    if plaintext is None:
        return None
    state = TicketState.decode(plaintext)
    if state is None:
        return None
    age_ms = unix_ms(now) - state.issued_at_ms
    if not 0 <= age_ms < min(state.lifetime, MAX_TICKET_LIFETIME) * 1000:
        return None  # expired (or issued in the future)
    if state.server_name != (ch.server_name or "").encode():
        return None  # §4.6.1: resume only for the name the ticket was issued for
    if state.suite not in config.cipher_suites or state.cipher_suite not in ch.cipher_suites:
        return None
    return state


def check_binder(
    state: TicketState, suite: CipherSuite, transcript: Transcript, ch: ClientHello, raw: bytes
) -> None:
    """RFC 9846 §4.3.11.2: the first binder must verify, else ``decrypt_error``. The
    binder covers the ClientHello as received (``raw``), not a re-encoding of it."""
    psks = ch.pre_shared_key
    assert psks is not None
    truncated = raw[: len(raw) - psks.binders_length()]
    expected = binder_for(suite, state.psk, transcript, truncated)
    received = psks.binders[0]
    if len(received) != len(expected) or not hmac.compare_digest(received, expected):
        raise alert(AlertDescription.decrypt_error, "PSK binder does not verify")


def early_data_refusal(
    config: TlsConfig,
    ch: ClientHello,
    state: TicketState,
    alpn: str | None,
    now: datetime,
) -> str | None:
    """Why 0-RTT is refused for this resumed ClientHello, or None to accept it."""
    if not ch.early_data:
        return "not offered"
    if not config.accept_early_data or not state.early_data:
        return "disabled"
    if (alpn or "").encode() != state.alpn_protocol:
        return "alpn"  # RFC 9846 §4.3.10: the ALPN protocol must be the ticket's
    check = config.early_data_check
    if check is not None and not check(state.transport_parameters):
        return "transport parameters"  # RFC 9000 §7.4.1
    app_check = config.early_data_application_check
    if app_check is not None and not app_check(state.application_data):
        return "application data"  # e.g. RFC 9114 §7.2.4.2: incompatible SETTINGS
    anti_replay = config.anti_replay
    if anti_replay is None:
        return "no anti-replay"
    psks = ch.pre_shared_key
    assert psks is not None
    client_age_ms = (psks.identities[0].obfuscated_ticket_age - state.ticket_age_add) & 0xFFFFFFFF
    issued = state.issued_at_ms / 1000
    if not anti_replay.admit(
        state.ticket_id, issued, issued + client_age_ms / 1000, now.timestamp()
    ):
        return "replay"  # RFC 9846 §8: stale, seen, or cannot be remembered
    return None


def issue_ticket(
    config: TlsConfig,
    suite: CipherSuite,
    resumption_secret: bytes,
    alpn: str | None,
    server_name: str | None,
    transport_parameters: bytes,
    now: datetime,
) -> NewSessionTicket | None:
    """Our NewSessionTicket after the handshake (RFC 9846 §4.7.1), or None."""
    keys = config.ticket_keys
    if keys is None or config.clock is None or config.ticket_lifetime == 0:
        return None
    early = config.accept_early_data and config.anti_replay is not None
    age_add = int.from_bytes(os.urandom(4), "big")
    issued_ms = unix_ms(now)
    state = TicketState(
        ticket_id=os.urandom(16),
        issued_at_ms=issued_ms,
        lifetime=config.ticket_lifetime,
        ticket_age_add=age_add,
        cipher_suite=int(suite),
        early_data=early,
        psk=resumption_psk(SUITE_HASH[suite], resumption_secret, _TICKET_NONCE),
        alpn_protocol=(alpn or "").encode(),
        server_name=(server_name or "").encode(),
        transport_parameters=transport_parameters,
        application_data=config.ticket_application_data,
    )
    if config.anti_replay is not None:
        config.anti_replay.start(issued_ms / 1000)  # the time the ticket carries
    return NewSessionTicket(
        ticket_lifetime=config.ticket_lifetime,
        ticket_age_add=age_add,
        ticket_nonce=_TICKET_NONCE,
        ticket=keys.seal(state.encode()),
        # RFC 9001 §4.6.1: 0xffffffff when 0-RTT is allowed, no extension otherwise
        max_early_data_size=QUIC_MAX_EARLY_DATA if early else None,
    )
