"""A snapshot of one connection's transport state, for applications and diagnostics.

:meth:`QuicConnection.stats() <quic.connection.QuicConnection.stats>` fills it from the
components that own each figure (RTT estimator and congestion controller of loss
recovery, the path's byte counters, the packet reader): upper layers read these instead
of reaching into QUIC's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quic.conn_paths import PathManager
    from quic.conn_receive import PacketReader
    from quic.recovery import LossRecovery

__all__ = ["ConnectionStats"]


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

    @classmethod
    def of(
        cls, version: int, recovery: LossRecovery, paths: PathManager, reader: PacketReader
    ) -> ConnectionStats:
        """Read each figure from the component that owns it."""
        rtt = recovery.rtt
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
        )
