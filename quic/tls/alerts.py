"""TLS alerts (RFC 9846 §6) and the exception that carries one.

In QUIC there is no record layer: a fatal alert becomes a CONNECTION_CLOSE with
CRYPTO_ERROR ``0x0100 + alert`` (RFC 9001 §4.8). Every TLS failure raises
:class:`TlsAlertError`; the QUIC connection converts it in one place.
"""

from __future__ import annotations

from enum import IntEnum

from quic.errors import crypto_error

__all__ = ["AlertDescription", "TlsAlertError"]


class AlertDescription(IntEnum):
    """AlertDescription values (RFC 9846 §6)."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    general_error = 117
    no_application_protocol = 120


class TlsAlertError(Exception):
    """A fatal TLS alert; ``quic_error_code`` is the matching CRYPTO_ERROR."""

    def __init__(self, alert: AlertDescription, reason: str = "") -> None:
        super().__init__(alert, reason)
        self.alert = alert
        self.reason = reason

    @property
    def quic_error_code(self) -> int:
        return crypto_error(int(self.alert))

    def __str__(self) -> str:
        text = f"TLS alert {self.alert.name} ({int(self.alert)})"
        return f"{text}: {self.reason}" if self.reason else text
