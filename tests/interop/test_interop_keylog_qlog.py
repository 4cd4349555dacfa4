"""The interop endpoints (``python -m quic.interop``, runner case ``http3``) honour
``SSLKEYLOGFILE`` and ``QLOGDIR`` in both roles: NSS key log lines for the same
handshakes on both sides, and per-connection qlog traces (QUIC and HTTP/3 events)
that pass the qvis/schema checks of tests/support/qlog_schema.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.test_http3_case import SMALL, Process, endpoint, our_client, sha256, tree
from tests.support.keylog_check import handshakes_logged
from tests.support.qlog_schema import check_trace

__all__ = ["tree"]  # the module-scoped fixture

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def test_keylog_and_qlog_in_both_roles(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s_keys, c_keys = tmp_path / "server.keys", tmp_path / "client.keys"
    s_qlog, c_qlog = tmp_path / "server-qlog", tmp_path / "client-qlog"
    monkeypatch.setenv("SSLKEYLOGFILE", str(s_keys))
    monkeypatch.setenv("QLOGDIR", str(s_qlog))
    server = Process(
        endpoint(
            "server",
            *("--testcase", "http3", "--port", "0"),
            *("--certs", str(tree / "certs"), "--www", str(tree / "www")),
        )
    )
    try:
        monkeypatch.setenv("SSLKEYLOGFILE", str(c_keys))
        monkeypatch.setenv("QLOGDIR", str(c_qlog))
        downloads = tmp_path / "downloads"
        done = our_client(downloads, f"https://127.0.0.1:{server.port}/{SMALL}")
        assert done.returncode == 0, done.stderr
        assert sha256(downloads / SMALL) == sha256(tree / "www" / SMALL)
    finally:
        code, err = server.stop()
    assert code == 0, err
    randoms = handshakes_logged(c_keys)
    assert randoms and handshakes_logged(s_keys) == randoms
    for role, directory in (("client", c_qlog), ("server", s_qlog)):
        (trace,) = directory.glob(f"*_{role}.sqlog")
        events = check_trace(trace.read_bytes(), role)
        names = {e["name"] for e in events}
        assert {"transport:packet_sent", "http:frame_created", "http:frame_parsed"} <= names
        assert events[-1]["name"] == "connectivity:connection_closed"
        headers = [
            e["data"]["frame"]["headers"]
            for e in events
            if e["name"] == "http:frame_parsed" and e["data"]["frame"]["frame_type"] == "headers"
        ]
        assert headers, role
    assert list(s_qlog.glob("endpoint-*.sqlog"))
