"""Per-session and per-stream state, configuration, and the CONNECT handshake fields.

Theory of operation
-------------------
A :class:`Session` is one WebTransport session, named by the stream ID of its CONNECT
request (draft-ietf-webtrans-http3-16 §2.2). Its life, as data:

==============  ===========================================================  ======
state           meaning                                                      side
==============  ===========================================================  ======
PENDING         ``connect()`` called, waiting for the server's SETTINGS      client
CONNECTING      CONNECT sent, no final response yet (streams may be opened   client
                optimistically, §4)
REQUESTED       CONNECT received, waiting for ``accept()``/``reject()``;     server
                capsules, streams and datagrams for it are buffered (§3.2,
                §4.7)
ESTABLISHED     2xx sent / received                                          both
CLOSED          terminated (§6); its streams were reset with WT_SESSION_GONE both
==============  ===========================================================  ======

A :class:`WtStream` is one WebTransport data stream: which session it belongs to, which
halves are still open, how many body bytes were delivered and how many of those the
application consumed (credit follows consumption, RFC 9000 §4.2, draft-16 §5.4), and —
while its session is not yet established — the bytes received so far (bounded, §4.7).
A stream is *finished* (and leaves every table) once its sending half is done and its
receiving half is settled: aborted (reset by the peer, stopped by us) or ended with every
delivered byte consumed.

The header helpers build and parse the extended CONNECT request and its response for
each draft (:mod:`pywebtransport.protocol.drafts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from h3.capsules import CapsuleReader
from pywebtransport.protocol.drafts import PROFILES, Draft
from pywebtransport.protocol.flow import SessionFlowControl
from pywebtransport.protocol.sfv import parse_string_list, serialize_string_list
from quic.buffer import varint_size

__all__ = [
    "USABLE_STATES",
    "WEBTRANSPORT_TOKENS",
    "Session",
    "SessionState",
    "WebTransportConfiguration",
    "WtStream",
    "connect_request_headers",
    "header_value",
    "offered_protocols",
]

Headers = list[tuple[bytes, bytes]]

#: The ``:protocol`` tokens that ask for a WebTransport session.
WEBTRANSPORT_TOKENS = frozenset().union(*(p.tokens for p in PROFILES.values()))

_WT_UNI_TYPE_SIZE = varint_size(0x54)  # draft-16 §4.2
_WT_BIDI_SIGNAL_SIZE = varint_size(0x41)  # draft-16 §4.3


@dataclass(kw_only=True)
class WebTransportConfiguration:
    """WebTransport settings of one endpoint (both roles)."""

    #: drafts we speak; the newest one the peer also speaks is used (draft-16 §7.1)
    drafts: tuple[Draft, ...] = (Draft.DRAFT16, Draft.DRAFT13, Draft.DRAFT07, Draft.DRAFT02)
    #: concurrent sessions per connection (server: admitted, the rest refused with
    #: H3_REQUEST_REJECTED, draft-16 §5.2; draft-07 setting value); also bounds the
    #: CONNECT requests parked until the client's SETTINGS arrive (§7.1)
    max_sessions: int = 16
    #: draft-13/16 flow-control windows (SETTINGS_WT_INITIAL_MAX_*); all 0 = no flow
    #: control, except that a server offering draft-13 announces (and enforces)
    #: drafts.DRAFT13_WINDOWS for each 0 (Safari on iOS needs all three, issue 11)
    initial_max_data: int = 1 << 20
    initial_max_streams_bidi: int = 100
    initial_max_streams_uni: int = 100
    #: streams waiting for their session, and bytes kept per such stream (§4.7); an
    #: excess stream is refused with WT_BUFFERED_STREAM_REJECTED
    max_buffered_streams: int = 32
    max_buffered_stream_bytes: int = 1 << 16
    #: datagrams waiting for their session, and their total bytes (§4.7): further ones
    #: are dropped
    max_buffered_datagrams: int = 64
    max_buffered_datagram_bytes: int = 1 << 16
    #: session IDs remembered individually above the "all below are used" floor, so
    #: late streams of a closed session are refused with WT_SESSION_GONE (§6); beyond
    #: it the floor jumps over the oldest gap (:class:`~pywebtransport.protocol.ids.ClaimedIds`)
    max_claimed_session_ids: int = 1024
    #: capsule bytes a client may send before the server accepts (§3.2)
    max_buffered_capsule_bytes: int = 1 << 16
    #: client: close the connection with WT_REQUIREMENTS_NOT_MET when the server's
    #: SETTINGS allow no draft we speak (draft-16 §3.1)
    close_on_requirements_not_met: bool = False
    #: draft-16 §3.1 requires the peer's empty reset_stream_at transport parameter
    #: before a draft-16 session. True: enforced (server: the CONNECT is malformed,
    #: reset with H3_MESSAGE_ERROR; client: draft-16 is not selected). False (default):
    #: a draft-16 peer without it is still served and its streams are reset with plain
    #: RESET_STREAM — pywebtransport 0.21.1 (quinn) does not send it (measured, issue 11)
    require_reset_stream_at: bool = False
    #: server: answer plain HTTP requests with this status (they are not ours)
    plain_request_status: int = 404

    @property
    def flow_control_windows(self) -> tuple[int, int, int]:
        return (self.initial_max_data, self.initial_max_streams_bidi, self.initial_max_streams_uni)


class SessionState(Enum):
    __hash__ = object.__hash__  # members are singletons: not Enum's Python-level hash(name)

    PENDING = "pending"
    CONNECTING = "connecting"
    REQUESTED = "requested"
    ESTABLISHED = "established"
    CLOSED = "closed"


_ESTABLISHED = SessionState.ESTABLISHED
_CONNECTING = SessionState.CONNECTING
#: The states in which streams may be opened and datagrams sent (:attr:`Session.usable`).
USABLE_STATES = frozenset((_ESTABLISHED, _CONNECTING))


class Session:
    """One WebTransport session; see the module docstring."""

    __slots__ = (
        "authority",
        "capsules",
        "close_received",
        "draft",
        "fin_received",
        "fin_sent",
        "flow",
        "headers",
        "path",
        "pending_data",
        "pending_fin",
        "protocols",
        "session_id",
        "state",
        "streams",
    )

    def __init__(self, session_id: int, state: SessionState, draft: Draft | None) -> None:
        self.session_id = session_id
        self.state = state
        self.draft = draft
        self.authority = ""
        self.path = ""
        # a client's extra CONNECT header fields; a server keeps none (the request's
        # fields went up with SessionRequested: not kept per idle session, issue 10)
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.protocols: tuple[str, ...] = ()  # offered (client) / received (server)
        self.capsules = CapsuleReader()
        self.flow: SessionFlowControl | None = None
        self.streams: dict[int, None] = {}  # stream IDs (a dict as a set: 64 B empty)
        self.pending_data = bytearray()  # server: capsule bytes before accept (§3.2)
        self.pending_fin = False
        self.fin_sent = False
        self.fin_received = False
        self.close_received = False

    @property
    def usable(self) -> bool:
        """Streams may be opened and datagrams sent (client optimistically, §4)."""
        state = self.state  # per datagram sent: module aliases, not Enum class attributes
        return state is _ESTABLISHED or state is _CONNECTING


class WtStream:
    """One WebTransport data stream; see the module docstring."""

    __slots__ = (
        "bidi",
        "buffer",
        "buffered_bytes",
        "consumed",
        "fin_received",
        "has_recv",
        "header_size",
        "local",
        "received",
        "recv_aborted",
        "send_done",
        "session_id",
        "stream_id",
    )

    def __init__(self, stream_id: int, session_id: int, local: bool) -> None:
        self.stream_id = stream_id
        self.session_id = session_id
        self.local = local
        self.bidi = not stream_id & 2
        self.header_size = (_WT_BIDI_SIGNAL_SIZE if self.bidi else _WT_UNI_TYPE_SIZE) + varint_size(
            session_id
        )
        self.received = 0  # stream-body bytes delivered to the application
        self.consumed = 0  # ... of which the application is done with (credited)
        self.send_done = not self.bidi and not local  # peer's uni stream: no send half
        self.has_recv = self.bidi or not local  # our uni stream: no receive half
        self.fin_received = False
        self.recv_aborted = False  # reset by the peer or stopped by us
        self.buffer: list[tuple[bytes, bool]] | None = None  # waiting for the session
        self.buffered_bytes = 0

    @property
    def recv_done(self) -> bool:
        """No more data will be delivered on this stream."""
        return not self.has_recv or self.fin_received or self.recv_aborted

    @property
    def unconsumed(self) -> int:
        """Delivered bytes the application has not consumed yet (0 once aborted)."""
        return 0 if self.recv_aborted else self.received - self.consumed

    @property
    def finished(self) -> bool:
        """Both halves over and every delivered byte consumed: the stream can go
        (``send_done and recv_done and not unconsumed``, without their property calls:
        asked several times per stream)."""
        if not self.send_done:
            return False
        if self.recv_aborted:
            return True
        return (self.fin_received or not self.has_recv) and self.received == self.consumed


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The value of field ``name``; repeated fields are joined with ", " (RFC 9110 §5.3)."""
    values = [v for k, v in headers if k == name]
    if not values:
        return None
    return b", ".join(values)


def connect_request_headers(
    draft: Draft,
    authority: str,
    path: str,
    protocols: tuple[str, ...],
    extra: Iterable[tuple[bytes, bytes]],
) -> Headers:
    """The extended CONNECT request of ``draft`` (draft-16 §3.2; draft-02 §3.3)."""
    profile = PROFILES[draft]
    headers: Headers = [
        (b":method", b"CONNECT"),
        (b":protocol", profile.protocol),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", path.encode()),
    ]
    headers.extend(profile.request_headers)
    if protocols and profile.protocol_negotiation:
        headers.append((b"wt-available-protocols", serialize_string_list(protocols).encode()))
    headers.extend(extra)
    return headers


def offered_protocols(headers: Headers) -> tuple[str, ...]:
    """WT-Available-Protocols of a request; empty when absent or malformed (§3.3)."""
    raw = header_value(headers, b"wt-available-protocols")
    if raw is None:
        return ()
    parsed = parse_string_list(raw)
    return tuple(parsed) if parsed else ()
