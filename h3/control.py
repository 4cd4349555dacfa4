"""The connection-wide streams of HTTP/3: control and QPACK streams, ours and the peer's.

Theory of operation
-------------------
:class:`ControlStreams` is owned by :class:`~h3.connection.H3Connection` and holds what
HTTP/3 keeps per connection rather than per request (RFC 9114 §6.2.1, RFC 9204 §4.2):

* **ours**: :meth:`ControlStreams.open` opens our control stream, whose first frame is
  SETTINGS (with a GREASE setting and frame, §7.2.4.1, §7.2.8), and our QPACK encoder and
  decoder streams (each only if used, RFC 9204 §4.2: no encoder stream for an encoder
  kept to the static table, no decoder stream for a decoder of capacity 0);
  :meth:`ControlStreams.send_goaway` writes GOAWAY on it (§5.2);
  :meth:`flush_encoder` / :meth:`flush_decoder` write what the QPACK codec produced;
* **the peer's**: :meth:`ControlStreams.accept` takes each critical stream type once
  (a second one is H3_STREAM_CREATION_ERROR), :meth:`ControlStreams.on_control_data`
  reads its control stream: SETTINGS first and only once (H3_MISSING_SETTINGS,
  H3_FRAME_UNEXPECTED), GOAWAY identifiers that never increase (H3_ID_ERROR), MAX_PUSH_ID
  only from a client and never reduced (§7.2.7), CANCEL_PUSH for a push never promised
  (§7.2.3), no DATA, HEADERS or PUSH_PROMISE (§7.2.1, §7.2.2, §7.2.5); unknown frame types
  are ignored (§9). Closing any critical stream is H3_CLOSED_CRITICAL_STREAM.

The peer's SETTINGS are bounded in number (``max_peer_settings``, §10.5) and go to the
QPACK encoder through :class:`~h3.remembered.SettingsMemory`, which also checks them
against the ones remembered for 0-RTT (RFC 9114 §7.2.4.2). Events (SETTINGS, GOAWAY
received) go to the connection's one event queue. Errors are raised as
:class:`~h3.errors.H3ConnectionError`; the connection handles them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from h3.errors import H3ConnectionError, H3ErrorCode
from h3.events import GoAwayReceived, H3Event, SettingsReceived
from h3.frames import (
    FrameReader,
    FrameType,
    decode_goaway,
    decode_max_push_id,
    encode_frame,
    encode_goaway_frame,
    grease_frame,
)
from h3.qlog import H3Logger
from h3.qpack import QpackDecoder, QpackEncoder
from h3.remembered import SettingsMemory, local_settings
from h3.settings import decode_settings, encode_settings, grease_setting
from h3.stream_state import StreamState
from h3.streams import StreamType, encode_uni_stream_header
from quic.connection import QuicConnection

if TYPE_CHECKING:
    from h3.connection import H3Configuration

__all__ = ["CRITICAL_STREAM_TYPES", "ControlStreams"]

#: Unidirectional stream types each side opens exactly once (RFC 9114 §6.2.1, RFC 9204 §4.2).
CRITICAL_STREAM_TYPES = (StreamType.CONTROL, StreamType.QPACK_ENCODER, StreamType.QPACK_DECODER)


class ControlStreams:
    """Our control and QPACK streams and the peer's (module docstring)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_config",
        "_decoder",
        "_emit",
        "_encoder",
        "_is_client",
        "_peer_critical",
        "_peer_max_push_id",
        "_qlog",
        "_quic",
        "control_id",
        "decoder_id",
        "encoder_id",
        "memory",
        "opened",
        "peer_settings",
        "received_goaway",
        "sent_goaway",
    )

    def __init__(
        self,
        quic: QuicConnection,
        config: H3Configuration,
        encoder: QpackEncoder,
        decoder: QpackDecoder,
        emit: Callable[[H3Event], None],
        qlog: H3Logger | None,
    ) -> None:
        self._quic = quic
        self._config = config
        self._encoder = encoder
        self._decoder = decoder
        self._emit = emit  # queues an HTTP/3 event of the connection
        self._qlog = qlog
        self._is_client = quic.is_client
        self.memory = SettingsMemory(quic, encoder)  # RFC 9114 §7.2.4.2 (h3.remembered)
        self.peer_settings: dict[int, int] | None = None
        self.opened = False
        self.control_id: int | None = None
        self.encoder_id: int | None = None
        self.decoder_id: int | None = None
        self._peer_critical: dict[int, int] = {}  # stream type -> stream id
        self.sent_goaway: int | None = None
        self.received_goaway: int | None = None
        self._peer_max_push_id: int | None = None  # server: the client's MAX_PUSH_ID

    @property
    def local_settings(self) -> dict[int, int]:
        """The SETTINGS our configuration announces (reserved ones aside): computed when
        asked (sending them, diagnostics), not kept per connection (issue 10, memory)."""
        return local_settings(self._config)

    # -- ours ------------------------------------------------------------------------------

    def open(self) -> None:
        """Open our control and QPACK streams and send SETTINGS (RFC 9114 §6.2.1)."""
        if self.opened:
            return
        self.opened = True
        quic = self._quic
        grease = self._config.grease
        self.control_id = quic.create_stream(bidirectional=False)
        ours = self.local_settings
        settings = dict(ours)
        if grease:
            gid, gvalue = grease_setting()
            settings[gid] = gvalue
        payload = encode_uni_stream_header(StreamType.CONTROL) + encode_frame(
            FrameType.SETTINGS, encode_settings(settings)
        )
        if grease:
            payload += grease_frame()
        quic.send_stream_data(self.control_id, payload)
        # RFC 9204 §4.2: an endpoint MAY avoid creating an encoder stream its encoder
        # will not use (static table only), and a decoder stream when its decoder's
        # maximum table capacity is 0 (nothing to acknowledge or cancel): one QUIC
        # stream less on each side per connection (issue 10, memory; WebTransport)
        if self._encoder.dynamic_table:
            self.encoder_id = quic.create_stream(bidirectional=False)
            header = encode_uni_stream_header(StreamType.QPACK_ENCODER)
            quic.send_stream_data(self.encoder_id, header)
        if self._decoder.max_table_capacity:
            self.decoder_id = quic.create_stream(bidirectional=False)
            header = encode_uni_stream_header(StreamType.QPACK_DECODER)
            quic.send_stream_data(self.decoder_id, header)
        self.memory.start()  # client in 0-RTT: the remembered SETTINGS apply
        self.flush_encoder()
        if self._qlog is not None:
            ids = (self.control_id, self.encoder_id, self.decoder_id)
            self._qlog.initialized(ids, ours, settings)
            if self.memory.remembered is not None:
                self._qlog.parameters_restored(self.memory.remembered)

    def is_ours(self, stream_id: int) -> bool:
        """One of our critical streams (STOP_SENDING on it is a connection error)."""
        return stream_id in (self.control_id, self.encoder_id, self.decoder_id)

    def send_goaway(self, last: int) -> int:
        """GOAWAY with ``last``, never above one sent before (RFC 9114 §5.2); returns
        the identifier sent."""
        if self.sent_goaway is not None and last >= self.sent_goaway:
            last = self.sent_goaway
        self.sent_goaway = last
        if self.control_id is not None:
            self._quic.send_stream_data(self.control_id, encode_goaway_frame(last))
            if self._qlog is not None:
                self._qlog.frame_created(self.control_id, FrameType.GOAWAY, None, ident=last)
        return last

    def flush_encoder(self) -> None:
        """Write the QPACK encoder's instructions on our encoder stream (RFC 9204 §4.3)."""
        data = self._encoder.pending_encoder_stream_data()
        if data and self.encoder_id is not None:
            self._quic.send_stream_data(self.encoder_id, data)

    def flush_decoder(self) -> None:
        """Write the QPACK decoder's instructions on our decoder stream (RFC 9204 §4.4)."""
        data = self._decoder.pending_decoder_stream_data()
        if data and self.decoder_id is not None:
            self._quic.send_stream_data(self.decoder_id, data)

    # -- the peer's ------------------------------------------------------------------------

    def accept(self, stream: StreamState, kind: int) -> None:
        """The peer opened a critical stream of type ``kind``: once per type."""
        if kind in self._peer_critical:
            raise H3ConnectionError(
                H3ErrorCode.H3_STREAM_CREATION_ERROR,
                f"second {StreamType(kind).name} stream",
            )  # RFC 9114 §6.2.1, RFC 9204 §4.2
        self._peer_critical[kind] = stream.stream_id
        stream.uni_type = kind
        if kind == StreamType.CONTROL:
            stream.frames = FrameReader(self._config.max_frame_size)

    def on_control_data(self, stream: StreamState, data: bytes, fin: bool) -> None:
        assert stream.frames is not None
        for ftype, payload in stream.frames.feed(data, fin):
            if self._qlog is not None:
                self._qlog.frame_parsed(stream.stream_id, ftype, len(payload))
            self._on_frame(ftype, payload)
        if fin:
            raise H3ConnectionError(
                H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, "control stream closed"
            )  # RFC 9114 §6.2.1

    def _on_frame(self, ftype: int, payload: bytes) -> None:
        if self.peer_settings is None:
            if ftype != FrameType.SETTINGS:
                raise H3ConnectionError(
                    H3ErrorCode.H3_MISSING_SETTINGS, "first control frame is not SETTINGS"
                )  # RFC 9114 §6.2.1
            self._on_settings(decode_settings(payload))
            return
        if ftype == FrameType.SETTINGS:
            raise H3ConnectionError(H3ErrorCode.H3_FRAME_UNEXPECTED, "second SETTINGS frame")
        if ftype in (FrameType.DATA, FrameType.HEADERS, FrameType.PUSH_PROMISE):
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_UNEXPECTED, f"{FrameType(ftype).name} on control stream"
            )  # RFC 9114 §7.2.1, §7.2.2, §7.2.5
        if ftype == FrameType.GOAWAY:
            self._on_goaway(decode_goaway(payload))
        elif ftype == FrameType.MAX_PUSH_ID:
            self._on_max_push_id(decode_max_push_id(payload))
        elif ftype == FrameType.CANCEL_PUSH:
            raise H3ConnectionError(
                H3ErrorCode.H3_ID_ERROR, "CANCEL_PUSH for a push never promised"
            )  # RFC 9114 §7.2.3
        # unknown and reserved frame types are ignored (§7.2.8, §9)

    def _on_settings(self, settings: dict[int, int]) -> None:
        if len(settings) > self._config.max_peer_settings:
            raise H3ConnectionError(
                H3ErrorCode.H3_EXCESSIVE_LOAD, f"{len(settings)} SETTINGS identifiers"
            )  # RFC 9114 §10.5
        self.peer_settings = settings
        if self._qlog is not None:
            self._qlog.parameters_set(settings, False)
        self.memory.on_peer_settings(settings)  # QPACK encoder, remembered SETTINGS
        self.flush_encoder()
        # the event carries this same dict, not a copy: one per connection, kept for
        # its life by the layers above (issue 10, memory per idle session)
        self._emit(SettingsReceived(settings))

    def _on_goaway(self, ident: int) -> None:
        if self._is_client and (ident & 3) != 0:
            raise H3ConnectionError(
                H3ErrorCode.H3_ID_ERROR, "GOAWAY with a non-request stream ID"
            )  # RFC 9114 §5.2
        previous = self.received_goaway
        if previous is not None and ident > previous:
            raise H3ConnectionError(H3ErrorCode.H3_ID_ERROR, "GOAWAY identifier increased")
        self.received_goaway = ident
        self._emit(GoAwayReceived(ident))

    def _on_max_push_id(self, push_id: int) -> None:
        if self._is_client:
            raise H3ConnectionError(
                H3ErrorCode.H3_FRAME_UNEXPECTED, "MAX_PUSH_ID sent by a server"
            )  # RFC 9114 §7.2.7
        previous = self._peer_max_push_id
        if previous is not None and push_id < previous:
            raise H3ConnectionError(
                H3ErrorCode.H3_ID_ERROR, f"MAX_PUSH_ID reduced from {previous} to {push_id}"
            )  # RFC 9114 §7.2.7
        self._peer_max_push_id = push_id  # we never push; the value is only checked
