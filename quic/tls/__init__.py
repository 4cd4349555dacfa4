"""TLS 1.3 (RFC 9846) handshake engine for QUIC (RFC 9001), Sans-I/O."""
