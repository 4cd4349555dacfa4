"""benchmarks.micro.bench_handshake: in-memory handshakes complete and are timed per side."""

from __future__ import annotations

from benchmarks.micro import bench_handshake


def test_handshakes_complete_and_leave_no_connection() -> None:
    for shares in ("default", "x25519"):
        result = bench_handshake.run(
            bench_handshake.parse_args(["--count", "3", "--warmup", "1", "--key-shares", shares])
        )
        assert result["count"] == 3
        assert result["client_ms_median"] > 0 and result["server_ms_median"] > 0
        assert result["server_connections_left"] == 0  # every close was delivered
