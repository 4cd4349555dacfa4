"""What the conformance probe reads and writes raw: the server's SETTINGS as sent, and
the deliberately malformed or unknown input the probe injects.

Theory of operation
-------------------
The probe runs on our own stack, which validates every SETTINGS frame and would drop
what makes it invalid before anyone could report it. :class:`ControlStreamSniffer`
therefore watches the bytes of each server-initiated unidirectional stream (RFC 9114
§6.2) as QUIC delivers them, before HTTP/3 does, and keeps the identifier/value pairs
of the first frame of the control stream exactly as they were sent — duplicates and
HTTP/2 identifiers included (:func:`decode_settings_pairs`). It holds at most
:data:`MAX_SETTINGS_BYTES` per stream and lets go of a stream as soon as its type is
known not to be the control stream, or once the SETTINGS frame was read.

The injected input is built with the codec encoders of :mod:`h3.frames`,
:mod:`h3.capsules` and :mod:`h3.streams` (the encoders that reach the wire are the
tested ones); only the malformations themselves are composed here, each named after
the rule it breaks.
"""

from __future__ import annotations

import random

from h3.capsules import CapsuleType, encode_capsule, grease_capsule
from h3.frames import FrameType, encode_data_frame, encode_frame, grease_frame
from h3.settings import encode_settings_frame
from h3.streams import StreamType, encode_uni_stream_header, grease_stream_type
from quic.buffer import decode_varint, encode_varint
from quic.errors import BufferReadError

__all__ = [
    "MAX_SETTINGS_BYTES",
    "ControlStreamSniffer",
    "decode_settings_pairs",
    "grease_capsule_data",
    "grease_control_frame",
    "grease_stream_header",
    "h2_frame_on_control",
    "malformed_close_capsule_data",
    "malformed_max_push_id",
    "second_settings_frame",
]

#: Bytes of one server unidirectional stream kept while looking for its SETTINGS.
MAX_SETTINGS_BYTES = 16 * 1024
#: Server unidirectional streams looked at before the SETTINGS were found.
_MAX_STREAMS = 16


def decode_settings_pairs(payload: bytes) -> list[tuple[int, int]] | None:
    """The ``(identifier, value)`` pairs of a SETTINGS payload in the order sent, with
    no rule applied (RFC 9114 §7.2.4); None if the payload ends inside a pair."""
    pairs: list[tuple[int, int]] = []
    pos = 0
    while pos < len(payload):
        try:
            setting_id, pos = decode_varint(payload, pos)
            value, pos = decode_varint(payload, pos)
        except BufferReadError:
            return None
        pairs.append((setting_id, value))
    return pairs


class ControlStreamSniffer:
    """Finds the server's first control-stream frame in raw stream bytes (bounded)."""

    __slots__ = ("_buffers", "_done", "error", "first_frame_type", "pairs")

    def __init__(self) -> None:
        self._buffers: dict[int, bytes | None] = {}  # None: not the control stream
        self._done = False
        #: the pairs of the SETTINGS frame, once read
        self.pairs: list[tuple[int, int]] | None = None
        #: the type of the first frame on the control stream (SETTINGS expected)
        self.first_frame_type: int | None = None
        #: why the SETTINGS could not be read (oversized, truncated, ...)
        self.error: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, stream_id: int, data: bytes) -> None:
        """Bytes of a server-initiated unidirectional stream, in order."""
        if self._done:
            return
        held = self._buffers.get(stream_id, b"")
        if held is None:
            return  # known not to be the control stream
        buffer = held + data
        try:
            stream_type, pos = decode_varint(buffer, 0)
            if stream_type != StreamType.CONTROL:
                self._keep(stream_id, None)
                return
            frame_type, pos = decode_varint(buffer, pos)
            length, pos = decode_varint(buffer, pos)
        except BufferReadError:
            self._keep(stream_id, buffer)
            return
        if pos + length > MAX_SETTINGS_BYTES:
            self._finish(f"first control frame of {length} bytes (over {MAX_SETTINGS_BYTES})")
            return
        if len(buffer) < pos + length:
            self._keep(stream_id, buffer)
            return
        self.first_frame_type = frame_type
        if frame_type != FrameType.SETTINGS:
            self._finish(f"first control frame is type 0x{frame_type:x}, not SETTINGS")
            return
        pairs = decode_settings_pairs(buffer[pos : pos + length])
        self.pairs = pairs
        self._finish(None if pairs is not None else "SETTINGS payload ends inside a pair")

    def _keep(self, stream_id: int, buffer: bytes | None) -> None:
        if buffer is not None and len(buffer) >= MAX_SETTINGS_BYTES:
            self._finish("no complete control frame in the first bytes of a stream")
        elif stream_id in self._buffers or len(self._buffers) < _MAX_STREAMS:
            self._buffers[stream_id] = buffer
        else:
            self._finish(f"no SETTINGS on the first {_MAX_STREAMS} server streams")

    def _finish(self, error: str | None) -> None:
        self._done = True
        self.error = error
        self._buffers.clear()


# -- injected input --------------------------------------------------------------------


def malformed_max_push_id() -> bytes:
    """MAX_PUSH_ID whose payload has a byte after its Push ID: RFC 9114 §7.1 makes a
    frame with "additional bytes after the identified fields" H3_FRAME_ERROR."""
    return encode_frame(FrameType.MAX_PUSH_ID, encode_varint(0) + encode_varint(0))


def h2_frame_on_control() -> bytes:
    """An HTTP/2 WINDOW_UPDATE frame type (0x08): H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8)."""
    return encode_frame(FrameType.H2_WINDOW_UPDATE, encode_varint(1024))


def second_settings_frame() -> bytes:
    """A second SETTINGS frame: H3_FRAME_UNEXPECTED (RFC 9114 §7.2.4)."""
    return encode_settings_frame({})


def malformed_close_capsule_data() -> bytes:
    """A DATA frame holding a WT_CLOSE_SESSION capsule whose value is shorter than its
    32-bit error code: RFC 9297 §3.3 (a capsule that "terminates before the end of the
    identified fields" is a malformed message)."""
    return encode_data_frame(encode_capsule(CapsuleType.CLOSE_WEBTRANSPORT_SESSION, b"\x00\x01"))


def grease_control_frame(rng: random.Random) -> bytes:
    """A frame of a reserved type (RFC 9114 §7.2.8, §9): to be ignored."""
    return grease_frame(rng)


def grease_capsule_data(rng: random.Random) -> bytes:
    """A DATA frame holding a capsule of a reserved type (RFC 9297 §3.2, §5.4)."""
    return encode_data_frame(grease_capsule(rng))


def grease_stream_header(rng: random.Random) -> bytes:
    """The header of a unidirectional stream of a reserved type (RFC 9114 §6.2.3)."""
    return encode_uni_stream_header(grease_stream_type(rng))
