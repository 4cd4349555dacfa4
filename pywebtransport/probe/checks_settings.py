"""Checks of the server's SETTINGS and transport parameters (no I/O).

Theory of operation
-------------------
:func:`settings_checks` judges the SETTINGS pairs exactly as the server sent them
(:class:`~pywebtransport.probe.wire.ControlStreamSniffer`) together with its QUIC
``max_datagram_frame_size`` and ``reset_stream_at`` transport parameters:

* ``h3.settings.received`` — the control stream starts with SETTINGS (RFC 9114 §6.2.1);
* ``h3.settings.duplicate`` — no identifier twice (RFC 9114 §7.2.4);
* ``h3.settings.http2`` — none of the HTTP/2 identifiers 0x02-0x05 (RFC 9114 §7.2.4.1);
* ``h3.settings.values`` — boolean settings are 0 or 1 (RFC 9220 §3, RFC 9297 §2.1.1,
  draft-16 §3.1 and §9.2);
* ``h3.connect-protocol`` — a WebTransport server enables extended CONNECT (RFC 9220 §3;
  draft-16 §3.1);
* ``h3.datagram`` — H3_DATAGRAM=1 comes with a QUIC ``max_datagram_frame_size`` > 0
  (RFC 9297 §2.1.1, RFC 9221 §3), and a WebTransport server sends it (draft-16 §3.1);
* ``wt.drafts`` — which WebTransport drafts the server offers, by their markers
  (:data:`DRAFT_MARKERS`; draft-16 §7.1);
* ``wt.draft16.requirements`` — what draft-16 §3.1 requires of a server offering it.

:func:`offered_drafts` is what the other checks use to decide what applies.
"""

from __future__ import annotations

from collections.abc import Mapping

from h3.settings import BOOLEAN_SETTINGS, HTTP2_RESERVED_SETTINGS, SettingId
from pywebtransport.probe.report import CheckResult, failed, not_applicable, passed

__all__ = [
    "DRAFT13_MAX_SESSIONS",
    "DRAFT_MARKERS",
    "TransportFacts",
    "offered_drafts",
    "settings_checks",
    "settings_map",
]

#: draft-ietf-webtrans-http3-13 SETTINGS_WT_MAX_SESSIONS (the codepoint of issue 11; the
#: draft-13 text is not in our specs: see pywebtransport/protocol/drafts.py)
DRAFT13_MAX_SESSIONS = 0x14E9CD29

#: draft number -> (marker setting, whether any value > 0 marks it (True) or only 1)
DRAFT_MARKERS: dict[int, tuple[int, bool]] = {
    16: (SettingId.WT_ENABLED, False),  # draft-16 §3.1: SETTINGS_WT_ENABLED = 1
    13: (DRAFT13_MAX_SESSIONS, True),  # draft-13: WT_MAX_SESSIONS > 0
    7: (SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07, True),  # draft-07: MAX_SESSIONS > 0
    2: (SettingId.ENABLE_WEBTRANSPORT_DRAFT02, False),  # draft-02 §3.1: = 1
}

_NAMES = {int(s): s.name for s in SettingId}
_NAMES[DRAFT13_MAX_SESSIONS] = "WT_MAX_SESSIONS_DRAFT13"


class TransportFacts:
    """The server's transport parameters the checks need."""

    __slots__ = ("max_datagram_frame_size", "reset_stream_at")

    def __init__(self, max_datagram_frame_size: int, reset_stream_at: bool) -> None:
        self.max_datagram_frame_size = max_datagram_frame_size
        self.reset_stream_at = reset_stream_at


def setting_name(setting_id: int) -> str:
    return f"{_NAMES.get(setting_id, 'unknown')}(0x{setting_id:x})"


def settings_map(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """The pairs as a mapping (the first value of a duplicate wins)."""
    result: dict[int, int] = {}
    for setting_id, value in pairs:
        result.setdefault(setting_id, value)
    return result


def offered_drafts(settings: Mapping[int, int]) -> list[int]:
    """The WebTransport drafts whose marker the SETTINGS carry, newest first."""
    offered = []
    for draft, (marker, any_positive) in DRAFT_MARKERS.items():
        value = settings.get(marker)
        if value is not None and (value > 0 if any_positive else value == 1):
            offered.append(draft)
    return offered


def settings_checks(
    pairs: list[tuple[int, int]] | None, error: str | None, transport: TransportFacts
) -> list[CheckResult]:
    """Every SETTINGS check (see the module docstring)."""
    if pairs is None:
        return [failed("h3.settings.received", "RFC 9114 §6.2.1", error or "no SETTINGS")]
    settings = settings_map(pairs)
    results = [passed("h3.settings.received", "RFC 9114 §6.2.1", f"{len(pairs)} settings")]
    seen: set[int] = set()
    duplicates = sorted({s for s, _ in pairs if s in seen or seen.add(s)})  # type: ignore[func-returns-value]
    if duplicates:
        names = ", ".join(setting_name(s) for s in duplicates)
        results.append(failed("h3.settings.duplicate", "RFC 9114 §7.2.4", f"sent twice: {names}"))
    else:
        results.append(passed("h3.settings.duplicate", "RFC 9114 §7.2.4", "no identifier twice"))
    http2 = sorted(s for s in seen if s in HTTP2_RESERVED_SETTINGS)
    if http2:
        ids = ", ".join(f"0x{s:x}" for s in http2)
        results.append(failed("h3.settings.http2", "RFC 9114 §7.2.4.1", f"HTTP/2 settings {ids}"))
    else:
        results.append(passed("h3.settings.http2", "RFC 9114 §7.2.4.1", "none of 0x02-0x05"))
    bad = [(s, v) for s, v in pairs if s in BOOLEAN_SETTINGS and v not in (0, 1)]
    section = "RFC 9220 §3, RFC 9297 §2.1.1, draft-16 §3.1"
    if bad:
        text = ", ".join(f"{setting_name(s)}={v}" for s, v in bad)
        results.append(failed("h3.settings.values", section, f"not 0 or 1: {text}"))
    else:
        results.append(passed("h3.settings.values", section, "boolean settings are 0 or 1"))
    drafts = offered_drafts(settings)
    results.append(_connect_protocol(settings, drafts))
    results.append(_datagram(settings, drafts, transport))
    if drafts:
        listed = ", ".join(f"draft-{d:02d}" for d in drafts)
        results.append(passed("wt.drafts", "draft-16 §7.1", f"offers {listed}"))
    else:
        results.append(
            not_applicable(
                "wt.drafts", "draft-16 §7.1", "no WebTransport draft marker: plain HTTP/3"
            )
        )
    results.append(_draft16_requirements(settings, drafts, transport))
    return results


def _connect_protocol(settings: Mapping[int, int], drafts: list[int]) -> CheckResult:
    value = settings.get(SettingId.ENABLE_CONNECT_PROTOCOL, 0)
    section = "RFC 9220 §3"
    if value == 1:
        return passed("h3.connect-protocol", section, "ENABLE_CONNECT_PROTOCOL=1")
    if not drafts:
        return not_applicable("h3.connect-protocol", section, "no WebTransport offered")
    if drafts == [2]:  # draft-02 §3.1 predates the requirement; browsers accept it
        return not_applicable(
            "h3.connect-protocol", section, "ENABLE_CONNECT_PROTOCOL absent; draft-02 only"
        )
    return failed(
        "h3.connect-protocol",
        f"{section}, draft-16 §3.1",
        f"WebTransport offered without ENABLE_CONNECT_PROTOCOL=1 (got {value})",
    )


def _datagram(
    settings: Mapping[int, int], drafts: list[int], transport: TransportFacts
) -> CheckResult:
    section = "RFC 9297 §2.1.1, RFC 9221 §3"
    enabled = settings.get(SettingId.H3_DATAGRAM) == 1
    legacy = settings.get(SettingId.H3_DATAGRAM_DRAFT04) == 1
    size = transport.max_datagram_frame_size
    if enabled and size <= 0:
        return failed(
            "h3.datagram", section, "H3_DATAGRAM=1 without the max_datagram_frame_size parameter"
        )
    if enabled:
        return passed("h3.datagram", section, f"H3_DATAGRAM=1, max_datagram_frame_size={size}")
    if drafts and not legacy:
        return failed(
            "h3.datagram", f"{section}, draft-16 §3.1", "WebTransport without H3_DATAGRAM"
        )
    if legacy:
        return passed("h3.datagram", section, "draft-04 H3_DATAGRAM (0xffd277) only")
    return not_applicable("h3.datagram", section, "HTTP datagrams not offered")


def _draft16_requirements(
    settings: Mapping[int, int], drafts: list[int], transport: TransportFacts
) -> CheckResult:
    section = "draft-16 §3.1"
    if 16 not in drafts:
        return not_applicable("wt.draft16.requirements", section, "draft-16 not offered")
    missing = []
    if settings.get(SettingId.H3_DATAGRAM) != 1:
        missing.append("H3_DATAGRAM=1")
    if settings.get(SettingId.ENABLE_CONNECT_PROTOCOL) != 1:
        missing.append("ENABLE_CONNECT_PROTOCOL=1")
    if transport.max_datagram_frame_size <= 0:
        missing.append("max_datagram_frame_size > 0")
    if not transport.reset_stream_at:
        missing.append("reset_stream_at transport parameter (draft-16 §4.4)")
    if missing:
        return failed("wt.draft16.requirements", section, "missing: " + ", ".join(missing))
    return passed("wt.draft16.requirements", section, "all requirements met")
