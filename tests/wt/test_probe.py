"""The conformance probe against our own server and against deliberately broken ones.

Every server here is an in-process :class:`~pywebtransport.app.ServerApp` with the
interop routes on 127.0.0.1 (random port), probed on ``/echo``:

* as it is: every check passes or is n/a with a reason; with ``max_sessions=2`` and
  draft-07 the session-limit check runs and passes;
* broken, each by one monkeypatched behaviour of the server role only (the probe runs
  the same code as a client): a duplicate setting, 200 on unknown paths, WT_CLOSE_SESSION
  ignored, a second SETTINGS ignored, a malformed capsule taken as a clean close, the
  session limit not enforced, CONNECT never answered, data sent beyond our stream
  credit — the check that covers the rule fails, with its section,
  and the exit status is non-zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import h3.capsules
from h3.capsules import CapsuleType, decode_close_webtransport_session
from h3.control import ControlStreams
from h3.frames import FrameType
from h3.settings import SettingId
from pywebtransport.app import ServerApp
from pywebtransport.cli import build_app
from pywebtransport.config import ServerConfig
from pywebtransport.interop import echo_handler
from pywebtransport.probe import Outcome, ProbeOptions, ProbeReport, run_probe
from pywebtransport.protocol import WebTransportConnection
from pywebtransport.protocol import connection as wt_connection
from quic.aio import wall_clock
from quic.buffer import encode_varint
from quic.conn_streams import StreamController
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed
from quic.tparams import TransportParameters

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 10.0
# per check: what a check that waits for no reaction waits (loopback reactions take
# milliseconds; 2.5 s leaves a loaded 2-core CI machine a thousand times that)
CHECK_TIMEOUT = 2.5


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return generate_self_signed(wall_clock())


def make_app(cert: SelfSignedCertificate, **config: Any) -> ServerApp:
    server_config = ServerConfig(
        certificate_chain=[cert.certificate],
        private_key=cert.private_key,
        port=0,
        shutdown_timeout=1.0,
        **config,
    )
    return build_app(server_config)


@asynccontextmanager
async def serving(app: ServerApp) -> AsyncIterator[int]:
    task = asyncio.create_task(app.serve("127.0.0.1", 0))
    try:
        async with asyncio.timeout(TIMEOUT):
            port = await app.wait_started()
        yield port
    finally:
        app.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


async def probe(app: ServerApp, cert: SelfSignedCertificate, path: str = "/echo") -> ProbeReport:
    options = ProbeOptions(cert_hashes=[cert.sha256], timeout=CHECK_TIMEOUT)
    async with serving(app) as port:
        return await run_probe(f"https://127.0.0.1:{port}{path}", options)


def outcome(report: ProbeReport, check: str) -> Outcome:
    result = report.result(check)
    assert result is not None, f"{check} did not run: {report.table()}"
    return result.outcome


def assert_fails(report: ProbeReport, check: str, section: str) -> None:
    result = report.result(check)
    assert result is not None, report.table()
    assert result.outcome is Outcome.FAIL, report.table()
    assert section in result.section
    assert not report.ok
    assert report.exit_status() != 0


# ======================================================================================
# our own server
# ======================================================================================

ALWAYS_PASS = [
    "quic.handshake",
    "h3.settings.received",
    "h3.settings.duplicate",
    "h3.settings.http2",
    "h3.settings.values",
    "h3.connect-protocol",
    "h3.datagram",
    "wt.drafts",
    "wt.draft16.requirements",
    "wt.draft-16",
    "wt.draft-07",
    "wt.draft-02",
    "connect.accept",
    "connect.unknown-path",
    "connect.no-protocol",
    "connect.bad-protocol",
    "echo.bidi",
    "echo.uni",
    "echo.datagram",
    "grease",
    "malformed.frame",
    "malformed.h2-frame",
    "malformed.second-settings",
    "malformed.capsule",
    "flow.stream",
    "flow.wt",
    "close.session",
]


async def test_probe_our_server_all_pass(cert: SelfSignedCertificate) -> None:
    report = await probe(make_app(cert), cert)
    assert report.ok, report.table()
    assert report.exit_status() == 0
    for check in ALWAYS_PASS:
        assert outcome(report, check) is Outcome.PASS, report.table()
    for result in report.results:
        assert result.section, result
        if result.outcome is Outcome.NA:
            assert result.detail, result  # n/a always says why
    # every draft is offered and spoken; the default limit (100) is above what is probed
    assert outcome(report, "wt.draft-13") is Outcome.PASS
    assert outcome(report, "sessions.limit") is Outcome.NA
    assert report.info["drafts_offered"] == ["draft-16", "draft-13", "draft-07", "draft-02"]


async def test_probe_session_limit_enforced(cert: SelfSignedCertificate) -> None:
    app = make_app(cert, drafts=("draft07",), max_sessions=2)
    report = await probe(app, cert)
    assert outcome(report, "sessions.limit") is Outcome.PASS, report.table()
    result = report.result("sessions.limit")
    assert result is not None and "limit 2" in result.detail
    assert report.ok, report.table()


async def test_probe_plain_path_without_echo(cert: SelfSignedCertificate) -> None:
    """``/stats`` answers streams with JSON: the echo checks are n/a with the reason,
    the checks that need an echo say so, and nothing fails."""
    report = await probe(make_app(cert), cert, path="/stats")
    assert report.ok, report.table()
    for check in ("echo.bidi", "flow.stream"):
        assert outcome(report, check) is Outcome.NA, report.table()
    bidi = report.result("echo.bidi")
    assert bidi is not None and "not an echo" in bidi.detail


# ======================================================================================
# broken servers: the right check fails with the right section
# ======================================================================================


def _server_only(original: Callable[..., Any], replacement: Callable[..., Any]) -> Any:
    """A method that behaves as ``replacement`` on the server role only."""

    def method(self: Any, *args: Any) -> Any:
        is_client = getattr(self, "is_client", getattr(self, "_is_client", True))
        if is_client:
            return original(self, *args)
        return replacement(self, *args)

    return method


async def test_broken_duplicate_setting(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h3.control

    original = h3.control.encode_settings

    def duplicated(settings: dict[int, int]) -> bytes:
        payload = original(settings)
        if SettingId.ENABLE_CONNECT_PROTOCOL in settings:  # only servers send it
            payload += encode_varint(SettingId.H3_DATAGRAM) + encode_varint(1)
        return payload

    monkeypatch.setattr(h3.control, "encode_settings", duplicated)
    report = await probe(make_app(cert), cert)
    assert_fails(report, "h3.settings.duplicate", "RFC 9114 §7.2.4")
    result = report.result("h3.settings.duplicate")
    assert result is not None and "H3_DATAGRAM(0x33)" in result.detail


async def test_broken_accepts_unknown_paths(cert: SelfSignedCertificate) -> None:
    app = make_app(cert)
    app.add_pattern_route(r".*", echo_handler)
    report = await probe(app, cert)
    assert_fails(report, "connect.unknown-path", "draft-16 §3.2")
    assert outcome(report, "connect.accept") is Outcome.PASS


async def test_broken_ignores_close_session(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = WebTransportConnection._close_from_peer
    monkeypatch.setattr(
        WebTransportConnection,
        "_close_from_peer",
        _server_only(original, lambda self, session, code, reason: None),
    )
    report = await probe(make_app(cert), cert)
    assert_fails(report, "close.session", "draft-16 §6")
    result = report.result("close.session")
    assert result is not None and "still open" in result.detail


async def test_broken_ignores_second_settings(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ControlStreams._on_frame

    def lenient(self: ControlStreams, ftype: int, payload: bytes) -> None:
        if ftype == FrameType.SETTINGS and self.peer_settings is not None:
            return  # the bug: a second SETTINGS frame is ignored
        original(self, ftype, payload)

    monkeypatch.setattr(ControlStreams, "_on_frame", _server_only(original, lenient))
    report = await probe(make_app(cert), cert)
    assert_fails(report, "malformed.second-settings", "RFC 9114 §7.2.4")
    # the other control-stream checks are unaffected
    assert outcome(report, "malformed.frame") is Outcome.PASS
    assert outcome(report, "malformed.h2-frame") is Outcome.PASS


async def test_broken_malformed_capsule_taken_as_close(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lenient(value: bytes) -> tuple[int, str]:
        if len(value) < 4:
            return 0, ""  # the bug: a value shorter than its error code is a close
        return decode_close_webtransport_session(value)

    monkeypatch.setattr(wt_connection, "decode_close_webtransport_session", lenient)
    # the capsule reader's own length bounds let the short value through as well
    monkeypatch.setitem(
        h3.capsules._VALUE_BOUNDS, CapsuleType.CLOSE_WEBTRANSPORT_SESSION, (0, 4 + 1024)
    )
    report = await probe(make_app(cert), cert)
    assert_fails(report, "malformed.capsule", "RFC 9297 §3.3")
    result = report.result("malformed.capsule")
    assert result is not None and "FIN" in result.detail


async def test_broken_session_limit_not_enforced(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = WebTransportConnection._session_limit
    monkeypatch.setattr(
        WebTransportConnection, "_session_limit", _server_only(original, lambda self, d: 1000)
    )
    app = make_app(cert, drafts=("draft07",), max_sessions=2)
    report = await probe(app, cert)
    assert_fails(report, "sessions.limit", "WEBTRANSPORT_MAX_SESSIONS")


async def test_broken_never_answers_connect(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONNECT requests are swallowed: the probe does not hang; the session checks fail
    with "no answer" within their timeouts and the run completes."""
    original = WebTransportConnection._on_request
    monkeypatch.setattr(
        WebTransportConnection, "_on_request", _server_only(original, lambda self, event: None)
    )
    options = ProbeOptions(cert_hashes=[cert.sha256], timeout=0.5)
    async with serving(make_app(cert)) as port:
        async with asyncio.timeout(60):
            report = await run_probe(f"https://127.0.0.1:{port}/echo", options)
    assert_fails(report, "connect.accept", "draft-16 §3.2")
    result = report.result("connect.accept")
    assert result is not None and "no answer" in result.detail
    assert_fails(report, "connect.unknown-path", "draft-16 §3.2")
    assert outcome(report, "malformed.frame") is Outcome.PASS  # HTTP/3 itself still works


async def test_broken_sends_beyond_stream_credit(
    cert: SelfSignedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reads our stream windows as 16 times larger than they are: it sends
    beyond our credit, our QUIC closes with FLOW_CONTROL_ERROR and ``flow.stream``
    fails with RFC 9000 §4.1."""
    original = StreamController.apply_peer_params

    def inflated(self: StreamController, params: TransportParameters) -> None:
        original(
            self,
            dataclasses.replace(
                params,
                initial_max_stream_data_bidi_local=16 * params.initial_max_stream_data_bidi_local,
            ),
        )

    monkeypatch.setattr(StreamController, "apply_peer_params", _server_only(original, inflated))
    report = await probe(make_app(cert), cert)
    assert_fails(report, "flow.stream", "RFC 9000 §4.1")
    result = report.result("flow.stream")
    assert result is not None and "0x3" in result.detail  # FLOW_CONTROL_ERROR, by the probe
    assert outcome(report, "echo.bidi") is Outcome.PASS  # small echoes stay within credit
