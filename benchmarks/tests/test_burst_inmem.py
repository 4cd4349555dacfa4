"""benchmarks.micro.bench_burst_inmem: the in-memory burst runs past the server's
admission of new connections and counts the minimum of three datagrams per echo."""

from __future__ import annotations

import ast
import sys

import pytest

from benchmarks.micro import bench_burst_inmem


def test_more_sessions_than_the_server_admits_at_once_all_echo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server takes about 330 new connections at a time; the rest complete after
    # their Initials' PTOs. The tool once stopped at 0.5 s of fake time with
    # "not every handshake completed".
    monkeypatch.setattr(sys, "argv", ["bench_burst_inmem", "400", "--rest", "1.1"])
    bench_burst_inmem.main()
    result = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sessions"] == 400
    # the request, the reply carrying its ACK, the client's ACK of the reply
    assert result["client_datagrams_per_echo"] == 2.0
    assert result["server_datagrams_per_echo"] == 1.0
    assert result["builds_per_echo"] == 3.0
