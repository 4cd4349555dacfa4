"""HTTP/3 (RFC 9114), QPACK (RFC 9204), extended CONNECT, HTTP datagrams and capsules."""
