"""WebTransport draft profiles: what each draft sends, requires and negotiates.

Theory of operation
-------------------
Three drafts of WebTransport over HTTP/3 are spoken, told apart by HTTP/3 SETTINGS
(draft-ietf-webtrans-http3-16 §7.1: "Each draft version defines a distinct codepoint";
"The highest version supported by both endpoints is selected"):

========  ==============================  ===================  =======================
draft     marker setting                  ``:protocol``        extras
========  ==============================  ===================  =======================
02        ENABLE_WEBTRANSPORT 0x2b603742  ``webtransport``     ``sec-webtransport-http3-
          =1 (+ H3_DATAGRAM 0xffd277=1)                        draft02: 1`` request,
                                                               ``...-draft: draft02``
                                                               response (-02 §7)
07        WEBTRANSPORT_MAX_SESSIONS       ``webtransport``     session limit = value
          0xc671706a = N                                       (no WT flow control)
16        WT_ENABLED 0x2c7cf000=1,        ``webtransport-h3``  WT_INITIAL_MAX_* and the
          ENABLE_CONNECT_PROTOCOL=1                            flow-control capsules
========  ==============================  ===================  =======================

Every profile is data (:data:`PROFILES`); the logic asks :func:`supported_by_peer`
which drafts a peer's SETTINGS allow and :func:`select_draft` for the newest common
one. Assumptions for draft-07 (there is no spec text here): the marker is the
WEBTRANSPORT_MAX_SESSIONS setting, sent by both sides (Chromium's client sends it,
PEERS.md), a server's value > 0 means support and bounds the concurrent sessions;
the upgrade token is still ``webtransport``; no response header is needed; the
CLOSE/DRAIN capsules and the 32-bit error-code range are those of draft-16; there
are no WebTransport flow-control capsules.

HTTP datagrams are required by every draft (draft-16 §3.1; draft-02 §4.4); the older
drafts are also satisfied by the draft-04 H3_DATAGRAM codepoint 0xffd277 that
Chromium still sends. The QUIC max_datagram_frame_size check is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from h3.settings import SettingId

__all__ = [
    "PROFILES",
    "Draft",
    "DraftProfile",
    "draft_settings",
    "flow_control_settings",
    "select_draft",
    "supported_by_peer",
]

Header = tuple[bytes, bytes]


class Draft(IntEnum):
    """The WebTransport over HTTP/3 drafts we speak."""

    DRAFT02 = 2
    DRAFT07 = 7
    DRAFT16 = 16


@dataclass(frozen=True, slots=True)
class DraftProfile:
    """What one draft puts on the wire."""

    draft: Draft
    protocol: bytes  # the :protocol upgrade token
    request_headers: tuple[Header, ...]  # extra CONNECT request fields we send
    response_headers: tuple[Header, ...]  # extra fields of a 2xx response we send
    flow_control: bool  # WT_MAX_* capsules and WT_INITIAL_MAX_* settings (draft-16 §5)
    drain: bool  # WT_DRAIN_SESSION understood
    protocol_negotiation: bool  # WT-Available-Protocols / WT-Protocol (draft-16 §3.3)


PROFILES: dict[Draft, DraftProfile] = {
    Draft.DRAFT02: DraftProfile(
        Draft.DRAFT02,
        b"webtransport",
        ((b"sec-webtransport-http3-draft02", b"1"),),  # draft-02 §7
        ((b"sec-webtransport-http3-draft", b"draft02"),),
        flow_control=False,
        drain=False,
        protocol_negotiation=False,
    ),
    Draft.DRAFT07: DraftProfile(
        Draft.DRAFT07, b"webtransport", (), (), flow_control=False, drain=True,
        protocol_negotiation=False,
    ),
    Draft.DRAFT16: DraftProfile(
        Draft.DRAFT16, b"webtransport-h3", (), (), flow_control=True, drain=True,
        protocol_negotiation=True,
    ),
}  # fmt: skip

_FLOW_SETTINGS = (
    SettingId.WT_INITIAL_MAX_DATA,
    SettingId.WT_INITIAL_MAX_STREAMS_BIDI,
    SettingId.WT_INITIAL_MAX_STREAMS_UNI,
)


def _datagrams(settings: Mapping[int, int]) -> bool:
    return bool(settings.get(SettingId.H3_DATAGRAM) or settings.get(SettingId.H3_DATAGRAM_DRAFT04))


def supported_by_peer(draft: Draft, settings: Mapping[int, int], peer_is_server: bool) -> bool:
    """True if the peer's SETTINGS meet ``draft``'s requirements (draft-16 §3.1)."""
    if draft is Draft.DRAFT16:
        if settings.get(SettingId.WT_ENABLED) != 1 or settings.get(SettingId.H3_DATAGRAM) != 1:
            return False
        # servers also send ENABLE_CONNECT_PROTOCOL (draft-16 §3.1 summary list)
        return not peer_is_server or settings.get(SettingId.ENABLE_CONNECT_PROTOCOL) == 1
    if draft is Draft.DRAFT07:
        value = settings.get(SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07)
        if value is None or (peer_is_server and value == 0):
            return False
        return _datagrams(settings)
    return settings.get(SettingId.ENABLE_WEBTRANSPORT_DRAFT02) == 1 and _datagrams(settings)


def select_draft(
    ours: Iterable[Draft], settings: Mapping[int, int], peer_is_server: bool
) -> Draft | None:
    """The newest of ``ours`` the peer's SETTINGS allow (draft-16 §7.1), or None."""
    for draft in sorted(ours, reverse=True):
        if supported_by_peer(draft, settings, peer_is_server):
            return draft
    return None


def draft_settings(
    drafts: Iterable[Draft],
    is_client: bool,
    max_sessions: int,
    initial_max_data: int,
    initial_max_streams_bidi: int,
    initial_max_streams_uni: int,
) -> dict[int, int]:
    """The SETTINGS an endpoint supporting ``drafts`` sends (beyond QPACK's)."""
    settings: dict[int, int] = {SettingId.H3_DATAGRAM: 1}  # RFC 9297 §2.1.1
    if not is_client:
        settings[SettingId.ENABLE_CONNECT_PROTOCOL] = 1  # RFC 9220 §3
    for draft in drafts:
        if draft is Draft.DRAFT02:
            settings[SettingId.ENABLE_WEBTRANSPORT_DRAFT02] = 1
            settings[SettingId.H3_DATAGRAM_DRAFT04] = 1
        elif draft is Draft.DRAFT07:
            settings[SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07] = max(1, max_sessions)
        else:
            settings[SettingId.WT_ENABLED] = 1
            values = (initial_max_data, initial_max_streams_bidi, initial_max_streams_uni)
            settings.update(
                (setting_id, value)
                for setting_id, value in zip(_FLOW_SETTINGS, values, strict=True)
                if value
            )
    return settings


def flow_control_settings(settings: Mapping[int, int]) -> tuple[int, int, int] | None:
    """``(max_data, max_streams_bidi, max_streams_uni)`` announced in ``settings``, or
    None when the endpoint did not opt into flow control (all zero, draft-16 §5.1)."""
    values = tuple(settings.get(s, 0) for s in _FLOW_SETTINGS)
    if not any(values):
        return None
    return values[0], values[1], values[2]
