"""qlog tracing of QUIC connections (qlog 0.3: draft-ietf-quic-qlog-main-schema,
-quic-events; the HTTP/3 events are written by :mod:`h3.qlog` through the same logger).

Theory of operation
-------------------
A connection holds ``_qlog``: ``None`` (the default, no tracing) or a
:class:`QuicLogger`. Every hook in the connection and its components is guarded by a
single ``if qlog is not None`` test, so tracing costs nothing when it is off — no event
dictionary is built, no frame decoded; all the work of turning protocol state into
qlog events is done here, never in the connection's hot paths.

Format (one choice, used everywhere): the JSON-SEQ serialization of qlog 0.3 (RFC 7464:
each record is ``0x1E`` + JSON + ``\\n``), file extension ``.sqlog`` — what qvis loads
and visualises (it needs ``qlog_version`` and ``qlog_format: "JSON-SEQ"`` in the first
record, and events named ``category:event`` with the categories it looks up:
``connectivity``, ``transport``, ``security``, ``recovery``, ``http``). The first
record is the header (one trace: vantage point, ``common_fields`` with the ODCID as
``group_id``, ``time_format: "relative"`` and ``reference_time`` in ms since the Unix
epoch from the injected wall clock, else 0); then one record per event
``{"time": ms, "name": "category:event", "data": {...}}``. Times are passed in
(Sans-I/O): ``now`` is the connection's float clock in seconds and event times are
milliseconds since the first ``now`` the logger saw. A caller without a clock (HTTP/3,
TLS key installation) passes ``None`` and reuses the latest time.

Bounded: the logger keeps only a few scalars (the latest recovery metrics, the
congestion state); records go straight to a :class:`QlogSink`. :class:`QlogFileSink`
writes them to its file as they come (a buffered file, flushed when the trace ends),
so a long connection costs disk, not memory. :class:`QlogMemorySink` (tests) keeps
them in a list. A trace ends with ``connectivity:connection_closed``, which closes the
sink; :meth:`QuicLogger.close` ends a trace without an event (a tentative server
connection the endpoint discards).

Events: ``connectivity:`` connection_started, connection_closed; ``transport:``
version_information, alpn_information, parameters_set (local and remote),
packet_sent / packet_received (header with packet type, number, DCID/SCID; frames),
packet_dropped (trigger), packets_acked, datagrams_sent / datagrams_received,
stream_state_updated (every state of both sides of a stream, RFC 9000 §3, then
destroyed); ``security:`` key_updated, key_discarded;
``recovery:`` metrics_updated (only what changed), congestion_state_updated (from any
controller: slow_start, congestion_avoidance, recovery from a loss until the window
grows again), packet_lost.

Stateless packets (quic-events §"Events not belonging to a single connection"): a
server endpoint with qlog on keeps an endpoint-wide trace, written by
:class:`quic.qlog_endpoint.EndpointLogger` (a :class:`QuicLogger` with the endpoint's
hooks and a bound on how fast a flood can grow the file). A client logs the VN and
Retry packets it receives in its connection's trace
(:meth:`QuicLogger.packet_received_header`).

Sinks are made by :func:`create_logger` from a :class:`~quic.configuration.
QuicConfiguration`: ``qlog_factory(is_client, odcid)`` (``odcid == b""`` asks for the
endpoint-wide trace; returning None declines) or ``qlog_dir`` (one
``<ODCID hex>_<client|server>.sqlog`` per connection).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import fields
from enum import Enum
from typing import IO, TYPE_CHECKING, Any, Protocol

from quic.packet import LONG_TYPE_FROM_BITS, PacketHeader, PacketType
from quic.qlog_frames import close_error_name, decode_frames_for_log, frame_to_qlog
from quic.stream_recv import RecvState
from quic.stream_send import SendState
from quic.tparams import VersionInformation

if TYPE_CHECKING:
    from quic.configuration import QuicConfiguration
    from quic.recovery import LossRecovery, SentPacket
    from quic.tparams import TransportParameters

__all__ = [
    "QLOG_FORMAT",
    "QLOG_VERSION",
    "QlogFactory",
    "QlogFileSink",
    "QlogMemorySink",
    "QlogSink",
    "QuicLogger",
    "create_logger",
    "decode_frames_for_log",
    "frame_to_qlog",
    "parse_json_seq",
]

#: qlog 0.3 JSON-SEQ (main schema draft-03 §"JSON-SEQ serialization"): what qvis loads
QLOG_VERSION = "0.3"
QLOG_FORMAT = "JSON-SEQ"
RECORD_SEPARATOR = b"\x1e"

PACKET_TYPE_NAMES: dict[PacketType, str] = {
    PacketType.INITIAL: "initial",
    PacketType.ZERO_RTT: "0RTT",
    PacketType.HANDSHAKE: "handshake",
    PacketType.RETRY: "retry",
    PacketType.VERSION_NEGOTIATION: "version_negotiation",
    PacketType.ONE_RTT: "1RTT",
}
#: packet type of a packet number space (RFC 9000 §12.3; 0-RTT is not sent)
_SPACE_PACKET_TYPES = ("initial", "handshake", "1RTT")
#: quic-events §"PacketNumberSpace"
_SPACE_NAMES = ("initial", "handshake", "application_data")

#: quic-events §"stream_state_updated" granular names of RFC 9000 §3.1 / §3.2 states
_STREAM_STATE_NAMES: dict[Enum, str] = {
    SendState.READY: "ready",
    SendState.SEND: "send",
    SendState.DATA_SENT: "data_sent",
    SendState.DATA_RECVD: "data_received",
    SendState.RESET_SENT: "reset_sent",
    SendState.RESET_RECVD: "reset_received",
    RecvState.RECV: "receive",
    RecvState.SIZE_KNOWN: "size_known",
    RecvState.DATA_RECVD: "data_received",
    RecvState.DATA_READ: "data_read",
    RecvState.RESET_RECVD: "reset_received",
    RecvState.RESET_READ: "reset_read",
}

#: KeyType names (quic-events §"KeyType") by TLS epoch (0 initial .. 3 1-RTT)
_KEY_EPOCH_NAMES = ("initial", "0rtt", "handshake", "1rtt")


class QlogSink(Protocol):
    """Receives qlog records: the header first, then one dict per event."""

    def write(self, event: dict[str, Any]) -> None: ...


#: ``factory(is_client, odcid) -> sink`` (None: no trace). ``odcid == b""``: the
#: endpoint-wide trace of a server endpoint (stateless packets).
QlogFactory = Callable[[bool, bytes], "QlogSink | None"]


class QlogMemorySink:
    """Keeps every record in :attr:`records` (the header is ``records[0]``)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def write(self, event: dict[str, Any]) -> None:
        self.records.append(event)

    def close(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "name" in r]


class QlogFileSink:
    """Writes records as JSON-SEQ (RFC 7464) to ``path`` as they come; :meth:`close`
    (called by the logger when the trace ends) flushes and closes the file."""

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
            # disk full...: the trace is cut short, the caller goes on
            with contextlib.suppress(OSError):
                fp.close()  # flushes


def parse_json_seq(data: bytes) -> list[dict[str, Any]]:
    """Parse a JSON-SEQ byte string (RFC 7464) into its records."""
    return [json.loads(chunk) for chunk in data.split(RECORD_SEPARATOR) if chunk.strip()]


def _reference_ms(configuration: QuicConfiguration) -> float:
    """The trace's reference time: the injected wall clock in ms, or 0 without one."""
    clock = configuration.clock
    return round(clock().timestamp() * 1000.0, 3) if clock is not None else 0.0


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
        role = "client" if is_client else "server"
        path = os.path.join(configuration.qlog_dir, f"{odcid.hex()}_{role}.sqlog")
        sink = QlogFileSink(path)
    if sink is None:
        return None
    return QuicLogger(
        sink,
        is_client,
        odcid,
        reference_time=_reference_ms(configuration),
        versions=configuration.supported_versions,
        alpns=configuration.alpn_protocols,
    )


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


def _packet_header(
    packet_type: PacketType | str, pn: int | None, dcid: bytes | None, scid: bytes | None
) -> dict[str, Any]:
    """qlog ``PacketHeader`` (quic-events §"PacketHeader")."""
    name = packet_type if isinstance(packet_type, str) else PACKET_TYPE_NAMES[packet_type]
    header: dict[str, Any] = {"packet_type": name}
    if pn is not None:
        header["packet_number"] = pn
    if dcid is not None:
        header["dcid"] = dcid.hex()
    if scid is not None:
        header["scid"] = scid.hex()
    return header


class QuicLogger:
    """Builds the qlog events of one connection (or endpoint) and writes them to a sink.

    ``versions`` and ``alpns`` are the local ones (``version_information``,
    ``alpn_information``); ``reference_time`` is the wall clock of the trace's start in
    ms since the Unix epoch (0: unknown).
    """

    def __init__(
        self,
        sink: QlogSink,
        is_client: bool,
        odcid: bytes,
        *,
        title: str = "pywebtransport qlog",
        reference_time: float = 0.0,
        versions: Iterable[int] = (),
        alpns: Iterable[str] = (),
    ) -> None:
        self.sink = sink
        self.is_client = is_client
        self.odcid = odcid
        self.versions = tuple(versions)
        self.alpns = tuple(alpns)
        self._start: float | None = None
        self._now = 0.0
        self.started = False
        self._metrics: dict[str, Any] = {}
        self._cc_state: str | None = None
        self._ecn_state: str | None = None  # last ecn_state_updated (RFC 9000 A.4)
        self._recovery_window: int | None = None  # cwnd when a loss began recovery
        self._pending_close: dict[str, Any] | None = None
        self.closed = False
        # ACK Delay scaling of each side (RFC 9000 §18.2), learnt from parameters_set
        self._local_ack_exponent = 3
        self._peer_ack_exponent = 3
        self.side = "client" if is_client else "server"
        sink.write(
            {
                "qlog_version": QLOG_VERSION,
                "qlog_format": QLOG_FORMAT,
                "title": title,
                "trace": {
                    "vantage_point": {"name": "pywebtransport", "type": self.side},
                    "common_fields": {
                        "ODCID": odcid.hex(),
                        "group_id": odcid.hex(),
                        "protocol_type": ["QUIC", "HTTP3"],
                        "time_format": "relative",
                        "reference_time": reference_time,
                    },
                },
            }
        )

    def log(self, now: float | None, name: str, data: dict[str, Any]) -> None:
        """Write one event; ``now`` None (a caller without a clock) reuses the last time."""
        if self.closed:
            return
        if now is None or now < self._now:
            now = self._now  # times never go back within a trace
        else:
            self._now = now
        start = self._start
        if start is None:
            start = self._start = now
        self.sink.write({"time": round((now - start) * 1000.0, 3), "name": name, "data": data})

    def close(self) -> None:
        """End the trace without an event (the sink is closed)."""
        self.closed = True
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()

    def _flush(self) -> None:
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()

    # -- connectivity ---------------------------------------------------------------

    def connection_started(
        self, now: float, local: Any, remote: Any, scid: bytes, dcid: bytes | None = None
    ) -> None:
        """``connectivity:connection_started`` and ``transport:version_information``."""
        self.started = True
        data: dict[str, Any] = {"protocol": "QUIC", "src_cid": scid.hex()}
        if dcid is not None:
            data["dst_cid"] = dcid.hex()
        _address(data, "src", local)
        _address(data, "dst", remote)
        self.log(now, "connectivity:connection_started", data)

    def version_information(
        self, now: float | None, chosen: int | None, peer_versions: Iterable[int] | None = None
    ) -> None:
        """``transport:version_information`` (quic-events §"version_information")."""
        local, peer = ("client", "server") if self.is_client else ("server", "client")
        data: dict[str, Any] = {f"{local}_versions": [f"{v:08x}" for v in self.versions]}
        if peer_versions is not None:
            data[f"{peer}_versions"] = [f"{v:08x}" for v in peer_versions]
        if chosen is not None:
            data["chosen_version"] = f"{chosen:08x}"
        self.log(now, "transport:version_information", data)

    def alpn_information(self, now: float | None, chosen: str | None) -> None:
        """``transport:alpn_information``: our offer and the protocol agreed."""
        data: dict[str, Any] = {f"{self.side}_alpns": list(self.alpns)}
        if chosen is not None:
            data["chosen_alpn"] = chosen
        self.log(now, "transport:alpn_information", data)

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
            "owner": "remote" if by_peer else "local",
            "reason": reason,
            "trigger": trigger,
        }
        if application:
            data["application_code"] = code
        else:
            name = close_error_name(code)
            data["connection_code"] = name if name is not None else code
        self._pending_close = data

    def abort(self, reason: str) -> None:
        """The owner drops the connection without closing it (its endpoint closed):
        ``connection_closed`` (trigger ``aborted``) unless a close is already logged,
        then the trace ends."""
        self.connection_closing(
            by_peer=False, application=False, code=0, reason=reason, trigger="aborted"
        )
        self.end()

    def end(self) -> None:
        """The connection is gone (the endpoint forgot it): log a close still waiting
        for its CONNECTION_CLOSE to be sent, then end the trace."""
        self.flush_close(None)
        self.close()

    def flush_close(self, now: float | None) -> None:
        """Log ``connectivity:connection_closed`` (once) for the remembered close; the
        trace ends there (the sink is closed: later close retransmissions are not
        logged, and a server with many connections does not hold their files open)."""
        data = self._pending_close
        if data is None or self.closed:
            return
        self._pending_close = None
        self.log(now, "connectivity:connection_closed", data)
        self.close()

    def connection_closed(self, now: float, *, trigger: str, reason: str, by_peer: bool) -> None:
        """An immediate close without CONNECTION_CLOSE (idle timeout, stateless reset)."""
        self.connection_closing(
            by_peer=by_peer, application=False, code=0, reason=reason, trigger=trigger
        )
        self.flush_close(now)

    # -- transport ------------------------------------------------------------------

    def parameters_set(self, now: float | None, params: TransportParameters, local: bool) -> None:
        data: dict[str, Any] = {"owner": "local" if local else "remote"}
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
        self.log(now, "transport:parameters_set", data)

    def packet_received(
        self,
        now: float,
        packet_type: PacketType,
        pn: int,
        payload: bytes,
        size: int,
        dcid: bytes | None = None,
        scid: bytes | None = None,
    ) -> None:
        self.log(
            now,
            "transport:packet_received",
            {
                "header": _packet_header(packet_type, pn, dcid, scid),
                "frames": decode_frames_for_log(payload, self._peer_ack_exponent),
                "raw": {"length": size},
            },
        )

    def packet_received_header(self, now: float, header: PacketHeader, size: int) -> None:
        """A packet without frames received: Version Negotiation or Retry."""
        vn = header.version == 0
        packet_type = PacketType.VERSION_NEGOTIATION if vn else PacketType.RETRY
        versions = header.supported_versions if vn else None
        token = None if vn else header.token
        data = _frameless(packet_type, header.dcid, header.scid, size, versions, token)
        self.log(now, "transport:packet_received", data)

    def packets_sent(self, now: float, packets: Iterable[Any]) -> None:
        """Log the packets of one datagram (``_Pending`` records of the assembler) and the
        datagram itself (``transport:datagrams_sent``)."""
        total = 0
        for p in packets:
            chunks = p.chunks
            payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            header = _packet_header(p.packet_type, p.sent.packet_number, p.dcid, p.scid)
            if p.packet_type is PacketType.ONE_RTT:
                header["key_phase_bit"] = p.key_phase
            size = p.sent.size
            total += size
            self.log(
                now,
                "transport:packet_sent",
                {
                    "header": header,
                    "frames": decode_frames_for_log(payload, self._local_ack_exponent),
                    "raw": {"length": size},
                },
            )
        if total:
            self.log(now, "transport:datagrams_sent", {"count": 1, "raw": [{"length": total}]})

    def datagram_received(self, now: float, size: int) -> None:
        """``transport:datagrams_received`` for one UDP datagram."""
        self.log(now, "transport:datagrams_received", {"count": 1, "raw": [{"length": size}]})

    def stream_side_updated(
        self, stream_id: int, sending: bool, old: Enum | None, new: Enum
    ) -> None:
        """``transport:stream_state_updated`` for one side of a stream: its first state
        (``old`` None: Ready or Recv as the stream comes into being) and every
        transition of the RFC 9000 §3.1 (sending) and §3.2 (receiving) state machines,
        in the granular state names of quic-events; resets carry a ``trigger``."""
        data: dict[str, Any] = {
            "stream_id": stream_id,
            "stream_type": "unidirectional" if stream_id & 2 else "bidirectional",
            "stream_side": "sending" if sending else "receiving",
            "new": _STREAM_STATE_NAMES[new],
        }
        if old is not None:
            data["old"] = _STREAM_STATE_NAMES[old]
        if new is SendState.RESET_SENT:
            data["trigger"] = "local"
        elif new is RecvState.RESET_RECVD:
            data["trigger"] = "remote"
        self.log(None, "transport:stream_state_updated", data)

    def stream_state_updated(self, stream_id: int, new: str) -> None:
        """``transport:stream_state_updated`` of each side the stream has (RFC 9000 §2.1:
        a unidirectional stream has the side of its initiator's role), e.g. ``destroyed``
        when the stream leaves every table (qlog's state for "memory freed")."""
        kind = "unidirectional" if stream_id & 2 else "bidirectional"
        sides: tuple[str, ...] = ("sending", "receiving")
        if stream_id & 2:  # our own unidirectional streams only send
            sides = sides[:1] if (stream_id & 1) == (0 if self.is_client else 1) else sides[1:]
        for side in sides:
            data = {"stream_id": stream_id, "stream_type": kind, "stream_side": side, "new": new}
            self.log(None, "transport:stream_state_updated", data)

    def packet_dropped(
        self, now: float, trigger: str, packet_type: PacketType | None = None, size: int = 0
    ) -> None:
        data: dict[str, Any] = {"trigger": trigger}
        if packet_type is not None:
            data["header"] = {"packet_type": PACKET_TYPE_NAMES.get(packet_type, "unknown")}
        if size:
            data["raw"] = {"length": size}
        self.log(now, "transport:packet_dropped", data)

    # -- security -------------------------------------------------------------------

    def _key_type(self, epoch: int, is_write: bool) -> str:
        # our write keys are ours; read keys are the peer's
        side = "client" if is_write == self.is_client else "server"
        return f"{side}_{_KEY_EPOCH_NAMES[epoch]}_secret"

    def key_updated(
        self,
        now: float | None,
        epoch: int,
        is_write: bool,
        trigger: str = "tls",
        key_phase: int | None = None,
    ) -> None:
        data: dict[str, Any] = {"key_type": self._key_type(epoch, is_write), "trigger": trigger}
        if key_phase is not None:
            data["generation"] = key_phase
        self.log(now, "security:key_updated", data)

    def key_discarded(self, now: float | None, epoch: int, trigger: str = "tls") -> None:
        """``security:key_discarded`` for both keys of ``epoch`` (RFC 9001 §4.9)."""
        for is_write in (True, False):
            data = {"key_type": self._key_type(epoch, is_write), "trigger": trigger}
            self.log(now, "security:key_discarded", data)

    # -- path: ECN and MTU -----------------------------------------------------------

    def ecn_state(self, now: float, state: str) -> None:
        """``recovery:ecn_state_updated`` when the ECN state of the path (RFC 9000
        Appendix A.4: testing, capable, failed) differs from the last one logged."""
        old = self._ecn_state
        if state == old or state == "disabled":  # not a state of Appendix A.4
            return
        self._ecn_state = state
        data: dict[str, Any] = {"new": state}
        if old is not None:
            data["old"] = old
        self.log(now, "recovery:ecn_state_updated", data)

    def mtu_updated(self, now: float | None, old: int, new: int) -> None:
        """``connectivity:mtu_updated``: DPLPMTUD changed the path's datagram size
        (RFC 8899)."""
        self.log(now, "connectivity:mtu_updated", {"old": old, "new": new})

    # -- recovery -------------------------------------------------------------------

    def metrics_updated(self, now: float, recovery: LossRecovery) -> None:
        """``recovery:metrics_updated`` with the metrics that changed, if any, and
        ``recovery:congestion_state_updated`` when the state changed."""
        rtt = recovery.rtt
        cc = recovery.congestion
        current: dict[str, Any] = {
            "congestion_window": cc.congestion_window,
            "bytes_in_flight": cc.bytes_in_flight,
            "pto_count": recovery.pto_count,
        }
        if rtt.has_sample:
            current["smoothed_rtt"] = round(rtt.smoothed_rtt * 1000.0, 3)
            current["min_rtt"] = round(rtt.min_rtt * 1000.0, 3)
            current["latest_rtt"] = round(rtt.latest_rtt * 1000.0, 3)
            current["rtt_variance"] = round(rtt.rttvar * 1000.0, 3)
        ssthresh = getattr(cc, "ssthresh", None)
        if ssthresh is not None:
            current["ssthresh"] = ssthresh
        last = self._metrics
        changed = {k: v for k, v in current.items() if last.get(k) != v}
        if changed:
            last.update(changed)
            self.log(now, "recovery:metrics_updated", changed)
        state = self._congestion_state(cc)
        if state != self._cc_state:
            data = (
                {"new": state} if self._cc_state is None else {"old": self._cc_state, "new": state}
            )
            self._cc_state = state
            self.log(now, "recovery:congestion_state_updated", data)

    def _congestion_state(self, cc: Any) -> str:
        """slow_start / congestion_avoidance / recovery (RFC 9002 §7.3), read from any
        controller: ``recovery`` from a loss until the window grows again."""
        window = cc.congestion_window
        if self._recovery_window is not None:
            if window <= self._recovery_window:
                return "recovery"
            self._recovery_window = None
        slow = getattr(cc, "in_slow_start", None)
        if not isinstance(slow, bool):
            ssthresh = getattr(cc, "ssthresh", None)
            slow = ssthresh is None or window < ssthresh
        return "slow_start" if slow else "congestion_avoidance"

    def packets_acked(self, now: float, space: int, packets: Iterable[SentPacket]) -> None:
        """``transport:packets_acked``: packets acknowledged for the first time."""
        numbers = [p.packet_number for p in packets]
        if numbers:
            data = {"packet_number_space": _SPACE_NAMES[space], "packet_numbers": numbers}
            self.log(now, "transport:packets_acked", data)

    def packets_lost(
        self,
        now: float,
        packets: Iterable[SentPacket],
        recovery: LossRecovery,
        trigger: str | None = None,
    ) -> None:
        """``recovery:packet_lost`` for each packet declared lost (RFC 9002 §6.1);
        the congestion state becomes ``recovery`` (§7.3.2)."""
        any_lost = False
        for packet in packets:
            any_lost = True
            header = {
                "packet_type": _SPACE_PACKET_TYPES[packet.space],
                "packet_number": packet.packet_number,
            }
            data: dict[str, Any] = {"header": header}
            if trigger is not None:
                data["trigger"] = trigger
            self.log(now, "recovery:packet_lost", data)
        if any_lost:
            self._recovery_window = recovery.congestion.congestion_window


def _frameless(
    packet_type: PacketType,
    dcid: bytes,
    scid: bytes,
    size: int,
    versions: Iterable[int] | None,
    token: bytes | None,
) -> dict[str, Any]:
    """``packet_sent``/``packet_received`` data of a Version Negotiation or Retry packet."""
    data: dict[str, Any] = {
        "header": _packet_header(packet_type, None, dcid, scid),
        "raw": {"length": size},
    }
    if versions is not None:
        data["supported_versions"] = [f"{v:08x}" for v in versions]
    if token is not None:
        data["header"]["token"] = {"raw": {"length": len(token), "data": token.hex()}}
    return data


def _datagram_packet_type(datagram: bytes) -> str:
    """qlog ``PacketType`` of the first packet of a datagram from its first byte and
    version (RFC 8999 §5; RFC 9000 §17.2, RFC 9369 §3.2): ``unknown`` when the version
    is not one we know or the datagram is too short."""
    if not datagram:
        return "unknown"
    if not datagram[0] & 0x80:
        return "1RTT"
    if len(datagram) < 5:
        return "unknown"
    version = int.from_bytes(datagram[1:5], "big")
    if version == 0:
        return "version_negotiation"
    types = LONG_TYPE_FROM_BITS.get(version)
    if types is None:
        return "unknown"
    return PACKET_TYPE_NAMES[types[(datagram[0] & 0x30) >> 4]]


def _address(data: dict[str, Any], prefix: str, addr: Any) -> None:
    """``src_ip``/``src_port`` (``dst_``...) and ``ip_version`` of ``(host, port)``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        data["ip_version"] = "ipv6" if ":" in host else "ipv4"
        data[f"{prefix}_ip"] = host
        data[f"{prefix}_port"] = addr[1]
