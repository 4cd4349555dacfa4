"""State shared by the client and server TLS 1.3 handshakes (RFC 9846 §4, RFC 9001 §4).

Theory of operation
-------------------
:class:`HandshakeContext` owns everything both roles need: the per-epoch reassembly
buffers, the transcript, the key schedule, the queues of outgoing handshake bytes and of
new traffic secrets, and the public negotiated values (ALPN, suite, group...). The
:class:`quic.tls.engine.TlsEngine` is a HandshakeContext that delegates message
handling to a :class:`Role` (:mod:`quic.tls.client` or :mod:`quic.tls.server`).

A role is a state machine written as data: ``TRANSITIONS`` maps each state to the
handshake types acceptable in it and the method handling each. :meth:`Role.handle`
checks the type first (anything else is ``unexpected_message``, RFC 9846 §4), then
decodes the body (``decode_error``) and calls the handler.

Encryption levels: QUIC feeds the CRYPTO stream of one epoch at a time. The context
tracks the epoch it currently reads (``recv_epoch``); data for any other epoch is an
``unexpected_message``. When the read epoch advances, no partial or extra message may
remain at the old epoch (RFC 9846 §5.1, "Handshake messages MUST NOT span key
changes"), else ``unexpected_message``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, IntEnum
from typing import Any, ClassVar

from cryptography import x509

from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.config import TlsConfig
from quic.tls.groups import NamedGroup
from quic.tls.key_schedule import KeySchedule, Transcript, verify_data
from quic.tls.keylog import KeyLogLabel, format_keylog_line
from quic.tls.messages import HandshakeMessage, HandshakeReader, decode_message, encode_handshake
from quic.tls.signatures import SignatureScheme
from quic.tls.suites import SUITE_HASH, CipherSuite

__all__ = [
    "Epoch",
    "HandshakeContext",
    "Role",
    "SecretAvailable",
    "alert",
    "is_ip_address",
]


class Epoch(IntEnum):
    """QUIC encryption levels (RFC 9001 §4)."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    ONE_RTT = 3


@dataclass(frozen=True, slots=True)
class SecretAvailable:
    """A traffic secret QUIC must install for ``epoch`` in one direction (RFC 9001 §4.1.4)."""

    epoch: Epoch
    is_write: bool
    cipher_suite: CipherSuite
    secret: bytes


def alert(description: AlertDescription, reason: str) -> TlsAlertError:
    return TlsAlertError(description, reason)


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


#: What a server's engine keeps of its settings once connected (see
#: :meth:`HandshakeContext.release_handshake_state`); only ``is_client`` is read.
_SETTLED_SERVER_CONFIG = TlsConfig(is_client=False)


class HandshakeContext:
    """Buffers, transcript, keys and negotiated values of one handshake."""

    # one per connection, more than 30 attributes: in slots, no per-instance dict
    # (issue 10, memory); ``__dict__`` keeps other attributes possible
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_output",
        "_secrets",
        "alpn_protocol",
        "cipher_suite",
        "client_application_secret",
        "client_handshake_secret",
        "client_random",
        "config",
        "early_data_accepted",
        "early_data_offered",
        "early_data_refusal",
        "exporter_secret",
        "group",
        "handshake_complete",
        "hello_retry_request_received",
        "hello_retry_request_sent",
        "key_schedule",
        "on_client_transport_parameters",
        "peer_certificate",
        "peer_transport_parameters",
        "psk",
        "readers",
        "recv_epoch",
        "resumption_secret",
        "server_application_secret",
        "server_handshake_secret",
        "session_resumed",
        "signature_scheme",
        "transcript",
        "transport_parameters",
    )

    def __init__(self, config: TlsConfig, transport_parameters: bytes) -> None:
        config.check()
        self.config = config
        self.transport_parameters = bytes(transport_parameters)
        # Server: called with the client's quic_transport_parameters before the server
        # flight is built; it may replace ``transport_parameters`` (QUIC compatible
        # version negotiation, RFC 9368 §2.3, chooses the version from them).
        self.on_client_transport_parameters: Callable[[bytes], None] | None = None
        self.readers: dict[Epoch, HandshakeReader] = {
            epoch: HandshakeReader(config.max_message_size)
            for epoch in (Epoch.INITIAL, Epoch.HANDSHAKE, Epoch.ONE_RTT)
        }
        self.recv_epoch = Epoch.INITIAL
        self.transcript = Transcript()
        self.key_schedule: KeySchedule | None = None
        self.client_random = b""
        self.client_handshake_secret = b""
        self.server_handshake_secret = b""
        self.client_application_secret = b""
        self.server_application_secret = b""
        self.exporter_secret: bytes | None = None
        self.resumption_secret: bytes | None = None
        self._output: list[tuple[Epoch, bytes]] = []
        self._secrets: list[SecretAvailable] = []
        # Public negotiated state.
        self.handshake_complete = False
        self.alpn_protocol: str | None = None
        self.peer_transport_parameters: bytes | None = None
        self.cipher_suite: CipherSuite | None = None
        self.group: NamedGroup | None = None
        self.signature_scheme: SignatureScheme | None = None
        self.peer_certificate: x509.Certificate | None = None
        self.session_resumed = False
        self.psk: bytes | None = None  # the resumption PSK in use (RFC 9846 §4.3.11)
        self.early_data_offered = False  # client: sent early_data (0-RTT keys released)
        self.early_data_accepted = False  # 0-RTT accepted (RFC 9846 §4.3.10)
        self.early_data_refusal: str | None = None  # server: why 0-RTT was refused
        self.hello_retry_request_sent = False
        self.hello_retry_request_received = False

    # -- output ----------------------------------------------------------------------
    def send(self, epoch: Epoch, message: HandshakeMessage) -> bytes:
        """Queue ``message`` at ``epoch``; return its framed bytes (for the transcript)."""
        return self.send_framed(epoch, encode_handshake(message))

    def send_framed(self, epoch: Epoch, raw: bytes) -> bytes:
        """Queue a message framed by :func:`~quic.tls.messages.encode_handshake` (a
        ClientHello whose PSK binder was written into its encoding: ``psk.with_binder``)."""
        if self._output and self._output[-1][0] == epoch:
            self._output[-1] = (epoch, self._output[-1][1] + raw)
        else:
            self._output.append((epoch, raw))
        return raw

    def send_and_hash(self, epoch: Epoch, message: HandshakeMessage) -> None:
        self.transcript.add(self.send(epoch, message))

    def take_output(self) -> list[tuple[Epoch, bytes]]:
        out, self._output = self._output, []
        return out

    def take_secrets(self) -> list[SecretAvailable]:
        out, self._secrets = self._secrets, []
        return out

    # -- keys ------------------------------------------------------------------------
    @property
    def schedule(self) -> KeySchedule:
        if self.key_schedule is None:  # pragma: no cover - guarded by the state machine
            raise RuntimeError("key schedule not started")
        return self.key_schedule

    @property
    def suite(self) -> CipherSuite:
        if self.cipher_suite is None:  # pragma: no cover - guarded by the state machine
            raise RuntimeError("cipher suite not negotiated")
        return self.cipher_suite

    def install(
        self, epoch: Epoch, is_write: bool, secret: bytes, suite: CipherSuite | None = None
    ) -> None:
        """Queue a secret for QUIC (RFC 9001 §4.1.4)."""
        self._secrets.append(SecretAvailable(epoch, is_write, suite or self.suite, secret))

    def derive_early_secret(self, suite: CipherSuite, psk: bytes, is_write: bool) -> None:
        """client_early_traffic_secret over the ClientHello (RFC 9846 §7.1), released
        for 0-RTT (RFC 9001 §4.6.1): written by the client, read by the server."""
        hash_name = SUITE_HASH[suite]
        ch_hash = self.transcript.digest_with(b"", hash_name)
        secret = KeySchedule(suite, psk).client_early_traffic_secret(ch_hash)
        self.keylog(KeyLogLabel.CLIENT_EARLY_TRAFFIC_SECRET, secret)
        self.install(Epoch.ZERO_RTT, is_write, secret, suite)

    def keylog(self, label: KeyLogLabel, secret: bytes) -> None:
        if self.config.keylog is not None:
            self.config.keylog(format_keylog_line(label, self.client_random, secret))

    def derive_handshake_secrets(self, shared_secret: bytes) -> None:
        """Handshake Secret and both handshake traffic secrets (RFC 9846 §7.1)."""
        self.key_schedule = KeySchedule(self.suite, self.psk)
        self.key_schedule.set_shared_secret(shared_secret)
        client, server = self.key_schedule.handshake_traffic_secrets(self.transcript.digest())
        self.client_handshake_secret, self.server_handshake_secret = client, server
        self.keylog(KeyLogLabel.CLIENT_HANDSHAKE_TRAFFIC_SECRET, client)
        self.keylog(KeyLogLabel.SERVER_HANDSHAKE_TRAFFIC_SECRET, server)

    def derive_application_secrets(self) -> None:
        """Main Secret, application and exporter secrets over CH..server Finished (§7.1)."""
        schedule = self.schedule
        schedule.enter_main()
        transcript_hash = self.transcript.digest()
        client, server = schedule.application_traffic_secrets(transcript_hash)
        self.client_application_secret, self.server_application_secret = client, server
        self.exporter_secret = schedule.exporter_secret(transcript_hash)
        self.keylog(KeyLogLabel.CLIENT_TRAFFIC_SECRET_0, client)
        self.keylog(KeyLogLabel.SERVER_TRAFFIC_SECRET_0, server)
        self.keylog(KeyLogLabel.EXPORTER_SECRET, self.exporter_secret)

    def finished_data(self, base_key: bytes) -> bytes:
        """verify_data over the transcript so far (RFC 9846 §4.5.3)."""
        return verify_data(self.schedule.hash_name, base_key, self.transcript.digest())

    def check_finished(self, base_key: bytes, received: bytes) -> None:
        """RFC 9846 §4.5.3: a wrong verify_data is a ``decrypt_error``."""
        expected = self.finished_data(base_key)
        if len(received) != len(expected):
            raise alert(AlertDescription.decode_error, "Finished has the wrong length")
        if not hmac.compare_digest(expected, received):
            raise alert(AlertDescription.decrypt_error, "Finished verify_data mismatch")

    def release_handshake_state(self) -> None:
        """The handshake is over: drop what only it needed (issue 10, memory per idle
        connection). The INITIAL and HANDSHAKE readers go (nothing more is read there:
        ``receive`` refuses data at an epoch other than ONE_RTT before it looks for a
        reader) and so do the handshake traffic secrets (RFC 9001 §4.9.2: the HANDSHAKE
        keys are discarded once the handshake is confirmed)."""
        for epoch in (Epoch.INITIAL, Epoch.HANDSHAKE):
            self.readers.pop(epoch, None)
        self.client_handshake_secret = self.server_handshake_secret = b""
        # the application traffic secrets are installed (QUIC derives the next key
        # phase from its own copy, RFC 9001 §6.1), the ticket is issued, the key log
        # written: the transcript hash (native memory too), the traffic secrets, the
        # ClientHello random and our encoded transport parameters are not read again
        self.transcript.release()
        self.client_application_secret = self.server_application_secret = b""
        self.client_random = self.transport_parameters = b""
        if not self.config.is_client:
            # a connected server reads no handshake message (each is unexpected_message
            # before any setting is looked at) and issues no other ticket: the
            # connection's own settings (certificate chain, verification, ALPN lists,
            # 0-RTT check, about 1 KB) give way to one shared blank server config, and
            # its 1-RTT reader goes too (the engine refuses 1-RTT data without one)
            self.config = _SETTLED_SERVER_CONFIG
            self.readers = {}
        # the secrets are derived (the exporter from exporter_secret and the suite's
        # hash): the key schedule and the secrets of its chain go
        self.key_schedule = None
        # tickets are issued and the version negotiated: the resumption secret and the
        # transport-parameter hook go
        self.resumption_secret = None
        self.on_client_transport_parameters = None

    # -- input -----------------------------------------------------------------------
    def set_recv_epoch(self, epoch: Epoch) -> None:
        """Move reading to ``epoch``; RFC 9846 §5.1: nothing may be left at the old one."""
        if self.readers[self.recv_epoch].pending:
            raise alert(
                AlertDescription.unexpected_message,
                f"handshake data left at {self.recv_epoch.name} across a key change",
            )
        self.recv_epoch = epoch

    def now(self) -> datetime:
        clock = self.config.clock
        if clock is None:
            return datetime.fromtimestamp(0, tz=UTC)  # unused: verification is off
        return clock()


class Role:
    """Base of the client and server state machines (see module docstring)."""

    __slots__ = ("ctx", "state")  # one per connection: no instance dict (issue 10)

    #: state -> {handshake type -> handler(role, message, raw)}
    TRANSITIONS: ClassVar[dict[Any, dict[int, Callable[[Any, Any, bytes], None]]]] = {}

    def __init__(self, ctx: HandshakeContext, initial_state: Enum) -> None:
        self.ctx = ctx
        self.state: Enum = initial_state

    def start(self) -> None:
        """Produce the first flight (client); servers wait for the ClientHello."""

    def handle(self, msg_type: int, body: bytes, raw: bytes) -> None:
        handler = self.TRANSITIONS.get(self.state, {}).get(msg_type)
        if handler is None:
            self.unexpected(msg_type)
            raise alert(
                AlertDescription.unexpected_message,
                f"handshake message type {msg_type} not expected in state {self.state.name}",
            )
        handler(self, decode_message(msg_type, body), raw)

    def unexpected(self, msg_type: int) -> None:
        """Hook for role-specific errors on an unexpected message (default: none)."""
