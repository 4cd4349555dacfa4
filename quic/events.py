"""Events a QUIC connection reports to the layer above (small frozen slotted dataclasses).

The application drains them with ``QuicConnection.next_event()`` after feeding input or
firing timers. They are the whole public surface of what happened on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

__all__ = [
    "ConnectionIdIssued",
    "ConnectionIdRetired",
    "ConnectionTerminated",
    "DatagramAcknowledged",
    "DatagramReceived",
    "HandshakeCompleted",
    "PingAcknowledged",
    "ProtocolNegotiated",
    "QuicEvent",
    "StopSendingReceived",
    "StreamDataReceived",
    "StreamReset",
    "StreamWritable",
    "event_factory",
    "event_factory3",
]

_E = TypeVar("_E")


@dataclass(frozen=True, slots=True)
class QuicEvent:
    """Base class of every connection event."""


@dataclass(frozen=True, slots=True)
class ProtocolNegotiated(QuicEvent):
    """ALPN is known (TLS EncryptedExtensions processed)."""

    alpn_protocol: str | None


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(QuicEvent):
    """The TLS handshake finished; 1-RTT keys are installed."""

    alpn_protocol: str | None
    session_resumed: bool = False
    early_data_accepted: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(QuicEvent):
    """The connection is closed (by either side, by idle timeout, or by an error).

    ``is_application`` tells an application CONNECTION_CLOSE (0x1d) from a transport one;
    ``by_peer`` is true when the peer sent the close.
    """

    error_code: int
    reason_phrase: str
    frame_type: int | None = None
    is_application: bool = False
    by_peer: bool = False
    idle_timeout: bool = False


@dataclass(frozen=True, slots=True)
class StreamDataReceived(QuicEvent):
    """In-order bytes arrived on a stream; ``end_stream`` when the FIN was reached.

    ``early_data`` (server only): the bytes were delivered before the handshake
    completed, so they came in 0-RTT packets — a server opens no 1-RTT packet before
    then (RFC 9001 §5.7) — and may be a replay (RFC 9001 §9.2, RFC 8470). Data that
    needed a later 1-RTT packet to become contiguous is not early."""

    stream_id: int
    data: bytes
    end_stream: bool
    early_data: bool = False


@dataclass(frozen=True, slots=True)
class StreamReset(QuicEvent):
    """The peer sent RESET_STREAM: its sending half of the stream is abandoned.

    After a RESET_STREAM_AT (draft-ietf-quic-reliable-stream-reset) ``reliable_size`` is
    its Reliable Size: the first ``reliable_size`` bytes were all delivered (as
    :class:`StreamDataReceived`) before this event; 0 after a RESET_STREAM."""

    stream_id: int
    error_code: int
    final_size: int
    reliable_size: int = 0


@dataclass(frozen=True, slots=True)
class StopSendingReceived(QuicEvent):
    """The peer sent STOP_SENDING; our sending half has been reset with that code."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class StreamWritable(QuicEvent):
    """A stream's send buffer drained below its low-water mark (backpressure release)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DatagramReceived(QuicEvent):
    """A DATAGRAM frame arrived (RFC 9221)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DatagramAcknowledged(QuicEvent):
    """A datagram we sent was acknowledged (``datagram_id`` from ``send_datagram``)."""

    datagram_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged(QuicEvent):
    """A PING sent with ``send_ping(uid)`` was acknowledged."""

    uid: int


@dataclass(frozen=True, slots=True)
class ConnectionIdIssued(QuicEvent):
    """We issued a new local connection ID: the endpoint must route it to us."""

    connection_id: bytes


@dataclass(frozen=True, slots=True)
class ConnectionIdRetired(QuicEvent):
    """A local connection ID is retired: the endpoint must stop routing it."""

    connection_id: bytes


def _slot_setters(cls: type[Any], count: int) -> tuple[list[str], list[Any]]:
    """The field names of a frozen slots dataclass of ``count`` fields and their slots'
    ``__set__``, in field order (:class:`TypeError` for another number of fields)."""
    names = [f.name for f in fields(cls)]
    if len(names) != count:
        raise TypeError(f"{cls.__name__} has {len(names)} fields, not {count}")
    slots = vars(cls)
    return names, [slots[name].__set__ for name in names]


def event_factory(cls: type[_E]) -> Callable[[Any, Any, Any, Any], _E]:
    """``cls(a, b, c, d)`` for a frozen slots dataclass of four fields, without its
    ``__init__`` (which sets each frozen slot with an ``object.__setattr__`` call): the
    object made bare and its slots set by their own descriptors, in field order. For
    events made per delivery (tests/quic/test_hot_path_inlines.py,
    tests/h3/test_event_inlines.py, tests/wt/test_event_inlines.py check they equal the
    constructed ones)."""
    names, setters = _slot_setters(cls, 4)
    set_a, set_b, set_c, set_d = setters
    new = object.__new__

    def make(a: Any, b: Any, c: Any, d: Any) -> _E:
        event = new(cls)
        set_a(event, a)
        set_b(event, b)
        set_c(event, c)
        set_d(event, d)
        return event

    make.__doc__ = f"``{cls.__name__}({', '.join(names)})``, made faster."
    return make


def event_factory3(cls: type[_E]) -> Callable[[Any, Any, Any], _E]:
    """:func:`event_factory` for a frozen slots dataclass of three fields (an event made
    per stream: WebTransport's StreamOpened, tests/wt/test_event_inlines.py)."""
    names, setters = _slot_setters(cls, 3)
    set_a, set_b, set_c = setters
    new = object.__new__

    def make(a: Any, b: Any, c: Any) -> _E:
        event = new(cls)
        set_a(event, a)
        set_b(event, b)
        set_c(event, c)
        return event

    make.__doc__ = f"``{cls.__name__}({', '.join(names)})``, made faster."
    return make


#: ``StreamDataReceived(stream_id, data, end_stream, early_data)``, per delivery
stream_data_received: Callable[[int, bytes, bool, bool], StreamDataReceived] = event_factory(
    StreamDataReceived
)
