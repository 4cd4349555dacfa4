"""TLS 1.3 key schedule and transcript hash (RFC 9846 §4.1, §4.5.3, §7.1, §7.5).

Theory of operation
-------------------
:class:`Transcript` accumulates the raw handshake messages (header included, §4.1).
Until the cipher suite, and so the hash, is known, it keeps the messages themselves;
once :meth:`Transcript.set_hash` is called it keeps a running hash and :meth:`digest`
returns ``Transcript-Hash`` of everything so far. :meth:`Transcript.restart_after_hrr`
applies the HelloRetryRequest rule: ClientHello1 is replaced by the synthetic
``message_hash`` message carrying ``Hash(ClientHello1)`` (§4.1).

:class:`KeySchedule` walks the secret chain of §7.1 for one cipher suite::

    0 -> Extract(0, PSK or 0)       = Early Secret  -> binder key, c e traffic, e exp master
      -> Extract(Derived, (EC)DHE)  = Handshake Secret -> c/s hs traffic
      -> Extract(Derived, 0)        = Main Secret   -> c/s ap traffic, exp master, res master

Each stage is entered once, in order (:meth:`KeySchedule.set_shared_secret`, then
:meth:`KeySchedule.enter_main`); the traffic-secret methods take the transcript hash the
RFC prescribes for them. Free functions cover Finished (§4.5.3), the exporter (§7.5),
key update (§7.2) and the resumption PSK (§4.7.1).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from quic.tls.hkdf import derive_secret, hkdf_expand_label, hkdf_extract, hmac_digest
from quic.tls.messages import message_hash
from quic.tls.suites import SUITE_HASH, CipherSuite

__all__ = [
    "KeySchedule",
    "Transcript",
    "export_keying_material",
    "finished_key",
    "hash_length",
    "next_application_secret",
    "resumption_psk",
    "verify_data",
]


@lru_cache(maxsize=8)
def hash_length(hash_name: str) -> int:
    return hashlib.new(hash_name).digest_size


@lru_cache(maxsize=8)
def _empty_hash(hash_name: str) -> bytes:
    """Transcript-Hash of no messages (the "derived" steps' context, RFC 9846 §7.1)."""
    return hashlib.new(hash_name).digest()


@lru_cache(maxsize=8)
def _no_psk_early(hash_name: str) -> tuple[bytes, bytes]:
    """Without a PSK the Early Secret is HKDF-Extract(0, 0) and its Derive-Secret(.,
    "derived", "") is the same for every handshake with this hash (RFC 9846 §7.1):
    ``(early_secret, derived)``, computed once."""
    zeros = bytes(hash_length(hash_name))
    early = hkdf_extract(hash_name, zeros, zeros)
    return early, derive_secret(hash_name, early, b"derived", _empty_hash(hash_name))


class Transcript:
    """Running ``Transcript-Hash`` over raw handshake messages (RFC 9846 §4.1)."""

    __slots__ = ("_hash", "_hash_name", "_pending")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._hash: Any = None
        self._hash_name: str | None = None

    @property
    def hash_name(self) -> str | None:
        return self._hash_name

    def add(self, message: bytes) -> None:
        """Append one framed handshake message."""
        if self._hash is None:
            self._pending.append(message)
        else:
            self._hash.update(message)

    def set_hash(self, hash_name: str) -> None:
        """Fix the hash (the cipher suite's) and fold in the buffered messages."""
        if self._hash_name is not None:
            if hash_name != self._hash_name:
                raise ValueError("transcript hash already chosen")
            return
        self._hash_name = hash_name
        self._hash = hashlib.new(hash_name)
        for message in self._pending:
            self._hash.update(message)
        self._pending.clear()

    def release(self) -> None:
        """The handshake is over: let the running hash go (a later :meth:`digest`
        raises, as before the hash was chosen)."""
        self._hash = self._hash_name = None
        self._pending.clear()

    def digest(self) -> bytes:
        """Transcript-Hash of all messages added so far."""
        if self._hash is None:
            raise ValueError("transcript hash not chosen yet")
        result: bytes = self._hash.copy().digest()
        return result

    def digest_with(self, extra: bytes, hash_name: str) -> bytes:
        """Transcript-Hash of everything so far followed by ``extra``, without adding it
        (PSK binders hash a partial ClientHello, RFC 9846 §4.3.11.2). ``hash_name``
        is used while no hash is chosen yet; once chosen it must be the same."""
        if self._hash is None:
            h = hashlib.new(hash_name)
            for message in self._pending:
                h.update(message)
        else:
            if hash_name != self._hash_name:
                raise ValueError("transcript hash differs from the PSK's")
            h = self._hash.copy()
        h.update(extra)
        result: bytes = h.digest()
        return result

    def restart_after_hrr(self, hash_name: str) -> None:
        """Replace the transcript (ClientHello1) with ``message_hash`` (RFC 9846 §4.1).

        Call after ClientHello1 was added and before the HelloRetryRequest is added.
        """
        if self._hash is None:
            self.set_hash(hash_name)
        ch1_hash = self.digest()
        self._hash = hashlib.new(hash_name)
        self._hash_name = hash_name
        self._hash.update(message_hash(ch1_hash))


class KeySchedule:
    """The secret chain of RFC 9846 §7.1 for one cipher suite."""

    __slots__ = (
        "_early_derived",
        "_stage",
        "cipher_suite",
        "early_secret",
        "hash_len",
        "hash_name",
        "secret",
    )

    def __init__(self, cipher_suite: CipherSuite, psk: bytes | None = None) -> None:
        self.cipher_suite = cipher_suite
        self.hash_name = SUITE_HASH[cipher_suite]
        self.hash_len = hash_length(self.hash_name)
        # RFC 9846 §7.1: "if PSK is not in use, Early Secret will still be HKDF-Extract(0, 0)".
        self._early_derived: bytes | None = None  # its "derived" secret, if known
        if psk is None:
            self.early_secret, self._early_derived = _no_psk_early(self.hash_name)
        else:
            self.early_secret = hkdf_extract(self.hash_name, bytes(self.hash_len), psk)
        self.secret = self.early_secret
        self._stage = 0

    def _derive(self, label: bytes, transcript_hash: bytes) -> bytes:
        return derive_secret(self.hash_name, self.secret, label, transcript_hash)

    def _empty_hash(self) -> bytes:
        return _empty_hash(self.hash_name)

    # -- early secret --------------------------------------------------------------
    def binder_key(self, external: bool = False) -> bytes:
        """``binder_key``: "ext binder" or "res binder" over "" (§7.1)."""
        self._expect(0)
        return self._derive(b"ext binder" if external else b"res binder", self._empty_hash())

    def client_early_traffic_secret(self, client_hello_hash: bytes) -> bytes:
        self._expect(0)
        return self._derive(b"c e traffic", client_hello_hash)

    def early_exporter_secret(self, client_hello_hash: bytes) -> bytes:
        self._expect(0)
        return self._derive(b"e exp master", client_hello_hash)

    # -- handshake secret ----------------------------------------------------------
    def set_shared_secret(self, shared_secret: bytes | None) -> None:
        """Enter the Handshake Secret with the (EC)DHE/KEM secret (0 if none, §7.1)."""
        self._expect(0)
        derived = self._early_derived or self._derive(b"derived", self._empty_hash())
        ikm = shared_secret if shared_secret is not None else bytes(self.hash_len)
        self.secret = hkdf_extract(self.hash_name, derived, ikm)
        self._stage = 1

    def handshake_traffic_secrets(self, transcript_hash: bytes) -> tuple[bytes, bytes]:
        """``(client, server)`` handshake traffic secrets over ClientHello...ServerHello."""
        self._expect(1)
        return (
            self._derive(b"c hs traffic", transcript_hash),
            self._derive(b"s hs traffic", transcript_hash),
        )

    # -- main secret ---------------------------------------------------------------
    def enter_main(self) -> None:
        """Enter the Main Secret: Extract(Derive-Secret(., "derived", ""), 0) (§7.1)."""
        self._expect(1)
        derived = self._derive(b"derived", self._empty_hash())
        self.secret = hkdf_extract(self.hash_name, derived, bytes(self.hash_len))
        self._stage = 2

    def application_traffic_secrets(self, transcript_hash: bytes) -> tuple[bytes, bytes]:
        """``(client, server)`` application traffic secrets over CH...server Finished."""
        self._expect(2)
        return (
            self._derive(b"c ap traffic", transcript_hash),
            self._derive(b"s ap traffic", transcript_hash),
        )

    def exporter_secret(self, transcript_hash: bytes) -> bytes:
        """``exporter_secret`` over ClientHello...server Finished."""
        self._expect(2)
        return self._derive(b"exp master", transcript_hash)

    def resumption_secret(self, transcript_hash: bytes) -> bytes:
        """``resumption_secret`` over ClientHello...client Finished."""
        self._expect(2)
        return self._derive(b"res master", transcript_hash)

    def _expect(self, stage: int) -> None:
        if self._stage != stage:
            raise RuntimeError(f"key schedule at stage {self._stage}, need {stage}")


def finished_key(hash_name: str, base_key: bytes) -> bytes:
    """``HKDF-Expand-Label(BaseKey, "finished", "", Hash.length)`` (RFC 9846 §4.5.3)."""
    return hkdf_expand_label(hash_name, base_key, b"finished", b"", hash_length(hash_name))


def verify_data(hash_name: str, base_key: bytes, transcript_hash: bytes) -> bytes:
    """Finished ``verify_data`` (also a PSK binder) (RFC 9846 §4.5.3, §4.3.11.2)."""
    return hmac_digest(finished_key(hash_name, base_key), transcript_hash, hash_name)


def export_keying_material(
    hash_name: str, exporter_secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """``TLS-Exporter(label, context_value, key_length)`` (RFC 9846 §7.5)."""
    empty = hashlib.new(hash_name).digest()
    secret = derive_secret(hash_name, exporter_secret, label, empty)
    context_hash = hashlib.new(hash_name, context).digest()
    return hkdf_expand_label(hash_name, secret, b"exporter", context_hash, length)


def next_application_secret(hash_name: str, secret: bytes) -> bytes:
    """``application_traffic_secret_N+1`` ("traffic upd", RFC 9846 §7.2)."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", hash_length(hash_name))


def resumption_psk(hash_name: str, resumption_secret: bytes, ticket_nonce: bytes) -> bytes:
    """PSK of a ticket: ``HKDF-Expand-Label(res, "resumption", nonce, Hash.length)`` (§4.7.1)."""
    return hkdf_expand_label(
        hash_name, resumption_secret, b"resumption", ticket_nonce, hash_length(hash_name)
    )
