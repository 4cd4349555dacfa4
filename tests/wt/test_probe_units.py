"""The probe's parts without a network: the SETTINGS sniffer, the SETTINGS checks, the
report (table, JSON schema, exit status) and the bounded records of a probe connection.

The boundedness tests feed N and 4N inputs and compare what is retained: whatever a
server sends, the probe keeps at most its limits (retained(4N) == retained(N) once the
limit is reached, while the work done grows with the input).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from h3.frames import FrameType, encode_frame
from h3.settings import SettingId
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.config import ClientConfig
from pywebtransport.probe.checks_settings import (
    DRAFT13_MAX_SESSIONS,
    TransportFacts,
    offered_drafts,
    settings_checks,
)
from pywebtransport.probe.conn import ProbeConnection, ProbeLimits
from pywebtransport.probe.context import ProbeContext, ProbeOptions
from pywebtransport.probe.report import (
    SCHEMA_VERSION,
    CheckResult,
    Outcome,
    ProbeReport,
    failed,
    not_applicable,
    passed,
)
from pywebtransport.probe.runner import _guarded
from pywebtransport.probe.wire import (
    MAX_SETTINGS_BYTES,
    ControlStreamSniffer,
    decode_settings_pairs,
)
from pywebtransport.protocol import events as ev
from quic.buffer import encode_varint
from quic.connection import QuicConnection

CONTROL = encode_uni_stream_header(StreamType.CONTROL)


def raw_settings(pairs: list[tuple[int, int]]) -> bytes:
    payload = b"".join(encode_varint(s) + encode_varint(v) for s, v in pairs)
    return CONTROL + encode_frame(FrameType.SETTINGS, payload)


# ======================================================================================
# sniffer
# ======================================================================================


def test_sniffer_keeps_pairs_as_sent_byte_by_byte() -> None:
    pairs = [(0x33, 1), (0x33, 1), (0x02, 5), (0x2B603742, 1)]
    data = raw_settings(pairs) + encode_frame(0x21, b"grease")
    sniffer = ControlStreamSniffer()
    sniffer.feed(7, encode_uni_stream_header(StreamType.QPACK_ENCODER) + b"\x00\x01")
    for index in range(len(data)):
        sniffer.feed(3, data[index : index + 1])
    assert sniffer.done
    assert sniffer.pairs == pairs
    assert sniffer.error is None
    assert sniffer.first_frame_type == FrameType.SETTINGS


def test_sniffer_reports_a_missing_or_truncated_settings() -> None:
    sniffer = ControlStreamSniffer()
    sniffer.feed(3, CONTROL + encode_frame(FrameType.GOAWAY, encode_varint(0)))
    assert sniffer.done and sniffer.pairs is None
    assert sniffer.error is not None and "not SETTINGS" in sniffer.error
    truncated = ControlStreamSniffer()
    truncated.feed(3, CONTROL + encode_frame(FrameType.SETTINGS, encode_varint(0x33)))
    assert truncated.done and truncated.pairs is None
    assert decode_settings_pairs(encode_varint(0x33)) is None


def _retained(sniffer: ControlStreamSniffer) -> int:
    return sum(len(b) for b in sniffer._buffers.values() if b is not None)


@pytest.mark.parametrize("n", [4096])
def test_sniffer_is_bounded_whatever_the_server_sends(n: int) -> None:
    """An endless frame header, a huge SETTINGS and many other streams: the bytes held
    never pass MAX_SETTINGS_BYTES, for N as for 4N input."""

    def run(count: int) -> tuple[int, int, bool]:
        sniffer = ControlStreamSniffer()
        # a SETTINGS frame announcing far more than the limit, fed in pieces
        sniffer.feed(3, CONTROL + encode_varint(FrameType.SETTINGS) + encode_varint(1 << 30))
        huge_done = sniffer.done
        other = ControlStreamSniffer()
        peak = 0
        for index in range(count):  # many non-control streams, then a slow control one
            other.feed(7 + 4 * index, encode_uni_stream_header(0x54, 0) + b"x" * 64)
            peak = max(peak, _retained(other))
        slow = ControlStreamSniffer()
        slow.feed(3, CONTROL + encode_varint(FrameType.SETTINGS) + encode_varint(8000))
        for _ in range(count):
            slow.feed(3, b"\x01")
            peak = max(peak, _retained(slow))
        return peak, len(other._buffers), huge_done

    peak_n, streams_n, huge_n = run(n)
    peak_4n, streams_4n, huge_4n = run(4 * n)
    assert huge_n and huge_4n
    assert peak_n <= MAX_SETTINGS_BYTES and peak_4n <= MAX_SETTINGS_BYTES
    assert streams_n == streams_4n == 0  # gave up after 16 streams: all dropped


# ======================================================================================
# SETTINGS checks
# ======================================================================================

GOOD = [
    (SettingId.ENABLE_CONNECT_PROTOCOL, 1),
    (SettingId.H3_DATAGRAM, 1),
    (SettingId.WT_ENABLED, 1),
    (SettingId.WT_INITIAL_MAX_DATA, 1 << 20),
]
FACTS = TransportFacts(65536, True)


def by_id(results: list[Any]) -> dict[str, Any]:
    return {r.check: r for r in results}


def test_settings_checks_good_server() -> None:
    results = by_id(settings_checks(GOOD, None, FACTS))
    assert all(r.outcome is Outcome.PASS for r in results.values()), results
    assert "draft-16" in results["wt.drafts"].detail


def test_settings_checks_each_rule() -> None:
    bad = [*GOOD, (SettingId.H3_DATAGRAM, 1), (0x04, 100), (SettingId.WT_ENABLED, 2)]
    results = by_id(settings_checks(bad, None, TransportFacts(0, False)))
    assert results["h3.settings.duplicate"].outcome is Outcome.FAIL
    assert "H3_DATAGRAM(0x33)" in results["h3.settings.duplicate"].detail
    assert results["h3.settings.http2"].outcome is Outcome.FAIL
    assert results["h3.settings.values"].outcome is Outcome.FAIL
    assert results["h3.datagram"].outcome is Outcome.FAIL  # no max_datagram_frame_size
    assert results["wt.draft16.requirements"].outcome is Outcome.FAIL
    assert "reset_stream_at" in results["wt.draft16.requirements"].detail
    no_connect = by_id(settings_checks([(SettingId.WT_ENABLED, 1)], None, FACTS))
    assert no_connect["h3.connect-protocol"].outcome is Outcome.FAIL
    assert no_connect["h3.datagram"].outcome is Outcome.FAIL
    plain = by_id(settings_checks([(SettingId.QPACK_BLOCKED_STREAMS, 16)], None, FACTS))
    assert plain["wt.drafts"].outcome is Outcome.NA
    assert plain["h3.connect-protocol"].outcome is Outcome.NA
    missing = settings_checks(None, "no SETTINGS", FACTS)
    assert [r.outcome for r in missing] == [Outcome.FAIL]


def test_offered_drafts_markers() -> None:
    settings = {
        SettingId.WT_ENABLED: 1,
        DRAFT13_MAX_SESSIONS: 4,
        SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 1,
        SettingId.ENABLE_WEBTRANSPORT_DRAFT02: 1,
    }
    assert offered_drafts(settings) == [16, 13, 7, 2]
    assert offered_drafts({SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 0}) == []


# ======================================================================================
# report
# ======================================================================================


def test_report_json_schema_and_exit_status() -> None:
    report = ProbeReport("https://example.test/echo")
    report.add(passed("a.check", "RFC 9114 §7.2.4", "fine"))
    report.add(not_applicable("b.check", "draft-16 §3.2", "not offered"))
    assert report.exit_status() == 0
    document = json.loads(report.json_text())
    assert document["schema"] == SCHEMA_VERSION
    assert document["ok"] is True
    assert document["summary"] == {"pass": 1, "fail": 0, "n/a": 1}
    for row in document["results"]:
        assert set(row) == {"check", "result", "section", "detail"}
        assert row["result"] in ("pass", "fail", "n/a")
    report.add(failed("c.check", "RFC 9297 §3.3", "line one\nline two"))
    assert report.exit_status() == 1
    document = json.loads(report.json_text())
    assert document["ok"] is False and document["summary"]["fail"] == 1
    assert document["results"][-1]["detail"] == "line one line two"  # one line
    table = report.table().splitlines()
    assert table[0].split() == ["CHECK", "RESULT", "SECTION", "DETAIL"]
    assert "FAILED" in table[-1]


# ======================================================================================
# a probe connection's records are bounded
# ======================================================================================


class _FakeSession:
    """What ProbeConnection needs of a QuicSession (no sockets)."""

    def __init__(self) -> None:
        config = ClientConfig(insecure=True).quic_configuration(server_name="probe.test")
        self.connection = QuicConnection(config)
        self.event_listener: Any = None
        self.flushes = 0

    def schedule_flush(self) -> None:
        self.flushes += 1


def _hostile_feed(count: int) -> tuple[int, int, int, int, int]:
    async def run() -> tuple[int, int, int, int, int]:
        limits = ProbeLimits(max_events=32, capture_bytes=4096, max_streams=8)
        conn = ProbeConnection(_FakeSession(), "wt", ClientConfig(), limits)  # type: ignore[arg-type]
        chunk = b"z" * 1024
        for index in range(count):
            conn._on_wt_event(ev.StreamData(0, 1, chunk, False))  # one stream, much data
            conn._on_wt_event(ev.StreamOpened(0, 3 + 4 * index, False))  # many streams
            conn._on_wt_event(ev.SessionDraining(0))  # many events
        record = conn.streams[1]
        return (len(record.data), record.received, len(conn.streams), len(conn.events),
                conn.dropped_events)  # fmt: skip

    return asyncio.run(run())


def test_probe_connection_records_are_bounded() -> None:
    n = 256
    data_n, received_n, streams_n, events_n, dropped_n = _hostile_feed(n)
    data_4n, received_4n, streams_4n, events_4n, dropped_4n = _hostile_feed(4 * n)
    assert received_4n == 4 * received_n  # everything was seen (and credited) ...
    assert data_n == data_4n == 4096  # ... but only the capture limit is kept
    assert streams_n == streams_4n == 8
    assert events_n == events_4n == 32
    assert dropped_4n > dropped_n > 0


# ======================================================================================
# every check is bounded in time and in what it may raise
# ======================================================================================


async def test_a_hanging_or_raising_check_is_a_failure() -> None:
    ctx = ProbeContext("https://127.0.0.1:9/echo", ProbeOptions(timeout=0.05))

    async def hang(_: ProbeContext) -> CheckResult:
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    async def boom(_: ProbeContext) -> CheckResult:
        raise RuntimeError("a bug")

    (hung,) = await _guarded(ctx, "x.hang", "RFC 9114 §7.1", hang)
    assert hung.outcome is Outcome.FAIL and hung.detail.startswith("timed out after")
    assert hung.section == "RFC 9114 §7.1"
    (raised,) = await _guarded(ctx, "x.boom", "RFC 9114 §7.1", boom)
    assert raised.outcome is Outcome.FAIL and "RuntimeError: a bug" in raised.detail
