"""Session tickets: what a client keeps, what a server seals (RFC 9846 §4.7.1, §4.3.11).

Theory of operation
-------------------
After a handshake the server sends NewSessionTickets (RFC 9846 §4.7.1); a later
connection offers one as a pre-shared key (PSK, §4.3.11) and, if the ticket allows it,
sends 0-RTT data (§4.3.10; in QUIC, 0-RTT packets, RFC 9001 §4.6).

Client side: :class:`SessionTicket` is everything the client needs to resume — the
ticket (the PSK identity), the PSK itself (derived from the resumption secret and the
ticket nonce, §4.7.1), the cipher suite, ALPN and server name of the connection that
issued it, its lifetime, ``ticket_age_add`` and the time it was received (for the
obfuscated ticket age, §4.3.11.1), whether 0-RTT is allowed, the server's QUIC
transport parameters (remembered for 0-RTT, RFC 9000 §7.4.1) and what the application
protocol remembers with it (``application_data``: HTTP/3 keeps the server's SETTINGS,
RFC 9114 §7.2.4.2). Tickets are kept by a
:class:`SessionTicketStore` (the application's choice of storage; the QUIC layer adds
each ticket it receives and takes one when it connects). :class:`InMemorySessionTicketStore`
is the default one: tickets per server name, bounded in number, each taken at most once
(RFC 9001 §4.5: clients SHOULD NOT reuse tickets), dropped once past their lifetime.

Server side: tickets are self-contained (§4.7.1 allows "a self-encrypted and
self-authenticated value"): :class:`TicketState` (PSK, suite, ALPN, SNI, issue time,
lifetime, ``ticket_age_add``, whether 0-RTT is allowed, the server's transport
parameters, the application's data, a random ticket ID for anti-replay) is encoded and
sealed with AES-256-GCM by :class:`SessionTicketKeys`. The key ID travels in clear in
front of the nonce and ciphertext and is authenticated as associated data; keys rotate
(:meth:`SessionTicketKeys.rotate`), the newest seals, the ``max_keys`` newest open. A
ticket that does not open (unknown key, tampered, malformed) is an unknown PSK: ignored,
full handshake (§4.3.11: "Any unknown PSKs ... SHOULD simply be ignored").

No clock is read here: times are given by the caller (the injected wall clock).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quic.buffer import Buffer
from quic.errors import BufferReadError
from quic.tls.suites import SUITE_HASH, CipherSuite

__all__ = [
    "MAX_TICKET_LIFETIME",
    "QUIC_MAX_EARLY_DATA",
    "InMemorySessionTicketStore",
    "SessionTicket",
    "SessionTicketKeys",
    "SessionTicketStore",
    "TicketState",
    "unix_ms",
]

#: RFC 9846 §4.7.1: ticket_lifetime MUST NOT exceed 7 days, and clients MUST NOT use a
#: ticket for longer than 7 days after issuance.
MAX_TICKET_LIFETIME = 604800
#: RFC 9001 §4.6.1: the only max_early_data_size a QUIC server sends (0-RTT allowed).
QUIC_MAX_EARLY_DATA = 0xFFFFFFFF

_TICKET_FORMAT = 2  # 2: with application_data
_KEY_ID_LENGTH = 8
_NONCE_LENGTH = 12


def unix_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware ``datetime``."""
    return int(when.timestamp() * 1000)


# -- client side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionTicket:
    """A ticket a client can resume with (RFC 9846 §4.7.1, RFC 9000 §7.4.1)."""

    server_name: str
    ticket: bytes  # the PSK identity (opaque to the client)
    psk: bytes  # HKDF-Expand-Label(resumption_secret, "resumption", nonce, Hash.length)
    cipher_suite: CipherSuite
    alpn_protocol: str | None
    ticket_age_add: int
    lifetime: int  # seconds, at most MAX_TICKET_LIFETIME
    received_at: datetime  # the client's wall clock when the ticket arrived
    max_early_data_size: int | None  # QUIC_MAX_EARLY_DATA: 0-RTT allowed (RFC 9001 §4.6.1)
    transport_parameters: bytes  # the server's, as sent in the issuing connection
    # what the application protocol remembers with the ticket, e.g. HTTP/3 the server's
    # SETTINGS (RFC 9114 §7.2.4.2); set by the application (quic.conn_early)
    application_data: bytes = b""

    @property
    def hash_name(self) -> str:
        """The PSK's hash: the KDF hash of the issuing connection (§4.3.11)."""
        return SUITE_HASH[self.cipher_suite]

    @property
    def allows_early_data(self) -> bool:
        return self.max_early_data_size == QUIC_MAX_EARLY_DATA

    def age_ms(self, now: datetime) -> int:
        """The client's view of the ticket age (§4.3.11.1), in milliseconds."""
        return unix_ms(now) - unix_ms(self.received_at)

    def is_valid(self, now: datetime) -> bool:
        """Within its lifetime (and never beyond 7 days, §4.7.1)."""
        age = self.age_ms(now)
        return 0 <= age < min(self.lifetime, MAX_TICKET_LIFETIME) * 1000

    def obfuscated_age(self, now: datetime) -> int:
        """``(age in ms + ticket_age_add) mod 2^32`` (§4.3.11.1)."""
        return (max(0, self.age_ms(now)) + self.ticket_age_add) & 0xFFFFFFFF


class SessionTicketStore(Protocol):
    """Where a client keeps its tickets (``QuicConfiguration.session_ticket_store``).

    ``add`` is called for every ticket a server sends; ``take`` when connecting to
    ``server_name``: it returns a ticket valid at ``now`` and forgets it (a ticket is
    offered once, RFC 9001 §4.5), or None.
    """

    def add(self, ticket: SessionTicket) -> None: ...

    def take(self, server_name: str, now: datetime) -> SessionTicket | None: ...


class InMemorySessionTicketStore:
    """The default :class:`SessionTicketStore`: bounded, per server name, in memory.

    At most ``max_tickets_per_server`` tickets per name (the oldest is dropped) and
    ``max_servers`` names (the least recently used name is dropped). :meth:`take`
    returns the newest valid ticket; expired ones are discarded on the way.
    """

    def __init__(self, max_servers: int = 256, max_tickets_per_server: int = 4) -> None:
        if max_servers < 1 or max_tickets_per_server < 1:
            raise ValueError("the ticket store needs room for at least one ticket")
        self.max_servers = max_servers
        self.max_tickets_per_server = max_tickets_per_server
        self._tickets: OrderedDict[str, deque[SessionTicket]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(tickets) for tickets in self._tickets.values())

    def add(self, ticket: SessionTicket) -> None:
        tickets = self._tickets.get(ticket.server_name)
        if tickets is None:
            tickets = self._tickets[ticket.server_name] = deque(maxlen=self.max_tickets_per_server)
            while len(self._tickets) > self.max_servers:
                self._tickets.popitem(last=False)
        else:
            self._tickets.move_to_end(ticket.server_name)
        tickets.append(ticket)

    def take(self, server_name: str, now: datetime) -> SessionTicket | None:
        tickets = self._tickets.get(server_name)
        if tickets is None:
            return None
        found: SessionTicket | None = None
        while tickets:
            ticket = tickets.pop()
            if ticket.is_valid(now):
                found = ticket
                break
        if not tickets:
            del self._tickets[server_name]
        return found


# -- server side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TicketState:
    """What a server seals into a ticket: enough to resume without server state."""

    ticket_id: bytes  # 16 random bytes: the anti-replay key (RFC 9846 §8)
    issued_at_ms: int  # server wall clock, Unix milliseconds
    lifetime: int  # seconds
    ticket_age_add: int
    cipher_suite: int
    early_data: bool  # 0-RTT allowed with this ticket
    psk: bytes
    alpn_protocol: bytes  # b"": none
    server_name: bytes  # b"": no SNI
    transport_parameters: bytes  # the server's, for the RFC 9000 §7.4.1 checks
    # the application protocol's, sealed with it (RFC 9114 §7.2.4.2: "store an
    # integrity-protected copy of the values in the ticket"); b"": none
    application_data: bytes = b""

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_uint8(_TICKET_FORMAT)
        buf.push_bytes(self.ticket_id)
        buf.push_uint64(self.issued_at_ms)
        buf.push_uint32(self.lifetime)
        buf.push_uint32(self.ticket_age_add)
        buf.push_uint16(self.cipher_suite)
        buf.push_uint8(1 if self.early_data else 0)
        buf.push_vector(1, self.psk)
        buf.push_vector(1, self.alpn_protocol)
        buf.push_vector(2, self.server_name)
        buf.push_vector(2, self.transport_parameters)
        buf.push_vector(2, self.application_data)
        return buf.data()

    @classmethod
    def decode(cls, data: bytes) -> TicketState | None:
        """The state of a ticket, or None if it is not one of ours (any defect)."""
        buf = Buffer(data)
        try:
            if buf.pull_uint8() != _TICKET_FORMAT:
                return None
            state = cls(
                ticket_id=buf.pull_bytes(16),
                issued_at_ms=buf.pull_uint64(),
                lifetime=buf.pull_uint32(),
                ticket_age_add=buf.pull_uint32(),
                cipher_suite=buf.pull_uint16(),
                early_data=buf.pull_uint8() == 1,
                psk=buf.pull_vector(1),
                alpn_protocol=buf.pull_vector(1),
                server_name=buf.pull_vector(2),
                transport_parameters=buf.pull_vector(2),
                application_data=buf.pull_vector(2),
            )
        except BufferReadError:
            return None
        if not buf.eof() or state.cipher_suite not in CipherSuite._value2member_map_:
            return None
        return state

    @property
    def suite(self) -> CipherSuite:
        return CipherSuite(self.cipher_suite)


class SessionTicketKeys:
    """The server's ticket protection keys (AES-256-GCM), rotatable.

    ``seal`` uses the newest key; ``open`` tries the key its ID names among the
    ``max_keys`` newest. Without an explicit key one is made at the first use. The same
    object serves every connection of a server (it lives in the configuration), so a
    process keeps accepting its tickets until the key is rotated out.
    """

    def __init__(self, key: bytes | None = None, *, max_keys: int = 2) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._keys: OrderedDict[bytes, AESGCM] = OrderedDict()  # key ID -> cipher, newest last
        if key is not None:
            self.rotate(key)

    def rotate(self, key: bytes | None = None) -> None:
        """Seal with a new key from now on (random if None); the oldest beyond
        ``max_keys`` is forgotten, and its tickets with it."""
        if key is None:
            key = os.urandom(32)
        if len(key) != 32:
            raise ValueError("a ticket key is 32 bytes (AES-256-GCM)")
        key_id = os.urandom(_KEY_ID_LENGTH)
        self._keys[key_id] = AESGCM(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def seal(self, plaintext: bytes) -> bytes:
        """``key ID || nonce || AES-GCM(plaintext, aad=key ID)``."""
        if not self._keys:
            self.rotate()
        key_id, cipher = next(reversed(self._keys.items()))
        nonce = os.urandom(_NONCE_LENGTH)
        return key_id + nonce + cipher.encrypt(nonce, plaintext, key_id)

    def open(self, blob: bytes) -> bytes | None:
        """The plaintext of a ticket we sealed, or None (unknown key, altered, short)."""
        head = _KEY_ID_LENGTH + _NONCE_LENGTH
        if len(blob) < head + 16:
            return None
        key_id = blob[:_KEY_ID_LENGTH]
        cipher = self._keys.get(key_id)
        if cipher is None:
            return None
        try:
            return cipher.decrypt(blob[_KEY_ID_LENGTH:head], blob[head:], key_id)
        except InvalidTag:
            return None
