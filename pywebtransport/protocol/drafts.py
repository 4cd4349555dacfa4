"""WebTransport draft profiles: what each draft sends, requires and negotiates.

Theory of operation
-------------------
Four drafts of WebTransport over HTTP/3 are spoken, told apart by HTTP/3 SETTINGS
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
13        WT_MAX_SESSIONS 0x14e9cd29 = N  ``webtransport``     session limit = value;
          (+ all three WT_INITIAL_MAX_*)                       WT_INITIAL_MAX_* and the
                                                               flow-control capsules
16        WT_ENABLED 0x2c7cf000=1,        ``webtransport-h3``  WT_INITIAL_MAX_* and the
          ENABLE_CONNECT_PROTOCOL=1       (server also takes   flow-control capsules;
                                          ``webtransport``)    reset_stream_at required
========  ==============================  ===================  =======================

Every profile is data (:data:`PROFILES`); the logic asks :func:`supported_by_peer`
which drafts a peer's SETTINGS (and transport parameters) allow and
:func:`select_draft` for the newest common one. A client chooses from the server's
SETTINGS and transport parameters; the server takes the newest common draft by the
client's SETTINGS (the one the client chose: we always send every transport parameter)
and then checks the request's token and the client's transport parameters against it
— a mismatch is a malformed request, never a fall-back to an older draft, which the
client would not be speaking.

Assumptions for draft-07 (there is no spec text here): the marker is the
WEBTRANSPORT_MAX_SESSIONS setting, sent by both sides (Chromium's client sends it,
PEERS.md), a server's value > 0 means support and bounds the concurrent sessions;
the upgrade token is still ``webtransport``; no response header is needed; the
CLOSE/DRAIN capsules and the 32-bit error-code range are those of draft-16; there
are no WebTransport flow-control capsules.

Draft-13 (its text is not in specs/: we work from the codepoint of issue 11, the
draft-16 text, and public quotes and discussion of the draft-13/14 text, facts only):
the marker is SETTINGS_WT_MAX_SESSIONS 0x14e9cd29, sent by both sides (a client "MUST
send ... a value greater than 0"; we take any client value); a server's value > 0 means
support and is the number of concurrent sessions a client may open; a server also sends
ENABLE_CONNECT_PROTOCOL=1, both H3_DATAGRAM=1. The upgrade token is ``webtransport``
(``webtransport-h3`` arrived with WT_ENABLED in draft-15, so a request with it is never
taken as draft-13). Flow control is draft-16's §5 with the same codepoints (the
WT_INITIAL_MAX_* settings 0x2b61/0x2b64/0x2b65, the WT_MAX_* / WT_*_BLOCKED capsules,
WT_MAX_STREAM_DATA prohibited), on when both endpoints declare it; an endpoint declares
it by a non-zero window or by a session count above 1 (the draft-14 wording; the
declaring peer's windows then start at 0 and grow by capsules), see
:func:`declares_flow_control`; without it one session per connection. CLOSE/DRAIN
capsules, stream types, error codes, WT-Available-Protocols / WT-Protocol and the
RESET_STREAM_AT requirement are draft-16's. Safari 26 on iOS connects only when all
three WT_INITIAL_MAX_* settings are present and non-zero (issue 11): a *server*
offering draft-13 announces each of them, a configured 0 replaced by
:data:`DRAFT13_WINDOWS` (:func:`announced_windows`); the windows announced are the
windows enforced.

Draft-16 requirements (§3.1): from a server WT_ENABLED=1, ENABLE_CONNECT_PROTOCOL=1
and H3_DATAGRAM=1; from a client WT_ENABLED=1 (the draft-version rule of §7.1) and
H3_DATAGRAM=1; from both an empty reset_stream_at transport parameter and
max_datagram_frame_size > 0. The transport-parameter half is passed in by the caller
(``reset_stream_at``, ``quic_datagrams``); the connection enforces reset_stream_at only
with ``WebTransportConfiguration.require_reset_stream_at`` (pywebtransport 0.21.1, a
draft-16 peer on quinn, does not send it). A WT_ENABLED value above 1 is
H3_SETTINGS_ERROR (§3.1), checked when SETTINGS are decoded (:mod:`h3.settings`).

HTTP datagrams are required by every draft (draft-16 §3.1; draft-02 §4.4); the older
drafts are also satisfied by the draft-04 H3_DATAGRAM codepoint 0xffd277 that
Chromium still sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from h3.settings import SettingId

__all__ = [
    "DRAFT13_WINDOWS",
    "PROFILES",
    "Draft",
    "DraftProfile",
    "announced_windows",
    "declares_flow_control",
    "draft_settings",
    "flow_control_settings",
    "select_draft",
    "session_limit",
    "supported_by_peer",
]

Header = tuple[bytes, bytes]


class Draft(IntEnum):
    """The WebTransport over HTTP/3 drafts we speak."""

    DRAFT02 = 2
    DRAFT07 = 7
    DRAFT13 = 13
    DRAFT16 = 16


@dataclass(frozen=True, slots=True)
class DraftProfile:
    """What one draft puts on the wire."""

    draft: Draft
    protocol: bytes  # the :protocol upgrade token we send
    tokens: frozenset[bytes]  # the :protocol tokens a server takes for this draft
    request_headers: tuple[Header, ...]  # extra CONNECT request fields we send
    response_headers: tuple[Header, ...]  # extra fields of a 2xx response we send
    flow_control: bool  # WT_MAX_* capsules and WT_INITIAL_MAX_* settings (draft-16 §5)
    drain: bool  # WT_DRAIN_SESSION understood
    protocol_negotiation: bool  # WT-Available-Protocols / WT-Protocol (draft-16 §3.3)
    max_sessions_setting: int | None  # the setting whose value bounds sessions (07, 13)
    reset_stream_at: bool  # the peer must send reset_stream_at (draft-16 §3.1)


_WT = b"webtransport"
_WT_H3 = b"webtransport-h3"

PROFILES: dict[Draft, DraftProfile] = {
    Draft.DRAFT02: DraftProfile(
        Draft.DRAFT02, _WT, frozenset({_WT}),
        ((b"sec-webtransport-http3-draft02", b"1"),),  # draft-02 §7
        ((b"sec-webtransport-http3-draft", b"draft02"),),
        flow_control=False, drain=False, protocol_negotiation=True,  # see below
        max_sessions_setting=None, reset_stream_at=False,
    ),
    Draft.DRAFT07: DraftProfile(
        Draft.DRAFT07, _WT, frozenset({_WT}), (), (),
        flow_control=False, drain=True, protocol_negotiation=True,  # see below
        max_sessions_setting=SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07,
        reset_stream_at=False,
    ),
    Draft.DRAFT13: DraftProfile(  # assumptions: see the module docstring
        Draft.DRAFT13, _WT, frozenset({_WT}), (), (),
        flow_control=True, drain=True, protocol_negotiation=True,
        max_sessions_setting=SettingId.WT_MAX_SESSIONS_DRAFT13, reset_stream_at=True,
    ),
    Draft.DRAFT16: DraftProfile(
        # draft-16 §3.2: "webtransport-h3"; a server also takes the legacy token from a
        # client whose SETTINGS select draft-16 (issue 11)
        Draft.DRAFT16, _WT_H3, frozenset({_WT_H3, _WT}), (), (),
        flow_control=True, drain=True, protocol_negotiation=True,
        max_sessions_setting=None, reset_stream_at=True,
    ),
}  # fmt: skip
# WT-Available-Protocols / WT-Protocol (draft-16 §3.3) are used with drafts 02 and 07 too:
# they are plain header fields, which a peer that does not know them ignores (RFC 9110
# §5.1), and an application protocol chosen per session is what quic-interop-runner's
# WebTransport handshake case checks whatever the draft a client speaks (issue 11).

_FLOW_SETTINGS = (
    SettingId.WT_INITIAL_MAX_DATA,
    SettingId.WT_INITIAL_MAX_STREAMS_BIDI,
    SettingId.WT_INITIAL_MAX_STREAMS_UNI,
)

#: What a server offering draft-13 announces for a WT_INITIAL_MAX_* window configured
#: as 0: Safari 26 on iOS requires all three settings, non-zero (issue 11).
DRAFT13_WINDOWS = (1 << 20, 100, 100)


def _datagrams(settings: Mapping[int, int]) -> bool:
    return bool(settings.get(SettingId.H3_DATAGRAM) or settings.get(SettingId.H3_DATAGRAM_DRAFT04))


def supported_by_peer(
    draft: Draft,
    settings: Mapping[int, int],
    peer_is_server: bool,
    *,
    reset_stream_at: bool = True,
    quic_datagrams: bool = True,
) -> bool:
    """True if the peer's SETTINGS meet ``draft``'s requirements (draft-16 §3.1).

    ``reset_stream_at`` / ``quic_datagrams``: the peer sent the reset_stream_at
    transport parameter / a max_datagram_frame_size above 0 (True when not checked)."""
    if not quic_datagrams:
        return False  # QUIC datagrams: every draft (draft-16 §3.1, draft-02 §3.1)
    profile = PROFILES[draft]
    if profile.reset_stream_at and not reset_stream_at:
        return False
    if draft is Draft.DRAFT16:
        if settings.get(SettingId.WT_ENABLED) != 1 or settings.get(SettingId.H3_DATAGRAM) != 1:
            return False
        # servers also send ENABLE_CONNECT_PROTOCOL (draft-16 §3.1 summary list)
        return not peer_is_server or settings.get(SettingId.ENABLE_CONNECT_PROTOCOL) == 1
    if profile.max_sessions_setting is not None:  # draft-07, draft-13
        value = settings.get(profile.max_sessions_setting)
        if value is None or (peer_is_server and value == 0):
            return False
        if draft is Draft.DRAFT13:  # after RFC 9297 and RFC 9220: their codepoints
            if settings.get(SettingId.H3_DATAGRAM) != 1:
                return False
            return not peer_is_server or settings.get(SettingId.ENABLE_CONNECT_PROTOCOL) == 1
        return _datagrams(settings)
    return settings.get(SettingId.ENABLE_WEBTRANSPORT_DRAFT02) == 1 and _datagrams(settings)


def select_draft(
    ours: Iterable[Draft],
    settings: Mapping[int, int],
    peer_is_server: bool,
    *,
    reset_stream_at: bool = True,
    quic_datagrams: bool = True,
) -> Draft | None:
    """The newest of ``ours`` the peer allows (draft-16 §7.1), or None."""
    for draft in sorted(ours, reverse=True):
        if supported_by_peer(
            draft,
            settings,
            peer_is_server,
            reset_stream_at=reset_stream_at,
            quic_datagrams=quic_datagrams,
        ):
            return draft
    return None


def session_limit(
    draft: Draft,
    flow_control: bool,
    is_client: bool,
    peer_settings: Mapping[int, int] | None,
    max_sessions: int,
) -> int:
    """How many sessions of ``draft`` may be open at once on a connection."""
    profile = PROFILES[draft]
    if profile.flow_control and not flow_control:
        # draft-16 §5.1: without flow control a client MUST NOT establish, and a
        # server MUST NOT accept, more than one session (draft-13: assumed alike)
        return 1
    setting = profile.max_sessions_setting
    if setting is not None and is_client and peer_settings is not None:
        return peer_settings.get(setting, 1)  # the server's count (draft-07, draft-13)
    return max_sessions


def announced_windows(
    drafts: Iterable[Draft], is_client: bool, windows: tuple[int, int, int]
) -> tuple[int, int, int]:
    """The WT_INITIAL_MAX_* values (data, bidi, uni) an endpoint announces and enforces:
    ``windows`` as configured, except that a server offering draft-13 replaces each 0
    with :data:`DRAFT13_WINDOWS` (Safari on iOS needs all three, issue 11)."""
    if is_client or Draft.DRAFT13 not in drafts:
        return windows
    data, bidi, uni = (w or d for w, d in zip(windows, DRAFT13_WINDOWS, strict=True))
    return data, bidi, uni


def draft_settings(
    drafts: Iterable[Draft],
    is_client: bool,
    max_sessions: int,
    initial_max_data: int,
    initial_max_streams_bidi: int,
    initial_max_streams_uni: int,
) -> dict[int, int]:
    """The SETTINGS an endpoint supporting ``drafts`` sends (beyond QPACK's)."""
    drafts = tuple(drafts)
    settings: dict[int, int] = {SettingId.H3_DATAGRAM: 1}  # RFC 9297 §2.1.1
    if not is_client:
        settings[SettingId.ENABLE_CONNECT_PROTOCOL] = 1  # RFC 9220 §3
    windows = announced_windows(
        drafts, is_client, (initial_max_data, initial_max_streams_bidi, initial_max_streams_uni)
    )
    for draft in drafts:
        profile = PROFILES[draft]
        if draft is Draft.DRAFT02:
            settings[SettingId.ENABLE_WEBTRANSPORT_DRAFT02] = 1
            settings[SettingId.H3_DATAGRAM_DRAFT04] = 1
        elif draft is Draft.DRAFT13:
            # a count above 1 declares flow control (see declares_flow_control): only
            # with windows to back it, else 1
            count = max(1, max_sessions) if any(windows) else 1
            settings[SettingId.WT_MAX_SESSIONS_DRAFT13] = count
        elif profile.max_sessions_setting is not None:  # draft-07
            settings[profile.max_sessions_setting] = max(1, max_sessions)
        else:
            settings[SettingId.WT_ENABLED] = 1  # draft-16 §3.1, §7.1
        if profile.flow_control:  # draft-16 §5.5: only non-zero values mean anything
            settings.update(
                (setting_id, value)
                for setting_id, value in zip(_FLOW_SETTINGS, windows, strict=True)
                if value
            )
    return settings


def declares_flow_control(draft: Draft, settings: Mapping[int, int]) -> bool:
    """The endpoint that sent ``settings`` declared flow control for sessions of
    ``draft``: a non-zero WT_INITIAL_MAX_* (draft-16 §5.1); for draft-13 also a
    WT_MAX_SESSIONS above 1 (assumed: draft-14 §5.1 states both, issue 11). Flow control
    is on when both endpoints declared it; we declare it exactly when our windows are
    not all 0 (:func:`draft_settings` announces a session count of 1 otherwise)."""
    if not PROFILES[draft].flow_control:
        return False
    if flow_control_settings(settings) is not None:
        return True
    return draft is Draft.DRAFT13 and settings.get(SettingId.WT_MAX_SESSIONS_DRAFT13, 0) > 1


def flow_control_settings(settings: Mapping[int, int]) -> tuple[int, int, int] | None:
    """``(max_data, max_streams_bidi, max_streams_uni)`` announced in ``settings``, or
    None when the endpoint did not opt into flow control (all zero, draft-16 §5.1)."""
    values = tuple(settings.get(s, 0) for s in _FLOW_SETTINGS)
    if not any(values):
        return None
    return values[0], values[1], values[2]
