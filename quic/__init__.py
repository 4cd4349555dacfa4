"""QUIC transport (RFC 9000/9001/9002/9221/9369) in pure Python."""

from quic.errors import QuicProtocolError, TransportErrorCode

__all__ = ["QuicProtocolError", "TransportErrorCode"]
