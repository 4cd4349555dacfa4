"""Events the HTTP/3 connection reports (small frozen slotted dataclasses)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from quic.events import event_factory

__all__ = [
    "ConnectionShutdownInitiated",
    "DataReceived",
    "DatagramReceived",
    "GoAwayReceived",
    "H3Event",
    "HeadersReceived",
    "RequestStreamReset",
    "SettingsReceived",
    "StopSendingReceived",
    "WebTransportStreamDataReceived",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class H3Event:
    """Base class of HTTP/3 events."""


@dataclass(frozen=True, slots=True)
class HeadersReceived(H3Event):
    """A header section (request, response, interim response or trailers) arrived.

    The headers are validated (RFC 9114 §4.2, §4.3); ``stream_ended`` is true when the
    peer's FIN came with it. ``early_data`` (server, request head): the request came in
    0-RTT, or an intermediary marked it ``Early-Data: 1`` — it may be a replay (RFC 8470;
    :mod:`h3.early` applies ``H3Configuration.early_data_policy`` first).
    """

    stream_id: int
    headers: Headers
    stream_ended: bool
    early_data: bool = False


@dataclass(frozen=True, slots=True)
class DataReceived(H3Event):
    """Body bytes (DATA frame payloads) on a request stream."""

    stream_id: int
    data: bytes
    stream_ended: bool


@dataclass(frozen=True, slots=True)
class DatagramReceived(H3Event):
    """An HTTP datagram (RFC 9297 §2.1) for the request stream ``stream_id``."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SettingsReceived(H3Event):
    """The peer's SETTINGS (RFC 9114 §7.2.4), unknown ids included. ``settings`` is the
    connection's own record (:attr:`H3Connection.peer_settings`): read it, do not change it."""

    settings: dict[int, int]


@dataclass(frozen=True, slots=True)
class GoAwayReceived(H3Event):
    """The peer sent GOAWAY: requests on ``stream_id`` and above were not processed."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionShutdownInitiated(H3Event):
    """We sent GOAWAY; no new requests will be accepted."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class RequestStreamReset(H3Event):
    """A stream was abandoned: the peer reset its sending half (RESET_STREAM), or, with
    ``local``, we reset the stream ourselves for a stream error (RFC 9114 §8)."""

    stream_id: int
    error_code: int
    local: bool = False


@dataclass(frozen=True, slots=True)
class StopSendingReceived(H3Event):
    """The peer asked us to stop sending on a stream (STOP_SENDING)."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WebTransportStreamDataReceived(H3Event):
    """Bytes on a WebTransport stream (bidi signal 0x41 or uni type 0x54).

    ``session_id`` is the stream ID of the session's CONNECT request.
    """

    stream_id: int
    session_id: int
    data: bytes
    stream_ended: bool


#: ``WebTransportStreamDataReceived(stream_id, session_id, data, stream_ended)``, per chunk
#: of a WebTransport stream, without its dataclass ``__init__`` (quic.events.event_factory)
webtransport_stream_data: Callable[[int, int, bytes, bool], WebTransportStreamDataReceived] = (
    event_factory(WebTransportStreamDataReceived)
)
