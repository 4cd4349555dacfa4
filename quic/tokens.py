"""Address validation tokens: Retry and NEW_TOKEN (RFC 9000 §8.1.1-§8.1.4).

Theory of operation
-------------------
A server validates a client's address before the handshake with a token the client
echoes in its Initial packets (RFC 9000 §8.1): one sent in a Retry packet, used at once
(§8.1.2), or one sent in a NEW_TOKEN frame, used by a later connection (§8.1.3). The
server keeps no state for either: everything it needs is in the token, sealed with a
key only the server holds (§8.1.4: tokens MUST be integrity protected and hard to
guess). :class:`TokenMinter` makes and checks them; :class:`TokenStore` keeps a
client's NEW_TOKEN tokens for later connections.

Token layout (the server alone reads it, so the format is ours, §8.1.4)::

    kind (1) | key id (1) | nonce (12) | AEAD(issued (8) | body) | tag (16)

* ``kind`` (:class:`TokenKind`) says how the token was provided, so a Retry token is
  never mistaken for a NEW_TOKEN one (§8.1.1; §8.1.3 allows this to be visible). It is
  authenticated: the AEAD's associated data is ``kind | key id | address``.
* ``address`` is the client's IP address and UDP port for a Retry token (§8.1.4: its
  "source IP address and port ... remain constant") and the IP address alone for a
  NEW_TOKEN token (§8.1.3: the port of a later connection differs). It is not in the
  token: a token returned from another address fails authentication like a forged
  one. IPv4-mapped IPv6 addresses count as their IPv4 address.
* ``issued`` is the minting time on the endpoint's clock (the ``now`` its driver
  passes in; a token is valid only on the endpoint that minted it). A token is valid
  for ``retry_lifetime`` or ``new_token_lifetime`` seconds after it (§8.1.3: tokens
  SHOULD expire; §8.1.4: Retry tokens only for a short time).
* ``body``: for a Retry token the client's Original Destination Connection ID and the
  Retry's Source Connection ID (the server needs both for its transport parameters,
  §7.3); a NEW_TOKEN token has none — it proves only that the address received it
  (§8.1.3: "limit its use of tokens to only the information needed to validate client
  addresses"), so a replay within its lifetime grants nothing but address validation.
  The random 96-bit nonce makes every token unique (§8.1.3) and unlinkable.

Keys (AES-128-GCM) rotate every ``key_rotation`` seconds, lazily, when a token is
minted; a retired key still opens tokens until the longest token lifetime has passed
after its retirement, then it is forgotten. So at most ``floor(lifetime / rotation) + 2``
keys are held (the rotation is raised if needed to keep that under the 256 key ids).
The key id picks the key in O(1); checking a token is one AEAD open.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "RetryTokenData",
    "TokenKind",
    "TokenMinter",
    "TokenStore",
    "token_kind",
    "token_store_key",
]

_NONCE = 12
_TAG = 16
_ISSUED = struct.Struct("!d")
_HEADER = 2 + _NONCE  # kind, key id, nonce
_MIN_TOKEN = _HEADER + _ISSUED.size + _TAG
_MAX_KEY_IDS = 200  # keys held at most (ids are one byte)


class TokenKind(IntEnum):
    """How a token was provided to the client (RFC 9000 §8.1.1)."""

    RETRY = 0x52  # in a Retry packet (§8.1.2)
    NEW_TOKEN = 0x4E  # in a NEW_TOKEN frame (§8.1.3)


@dataclass(frozen=True, slots=True)
class RetryTokenData:
    """What a valid Retry token tells the server (RFC 9000 §7.3, §8.1.2)."""

    original_dcid: bytes  # the DCID of the client's first Initial
    retry_scid: bytes  # the Source Connection ID of our Retry packet
    issued: float


def token_kind(token: bytes) -> TokenKind | None:
    """The kind a token claims to be (unauthenticated), or None if it is not ours."""
    if len(token) < _MIN_TOKEN:
        return None
    try:
        return TokenKind(token[0])
    except ValueError:
        return None


def address_binding(addr: Any, with_port: bool) -> bytes:
    """The bytes a token is bound to: the IP address (and port) of ``addr``."""
    if isinstance(addr, tuple) and addr:
        host = str(addr[0])
        port = addr[1] if len(addr) > 1 else ""
    else:
        host, port = repr(addr), ""
    packed = _packed_ip(host.split("%", 1)[0])
    if packed is None:
        packed = host.encode("utf-8", "replace")
    if with_port:
        return packed + b"|" + str(port).encode()
    return packed


def _packed_ip(host: str) -> bytes | None:
    """The 4 or 16 bytes of a numeric IP address (an IPv4-mapped IPv6 one as its IPv4
    address), or None. Dotted IPv4, plain or mapped, is parsed here: a fraction of
    ``ipaddress.ip_address``'s cost (a NEW_TOKEN is minted for every connection a
    server confirms); anything else goes to ``ipaddress``."""
    packed = _packed_ipv4(host)
    if packed is None and host[:7].lower() == "::ffff:":
        packed = _packed_ipv4(host[7:])
    if packed is not None:
        return packed
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed


def _packed_ipv4(host: str) -> bytes | None:
    """Dotted-decimal IPv4 as ``ipaddress`` reads it (four parts of 0-255, no leading
    zeros), packed; None for anything else."""
    parts = host.split(".")
    if len(parts) != 4:
        return None
    values = []
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            return None
        if part[0] == "0" and len(part) > 1:
            return None
        value = int(part)
        if value > 255:
            return None
        values.append(value)
    return bytes(values)


class _Key:
    __slots__ = ("aead", "created", "key_id", "retired")

    def __init__(self, key_id: int, key: bytes, created: float) -> None:
        self.key_id = key_id
        self.aead = AESGCM(key)
        self.created = created
        self.retired: float | None = None  # when it stopped minting


class TokenMinter:
    """Mints and checks a server's address validation tokens (see the module docstring).

    ``random_bytes`` supplies keys and nonces (injected so tests can be deterministic).
    """

    def __init__(
        self,
        *,
        retry_lifetime: float,
        new_token_lifetime: float,
        key_rotation: float,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if retry_lifetime <= 0 or new_token_lifetime <= 0 or key_rotation <= 0:
            raise ValueError("token lifetimes and key rotation must be positive")
        self.retry_lifetime = retry_lifetime
        self.new_token_lifetime = new_token_lifetime
        self._longest = max(retry_lifetime, new_token_lifetime)
        # keys held: floor(longest / rotation) + 2 at most; keep that under the id space
        self.key_rotation = max(key_rotation, self._longest / (_MAX_KEY_IDS - 2))
        self._random = random_bytes
        self._keys: dict[int, _Key] = {}
        self._current: _Key | None = None
        self._next_id = 0

    @property
    def key_count(self) -> int:
        """Keys held (the current one and retired ones that may still open tokens)."""
        return len(self._keys)

    @property
    def max_keys(self) -> int:
        """The most keys ever held: the current one, and the retired ones still within
        the longest token lifetime (retired at least ``key_rotation`` apart)."""
        return math.floor(self._longest / self.key_rotation) + 2

    # -- keys -------------------------------------------------------------------------

    def _minting_key(self, now: float) -> _Key:
        current = self._current
        if current is not None and now < current.created + self.key_rotation:
            return current
        if current is not None:
            current.retired = now
        keys = self._keys
        for key_id in [k for k, key in keys.items() if key.retired is not None]:
            retired = keys[key_id].retired
            assert retired is not None
            if now > retired + self._longest:
                del keys[key_id]  # no token it sealed can be valid any more
        key = _Key(self._next_id, self._random(16), now)
        self._next_id = (self._next_id + 1) % 256
        keys[key.key_id] = key
        self._current = key
        return key

    def _seal(self, kind: TokenKind, binding: bytes, body: bytes, now: float) -> bytes:
        key = self._minting_key(now)
        header = bytes((kind, key.key_id)) + self._random(_NONCE)
        sealed = key.aead.encrypt(header[2:], _ISSUED.pack(now) + body, header[:2] + binding)
        return header + sealed

    def _open(self, kind: TokenKind, token: bytes, binding: bytes) -> tuple[float, bytes] | None:
        if len(token) < _MIN_TOKEN or token[0] != kind:
            return None
        key = self._keys.get(token[1])
        if key is None:
            return None
        try:
            plain = key.aead.decrypt(token[2:_HEADER], token[_HEADER:], token[:2] + binding)
        except InvalidTag:
            return None
        if len(plain) < _ISSUED.size:
            return None
        return _ISSUED.unpack_from(plain)[0], plain[_ISSUED.size :]

    @staticmethod
    def _fresh(issued: float, lifetime: float, now: float) -> bool:
        return issued <= now <= issued + lifetime

    # -- Retry tokens (RFC 9000 §8.1.2) ------------------------------------------------

    def mint_retry(self, addr: Any, original_dcid: bytes, retry_scid: bytes, now: float) -> bytes:
        """A Retry token for a client at ``addr`` (IP address and port)."""
        body = bytes((len(original_dcid),)) + original_dcid + bytes((len(retry_scid),)) + retry_scid
        return self._seal(TokenKind.RETRY, address_binding(addr, True), body, now)

    def looks_like_retry(self, token: bytes, retry_scid_length: int) -> bool:
        """Has ``token`` the form of a Retry token of ours: its kind, a key id we hold,
        and the length of one minted for an 8..20-byte original DCID and a Retry SCID
        of ``retry_scid_length`` bytes? Unauthenticated: a token of another server
        (a NEW_TOKEN token a client kept) passes this only by a rare coincidence."""
        odcid_length = len(token) - _MIN_TOKEN - 2 - retry_scid_length
        return (
            token_kind(token) is TokenKind.RETRY
            and 8 <= odcid_length <= 20  # RFC 9000 §7.2, §17.2
            and token[1] in self._keys
        )

    def open_retry(self, token: bytes, addr: Any, now: float) -> RetryTokenData | None:
        """The contents of a valid Retry token returned from ``addr``, else None
        (forged, tampered with, from another address or port, or expired)."""
        opened = self._open(TokenKind.RETRY, token, address_binding(addr, True))
        if opened is None:
            return None
        issued, body = opened
        if not self._fresh(issued, self.retry_lifetime, now):
            return None
        if not body:
            return None
        end = 1 + body[0]
        if len(body) < end + 1 or len(body) != end + 1 + body[end]:
            return None
        return RetryTokenData(body[1:end], body[end + 1 :], issued)

    # -- NEW_TOKEN tokens (RFC 9000 §8.1.3) --------------------------------------------

    def mint_new_token(self, addr: Any, now: float) -> bytes:
        """A token for a later connection from the IP address of ``addr``."""
        return self._seal(TokenKind.NEW_TOKEN, address_binding(addr, False), b"", now)

    def check_new_token(self, token: bytes, addr: Any, now: float) -> bool:
        """True if ``token`` is a NEW_TOKEN token we minted for this IP address that has
        not expired."""
        opened = self._open(TokenKind.NEW_TOKEN, token, address_binding(addr, False))
        return opened is not None and self._fresh(opened[0], self.new_token_lifetime, now)


def token_store_key(server_name: str | None, addr: Any) -> str:
    """The :class:`TokenStore` key of a server: its name (or host) and UDP port.

    RFC 9000 §8.1.3: a token applies to the server the connection was authoritative
    for; a client MUST NOT send it to another one.
    """
    if isinstance(addr, tuple) and addr:
        host, port = str(addr[0]), (addr[1] if len(addr) > 1 else "")
    else:
        host, port = repr(addr), ""
    return f"{server_name or host}|{port}"


class TokenStore:
    """A client's NEW_TOKEN tokens, by server (RFC 9000 §8.1.3).

    Set it as :attr:`quic.configuration.QuicConfiguration.token_store` (share one store
    between the configurations of later connections): a connection puts each token the
    server sends, and a new connection to that server takes the newest one for its
    Initial packets. A token is taken out when used (§8.1.3: a client SHOULD NOT reuse
    a token, which would link its connections); duplicates are discarded (§19.7).
    Bounded: at most ``max_tokens_per_server`` tokens per server (the oldest go first)
    and ``max_servers`` servers (the least recently used go first).
    """

    def __init__(self, max_servers: int = 256, max_tokens_per_server: int = 4) -> None:
        if max_servers < 1 or max_tokens_per_server < 1:
            raise ValueError("a token store holds at least one token")
        self.max_servers = max_servers
        self.max_tokens_per_server = max_tokens_per_server
        self._tokens: OrderedDict[str, list[bytes]] = OrderedDict()

    def __len__(self) -> int:
        """Servers with at least one token."""
        return len(self._tokens)

    def count(self, server: str) -> int:
        """Tokens held for ``server``."""
        return len(self._tokens.get(server, ()))

    def put(self, server: str, token: bytes) -> None:
        """Keep ``token`` for later connections to ``server``."""
        if not token:
            return
        tokens = self._tokens.get(server)
        if tokens is None:
            tokens = self._tokens[server] = []
            while len(self._tokens) > self.max_servers:
                self._tokens.popitem(last=False)
        elif token in tokens:
            return  # a NEW_TOKEN sent again after a (spurious) loss (§19.7)
        self._tokens.move_to_end(server)
        tokens.append(token)
        if len(tokens) > self.max_tokens_per_server:
            del tokens[0]

    def take(self, server: str) -> bytes | None:
        """The newest token for ``server``, removed from the store; None if none."""
        tokens = self._tokens.get(server)
        if not tokens:
            return None
        token = tokens.pop()
        if not tokens:
            del self._tokens[server]
        return token
