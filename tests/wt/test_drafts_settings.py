"""The SETTINGS each draft makes an endpoint send, client and server, as the peer
receives them in memory (issue 11: "every browser's generation at once").

The server announces every draft it speaks at once: draft-02's markers for Chromium
and Firefox, draft-07's 0xc671706a, draft-13's 0x14e9cd29 with all three
WT_INITIAL_MAX_* settings (Safari 26 on iOS), draft-16's WT_ENABLED=1 — and a client
offers exactly the drafts it is configured with.
"""

from __future__ import annotations

import pytest

from h3.settings import SettingId
from pywebtransport.config import ClientConfig, ServerConfig, parse_draft
from pywebtransport.protocol import Draft
from pywebtransport.protocol.connection import h3_configuration
from pywebtransport.protocol.drafts import DRAFT13_WINDOWS
from tests.wt.draftpeers import (
    CONNECT_PROTOCOL,
    H3_DATAGRAM,
    MARKERS,
    WINDOWS,
    markers,
    subsets,
)
from tests.wt.wtpair import config, wt_pair

ALL_MARKER_IDS = {k for m in MARKERS.values() for k in m}
NO_FC = {"initial_max_data": 0, "initial_max_streams_bidi": 0, "initial_max_streams_uni": 0}


def _id(drafts: tuple[Draft, ...]) -> str:
    return "+".join(f"{int(d):02d}" for d in drafts)


def _wt_part(settings: dict[int, int]) -> dict[int, int]:
    """The WebTransport-related part of a SETTINGS map."""
    keep = ALL_MARKER_IDS | set(WINDOWS) | {H3_DATAGRAM, CONNECT_PROTOCOL}
    return {k: v for k, v in settings.items() if k in keep}


def _expected(
    drafts: tuple[Draft, ...], server: bool, windows: tuple[int, int, int]
) -> dict[int, int]:
    expected = {H3_DATAGRAM: 1, **markers(drafts)}
    for draft in (Draft.DRAFT07, Draft.DRAFT13):  # the session count: max_sessions=4
        if draft in drafts:
            (setting,) = MARKERS[draft]
            expected[setting] = 4
    if Draft.DRAFT13 in drafts and not server and not any(windows):
        # a draft-13 count above 1 declares flow control: 1 without windows to back it
        expected[0x14E9CD29] = 1
    if server:
        expected[CONNECT_PROTOCOL] = 1
    if Draft.DRAFT13 in drafts or Draft.DRAFT16 in drafts:
        announced = list(windows)
        if server and Draft.DRAFT13 in drafts:  # all three, none 0 (Safari on iOS)
            announced = [w or d for w, d in zip(windows, DRAFT13_WINDOWS, strict=True)]
        expected.update((k, v) for k, v in zip(WINDOWS, announced, strict=True) if v)
    return expected


@pytest.mark.parametrize("windows", [(1000, 10, 20), (0, 0, 0), (5000, 0, 0)])
@pytest.mark.parametrize("drafts", subsets(empty=False), ids=_id)
def test_what_each_side_sends(drafts: tuple[Draft, ...], windows: tuple[int, int, int]) -> None:
    cfg = {"initial_max_data": windows[0], "initial_max_streams_bidi": windows[1]}
    cfg["initial_max_streams_uni"] = windows[2]
    # our client of ``drafts`` against a server of all: what the server received
    p = wt_pair(config(*drafts, max_sessions=4, **cfg), config(max_sessions=4))
    assert p.server.peer_settings is not None
    assert _wt_part(p.server.peer_settings) == _expected(drafts, False, windows)
    # our server of ``drafts`` against a client of all: what the client received
    p = wt_pair(config(max_sessions=4), config(*drafts, max_sessions=4, **cfg))
    assert p.client.peer_settings is not None
    assert _wt_part(p.client.peer_settings) == _expected(drafts, True, windows)


def test_server_announces_every_generation_at_once() -> None:
    """The default ServerConfig: every browser's draft in one SETTINGS frame."""
    settings = h3_configuration(ServerConfig().webtransport_configuration(), False).extra_settings
    assert settings[0x2B603742] == 1 and settings[0xFFD277] == 1  # draft-02 (Chromium, Firefox)
    assert settings[0xC671706A] >= 1  # draft-07 (Chromium's flag)
    assert settings[0x14E9CD29] >= 1  # draft-13 (Safari 26)
    assert settings[0x2C7CF000] == 1  # draft-16
    assert settings[H3_DATAGRAM] == 1
    assert all(settings[w] > 0 for w in WINDOWS)  # Safari on iOS needs all three


def test_safari_windows_even_without_flow_control_configured() -> None:
    """A server whose application turned flow control off still sends all three
    WT_INITIAL_MAX_* (non-zero) while it offers draft-13, and enforces what it sent;
    without draft-13 it sends none."""
    server = ServerConfig(wt_initial_max_data=0, wt_initial_max_streams_bidi=0)
    server.wt_initial_max_streams_uni = 0
    settings = h3_configuration(server.webtransport_configuration(), False).extra_settings
    assert tuple(settings[w] for w in WINDOWS) == DRAFT13_WINDOWS
    p = wt_pair(config(Draft.DRAFT13), config(**NO_FC))
    assert p.client.flow_control and p.server.flow_control  # both announced windows
    no_13 = ServerConfig(drafts=("draft16", "draft07", "draft02"), wt_initial_max_data=0)
    no_13.wt_initial_max_streams_bidi = no_13.wt_initial_max_streams_uni = 0
    settings = h3_configuration(no_13.webtransport_configuration(), False).extra_settings
    assert not set(WINDOWS) & set(settings)


def test_client_offers_any_subset() -> None:
    """ClientConfig.drafts: the client's SETTINGS carry those markers only."""
    for drafts in subsets(empty=False):
        names = tuple(f"draft{int(d):02d}" for d in drafts)
        client = ClientConfig(drafts=names)
        assert client.webtransport_configuration().drafts == drafts
        settings = h3_configuration(client.webtransport_configuration(), True).extra_settings
        assert {k for k in settings if k in ALL_MARKER_IDS} == set(markers(drafts))
        assert CONNECT_PROTOCOL not in settings  # a server setting (RFC 9220 §3)
    assert parse_draft("draft-13") is Draft.DRAFT13 and parse_draft(13) is Draft.DRAFT13


def test_draft13_codepoint() -> None:
    assert int(SettingId.WT_MAX_SESSIONS_DRAFT13) == 0x14E9CD29
