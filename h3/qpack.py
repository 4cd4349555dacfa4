"""QPACK field compression (RFC 9204) over pylsqpack, Sans-I/O.

Theory of operation
-------------------
QPACK state lives on both ends of a connection in two halves: each endpoint runs one
*encoder* (compresses what it sends, fed by the peer's decoder stream) and one
*decoder* (decompresses what it receives, fed by the peer's encoder stream). This
module wraps the ls-qpack engine in :class:`QpackEncoder` and :class:`QpackDecoder`.
Neither touches a stream: instruction bytes produced for the encoder or decoder stream
accumulate inside the object and the HTTP/3 layer drains them with
:meth:`QpackEncoder.pending_encoder_stream_data` and
:meth:`QpackDecoder.pending_decoder_stream_data`.

Decoder. Our decoder's limits are configuration and are advertised by the HTTP/3 layer
in SETTINGS_QPACK_MAX_TABLE_CAPACITY / SETTINGS_QPACK_BLOCKED_STREAMS (RFC 9204 §5) and
SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2); the values passed to the decoder
must be exactly the advertised ones. :meth:`QpackDecoder.feed_header` decodes one
encoded field section (the payload of a HEADERS frame) and returns the field lines, or
``None`` when the section references dynamic table entries not yet received: the
stream is then *blocked* (§2.1.2). Its data stays inside the decoder; when
:meth:`QpackDecoder.feed_encoder_stream` delivers the missing insertions, the sections
of the streams it unblocked are returned as ``(stream_id, result)`` pairs. Should a
further section arrive on a stream that is still blocked, it is queued behind the
first and decoded in order, up to ``max_queued_sections`` per stream (more is
H3_EXCESSIVE_LOAD, RFC 9114 §10.5: the HTTP/3 layer parks frames of blocked streams
itself, so only direct users of this class queue here). More blocked streams than
advertised is a connection error QPACK_DECOMPRESSION_FAILED (ls-qpack enforces the
limit; §2.1.2). A stream that is reset or no longer read must be cancelled
(:meth:`QpackDecoder.cancel_stream`): nothing is then kept for it.

Field section size. A decoded section whose size (§4.2.2 of RFC 9114: the sum of name
length + value length + 32 per line) exceeds our SETTINGS_MAX_FIELD_SECTION_SIZE is
rejected with :class:`FieldSectionTooLarge`, an :class:`H3StreamError` carrying
H3_EXCESSIVE_LOAD. RFC 9114 §4.2.2 / §10.5.1 make the limit advisory: a server may
answer 431 (Request Header Fields Too Large), a client may discard the response; the
exception carries the stream ID so the HTTP/3 layer can choose. A section is still
fully processed by QPACK before being rejected (or cancelled, when its encoded size
alone already exceeds the limit), so the dynamic table state stays in sync with the
peer's encoder.

Encoder. Until the peer's SETTINGS arrive the encoder uses the static table only
(RFC 9204 §3.2.3: the peer's maximum capacity is 0 until then);
:meth:`QpackEncoder.apply_settings` then enables the dynamic table with the peer's
values and queues a Set Dynamic Table Capacity instruction (§4.3.1).

Without a dynamic table (issue 10, memory per connection). A decoder whose advertised
maximum capacity is 0 and an encoder created with ``dynamic_table=False`` keep no
ls-qpack engine: nothing lasts from one field section to the next (the peer cannot
insert, no section can block, RFC 9204 §3.2.3, §2.1.2), so one is made per section.
Their instruction streams are then checked here: the decoder's encoder stream may only
carry Set Dynamic Table Capacity 0 (§4.3.1), the encoder's decoder stream only Stream
Cancellations (§4.4.2; a partial one is held, at most 10 bytes); anything else is the
stream's QPACK error. WebTransport connections use both (pywebtransport.protocol), and
then open neither QPACK stream (h3.control, §4.2).

Errors. ls-qpack's exceptions map to connection errors: a field section that cannot be
decoded (including an invalid reference or too many blocked streams) is
QPACK_DECOMPRESSION_FAILED (§2.2.3, §6), bad encoder stream input
QPACK_ENCODER_STREAM_ERROR, bad decoder stream input QPACK_DECODER_STREAM_ERROR.

qlog. The encoder and the decoder hold ``trace``: None, or the connection's
:class:`~h3.qlog_qpack.QpackLogger`, told every instruction and field section
(tested with ``is not None`` before any call).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, TypeAlias

import pylsqpack

from h3.errors import H3ConnectionError, H3ErrorCode, H3StreamError

if TYPE_CHECKING:
    from h3.qlog_qpack import QpackLogger

__all__ = [
    "DEFAULT_BLOCKED_STREAMS",
    "DEFAULT_MAX_FIELD_SECTION_SIZE",
    "DEFAULT_MAX_QUEUED_SECTIONS",
    "DEFAULT_MAX_TABLE_CAPACITY",
    "FIELD_LINE_OVERHEAD",
    "FieldSectionTooLarge",
    "Headers",
    "QpackDecoder",
    "QpackEncoder",
    "UnblockedSection",
    "check_field_section_size",
    "field_section_size",
]

Headers: TypeAlias = list[tuple[bytes, bytes]]

DEFAULT_MAX_TABLE_CAPACITY = 4096
DEFAULT_BLOCKED_STREAMS = 16
DEFAULT_MAX_FIELD_SECTION_SIZE = 65536
DEFAULT_MAX_QUEUED_SECTIONS = 8

# RFC 9114 §4.2.2: each field line counts 32 bytes on top of its name and value.
FIELD_LINE_OVERHEAD = 32
# Upper bound of the Encoded Field Section Prefix of a sane encoder (RFC 9204 §4.5.1):
# two prefixed integers. Encoded field lines are never longer than name + value + 32,
# so a section longer than limit + this slack cannot decode to a permitted size.
_PREFIX_SLACK = 32
# The binding takes these parameters as C unsigned ints (RFC 9204 §5 allows up to 2^62-1).
_UINT32_MAX = 0xFFFFFFFF

_DECOMPRESSION_FAILED = H3ErrorCode.QPACK_DECOMPRESSION_FAILED
_ENCODER_STREAM_ERROR = H3ErrorCode.QPACK_ENCODER_STREAM_ERROR
_DECODER_STREAM_ERROR = H3ErrorCode.QPACK_DECODER_STREAM_ERROR


class FieldSectionTooLarge(H3StreamError):
    """A field section exceeds a SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2).

    A stream error with H3_EXCESSIVE_LOAD; ``size`` is the section's size (or, when it
    was rejected before decoding, a lower bound of it) and ``limit`` the limit.
    """

    def __init__(self, size: int, limit: int, stream_id: int | None = None) -> None:
        super().__init__(
            H3ErrorCode.H3_EXCESSIVE_LOAD,
            f"field section size {size} exceeds the limit {limit}",
            stream_id,
        )
        self.size = size
        self.limit = limit


# What :meth:`QpackDecoder.feed_encoder_stream` yields per decoded section.
UnblockedSection: TypeAlias = tuple[int, Headers | FieldSectionTooLarge]


def field_section_size(headers: Headers) -> int:
    """Size of a field section per RFC 9114 §4.2.2 (name + value + 32 per line)."""
    return sum(len(name) + len(value) for name, value in headers) + FIELD_LINE_OVERHEAD * len(
        headers
    )


def check_field_section_size(
    headers: Headers, limit: int | None, stream_id: int | None = None
) -> int:
    """Return the section's size; raise :class:`FieldSectionTooLarge` if over ``limit``.

    ``limit`` None means no limit (the default of SETTINGS_MAX_FIELD_SECTION_SIZE).
    """
    size = field_section_size(headers)
    if limit is not None and size > limit:
        raise FieldSectionTooLarge(size, limit, stream_id)
    return size


def _check_setting(name: str, value: int) -> None:
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{name} must be in 0..{_UINT32_MAX}, got {value}")


class QpackDecoder:
    """Our QPACK decoder: decodes the peer's field sections (RFC 9204 §2.2).

    ``max_table_capacity`` and ``blocked_streams`` are the values we advertise in
    SETTINGS_QPACK_MAX_TABLE_CAPACITY / SETTINGS_QPACK_BLOCKED_STREAMS;
    ``max_field_section_size`` the one in SETTINGS_MAX_FIELD_SECTION_SIZE (None: no
    limit, the setting is not sent); ``max_queued_sections`` bounds the sections
    queued behind a blocked one on the same stream.
    """

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_blocked",
        "_decoder",
        "blocked_streams",
        "instructions",
        "max_field_section_size",
        "max_queued_sections",
        "max_table_capacity",
        "trace",
    )

    def __init__(
        self,
        max_table_capacity: int = DEFAULT_MAX_TABLE_CAPACITY,
        blocked_streams: int = DEFAULT_BLOCKED_STREAMS,
        max_field_section_size: int | None = DEFAULT_MAX_FIELD_SECTION_SIZE,
        max_queued_sections: int = DEFAULT_MAX_QUEUED_SECTIONS,
    ) -> None:
        _check_setting("max_table_capacity", max_table_capacity)
        _check_setting("blocked_streams", blocked_streams)
        if max_field_section_size is not None and max_field_section_size < 0:
            raise ValueError("max_field_section_size must not be negative")
        self.max_table_capacity = max_table_capacity
        self.blocked_streams = blocked_streams
        self.max_field_section_size = max_field_section_size
        self.max_queued_sections = max_queued_sections
        # With a maximum capacity of 0 the peer cannot insert (RFC 9204 §3.2.3) and no
        # section can block (§2.1.2): nothing lasts from one section to the next, so
        # no engine is kept (its 4.5 KB, issue 10): one is made per field section.
        self._decoder = (
            pylsqpack.Decoder(max_table_capacity, blocked_streams) if max_table_capacity else None
        )
        #: decoder instructions not taken yet (:meth:`pending_decoder_stream_data`);
        #: read it only to learn whether any are waiting
        self.instructions = bytearray()
        # Streams whose first pending section is held (blocked) by ls-qpack, with the
        # sections that arrived on them afterwards, in order.
        self._blocked: dict[int, deque[bytes]] = {}
        self.trace: QpackLogger | None = None  # qlog (h3.qlog_qpack)

    # -- queries ---------------------------------------------------------------

    @property
    def blocked_stream_count(self) -> int:
        """Number of streams currently blocked on the dynamic table (§2.1.2)."""
        return len(self._blocked)

    @property
    def queued_sections(self) -> int:
        """Sections waiting behind blocked ones (on the same streams)."""
        return sum(len(queued) for queued in self._blocked.values())

    def is_blocked(self, stream_id: int) -> bool:
        """True while a field section of ``stream_id`` waits for encoder instructions."""
        return stream_id in self._blocked

    def pending_decoder_stream_data(self) -> bytes:
        """Take the decoder instructions to write on our decoder stream (§4.4)."""
        data = bytes(self.instructions)
        self.instructions.clear()
        if data and self.trace is not None:
            self.trace.decoder_instructions_created(data)
        return data

    # -- input -----------------------------------------------------------------

    def feed_header(self, stream_id: int, block: bytes) -> Headers | None:
        """Decode one encoded field section received on ``stream_id``.

        Returns the field lines in order, or None when the stream is blocked (the
        section is kept and comes back from :meth:`feed_encoder_stream`). Raises
        :class:`H3ConnectionError` (QPACK_DECOMPRESSION_FAILED) on an undecodable
        section or too many blocked streams, :class:`FieldSectionTooLarge` when the
        section exceeds our SETTINGS_MAX_FIELD_SECTION_SIZE.
        """
        queued = self._blocked.get(stream_id)
        if queued is not None:
            # A section behind a blocked one waits its turn (field lines of one stream
            # are delivered in order, RFC 9204 §2.2).
            if len(queued) >= self.max_queued_sections:
                raise H3ConnectionError(
                    H3ErrorCode.H3_EXCESSIVE_LOAD,
                    f"stream {stream_id}: more than {self.max_queued_sections} field "
                    "sections behind a blocked one",
                )  # RFC 9114 §10.5
            queued.append(bytes(block))
            return None
        if len(block) == 2 and block[0] == 0 and block[1] < 0x7F:
            # An empty field section (Required Insert Count 0, no field lines) is valid
            # (RFC 9204 §4.5) but ls-qpack rejects it; it needs no acknowledgment.
            return []
        limit = self.max_field_section_size
        if limit is not None and len(block) > limit + _PREFIX_SLACK:
            # Do not spend memory decoding it: abandon the section (§2.2.2.2).
            self._cancel(stream_id)
            raise FieldSectionTooLarge(len(block) - _PREFIX_SLACK, limit, stream_id)
        decoder = self._decoder or pylsqpack.Decoder(0, 0)
        try:
            control, headers = decoder.feed_header(stream_id, block)
        except pylsqpack.StreamBlocked:
            self._blocked[stream_id] = deque()
            if self.trace is not None:
                self.trace.blocked(stream_id, bytes(block))
            return None
        except pylsqpack.DecompressionFailed as exc:
            raise H3ConnectionError(
                _DECOMPRESSION_FAILED, f"stream {stream_id}: cannot decode field section"
            ) from exc
        self.instructions += control
        if self.trace is not None:
            self.trace.headers_decoded(stream_id, headers, bytes(block))
        check_field_section_size(headers, limit, stream_id)
        return headers

    def feed_encoder_stream(self, data: bytes) -> list[UnblockedSection]:
        """Process encoder instructions (§4.3) from the peer's encoder stream.

        Partial instructions are buffered. Returns the field sections that became
        decodable, as ``(stream_id, headers)`` in decoding order; a stream may appear
        more than once when sections were queued behind a blocked one. A section that
        exceeds our SETTINGS_MAX_FIELD_SECTION_SIZE appears as ``(stream_id,
        FieldSectionTooLarge)`` instead, so that one oversized section does not hide
        the others. Raises :class:`H3ConnectionError` (QPACK_ENCODER_STREAM_ERROR or
        QPACK_DECOMPRESSION_FAILED).
        """
        if self._decoder is None:
            # Capacity 0: the only valid instruction is Set Dynamic Table Capacity 0,
            # the byte 0x20. Any other start is an insertion (larger than the
            # capacity, §3.2.2), a Duplicate of an entry that cannot exist (§4.3.4),
            # or a capacity of 31 or more (over our maximum, §4.3.1): all errors.
            if data.strip(b"\x20"):
                raise H3ConnectionError(_ENCODER_STREAM_ERROR, "invalid encoder instruction")
            if self.trace is not None:
                self.trace.encoder_instructions_parsed(data)
            return []
        try:
            unblocked = self._decoder.feed_encoder(data)
        except pylsqpack.EncoderStreamError as exc:
            raise H3ConnectionError(_ENCODER_STREAM_ERROR, "invalid encoder instruction") from exc
        if self.trace is not None:  # before the sections it unblocks
            self.trace.encoder_instructions_parsed(data)
        results: list[UnblockedSection] = []
        for stream_id in unblocked:
            self._resume(stream_id, results)
        return results

    def cancel_stream(self, stream_id: int) -> None:
        """Abandon the field sections of ``stream_id`` (reset or reading stopped).

        Discards its blocked sections and queues a Stream Cancellation instruction
        (§4.4.2); with a maximum table capacity of 0 the instruction is omitted
        (§2.2.2.2 allows it: the peer cannot hold references). No further section of
        the stream may be fed afterwards: its Section Acknowledgment would refer to a
        stream the peer's encoder has forgotten (§4.4.1). The same holds after
        :meth:`feed_header` rejected an oversized section before decoding it.
        """
        self._blocked.pop(stream_id, None)
        if self.trace is not None:
            self.trace.cancelled(stream_id)
        self._cancel(stream_id)

    # -- internals -------------------------------------------------------------

    def _cancel(self, stream_id: int) -> None:
        # with a maximum capacity of 0 there is no engine and nothing to cancel: the
        # peer cannot hold references (§2.2.2.2), the instruction is omitted
        if self._decoder is not None:
            self.instructions += self._decoder.cancel_stream(stream_id)

    def _resume(self, stream_id: int, results: list[UnblockedSection]) -> None:
        """Finish the held section of ``stream_id`` and then its queued ones."""
        queued = self._blocked.pop(stream_id, None)
        assert self._decoder is not None  # only a dynamic table unblocks a section
        try:
            control, headers = self._decoder.resume_header(stream_id)
        except pylsqpack.StreamBlocked as exc:
            # The section was unblocked yet its data ran out: it is truncated.
            self._decoder.cancel_stream(stream_id)
            raise H3ConnectionError(
                _DECOMPRESSION_FAILED, f"stream {stream_id}: truncated field section"
            ) from exc
        except pylsqpack.DecompressionFailed as exc:
            raise H3ConnectionError(
                _DECOMPRESSION_FAILED, f"stream {stream_id}: cannot decode field section"
            ) from exc
        except ValueError:
            # Nothing held for this stream (it was cancelled meanwhile).
            return
        self.instructions += control
        if self.trace is not None:
            self.trace.unblocked(stream_id, headers)
        self._append_checked(results, stream_id, headers)
        while queued:
            block = queued.popleft()
            try:
                section = self.feed_header(stream_id, block)
            except FieldSectionTooLarge as exc:
                results.append((stream_id, exc))
                continue
            if section is None:
                # Blocked again: keep the rest queued behind it.
                self._blocked[stream_id].extend(queued)
                return
            results.append((stream_id, section))

    def _append_checked(
        self, results: list[UnblockedSection], stream_id: int, headers: Headers
    ) -> None:
        try:
            check_field_section_size(headers, self.max_field_section_size, stream_id)
        except FieldSectionTooLarge as exc:
            results.append((stream_id, exc))
        else:
            results.append((stream_id, headers))


class QpackEncoder:
    """Our QPACK encoder: compresses the field sections we send (RFC 9204 §2.1).

    Starts with the static table only; :meth:`apply_settings` switches the dynamic
    table on with the peer's SETTINGS values, unless ``dynamic_table`` is False (static
    table and literals only: capacity 0, RFC 9204 §3.2.3).
    """

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_decoder_input",
        "_encoder",
        "_encoder_stream",
        "_settings_applied",
        "blocked_streams",
        "max_table_capacity",
        "peer_max_field_section_size",
        "trace",
    )

    def __init__(self, dynamic_table: bool = True) -> None:
        # Without a dynamic table nothing lasts from one section to the next: no engine
        # is kept (about 1 KB, issue 10), one is made per field section.
        self._encoder = pylsqpack.Encoder() if dynamic_table else None
        self._decoder_input = b""  # a partial decoder instruction (static table only)
        self._encoder_stream = bytearray()
        self._settings_applied = False
        self.max_table_capacity = 0
        self.blocked_streams = 0
        self.peer_max_field_section_size: int | None = None
        self.trace: QpackLogger | None = None  # qlog (h3.qlog_qpack)

    @property
    def dynamic_table(self) -> bool:
        """False when kept to the static table: nothing ever goes on the encoder stream."""
        return self._encoder is not None

    def apply_settings(
        self,
        max_table_capacity: int,
        blocked_streams: int,
        max_field_section_size: int | None = None,
    ) -> None:
        """Use the peer's SETTINGS (call once, when its SETTINGS frame arrives).

        ``max_table_capacity`` / ``blocked_streams`` are the peer's
        SETTINGS_QPACK_MAX_TABLE_CAPACITY / SETTINGS_QPACK_BLOCKED_STREAMS (0 when
        absent), ``max_field_section_size`` its SETTINGS_MAX_FIELD_SECTION_SIZE (None
        when absent). A capacity the engine cannot represent (over 2^32-1) leaves the
        encoder on the static table, which is always allowed; the blocked-stream
        count is clamped likewise (risking fewer blocked streams is allowed, §2.1.2).
        """
        if self._settings_applied:
            raise RuntimeError("QPACK encoder settings already applied")
        self._settings_applied = True
        self.peer_max_field_section_size = max_field_section_size
        if self.trace is not None:
            self.trace.peer_settings(max_table_capacity)
        if self._encoder is None:  # capacity 0: the static table only (§3.2.3)
            return
        if max_table_capacity <= 0 or max_table_capacity > _UINT32_MAX:
            return
        self.max_table_capacity = max_table_capacity
        self.blocked_streams = min(max(blocked_streams, 0), _UINT32_MAX)
        # RFC 9204 §3.2.3, §4.3.1: Set Dynamic Table Capacity goes on the encoder stream.
        data = self._encoder.apply_settings(self.max_table_capacity, self.blocked_streams)
        self._encoder_stream += data
        if self.trace is not None:
            self.trace.encoder_instructions_created(data)

    def encode(self, stream_id: int, headers: Headers) -> bytes:
        """Encode a field section for ``stream_id`` and return the encoded block.

        Dynamic table insertions go to :meth:`pending_encoder_stream_data`; they must
        be written to the encoder stream (they may be needed to decode this block).
        Raises ValueError for headers the engine cannot take (empty name, or a name
        or value too long); validation of HTTP semantics is the caller's job.
        """
        try:
            instructions, block = (self._encoder or pylsqpack.Encoder()).encode(stream_id, headers)
        except RuntimeError as exc:
            raise ValueError(f"cannot encode field section: {exc}") from exc
        if instructions:
            self._encoder_stream += instructions
        if self.trace is not None:
            self.trace.encoder_instructions_created(instructions)
            self.trace.headers_encoded(stream_id, headers, block)
        return block

    def check_peer_limit(self, headers: Headers, stream_id: int | None = None) -> int:
        """Size of ``headers``; raise :class:`FieldSectionTooLarge` if over the peer's limit.

        An endpoint SHOULD NOT send a section above the peer's
        SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2).
        """
        return check_field_section_size(headers, self.peer_max_field_section_size, stream_id)

    def pending_encoder_stream_data(self) -> bytes:
        """Take the encoder instructions to write on our encoder stream (§4.3)."""
        data = bytes(self._encoder_stream)
        self._encoder_stream.clear()
        return data

    def feed_decoder_stream(self, data: bytes) -> None:
        """Process decoder instructions (§4.4) from the peer's decoder stream.

        Partial instructions are buffered. Raises :class:`H3ConnectionError`
        (QPACK_DECODER_STREAM_ERROR) on invalid input.
        """
        if self._encoder is None:
            self._decoder_input = _static_decoder_instructions(self._decoder_input + data)
        else:
            try:
                self._encoder.feed_decoder(data)
            except pylsqpack.DecoderStreamError as exc:
                raise H3ConnectionError(
                    _DECODER_STREAM_ERROR, "invalid decoder instruction"
                ) from exc
        if self.trace is not None:
            self.trace.decoder_instructions_parsed(data)


# A prefixed integer (RFC 9204 §4.1.1) of up to 62 bits has at most 9 continuation bytes.
_MAX_CONTINUATION = 9


def _static_decoder_instructions(data: bytes) -> bytes:
    """Check decoder instructions sent to an encoder that never inserted anything;
    return the trailing partial instruction. Only Stream Cancellation (§4.4.2) can be
    valid: a Section Acknowledgment refers to a section with a non-zero Required
    Insert Count (§4.4.1) and an Insert Count Increment to insertions (§4.4.3), and
    neither exists. Raises :class:`H3ConnectionError` (QPACK_DECODER_STREAM_ERROR)."""
    pos, n = 0, len(data)
    while pos < n:
        first = data[pos]
        if first & 0xC0 != 0x40:  # not 01xxxxxx: Section Ack or Insert Count Increment
            raise H3ConnectionError(_DECODER_STREAM_ERROR, "invalid decoder instruction")
        end = pos + 1
        if first & 0x3F == 0x3F:  # the 6-bit prefix is full: continuation bytes follow
            more = 0
            while True:
                if end == n:
                    return data[pos:]  # partial: wait for the rest
                end += 1
                if not data[end - 1] & 0x80:
                    break
                more += 1
                if more == _MAX_CONTINUATION:  # a tenth would be needed: over 62 bits
                    raise H3ConnectionError(_DECODER_STREAM_ERROR, "stream ID too large")
        pos = end
    return b""
