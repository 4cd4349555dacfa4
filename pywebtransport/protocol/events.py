"""Events the WebTransport protocol core reports (small frozen slotted dataclasses).

Sessions are named by their session ID (the stream ID of the CONNECT request), streams
by their QUIC stream ID. Stream error codes are WebTransport application codes
(32-bit); ``None`` when the peer used an HTTP/3 code outside the WT_APPLICATION_ERROR
range (draft-ietf-webtrans-http3-16 §4.4), in which case ``http_code`` tells which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pywebtransport.protocol.drafts import Draft
from quic.events import event_factory, event_factory3

__all__ = [
    "DatagramReceived",
    "FlowCreditAvailable",
    "SessionClosed",
    "SessionDraining",
    "SessionEstablished",
    "SessionRejected",
    "SessionRequested",
    "StopSending",
    "StreamData",
    "StreamOpened",
    "StreamReset",
    "WebTransportEvent",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class WebTransportEvent:
    """Base class of the WebTransport events."""


@dataclass(frozen=True, slots=True)
class SessionRequested(WebTransportEvent):
    """Server: a client asks for a session; answer with ``accept`` or ``reject``.

    ``protocols`` is the parsed WT-Available-Protocols list (draft-16 §3.3), empty when
    absent or malformed.
    """

    session_id: int
    authority: str
    path: str
    headers: Headers
    draft: Draft
    protocols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionEstablished(WebTransportEvent):
    """Client: the server accepted the session (2xx). ``protocol`` is the validated
    WT-Protocol choice, if any."""

    session_id: int
    headers: Headers
    draft: Draft
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRejected(WebTransportEvent):
    """Client: the session was refused. ``status`` is the HTTP status (0 when no
    response came: the server does not speak WebTransport, or the request was reset)."""

    session_id: int
    status: int
    headers: Headers
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SessionClosed(WebTransportEvent):
    """A session ended.

    ``code``/``reason`` come from WT_CLOSE_SESSION (0 and "" for a plain FIN,
    draft-16 §6). ``http_code`` is set when the session ended abruptly: the CONNECT
    stream was reset (the peer's code), we aborted it on a protocol error (our code),
    or the connection went away.
    """

    session_id: int
    code: int
    reason: str
    by_peer: bool
    http_code: int | None = None


@dataclass(frozen=True, slots=True)
class SessionDraining(WebTransportEvent):
    """The peer asked for a graceful end (WT_DRAIN_SESSION, or HTTP/3 GOAWAY, §4.6)."""

    session_id: int


@dataclass(frozen=True, slots=True)
class StreamOpened(WebTransportEvent):
    """The peer opened a WebTransport stream on an established session."""

    session_id: int
    stream_id: int
    bidirectional: bool


@dataclass(frozen=True, slots=True)
class StreamData(WebTransportEvent):
    """Bytes (after the stream header) on a WebTransport stream; ``fin`` at its end."""

    session_id: int
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True, slots=True)
class StreamReset(WebTransportEvent):
    """The peer reset its sending half of a WebTransport stream (§4.4)."""

    session_id: int
    stream_id: int
    code: int | None
    http_code: int


@dataclass(frozen=True, slots=True)
class StopSending(WebTransportEvent):
    """The peer no longer reads a WebTransport stream (STOP_SENDING, §4.4)."""

    session_id: int
    stream_id: int
    code: int | None
    http_code: int


@dataclass(frozen=True, slots=True)
class DatagramReceived(WebTransportEvent):
    """A datagram for a session (HTTP datagram or DATAGRAM capsule, §4.5)."""

    session_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FlowCreditAvailable(WebTransportEvent):
    """The peer raised a draft-16 session limit that had blocked us (§5.6):
    ``kind`` is ``"data"``, ``"bidi"`` or ``"uni"``."""

    session_id: int
    kind: str


#: ``StreamData(session_id, stream_id, data, fin)``, per chunk of a stream, without its
#: dataclass ``__init__`` (quic.events.event_factory)
stream_data: Callable[[int, int, bytes, bool], StreamData] = event_factory(StreamData)

#: ``StreamOpened(session_id, stream_id, bidirectional)``, per stream the peer opens,
#: without its dataclass ``__init__`` (quic.events.event_factory3)
stream_opened: Callable[[int, int, bool], StreamOpened] = event_factory3(StreamOpened)
