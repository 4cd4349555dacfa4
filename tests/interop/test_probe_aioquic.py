"""The conformance probe against aioquic's WebTransport server (draft-02), a separate
process on 127.0.0.1 (``tests/peers/aioquic_wt.py server``, certificate pinned by hash).

What the specs let us assert:

* the run completes and the server is recognised as draft-02 only (SETTINGS
  0x2b603742=1, H3_DATAGRAM=1, ENABLE_CONNECT_PROTOCOL=1): draft-02 negotiates, the
  other drafts are n/a;
* aioquic's HTTP/3 layer enforces RFC 9114: a malformed MAX_PUSH_ID is H3_FRAME_ERROR
  (§7.1), an HTTP/2 frame type and a second SETTINGS are H3_FRAME_UNEXPECTED (§7.2.8,
  §7.2.4); GREASE is ignored (§9); stream credit is honoured (RFC 9000 §4.1); the
  peer's /echo echoes streams and datagrams, refuses other paths with 404 and ends the
  CONNECT stream after our close;
* ``malformed.capsule`` FAILS: aioquic 1.7.2 has no Capsule Protocol (it hands the
  CONNECT stream's DATA to the application), and the test peer skips a
  CLOSE_WEBTRANSPORT_SESSION shorter than its error code instead of treating the
  message as malformed (RFC 9297 §3.3). That is aioquic's (and its peer script's)
  gap, reported correctly;
* the draft-16 and draft-07-only checks (``flow.wt``, ``sessions.limit``) are n/a.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pywebtransport.probe import Outcome, ProbeOptions, run_probe
from tests.interop.test_wt_aioquic import (  # noqa: F401 - fixtures
    LineProcess,
    aioquic_server,
    certificate,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

EXPECTED = {
    "quic.handshake": Outcome.PASS,
    "h3.settings.duplicate": Outcome.PASS,
    "h3.settings.http2": Outcome.PASS,
    "h3.connect-protocol": Outcome.PASS,
    "h3.datagram": Outcome.PASS,
    "wt.drafts": Outcome.PASS,
    "wt.draft16.requirements": Outcome.NA,
    "wt.draft-16": Outcome.NA,
    "wt.draft-07": Outcome.NA,
    "wt.draft-02": Outcome.PASS,
    "connect.accept": Outcome.PASS,
    "connect.unknown-path": Outcome.PASS,
    "echo.bidi": Outcome.PASS,
    "echo.uni": Outcome.PASS,
    "echo.datagram": Outcome.PASS,
    "grease": Outcome.PASS,
    "malformed.frame": Outcome.PASS,
    "malformed.h2-frame": Outcome.PASS,
    "malformed.second-settings": Outcome.PASS,
    "malformed.capsule": Outcome.FAIL,
    "flow.stream": Outcome.PASS,
    "flow.wt": Outcome.NA,
    "close.session": Outcome.PASS,
    "sessions.limit": Outcome.NA,
}


def test_probe_against_aioquic_wt_server(
    aioquic_server: LineProcess,  # noqa: F811
    certificate: tuple[Path, Path, bytes],  # noqa: F811
) -> None:
    _, _, digest = certificate
    options = ProbeOptions(cert_hashes=[digest], timeout=5.0)
    url = f"https://127.0.0.1:{aioquic_server.port}/echo"
    report = asyncio.run(asyncio.wait_for(run_probe(url, options), 150))
    table = report.table()
    assert report.info["drafts_offered"] == ["draft-02"], table
    for check, expected in EXPECTED.items():
        result = report.result(check)
        assert result is not None, f"{check} missing\n{table}"
        assert result.outcome is expected, f"{check}: {result}\n{table}"
    capsule = report.result("malformed.capsule")
    assert capsule is not None and "RFC 9297 §3.3" in capsule.section
    assert report.exit_status() == 1  # the capsule check fails
    for result in report.results:  # every n/a gives its reason
        assert result.outcome is not Outcome.NA or result.detail
