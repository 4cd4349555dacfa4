"""The handshake row's ``verified`` profile: every client checks the server's chain.

The other profiles turn certificate verification off for every stack; ``verified``
keeps each library's default (on) and gives the client the root that issued the run's
certificate (:mod:`benchmarks.certs`). These tests run real client and server processes
(ours and aioquic, both in this environment) and assert no speed: that a verifying
client completes its handshakes, and that one given another root fails them — the
verification really ran.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from benchmarks import harness
from benchmarks.certs import write_certificates
from benchmarks.peers import environments
from benchmarks.rows import Target, build_rows
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.verify import VerifyOptions, verify_server_certificate


def test_the_certificate_is_issued_by_the_root(tmp_path: Path) -> None:
    certs = write_certificates(tmp_path)
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    now = datetime.datetime.now(datetime.UTC)
    for name in ("127.0.0.1", "localhost"):  # what the clients connect to
        verify_server_certificate([der], name, now, VerifyOptions(cafile=str(certs.ca)))
    (tmp_path / "other").mkdir()
    other = write_certificates(tmp_path / "other")
    with pytest.raises(TlsAlertError) as failed:
        verify_server_certificate([der], "127.0.0.1", now, VerifyOptions(cafile=str(other.ca)))
    assert failed.value.alert == AlertDescription.unknown_ca


def test_only_the_full_handshake_row_verifies() -> None:
    rows = {row.key: row for row in build_rows(harness.parse_args(["--quick"]))}
    assert rows["handshake"].profiles == ("default", "verified", "matched", "best")
    # a resumed handshake checks no certificate; the WebTransport and HTTP/3 adapters
    # take no --cafile: asked for, the profile is left out of those rows
    args = harness.parse_args(["--quick", "--profiles", "default,verified"])
    assert harness.row_profiles(rows["handshake"], args) == ["default", "verified"]
    for key in ("resume", "quic-bulk", "h3-get", "wt-echo", "wt-sessions"):
        assert harness.row_profiles(rows[key], args) == ["default"], key
    assert harness.row_profiles(rows["wt-echo"], harness.parse_args([])) == ["default", "best"]


def test_verifying_clients_check_the_chain(tmp_path: Path) -> None:
    args = harness.parse_args(["--handshakes", "3"])
    row = next(r for r in build_rows(args) if r.key == "handshake")
    runner = harness.Runner(args, tmp_path, environments(tmp_path))
    for stack in ("ours", "aioquic"):
        outcome = runner.run(row, Target(stack, stack), "verified")
        assert outcome.result is not None, outcome.error
        assert outcome.result["count"] == 3
        assert (
            f"certificate chain verified against {runner.certificates.ca}"
            in (outcome.result["config"])
        )
        plain = runner.run(row, Target(stack, stack), "default")
        assert plain.result is not None, plain.error
        assert "verified" not in plain.result["config"]
    # clients that trust another root refuse the server: the check really runs
    (tmp_path / "other").mkdir()
    other = write_certificates(tmp_path / "other")
    runner.certificates = dataclasses.replace(runner.certificates, ca=other.ca)
    for stack in ("ours", "aioquic"):
        outcome = runner.run(row, Target(stack, stack), "verified")
        assert outcome.result is None, outcome.result
        assert outcome.error
