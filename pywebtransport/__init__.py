"""WebTransport over HTTP/3: sessions, streams, datagrams and the application API."""

__version__ = "0.1.0"
