"""A snapshot of one connection's transport state, for applications and diagnostics.

:meth:`QuicConnection.stats() <quic.connection.QuicConnection.stats>` fills it from the
components that own each figure (RTT estimator and congestion controller of loss
recovery, the path's byte counters, the packet reader): upper layers read these instead
of reaching into QUIC's internals. :func:`queue_sizes` is the other view: the size of
every queue and table of a connection that a peer or the application can grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quic.conn_datagrams import DatagramChannel
    from quic.conn_paths import PathManager
    from quic.conn_receive import PacketReader
    from quic.connection import QuicConnection
    from quic.recovery import LossRecovery

__all__ = ["ConnectionStats", "queue_sizes"]


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """Transport figures of one connection at one moment (times in seconds)."""

    version: int
    smoothed_rtt: float  # RFC 9002 §5.3
    min_rtt: float  # RFC 9002 §5.2 (0.0 before the first sample)
    latest_rtt: float
    congestion_window: int  # bytes (RFC 9002 §7)
    bytes_in_flight: int
    bytes_sent: int  # UDP payload bytes, all paths
    bytes_received: int
    packets_received: int  # successfully processed
    packets_dropped: int  # undecryptable, unsupported or malformed
    # DATAGRAM sizes (RFC 9221 §5; RFC 9000 §14): the path's maximum datagram size now
    # (DPLPMTUD raises it and drops it back on a black hole), the largest DATAGRAM
    # payload that fits it (0: not negotiated), and queued datagrams discarded
    max_datagram_size: int = 1200
    max_datagram_payload: int = 0
    datagrams_dropped_queue_full: int = 0  # the oldest, out of a full queue
    datagrams_dropped_too_large: int = 0  # queued when they fitted; the path shrank

    @classmethod
    def of(
        cls,
        version: int,
        recovery: LossRecovery,
        paths: PathManager,
        reader: PacketReader,
        datagrams: DatagramChannel | None = None,
        dcid_length: int = 0,
    ) -> ConnectionStats:
        """Read each figure from the component that owns it (an ACK set aside for a
        reply processed first: LossRecovery.waiting_ack)."""
        recovery.process_waiting_ack()
        rtt = recovery.rtt
        mds = paths.max_datagram_size
        payload = datagrams.max_payload(dcid_length, mds) if datagrams is not None else 0
        return cls(
            version=version,
            smoothed_rtt=rtt.smoothed_rtt,
            min_rtt=rtt.min_rtt,
            latest_rtt=rtt.latest_rtt,
            congestion_window=recovery.congestion.congestion_window,
            bytes_in_flight=recovery.bytes_in_flight,
            bytes_sent=paths.bytes_sent,
            bytes_received=paths.bytes_received,
            packets_received=reader.processed,
            packets_dropped=reader.dropped,
            max_datagram_size=mds,
            max_datagram_payload=payload,
            datagrams_dropped_queue_full=datagrams.dropped_queue_full if datagrams else 0,
            datagrams_dropped_too_large=datagrams.dropped_too_large if datagrams else 0,
        )


def queue_sizes(conn: QuicConnection, events: int) -> dict[str, int]:
    """Size of every internal queue and table of ``conn`` a peer or the application
    can grow (``events``: its event queue); tests assert they drain and stay within
    their limits."""
    conn.recovery.process_waiting_ack()  # an ACK set aside for a reply: the tables after it
    return {
        "events": events,
        "path_responses": conn.paths.pending_responses,
        "paths": len(conn.paths.others),
        "cid_retirements": conn.cids.pending_retirements,
        "peer_cids": len(conn.cids.peer),
        "local_cids": len(conn.cids.local),
        "datagrams_out": conn.datagrams.pending,
        "pings": conn.sender.pending_pings,
        "probes": conn.sender.pending_probes,
        "buffered_packets": conn.reader.pending_buffered,
        "reprocess": conn.reader.pending_reprocess,
        "streams": len(conn.streams.manager.streams),
    }
