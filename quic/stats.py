"""A snapshot of one connection's transport state, for applications and diagnostics.

:meth:`QuicConnection.stats() <quic.connection.QuicConnection.stats>` fills it from the
components that own each figure (RTT estimator and congestion controller of loss
recovery, the path's byte counters, the packet reader): upper layers read these instead
of reaching into QUIC's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

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
