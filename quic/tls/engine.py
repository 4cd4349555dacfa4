"""Sans-I/O TLS 1.3 handshake engine for QUIC (RFC 9846, RFC 9001 §4).

Theory of operation
-------------------
QUIC carries TLS handshake messages in CRYPTO frames, one byte stream per encryption
level, with no TLS record layer (RFC 9001 §4). The engine is driven entirely by its
caller and never touches the network or the clock:

- :meth:`TlsEngine.start` -- a client produces its ClientHello (a server does nothing);
- :meth:`TlsEngine.receive` -- in-order CRYPTO bytes of one epoch; complete messages
  are processed at once (they may span calls, several may share one);
- :meth:`TlsEngine.pop_output` -- handshake bytes to send, as ``(epoch, bytes)`` in
  order; :meth:`TlsEngine.pop_secrets` -- :class:`SecretAvailable` items, in the order
  QUIC should install them (RFC 9001 §4.1.4).

Any failure raises :class:`~quic.tls.alerts.TlsAlertError` (the QUIC connection sends
CRYPTO_ERROR ``0x100 + alert``, RFC 9001 §4.8) -- except the two RFC 9001 rules that name
a transport error (post-handshake CertificateRequest, bad NewSessionTicket early_data),
which raise :class:`~quic.errors.QuicProtocolError` PROTOCOL_VIOLATION. No other
exception escapes :meth:`receive`: an unexpected internal one becomes
``internal_error``. After a failure the engine stays failed and re-raises the error.

The role logic lives in :mod:`quic.tls.client` and :mod:`quic.tls.server`; the shared
state in :mod:`quic.tls.handshake`. Secret order: client -- HANDSHAKE read, write (on
the ServerHello), ONE_RTT read, write (after sending its Finished); server -- HANDSHAKE
read, write (on the ClientHello), ONE_RTT write (after sending its Finished), ONE_RTT
read (after verifying the client Finished).
"""

from __future__ import annotations

from quic.errors import QuicProtocolError
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.client import ClientRole
from quic.tls.config import TlsConfig
from quic.tls.handshake import Epoch, HandshakeContext, Role, SecretAvailable, alert
from quic.tls.key_schedule import export_keying_material
from quic.tls.messages import HandshakeType, NewSessionTicket
from quic.tls.server import ServerRole
from quic.tls.suites import SUITE_HASH

__all__ = ["Epoch", "SecretAvailable", "TlsEngine"]


class TlsEngine(HandshakeContext):
    """One endpoint's TLS 1.3 handshake (see module docstring)."""

    __slots__ = ("_failure", "_role")

    def __init__(self, config: TlsConfig, transport_parameters: bytes) -> None:
        super().__init__(config, transport_parameters)
        self._role: Role = ClientRole(self) if config.is_client else ServerRole(self)
        self._failure: Exception | None = None

    @property
    def is_client(self) -> bool:
        return self.config.is_client

    @property
    def state(self) -> str:
        """Name of the current handshake state (for logs and tests)."""
        return self._role.state.name

    @property
    def new_session_tickets(self) -> list[NewSessionTicket]:
        """The latest tickets received from the server (client only; a few are kept,
        ``config.session_ticket_handler`` gets every usable one)."""
        return list(self._role.new_session_tickets) if isinstance(self._role, ClientRole) else []

    @property
    def requested_server_name(self) -> str | None:
        """SNI sent by the client (server only)."""
        return self._role.requested_server_name if isinstance(self._role, ServerRole) else None

    def start(self) -> None:
        """Client: queue the ClientHello at INITIAL. Server: no-op."""
        self._role.start()

    def receive(self, epoch: Epoch, data: bytes) -> None:
        """Feed in-order CRYPTO bytes received at ``epoch`` (RFC 9001 §4.1.3)."""
        if self._failure is not None:
            raise self._failure
        try:
            self._receive(epoch, data)
        except (TlsAlertError, QuicProtocolError) as exc:
            self._failure = exc
            raise
        except Exception as exc:  # never let a non-protocol exception escape
            failure = alert(AlertDescription.internal_error, f"{type(exc).__name__}: {exc}")
            self._failure = failure
            raise failure from exc

    def _receive(self, epoch: Epoch, data: bytes) -> None:
        if not data:
            return
        reader = self.readers.get(epoch)
        if epoch != self.recv_epoch:
            # CRYPTO data at an epoch TLS is not reading (RFC 9001 §4.1.3; ZERO_RTT
            # never carries CRYPTO frames, RFC 9001 §8.3).
            raise alert(
                AlertDescription.unexpected_message,
                f"handshake data at epoch {int(epoch)}, expected {self.recv_epoch.name}",
            )
        if reader is None:
            # a connected server: every handshake message the client could send now is
            # unexpected (RFC 9001 §6: no KeyUpdate; no post-handshake authentication,
            # §4.4), so no reader is kept to collect one (see release_handshake_state)
            raise alert(AlertDescription.unexpected_message, "handshake data after the handshake")
        reader.feed(data)
        while (item := reader.next_message()) is not None:
            msg_type, body, raw = item
            if msg_type == HandshakeType.key_update:
                # RFC 9001 §6: QUIC endpoints MUST treat a TLS KeyUpdate as a connection
                # error of type 0x010a (unexpected_message).
                raise alert(AlertDescription.unexpected_message, "KeyUpdate is not used in QUIC")
            if msg_type == HandshakeType.end_of_early_data:
                # RFC 9001 §8.3: EndOfEarlyData is not used with QUIC.
                raise alert(AlertDescription.unexpected_message, "EndOfEarlyData in QUIC")
            self._role.handle(msg_type, body, raw)

    def pop_output(self) -> list[tuple[Epoch, bytes]]:
        """Handshake bytes to send, per epoch, in order (consecutive ones merged)."""
        return self.take_output()

    def pop_secrets(self) -> list[SecretAvailable]:
        """New traffic secrets, in installation order."""
        return self.take_secrets()

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        """TLS-Exporter with the exporter_secret (RFC 9846 §7.5).

        Available once the server Finished has been sent (server) or verified (client).
        """
        if self.exporter_secret is None:
            raise RuntimeError("the exporter is not available before the handshake completes")
        return export_keying_material(
            SUITE_HASH[self.suite], self.exporter_secret, label, context, length
        )
