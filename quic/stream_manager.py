"""Stream identifiers, stream limits and the table of live streams (RFC 9000 §2.1, §3.2,
§4.6, §19.4-§19.5, §19.8, §19.10-§19.14).

Theory of operation
-------------------
A stream id carries its type in the two low bits (RFC 9000 §2.1): bit 0 is the
initiator (0 client, 1 server), bit 1 the direction (0 bidirectional, 1
unidirectional); ``id >> 2`` is the stream's index within its type. The manager keeps
one :class:`_Space` per type, indexed by ``id & 3``, with the number of streams opened
so far (ids are used in increasing order) and the limit on that number:

* for the two types *we* initiate, ``limit`` is the peer's MAX_STREAMS. Opening past it
  raises :class:`StreamLimitReached` and queues one STREAMS_BLOCKED per limit (§4.6,
  §19.14);
* for the two types the *peer* initiates, ``limit`` is the MAX_STREAMS we advertised. A
  frame for an index at or past it is STREAM_LIMIT_ERROR (§4.6). Opening an index
  implicitly opens every lower index of the same type (§3.2). When peer streams finish,
  the limit is raised to ``finished + concurrency`` so the peer can always have the
  configured number of streams open, and a MAX_STREAMS update is queued (§4.6).

Every frame that names a stream goes through one check driven by ``_FRAME_PART``,
which says whether the frame concerns our receiving half (STREAM, RESET_STREAM,
RESET_STREAM_AT, STREAM_DATA_BLOCKED: sent by the stream's sender) or our sending half
(MAX_STREAM_DATA, STOP_SENDING: sent by the stream's receiver). A frame for a half we do not have is
STREAM_STATE_ERROR (§19.4, §19.5, §19.8, §19.10, §19.13); a frame for a stream of ours
that we have not opened yet is STREAM_STATE_ERROR; a frame for a stream that already
finished and was forgotten is ignored (its id is below the opened count and it is not
in the table), so late retransmissions never reopen streams.

Stream objects are created with their initial credits from the transport parameters
(RFC 9000 §18.2): our ``initial_max_stream_data_*`` values size the receive windows, the
peer's size the send credits. The values are given as :class:`StreamLimits`.

Out-of-order data is bounded per stream (holes) and per connection: every receiving
half charges the manager's one :class:`~quic.reassembly.ReassemblyBudget`
(out-of-order bytes and holes over all streams, RFC 9000 §21.7). A stream that is reset
returns what it held; a stream only leaves the table once all its data was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.stream import QuicStream
from quic.stream_recv import (
    DEFAULT_MAX_REASSEMBLY_BYTES,
    DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
    DEFAULT_MAX_STREAM_FRAGMENTS,
    ReassemblyBudget,
    RecvStream,
)
from quic.stream_send import SendStream

__all__ = [
    "FRAME_MAX_STREAM_DATA",
    "FRAME_RESET_STREAM",
    "FRAME_RESET_STREAM_AT",
    "FRAME_STOP_SENDING",
    "FRAME_STREAM",
    "FRAME_STREAM_DATA_BLOCKED",
    "StreamLimitReached",
    "StreamLimits",
    "StreamManager",
    "is_bidi",
    "is_client_initiated",
    "is_local",
    "is_unidirectional",
    "stream_id_for",
    "stream_index",
]

# Frame types that name a stream (RFC 9000 §19; §12.4 table). Numbers only: the frame
# codecs live elsewhere.
FRAME_RESET_STREAM = 0x04
FRAME_STOP_SENDING = 0x05
FRAME_STREAM = 0x08  # 0x08..0x0f
FRAME_MAX_STREAM_DATA = 0x11
FRAME_STREAM_DATA_BLOCKED = 0x15
FRAME_RESET_STREAM_AT = 0x24  # draft-ietf-quic-reliable-stream-reset §4

DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024


def is_client_initiated(stream_id: int) -> bool:
    """RFC 9000 §2.1: bit 0x01 clear means client-initiated."""
    return not stream_id & 0x01


def is_bidi(stream_id: int) -> bool:
    """RFC 9000 §2.1: bit 0x02 clear means bidirectional."""
    return not stream_id & 0x02


def is_unidirectional(stream_id: int) -> bool:
    return bool(stream_id & 0x02)


def is_local(stream_id: int, is_client: bool) -> bool:
    """True when the endpoint with role ``is_client`` initiated ``stream_id``."""
    return is_client_initiated(stream_id) == is_client


def stream_index(stream_id: int) -> int:
    """Position of the stream among streams of its type (0, 1, 2, ...)."""
    return stream_id >> 2


def stream_id_for(index: int, client: bool, bidi: bool) -> int:
    """Stream id of the ``index``-th stream of the given type (RFC 9000 §2.1)."""
    return (index << 2) | (0 if client else 1) | (0 if bidi else 2)


class _Part(Enum):
    RECV = "receiving part"
    SEND = "sending part"


# Which of our halves a frame from the peer concerns (RFC 9000 §3.2, §19.x).
_FRAME_PART: dict[int, _Part] = {
    FRAME_RESET_STREAM: _Part.RECV,
    FRAME_STOP_SENDING: _Part.SEND,
    **{t: _Part.RECV for t in range(0x08, 0x10)},
    FRAME_MAX_STREAM_DATA: _Part.SEND,
    FRAME_STREAM_DATA_BLOCKED: _Part.RECV,
    FRAME_RESET_STREAM_AT: _Part.RECV,
}
# An Enum class attribute (``_Part.RECV``) goes through EnumType.__getattr__'s
# slot on Python 3.11, ~10x a global load: the per-packet code reads module aliases.
_RECV = _Part.RECV
_new_object = object.__new__  # per stream: QuicStream without its __init__ frame


class StreamLimitReached(Exception):
    """Local: the peer's MAX_STREAMS does not allow opening another stream (§4.6)."""

    def __init__(self, bidi: bool, limit: int) -> None:
        kind = "bidirectional" if bidi else "unidirectional"
        super().__init__(f"peer allows only {limit} {kind} streams")
        self.bidi = bidi
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Stream-related transport parameters of one endpoint (RFC 9000 §18.2)."""

    max_streams_bidi: int = 0
    max_streams_uni: int = 0
    max_stream_data_bidi_local: int = 0
    max_stream_data_bidi_remote: int = 0
    max_stream_data_uni: int = 0


@dataclass(slots=True)
class _Space:
    """Book-keeping for one of the four stream types."""

    type_bits: int
    local: bool
    bidi: bool
    opened: int = 0  # streams of this type opened so far (next index)
    limit: int = 0  # max number of streams of this type (peer's or ours, see module doc)
    concurrency: int = 0  # remote types: streams the peer may have open at once
    finished: int = 0  # remote types: streams finished and forgotten
    limit_pending: bool = False  # remote types: a MAX_STREAMS update is queued
    blocked_pending: bool = False  # local types: a STREAMS_BLOCKED is queued
    blocked_reported: int | None = None  # local types: limit last reported blocked
    send_credit: int | None = None  # initial send credit; None: no sending half
    recv_window: int | None = None  # initial receive window; None: no receiving half


class StreamManager:
    """Owns the :class:`QuicStream` objects of a connection, by id."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_local",
        "_peer",
        "_spaces",
        "_streams",
        "control_pending",
        "is_client",
        "max_stream_fragments",
        "max_stream_window",
        "opened_by_peer",
        "reassembly",
        "stream_trace",
    )

    def __init__(
        self,
        is_client: bool,
        local: StreamLimits,
        peer: StreamLimits | None = None,
        max_stream_window: int = DEFAULT_MAX_STREAM_WINDOW,
        *,
        max_stream_fragments: int = DEFAULT_MAX_STREAM_FRAGMENTS,
        max_reassembly_bytes: int = DEFAULT_MAX_REASSEMBLY_BYTES,
        max_reassembly_fragments: int = DEFAULT_MAX_REASSEMBLY_FRAGMENTS,
    ) -> None:
        """``max_stream_fragments`` bounds the out-of-order holes of each stream;
        ``max_reassembly_bytes`` / ``max_reassembly_fragments`` the out-of-order data
        of all streams together (RFC 9000 §21.7). Beyond them: PROTOCOL_VIOLATION."""
        self.is_client = is_client
        self.max_stream_window = max_stream_window
        self.max_stream_fragments = max_stream_fragments
        #: shared by the receiving halves of every stream of the connection
        self.reassembly = ReassemblyBudget(max_reassembly_bytes, max_reassembly_fragments)
        self._streams: dict[int, QuicStream] = {}
        #: :meth:`has_pending_control`, kept as an attribute (set with each flag, worked
        #: out again when frames take them): the sender asks before every packet
        self.control_pending = False
        #: Ids of peer streams opened (explicitly or implicitly) since the last
        #: :meth:`take_opened_by_peer` (empty most of the time: read before calling it)
        self.opened_by_peer: list[int] = []
        #: qlog stream_state_updated (``QuicLogger.stream_side_updated``), or None: given
        #: to each new stream's halves, told their first state (RFC 9000 §3.1, §3.2)
        self.stream_trace: Callable[[int, bool, Enum | None, Enum], None] | None = None
        own = 0 if is_client else 1
        self._spaces = tuple(
            _Space(type_bits=t, local=(t & 1) == own, bidi=not t & 2) for t in range(4)
        )
        self._local = local
        self._peer = StreamLimits()
        for sp in self._spaces:
            if not sp.local:
                sp.concurrency = local.max_streams_bidi if sp.bidi else local.max_streams_uni
                sp.limit = sp.concurrency
        self._apply_initial_credits()
        if peer is not None:
            self.set_peer_limits(peer)

    # ------------------------------------------------------------------ configuration

    def _apply_initial_credits(self) -> None:
        # RFC 9000 §18.2: *_bidi_local applies to streams opened by the endpoint that
        # sent the parameter, *_bidi_remote to streams opened by its peer.
        local, peer = self._local, self._peer
        for sp in self._spaces:
            if sp.bidi and sp.local:
                sp.send_credit = peer.max_stream_data_bidi_remote
                sp.recv_window = local.max_stream_data_bidi_local
            elif sp.bidi:
                sp.send_credit = peer.max_stream_data_bidi_local
                sp.recv_window = local.max_stream_data_bidi_remote
            elif sp.local:
                sp.send_credit = peer.max_stream_data_uni
                sp.recv_window = None
            else:
                sp.send_credit = None
                sp.recv_window = local.max_stream_data_uni

    def set_peer_limits(self, peer: StreamLimits) -> None:
        """Apply the peer's transport parameters; existing streams get the new initial
        credit if it is larger (e.g. after 0-RTT with remembered values)."""
        self._peer = peer
        self._apply_initial_credits()
        for sp in self._spaces:
            if sp.local:
                self.on_max_streams(
                    sp.bidi, peer.max_streams_bidi if sp.bidi else peer.max_streams_uni
                )
        for stream in self._streams.values():
            send = stream.send
            if send is not None:
                credit = self._spaces[stream.stream_id & 3].send_credit
                if credit is not None:
                    send.credit.update_limit(credit)

    # ------------------------------------------------------------------ lookup

    def get(self, stream_id: int) -> QuicStream | None:
        return self._streams.get(stream_id)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def streams(self) -> dict[int, QuicStream]:
        """Live streams by id (do not mutate)."""
        return self._streams

    def is_local(self, stream_id: int) -> bool:
        return self._spaces[stream_id & 3].local

    def opened_count(self, stream_id_type: int) -> int:
        """Number of streams of the type ``stream_id_type & 3`` opened so far."""
        return self._spaces[stream_id_type & 3].opened

    def take_opened_by_peer(self) -> list[int]:
        """Ids of peer streams opened (explicitly or implicitly) since the last call."""
        ids = self.opened_by_peer
        self.opened_by_peer = []
        return ids

    # ------------------------------------------------------------------ local opening

    def _local_space(self, bidi: bool) -> _Space:
        return self._spaces[(0 if self.is_client else 1) | (0 if bidi else 2)]

    def can_open(self, bidi: bool) -> bool:
        sp = self._local_space(bidi)
        return sp.opened < sp.limit

    def streams_available(self, bidi: bool) -> int:
        sp = self._local_space(bidi)
        return max(0, sp.limit - sp.opened)

    def peer_max_streams(self, bidi: bool) -> int:
        return self._local_space(bidi).limit

    def open_stream(self, bidi: bool) -> int:
        """Open the next local stream and return its id (RFC 9000 §2.1, §4.6).

        Raises :class:`StreamLimitReached` when the peer's MAX_STREAMS forbids it, and
        queues a STREAMS_BLOCKED frame (once per limit, §19.14).
        """
        sp = self._local_space(bidi)
        if sp.opened >= sp.limit:
            if sp.blocked_reported != sp.limit:
                sp.blocked_pending = self.control_pending = True
            raise StreamLimitReached(bidi, sp.limit)
        stream_id = (sp.opened << 2) | sp.type_bits
        sp.opened += 1
        self._streams[stream_id] = self._create(stream_id, sp)
        return stream_id

    def _create(self, stream_id: int, sp: _Space) -> QuicStream:
        send = None if sp.send_credit is None else SendStream(stream_id, sp.send_credit)
        recv = (
            None
            if sp.recv_window is None
            else RecvStream(
                stream_id,
                sp.recv_window,
                max(sp.recv_window, self.max_stream_window),
                self.max_stream_fragments,  # positional: no kwargs dict per stream
                self.reassembly,
            )
        )
        trace = self.stream_trace
        if trace is not None:
            for sending, half in ((True, send), (False, recv)):
                if half is not None:
                    half.trace = trace
                    trace(stream_id, sending, None, half.state)
        if send is None and recv is None:  # QuicStream.__init__'s check
            raise ValueError("a stream needs at least one half")
        # QuicStream(stream_id, send, recv) without its __init__ frame (per stream;
        # tests/quic/test_stream_inits.py keeps every slot as __init__ sets it)
        stream = _new_object(QuicStream)
        stream.stream_id = stream_id
        stream.send = send
        stream.recv = recv
        return stream

    # ------------------------------------------------------------------ peer frames

    def stream_for_frame(self, stream_id: int, frame_type: int) -> QuicStream | None:
        """Validate a frame naming ``stream_id`` and return its stream.

        Opens peer streams as needed (§3.2). Returns None for a stream that finished
        and was forgotten (the frame is to be ignored). Raises QuicProtocolError with
        STREAM_STATE_ERROR or STREAM_LIMIT_ERROR per RFC 9000 §4.6 and §19.x.
        """
        part = _FRAME_PART[frame_type]
        stream = self._streams.get(stream_id)
        if stream is not None:
            if (stream.recv if part is _RECV else stream.send) is None:
                raise self._no_such_part(stream_id, part, frame_type)
            return stream
        sp = self._spaces[stream_id & 3]
        if not sp.bidi and sp.local == (part is _RECV):
            raise self._no_such_part(stream_id, part, frame_type)
        index = stream_id >> 2
        if sp.local:
            if index >= sp.opened:
                raise QuicProtocolError(
                    TransportErrorCode.STREAM_STATE_ERROR,
                    f"stream {stream_id} not yet opened locally",
                    frame_type,
                )
            return None  # finished and forgotten
        if index < sp.opened:
            return None  # finished and forgotten
        if index >= sp.limit:
            raise QuicProtocolError(
                TransportErrorCode.STREAM_LIMIT_ERROR,
                f"stream {stream_id} exceeds limit of {sp.limit} streams",
                frame_type,
            )
        # RFC 9000 §3.2: lower-numbered streams of the same type open first.
        streams = self._streams
        opened = self.opened_by_peer
        for i in range(sp.opened, index + 1):
            sid = (i << 2) | sp.type_bits
            streams[sid] = self._create(sid, sp)
            opened.append(sid)
        sp.opened = index + 1
        if self._maybe_raise_limit(sp):
            self.control_pending = True
        return streams[stream_id]

    @staticmethod
    def _no_such_part(stream_id: int, part: _Part, frame_type: int) -> QuicProtocolError:
        kind = "send-only" if part is _Part.RECV else "receive-only"
        return QuicProtocolError(
            TransportErrorCode.STREAM_STATE_ERROR,
            f"frame for the {part.value} of {kind} stream {stream_id}",
            frame_type,
        )

    def on_stream_frame(
        self,
        stream_id: int,
        offset: int,
        data: bytes | bytearray | memoryview,
        fin: bool,
        frame_type: int = FRAME_STREAM,
    ) -> int:
        """STREAM frame (§19.8); returns the connection-level flow-control delta."""
        stream = self._streams.get(stream_id)
        recv = stream.recv if stream is not None else None
        if recv is None:  # not open yet, gone, or no receiving part: the checks
            stream = self.stream_for_frame(stream_id, frame_type)
            if stream is None or stream.recv is None:
                return 0
            recv = stream.recv
        try:
            return recv.on_stream_frame(offset, data, fin)
        except QuicProtocolError as exc:
            exc.frame_type = exc.frame_type or frame_type
            raise

    def on_reset_stream(
        self, stream_id: int, error_code: int, final_size: int, reliable_size: int | None = None
    ) -> int:
        """RESET_STREAM (§19.4), or RESET_STREAM_AT when ``reliable_size`` is given
        (draft-ietf-quic-reliable-stream-reset §4); returns the connection-level
        flow-control delta."""
        frame_type = FRAME_RESET_STREAM if reliable_size is None else FRAME_RESET_STREAM_AT
        stream = self.stream_for_frame(stream_id, frame_type)
        if stream is None or stream.recv is None:
            return 0
        try:
            if reliable_size is None:
                return stream.recv.on_reset(error_code, final_size)
            return stream.recv.on_reset(error_code, final_size, reliable_size, at=True)
        except QuicProtocolError as exc:
            exc.frame_type = exc.frame_type or frame_type
            raise

    def on_stop_sending(self, stream_id: int, error_code: int) -> bool:
        """STOP_SENDING (§19.5): reset our sending half; True if a reset was queued."""
        stream = self.stream_for_frame(stream_id, FRAME_STOP_SENDING)
        if stream is None or stream.send is None:
            return False
        return stream.send.on_stop_sending(error_code)

    def on_max_stream_data(self, stream_id: int, limit: int) -> bool:
        """MAX_STREAM_DATA (§19.10); True when the stream's credit grew."""
        stream = self.stream_for_frame(stream_id, FRAME_MAX_STREAM_DATA)
        if stream is None or stream.send is None:
            return False
        return stream.send.on_max_stream_data(limit)

    def on_stream_data_blocked(self, stream_id: int, limit: int) -> QuicStream | None:
        """STREAM_DATA_BLOCKED (§19.13): validates and opens; a peer blocked at our
        current limit grows the stream's receive window (ReceiveWindow.on_peer_blocked)."""
        stream = self.stream_for_frame(stream_id, FRAME_STREAM_DATA_BLOCKED)
        if stream is not None and stream.recv is not None:
            stream.recv.window.on_peer_blocked(limit)
        return stream

    def on_max_streams(self, bidi: bool, limit: int) -> bool:
        """MAX_STREAMS (§19.11) or the initial_max_streams_* parameter; decreases are
        ignored. (Values above 2^60 are rejected by the codec.) True if it grew."""
        sp = self._local_space(bidi)
        if limit <= sp.limit:
            return False
        sp.limit = limit
        return True

    # ------------------------------------------------------------------ control frames

    def has_pending_control(self) -> bool:
        """True when :meth:`max_streams_frames` or :meth:`streams_blocked_frames` would
        return something (lets the connection decide to build a packet)."""
        s0, s1, s2, s3 = self._spaces
        return (
            s0.limit_pending
            or s1.limit_pending
            or s2.limit_pending
            or s3.limit_pending
            or s0.blocked_pending
            or s1.blocked_pending
            or s2.blocked_pending
            or s3.blocked_pending
        )

    def streams_blocked_frames(self) -> list[tuple[bool, int]]:
        """Pending STREAMS_BLOCKED frames as ``(bidi, limit)``; marks them sent."""
        out: list[tuple[bool, int]] = []
        for sp in self._spaces:
            if sp.blocked_pending:
                sp.blocked_pending = False
                if sp.opened >= sp.limit:  # still blocked
                    sp.blocked_reported = sp.limit
                    out.append((sp.bidi, sp.limit))
        self.control_pending = self.has_pending_control()
        return out

    def on_streams_blocked_lost(self, bidi: bool, limit: int) -> None:
        sp = self._local_space(bidi)
        if sp.limit == limit and sp.opened >= limit:
            sp.blocked_pending = self.control_pending = True

    def max_streams_frames(self) -> list[tuple[bool, int]]:
        """Pending MAX_STREAMS updates as ``(bidi, limit)``; marks them sent."""
        out: list[tuple[bool, int]] = []
        for sp in self._spaces:
            if sp.limit_pending:
                sp.limit_pending = False
                out.append((sp.bidi, sp.limit))
        self.control_pending = self.has_pending_control()
        return out

    def on_max_streams_lost(self, bidi: bool, limit: int) -> None:
        sp = self._spaces[(1 if self.is_client else 0) | (0 if bidi else 2)]
        if sp.limit == limit:
            sp.limit_pending = self.control_pending = True

    # ------------------------------------------------------------------ closing

    def maybe_discard(self, stream_id: int) -> bool:
        """Forget the stream if both halves are terminal; True if it was removed.

        For peer streams this raises our MAX_STREAMS so that the peer keeps the
        configured concurrency (§4.6).
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        send, recv = stream.send, stream.recv  # stream.is_finished, the cheap half first
        if (send is not None and not send.finished) or (recv is not None and not recv.is_finished):
            return False
        del self._streams[stream_id]
        sp = self._spaces[stream_id & 3]
        if not sp.local:
            sp.finished += 1
            if self._maybe_raise_limit(sp):
                self.control_pending = True
        return True

    @staticmethod
    def _maybe_raise_limit(sp: _Space) -> bool:
        """Raise the peer's MAX_STREAMS to ``finished + concurrency`` once it has less
        than half of its concurrency left to open (RFC 9000 §4.6), not for every stream
        that finishes: fewer frames, and no immediate packet (with its piggybacked ACK)
        per finished stream. True when a MAX_STREAMS is now owed."""
        new_limit = sp.finished + sp.concurrency
        if new_limit > sp.limit and (sp.limit - sp.opened) * 2 <= sp.concurrency:
            sp.limit = new_limit
            sp.limit_pending = True
            return True
        return False

    def discard_finished(self) -> list[int]:
        """Forget every finished stream; returns their ids."""
        done = [sid for sid, s in self._streams.items() if s.is_finished]
        for sid in done:
            self.maybe_discard(sid)
        return done
