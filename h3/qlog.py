"""HTTP/3 qlog events (qlog 0.3 ``http`` category, draft-ietf-quic-qlog-h3-events),
written into the QUIC connection's trace.

Theory of operation
-------------------
:class:`H3Logger` wraps the :class:`~quic.qlog.QuicLogger` of the QUIC connection
(``QuicConnection.qlog``), so one trace (one ``.sqlog`` file) holds the QUIC and the
HTTP/3 events of a connection, in order. The HTTP/3 connection creates one only when
the QUIC connection has a logger, and guards every hook with ``is not None``: with
tracing off no event is built. HTTP/3 has no clock of its own; events take the time of
the latest QUIC event (``now=None``).

Events: ``http:parameters_set`` (our SETTINGS and the peer's, ``owner`` local/remote),
``http:stream_type_set`` (each unidirectional stream's type, and WebTransport
bidirectional streams), ``http:frame_created`` / ``http:frame_parsed`` (every frame we
write and read: ``stream_id``, ``length`` of the payload, ``frame`` with its
``frame_type`` and, for HEADERS, the decoded ``headers``; SETTINGS with ``settings``;
GOAWAY with its identifier). A DATA frame is logged when its header is written; on
receipt each piece of DATA payload handed up is logged as it arrives (``length`` is the
piece's). A HEADERS frame received is logged once QPACK decoded it, so a section that
waited for the encoder stream is logged when it is delivered.

QPACK: :meth:`H3Logger.watch_qpack` hands the encoder and decoder a
:class:`~h3.qlog_qpack.QpackLogger` (instructions, field sections, dynamic tables).

Capsules (RFC 9297 §3.2) on CONNECT streams, WebTransport's included:
``http:capsule_created`` / ``http:capsule_parsed`` (the draft's ``http`` events:
``stream_id`` and ``capsule``, see :func:`capsule_to_qlog`), logged by the layer that
writes and parses them (:mod:`pywebtransport.protocol`) through
``H3Connection.qlog``; the DATA frames that carry them are logged separately.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from h3.capsules import (
    FLOW_CONTROL_CAPSULES,
    CapsuleType,
    decode_close_webtransport_session,
    decode_varint_capsule,
)
from h3.errors import H3StreamError
from h3.frames import FrameType
from h3.qlog_qpack import QpackLogger
from h3.qpack import QpackDecoder, QpackEncoder
from h3.settings import SettingId, encode_settings
from h3.streams import StreamType
from quic.buffer import decode_varint
from quic.errors import BufferReadError
from quic.qlog import QuicLogger

__all__ = ["H3Logger", "capsule_to_qlog", "frame_type_name", "stream_type_name"]

#: qlog 0.3 parameter names of the RFC 9114 / RFC 9204 settings; others keep the
#: lower-case SettingId name, unknown ones go to ``unknown_settings``
_SETTING_NAMES: dict[int, str] = {
    SettingId.MAX_FIELD_SECTION_SIZE: "max_header_list_size",
    SettingId.QPACK_MAX_TABLE_CAPACITY: "max_table_capacity",
    SettingId.QPACK_BLOCKED_STREAMS: "blocked_streams_count",
}
_STREAM_TYPE_NAMES: dict[int, str] = {
    StreamType.CONTROL: "control",
    StreamType.PUSH: "push",
    StreamType.QPACK_ENCODER: "qpack_encode",
    StreamType.QPACK_DECODER: "qpack_decode",
    StreamType.WEBTRANSPORT_UNI: "webtransport",
}


def _is_reserved(value: int) -> bool:
    """RFC 9114 §7.2.8, §6.2.3: reserved (greasing) codepoints are 0x1f * N + 0x21."""
    return value >= 0x21 and (value - 0x21) % 0x1F == 0


def frame_type_name(ftype: int) -> str:
    """qlog ``frame_type`` of an HTTP/3 frame type."""
    try:
        return FrameType(ftype).name.lower()
    except ValueError:
        return "reserved" if _is_reserved(ftype) else "unknown"


def stream_type_name(kind: int) -> str:
    """qlog stream type of a unidirectional stream type."""
    name = _STREAM_TYPE_NAMES.get(kind)
    if name is not None:
        return name
    return "reserved" if _is_reserved(kind) else "unknown"


def capsule_to_qlog(capsule_type: int, value: bytes) -> dict[str, Any]:
    """qlog ``$HTTPCapsule`` (h3-events §"HTTPCapsule"): ``datagram`` and ``unknown``
    as the draft defines them; the WebTransport capsules (draft-ietf-webtrans-http3
    §5.6, §6, §4.7) as extensions of the type socket, named after the capsule
    (``wt_close_session`` with ``application_error_code`` and ``reason``,
    ``wt_drain_session``, ``wt_max_data`` ... with the ``value`` they carry)."""
    raw = {"length": len(value)}
    if capsule_type == CapsuleType.DATAGRAM:
        return {"capsule_type": "datagram", "raw": raw}
    data: dict[str, Any]
    try:
        if capsule_type == CapsuleType.CLOSE_WEBTRANSPORT_SESSION:
            code, reason = decode_close_webtransport_session(value)
            data = {"capsule_type": "wt_close_session", "application_error_code": code}
            data["reason"] = reason
        elif capsule_type == CapsuleType.DRAIN_WEBTRANSPORT_SESSION:
            data = {"capsule_type": "wt_drain_session"}
        elif capsule_type in FLOW_CONTROL_CAPSULES:
            name = CapsuleType(capsule_type).name.lower()
            data = {"capsule_type": name, "value": decode_varint_capsule(value)}
        else:
            data = {"capsule_type": "unknown", "capsule_type_value": capsule_type}
    except H3StreamError:  # malformed: logged as what it claims to be, undecoded
        data = {"capsule_type": "unknown", "capsule_type_value": capsule_type}
    data["raw"] = raw
    return data


def _split_capsules(data: bytes) -> list[tuple[int, bytes]]:
    """The complete capsules (RFC 9297 §3.2) of ``data``; stops at a truncated one."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        try:
            capsule_type, pos = decode_varint(data, pos)
            length, pos = decode_varint(data, pos)
        except BufferReadError:
            break
        if pos + length > len(data):
            break
        out.append((capsule_type, data[pos : pos + length]))
        pos += length
    return out


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _settings_data(settings: dict[int, int]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    unknown: list[dict[str, int]] = []
    for ident, value in settings.items():
        name = _SETTING_NAMES.get(ident)
        if name is None:
            try:
                name = SettingId(ident).name.lower()
            except ValueError:
                unknown.append({"name": ident, "value": value})
                continue
        data[name] = value
    if unknown:
        data["unknown_settings"] = unknown
    return data


class H3Logger:
    """The HTTP/3 events of one connection, written to its QUIC logger."""

    __slots__ = ("_log", "qpack")

    def __init__(self, quic_logger: QuicLogger) -> None:
        self._log = quic_logger.log
        self.qpack: QpackLogger | None = None

    def watch_qpack(self, encoder: QpackEncoder, decoder: QpackDecoder) -> None:
        """Log the QPACK events of the connection's encoder and decoder
        (:mod:`h3.qlog_qpack`)."""
        self.qpack = QpackLogger(self._log, decoder.max_table_capacity)
        encoder.trace = decoder.trace = self.qpack

    def initialized(
        self,
        stream_ids: tuple[int, int | None, int | None],
        settings: dict[int, int],
        sent: dict[int, int],
    ) -> None:
        """Our control, QPACK encoder and decoder streams are open and SETTINGS written
        (``settings`` ours, ``sent`` what the frame carries, greasing included); a QPACK
        stream not opened (None, RFC 9204 §4.2) is not logged."""
        control, encoder, decoder = stream_ids
        self.stream_type_set(control, True, StreamType.CONTROL)
        self.parameters_set(settings, True)
        length = len(encode_settings(sent))
        self.frame_created(control, FrameType.SETTINGS, length, settings=sent)
        if encoder is not None:
            self.stream_type_set(encoder, True, StreamType.QPACK_ENCODER)
        if decoder is not None:
            self.stream_type_set(decoder, True, StreamType.QPACK_DECODER)

    def parameters_set(self, settings: dict[int, int], local: bool) -> None:
        data = {"owner": "local" if local else "remote", **_settings_data(settings)}
        self._log(None, "http:parameters_set", data)

    def parameters_restored(self, settings: dict[int, int]) -> None:
        """Client in 0-RTT: the server's SETTINGS remembered with the ticket apply
        (h3-events §"parameters_restored", RFC 9114 §7.2.4.2)."""
        self._log(None, "http:parameters_restored", _settings_data(settings))

    def datagram(self, created: bool, stream_id: int, length: int) -> None:
        """An HTTP datagram (RFC 9297 §2.1) created or parsed (h3-events
        §"datagram_created", §"datagram_parsed"): its Quarter Stream ID and payload size."""
        name = "http:datagram_created" if created else "http:datagram_parsed"
        self._log(None, name, {"quarter_stream_id": stream_id // 4, "raw": {"length": length}})

    def stream_type_set(self, stream_id: int, local: bool, kind: int | str) -> None:
        name = kind if isinstance(kind, str) else stream_type_name(kind)
        data: dict[str, Any] = {
            "stream_id": stream_id,
            "owner": "local" if local else "remote",
            "new": name,
        }
        if not isinstance(kind, str) and name in ("unknown", "reserved"):
            data["stream_type_value"] = kind
        self._log(None, "http:stream_type_set", data)

    def _frame(
        self,
        name: str,
        stream_id: int,
        ftype: int,
        length: int | None,
        *,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
        settings: dict[int, int] | None = None,
        ident: int | None = None,
    ) -> None:
        frame: dict[str, Any] = {"frame_type": frame_type_name(ftype)}
        if frame["frame_type"] in ("unknown", "reserved"):
            frame["frame_type_value"] = ftype
        if headers is not None:
            frame["headers"] = [{"name": _text(k), "value": _text(v)} for k, v in headers]
        if settings is not None:
            frame["settings"] = [{"name": k, "value": v} for k, v in settings.items()]
        if ident is not None:
            frame["stream_id" if ftype == FrameType.GOAWAY else "push_id"] = ident
        data: dict[str, Any] = {"stream_id": stream_id, "frame": frame}
        if length is not None:
            data["length"] = length
        self._log(None, name, data)

    def frame_created(
        self,
        stream_id: int,
        ftype: int,
        length: int | None,
        *,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
        settings: dict[int, int] | None = None,
        ident: int | None = None,
    ) -> None:
        """``http:frame_created`` for a frame we write on ``stream_id``."""
        self._frame(
            "http:frame_created",
            stream_id,
            ftype,
            length,
            headers=headers,
            settings=settings,
            ident=ident,
        )

    def frame_parsed(
        self,
        stream_id: int,
        ftype: int,
        length: int | None,
        *,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
        settings: dict[int, int] | None = None,
        ident: int | None = None,
    ) -> None:
        """``http:frame_parsed`` for a frame read on ``stream_id``."""
        self._frame(
            "http:frame_parsed",
            stream_id,
            ftype,
            length,
            headers=headers,
            settings=settings,
            ident=ident,
        )

    # -- capsules (h3-events §"HTTP Events") ---------------------------------------

    def capsules_created(self, stream_id: int, data: bytes) -> None:
        """``http:capsule_created`` for each capsule of ``data``, written on the
        CONNECT stream ``stream_id`` (whole capsules)."""
        for capsule_type, value in _split_capsules(data):
            capsule = capsule_to_qlog(capsule_type, value)
            self._log(None, "http:capsule_created", {"stream_id": stream_id, "capsule": capsule})

    def capsule_parsed(self, stream_id: int, capsule_type: int, value: bytes) -> None:
        """``http:capsule_parsed`` for a capsule read on the CONNECT stream."""
        capsule = capsule_to_qlog(capsule_type, value)
        self._log(None, "http:capsule_parsed", {"stream_id": stream_id, "capsule": capsule})
