"""The idle-session census (:mod:`benchmarks.micro.bench_wt_sessions_census`) runs and
reports what it promises: per session, the server's tracked objects by type, the traced
bytes by source line, one QUIC connection and one WebTransport session each. Loose
structural bounds (the budgets live in tests/wt and tests/pwt), no timing."""

from __future__ import annotations

from benchmarks.micro.bench_wt_sessions_census import census

N = 4


async def test_census_counts_one_connection_and_one_session_per_idle_session() -> None:
    found = await census(N, top=400)
    assert found.sessions == N
    kinds = dict(found.by_type)
    assert kinds["quic.connection.QuicConnection"] == 1.0
    assert kinds["pywebtransport.session.WebTransportSession"] == 1.0
    assert 100 < found.objects < 400, found.objects
    assert 10 < found.traced_kb < 80, found.traced_kb
    lines = [where for where, _ in found.by_line]
    assert any("quic/connection.py" in where for where in lines), lines[:10]
    assert sum(kb for _, kb in found.by_line) <= found.traced_kb * 1.01 + 0.5
