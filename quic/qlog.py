"""qlog tracing of one QUIC connection (draft-ietf-quic-qlog-main-schema, -quic-events).

Theory of operation
-------------------
A connection holds ``_qlog``: ``None`` (the default, no tracing) or a
:class:`QuicLogger`. Every hook in the connection is guarded by a single
``if self._qlog is not None`` test, so tracing costs nothing when it is off; all
the work of turning protocol state into qlog events is done here, never in the
connection's hot paths.

The logger turns calls such as :meth:`QuicLogger.packet_received` into event
dictionaries ``{"time": ms, "name": "quic:...", "data": {...}}`` and hands them to a
:class:`QlogSink`. Times are passed in (Sans-I/O): ``now`` is the connection's float
clock in seconds, and event times are milliseconds relative to the first ``now`` the
logger saw (the connection start). The header therefore uses a ``monotonic`` reference
clock with an ``unknown`` epoch (main-schema §"Timestamps"), optionally with an
approximate ``wall_clock_time`` supplied by the caller.

Sinks: :class:`QlogMemorySink` keeps records in a list (tests);
:class:`QlogFileSink` writes the JSON-SEQ serialization (RFC 7464: each record is
``0x1E`` + JSON + ``\\n``) with the header record first. :func:`create_logger` picks
a sink from a :class:`~quic.configuration.QuicConfiguration` (``qlog_factory`` or
``qlog_dir``: one ``<ODCID hex>.sqlog`` file per connection).

Frames of received packets are decoded a second time here (only when tracing), so the
receive path is unchanged. Frames of sent packets are decoded from the plaintext
payload the packet assembler holds before sealing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import IO, TYPE_CHECKING, Any, Protocol

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    decode_frame,
)
from quic.packet import PacketType
from quic.tparams import VersionInformation

if TYPE_CHECKING:
    from quic.configuration import QuicConfiguration
    from quic.recovery import LossRecovery
    from quic.tparams import TransportParameters

__all__ = [
    "QLOG_FILE_SCHEMA",
    "QlogFactory",
    "QlogFileSink",
    "QlogMemorySink",
    "QlogSink",
    "QuicLogger",
    "create_logger",
    "frame_to_qlog",
    "parse_json_seq",
]

#: main-schema §"QlogFileSeq schema"
QLOG_FILE_SCHEMA = "urn:ietf:params:qlog:file:sequential"
QLOG_SERIALIZATION = "application/qlog+json-seq"
QUIC_EVENT_SCHEMA = "urn:ietf:params:qlog:events:quic"
RECORD_SEPARATOR = b"\x1e"

PACKET_TYPE_NAMES: dict[PacketType, str] = {
    PacketType.INITIAL: "initial",
    PacketType.ZERO_RTT: "0RTT",
    PacketType.HANDSHAKE: "handshake",
    PacketType.RETRY: "retry",
    PacketType.VERSION_NEGOTIATION: "version_negotiation",
    PacketType.ONE_RTT: "1RTT",
}

#: KeyType names (quic-events §"KeyType") by TLS epoch (0 initial .. 3 1-RTT)
_KEY_EPOCH_NAMES = ("initial", "0rtt", "handshake", "1rtt")


class QlogSink(Protocol):
    """Receives qlog records: the header first, then one dict per event."""

    def write(self, event: dict[str, Any]) -> None: ...


#: ``factory(is_client, odcid) -> sink`` (None: no trace for this connection)
QlogFactory = Callable[[bool, bytes], "QlogSink | None"]


class QlogMemorySink:
    """Keeps every record in :attr:`records` (the header is ``records[0]``)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.records.append(event)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "name" in r]


class QlogFileSink:
    """Writes records as JSON-SEQ (RFC 7464) to ``path``; :meth:`close` when done."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fp: IO[bytes] | None = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode

    def write(self, event: dict[str, Any]) -> None:
        fp = self._fp
        if fp is None:
            return
        fp.write(RECORD_SEPARATOR + self._dumps(event).encode() + b"\n")

    def flush(self) -> None:
        if self._fp is not None:
            self._fp.flush()

    def close(self) -> None:
        fp, self._fp = self._fp, None
        if fp is not None:
            fp.close()


def parse_json_seq(data: bytes) -> list[dict[str, Any]]:
    """Parse a JSON-SEQ byte string (RFC 7464) into its records."""
    return [json.loads(chunk) for chunk in data.split(RECORD_SEPARATOR) if chunk.strip()]


def create_logger(
    configuration: QuicConfiguration, is_client: bool, odcid: bytes
) -> QuicLogger | None:
    """The logger a connection should use, or None when qlog is off."""
    factory = configuration.qlog_factory
    sink: QlogSink | None = None
    if factory is not None:
        sink = factory(is_client, odcid)
    elif configuration.qlog_dir is not None:
        os.makedirs(configuration.qlog_dir, exist_ok=True)
        sink = QlogFileSink(os.path.join(configuration.qlog_dir, odcid.hex() + ".sqlog"))
    if sink is None:
        return None
    return QuicLogger(sink, is_client, odcid)


# -- frames -------------------------------------------------------------------------------


def _close_error(code: int) -> str | None:
    try:
        return TransportErrorCode(code).name.lower()
    except ValueError:
        return None


def frame_to_qlog(frame: Any, ack_delay_exponent: int = 3) -> dict[str, Any]:
    """The qlog ``$QuicFrame`` of a decoded frame (quic-events §"QUIC Frames").

    ``ack_delay_exponent`` is the sender's (RFC 9000 §18.2), to log ACK delays in ms.
    """
    if isinstance(frame, StreamFrame):
        out: dict[str, Any] = {
            "frame_type": "stream",
            "stream_id": frame.stream_id,
            "offset": frame.offset,
            "raw": {"length": len(frame.data)},
        }
        if frame.fin:
            out["fin"] = True
        return out
    if isinstance(frame, AckFrame):
        out = {
            "frame_type": "ack",
            "ack_delay": (frame.ack_delay << ack_delay_exponent) / 1000.0,
            "acked_ranges": [[lo, hi] for lo, hi in sorted(frame.ranges)],
        }
        if frame.ecn is not None:
            out["ect0"], out["ect1"], out["ce"] = frame.ecn
        return out
    if isinstance(frame, CryptoFrame):
        return {"frame_type": "crypto", "offset": frame.offset, "raw": {"length": len(frame.data)}}
    if isinstance(frame, PaddingFrame):
        return {"frame_type": "padding", "raw": {"length": frame.length}}
    if isinstance(frame, ConnectionCloseFrame | ApplicationCloseFrame):
        app = isinstance(frame, ApplicationCloseFrame)
        out = {
            "frame_type": "connection_close",
            "error_space": "application" if app else "transport",
            "error_code": frame.error_code,
            "reason": frame.reason.decode("utf-8", "replace"),
        }
        if isinstance(frame, ConnectionCloseFrame):
            name = _close_error(frame.error_code)
            if name is not None:
                out["error"] = name
            out["trigger_frame_type"] = frame.error_frame_type
        return out
    return _simple_frame(frame)


def _simple_frame(frame: Any) -> dict[str, Any]:
    if isinstance(frame, DatagramFrame):
        return {"frame_type": "datagram", "raw": {"length": len(frame.data)}}
    if isinstance(frame, MaxDataFrame):
        return {"frame_type": "max_data", "maximum": frame.maximum_data}
    if isinstance(frame, MaxStreamDataFrame):
        return {
            "frame_type": "max_stream_data",
            "stream_id": frame.stream_id,
            "maximum": frame.maximum_stream_data,
        }
    if isinstance(frame, MaxStreamsFrame | StreamsBlockedFrame):
        name = "max_streams" if isinstance(frame, MaxStreamsFrame) else "streams_blocked"
        kind = "bidirectional" if frame.bidirectional else "unidirectional"
        return {"frame_type": name, "stream_type": kind, "maximum": frame.maximum_streams}
    if isinstance(frame, DataBlockedFrame):
        return {"frame_type": "data_blocked", "limit": frame.maximum_data}
    if isinstance(frame, StreamDataBlockedFrame):
        return {
            "frame_type": "stream_data_blocked",
            "stream_id": frame.stream_id,
            "limit": frame.maximum_stream_data,
        }
    if isinstance(frame, ResetStreamFrame):
        return {
            "frame_type": "reset_stream",
            "stream_id": frame.stream_id,
            "error_code": frame.error_code,
            "final_size": frame.final_size,
        }
    if isinstance(frame, StopSendingFrame):
        return {
            "frame_type": "stop_sending",
            "stream_id": frame.stream_id,
            "error_code": frame.error_code,
        }
    if isinstance(frame, NewConnectionIdFrame):
        return {
            "frame_type": "new_connection_id",
            "sequence_number": frame.sequence_number,
            "retire_prior_to": frame.retire_prior_to,
            "connection_id_length": len(frame.connection_id),
            "connection_id": frame.connection_id.hex(),
            "stateless_reset_token": frame.stateless_reset_token.hex(),
        }
    if isinstance(frame, RetireConnectionIdFrame):
        return {"frame_type": "retire_connection_id", "sequence_number": frame.sequence_number}
    if isinstance(frame, PathChallengeFrame | PathResponseFrame):
        name = "path_challenge" if isinstance(frame, PathChallengeFrame) else "path_response"
        return {"frame_type": name, "data": frame.data.hex()}
    if isinstance(frame, NewTokenFrame):
        return {"frame_type": "new_token", "token": {"raw": {"data": frame.token.hex()}}}
    # PING, HANDSHAKE_DONE and anything without fields worth logging
    name = type(frame).__name__.removesuffix("Frame")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return {"frame_type": snake}


def decode_frames_for_log(
    payload: bytes | memoryview, ack_delay_exponent: int = 3
) -> list[dict[str, Any]]:
    """Frames of a plaintext payload; stops (without raising) at the first bad frame."""
    data = bytes(payload)
    frames: list[dict[str, Any]] = []
    pos = 0
    end = len(data)
    padding = 0
    while pos < end:
        if data[pos] == 0:  # coalesce PADDING runs into one entry
            start = pos
            while pos < end and data[pos] == 0:
                pos += 1
            padding += pos - start
            continue
        try:
            frame, pos = decode_frame(data, pos)
        except QuicProtocolError:
            frames.append({"frame_type": "unknown", "raw": {"length": end - pos}})
            break
        frames.append(frame_to_qlog(frame, ack_delay_exponent))
    if padding:
        frames.append({"frame_type": "padding", "raw": {"length": padding}})
    return frames


# -- the logger ---------------------------------------------------------------------------


def _param_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, VersionInformation):  # versions as hex strings (QuicVersion)
        return {
            "chosen_version": f"{value.chosen_version:08x}",
            "available_versions": [f"{v:08x}" for v in value.available_versions],
        }
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


class QuicLogger:
    """Builds the qlog events of one connection and writes them to a sink."""

    def __init__(
        self,
        sink: QlogSink,
        is_client: bool,
        odcid: bytes,
        *,
        title: str = "pywebtransport qlog",
        wall_clock_time: str | None = None,
    ) -> None:
        self.sink = sink
        self.is_client = is_client
        self.odcid = odcid
        self._start: float | None = None
        self._now = 0.0
        self.started = False
        self._metrics: dict[str, Any] = {}
        self._pending_close: dict[str, Any] | None = None
        self.closed = False
        # ACK Delay scaling of each side (RFC 9000 §18.2), learnt from parameters_set
        self._local_ack_exponent = 3
        self._peer_ack_exponent = 3
        reference: dict[str, Any] = {"clock_type": "monotonic", "epoch": "unknown"}
        if wall_clock_time is not None:
            reference["wall_clock_time"] = wall_clock_time
        vantage = "client" if is_client else "server"
        sink.write(
            {
                "file_schema": QLOG_FILE_SCHEMA,
                "serialization_format": QLOG_SERIALIZATION,
                # pre-draft-10 names, still read by common tools
                "qlog_format": "JSON-SEQ",
                "qlog_version": "0.3",
                "title": title,
                "trace": {
                    "common_fields": {
                        "ODCID": odcid.hex(),
                        "time_format": "relative_to_epoch",
                        "reference_time": reference,
                    },
                    "vantage_point": {"name": "pywebtransport", "type": vantage},
                    "event_schemas": [QUIC_EVENT_SCHEMA],
                },
            }
        )

    def log(self, now: float | None, name: str, data: dict[str, Any]) -> None:
        """Write one event; ``now`` None (a caller without a clock) reuses the last time."""
        if now is None:
            now = self._now
        else:
            self._now = now
        start = self._start
        if start is None:
            start = self._start = now
        self.sink.write({"time": round((now - start) * 1000.0, 3), "name": name, "data": data})

    # -- connectivity ---------------------------------------------------------------

    def connection_started(self, now: float, local: Any, remote: Any, scid: bytes) -> None:
        self.started = True
        data: dict[str, Any] = {
            "local": _endpoint_info(local, scid),
            "remote": _endpoint_info(remote, None),
        }
        self.log(now, "quic:connection_started", data)

    def connection_closing(
        self,
        *,
        by_peer: bool,
        application: bool,
        code: int,
        reason: str,
        trigger: str,
    ) -> None:
        """Remember a close; it is logged by :meth:`flush_close` once it takes effect."""
        if self.closed or self._pending_close is not None:
            return
        data: dict[str, Any] = {
            "initiator": "remote" if by_peer else "local",
            "reason": reason,
            "trigger": trigger,
        }
        if application:
            data["application_error"] = "unknown"
            data["error_code"] = code
        else:
            name = _close_error(code)
            data["connection_error"] = name if name is not None else "unknown"
            data["error_code"] = code
        self._pending_close = data

    def flush_close(self, now: float) -> None:
        """Log ``quic:connection_closed`` (once) for the remembered close."""
        data = self._pending_close
        if data is None or self.closed:
            return
        self._pending_close = None
        self.closed = True
        self.log(now, "quic:connection_closed", data)
        # the trace ends here (a file sink is closed; later close retransmissions are
        # not logged), so a server with many connections does not hold their files open
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()

    def connection_closed(self, now: float, *, trigger: str, reason: str, by_peer: bool) -> None:
        """An immediate close without CONNECTION_CLOSE (idle timeout, stateless reset)."""
        self.connection_closing(
            by_peer=by_peer, application=False, code=0, reason=reason, trigger=trigger
        )
        self.flush_close(now)

    # -- transport ------------------------------------------------------------------

    def parameters_set(self, now: float | None, params: TransportParameters, local: bool) -> None:
        data: dict[str, Any] = {"initiator": "local" if local else "remote"}
        if local:
            self._local_ack_exponent = params.ack_delay_exponent
        else:
            self._peer_ack_exponent = params.ack_delay_exponent
        for f in fields(params):
            value = getattr(params, f.name)
            if value is None or f.name == "extensions":
                continue
            data[f.name] = _param_value(value)
        if params.extensions:
            data["unknown_parameters"] = [
                {"id": pid, "value": body.hex()} for pid, body in params.extensions
            ]
        self.log(now, "quic:parameters_set", data)

    def packet_received(
        self, now: float, packet_type: PacketType, pn: int, payload: bytes, size: int
    ) -> None:
        header = {"packet_type": PACKET_TYPE_NAMES[packet_type], "packet_number": pn}
        self.log(
            now,
            "quic:packet_received",
            {
                "header": header,
                "frames": decode_frames_for_log(payload, self._peer_ack_exponent),
                "raw": {"length": size},
            },
        )

    def packets_sent(self, now: float, packets: Iterable[Any]) -> None:
        """Log the packets of one datagram (``_Pending`` records of the assembler)."""
        for p in packets:
            chunks = p.chunks
            payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            header = {
                "packet_type": PACKET_TYPE_NAMES[p.packet_type],
                "packet_number": p.sent.packet_number,
            }
            if p.packet_type is PacketType.ONE_RTT:
                header["key_phase_bit"] = p.key_phase
            self.log(
                now,
                "quic:packet_sent",
                {
                    "header": header,
                    "frames": decode_frames_for_log(payload, self._local_ack_exponent),
                    "raw": {"length": p.sent.size},
                },
            )

    def packet_dropped(
        self, now: float, trigger: str, packet_type: PacketType | None = None, size: int = 0
    ) -> None:
        data: dict[str, Any] = {"trigger": trigger}
        if packet_type is not None:
            data["header"] = {"packet_type": PACKET_TYPE_NAMES.get(packet_type, "unknown")}
        if size:
            data["raw"] = {"length": size}
        self.log(now, "quic:packet_dropped", data)

    # -- security -------------------------------------------------------------------

    def key_updated(
        self,
        now: float | None,
        epoch: int,
        is_write: bool,
        trigger: str = "tls",
        key_phase: int | None = None,
    ) -> None:
        # our write keys are ours; read keys are the peer's
        side = "client" if is_write == self.is_client else "server"
        data: dict[str, Any] = {
            "key_type": f"{side}_{_KEY_EPOCH_NAMES[epoch]}_secret",
            "trigger": trigger,
        }
        if key_phase is not None:
            data["key_phase"] = key_phase
        self.log(now, "security:key_updated", data)

    # -- recovery -------------------------------------------------------------------

    def metrics_updated(self, now: float, recovery: LossRecovery) -> None:
        """Log ``recovery:metrics_updated`` with the metrics that changed, if any."""
        rtt = recovery.rtt
        cc = recovery.congestion
        current: dict[str, Any] = {
            "congestion_window": cc.congestion_window,
            "bytes_in_flight": cc.bytes_in_flight,
        }
        if rtt.has_sample:
            current["smoothed_rtt"] = round(rtt.smoothed_rtt * 1000.0, 3)
            current["min_rtt"] = round(rtt.min_rtt * 1000.0, 3)
            current["latest_rtt"] = round(rtt.latest_rtt * 1000.0, 3)
            current["rtt_variance"] = round(rtt.rttvar * 1000.0, 3)
        if cc.ssthresh is not None:
            current["ssthresh"] = cc.ssthresh
        last = self._metrics
        changed = {k: v for k, v in current.items() if last.get(k) != v}
        if changed:
            last.update(changed)
            self.log(now, "recovery:metrics_updated", changed)


def _endpoint_info(addr: Any, cid: bytes | None) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = str(addr[0]), addr[1]
        if ":" in host:
            info["ip_v6"], info["port_v6"] = host, port
        else:
            info["ip_v4"], info["port_v4"] = host, port
    if cid is not None:
        info["connection_ids"] = [cid.hex()]
    return info
