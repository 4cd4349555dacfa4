"""Draft selection, per peer (draft-ietf-webtrans-http3-16 §7.1: "The highest version
supported by both endpoints is selected"): the whole table.

* :func:`select_draft` for every subset of the {02, 07, 13, 16} markers a peer sends, with
  every non-empty set of drafts we offer, with both roles of the peer;
* in memory, our client offering each set against our server offering each set: the
  session is established with the newest common draft on both sides, or refused
  locally when there is none;
* the transport-parameter half of the requirements (draft-16 §3.1): a peer without
  reset_stream_at is never given draft-13 or draft-16 (when that is enforced); one
  without QUIC datagrams no draft.
"""

from __future__ import annotations

import pytest

from pywebtransport.protocol import (
    Draft,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
)
from pywebtransport.protocol.drafts import select_draft, supported_by_peer
from tests.wt.draftpeers import MARKERS, client_fed, peer_settings, subsets
from tests.wt.wtpair import config, establish, wt_pair

PEER_SETS = subsets(empty=True)  # 16
NEED_RSA = (Draft.DRAFT13, Draft.DRAFT16)  # need the peer's reset_stream_at (§3.1)
OUR_SETS = subsets(empty=False)  # 15


def _id(drafts: tuple[Draft, ...]) -> str:
    return "+".join(f"{int(d):02d}" for d in drafts) or "none"


def _expected(peer: tuple[Draft, ...], ours: tuple[Draft, ...]) -> Draft | None:
    common = set(peer) & set(ours)
    return max(common) if common else None


@pytest.mark.parametrize("peer_is_server", [True, False], ids=["server", "client"])
@pytest.mark.parametrize("ours", OUR_SETS, ids=_id)
@pytest.mark.parametrize("peer", PEER_SETS, ids=_id)
def test_selection_table(
    peer: tuple[Draft, ...], ours: tuple[Draft, ...], peer_is_server: bool
) -> None:
    settings = peer_settings(peer, server=peer_is_server)
    chosen = select_draft(ours, settings, peer_is_server)
    assert chosen == _expected(peer, ours)
    # the same peer without reset_stream_at: never draft-13/16 (draft-16 §3.1)
    fallback = select_draft(ours, settings, peer_is_server, reset_stream_at=False)
    assert fallback == _expected(tuple(d for d in peer if d not in NEED_RSA), ours)
    # without QUIC datagrams: no draft at all (draft-16 §3.1, draft-02 §3.1)
    assert select_draft(ours, settings, peer_is_server, quic_datagrams=False) is None


@pytest.mark.parametrize("draft", list(Draft))
def test_marker_alone_is_not_enough(draft: Draft) -> None:
    """Each draft also needs HTTP datagrams, and from a server extended CONNECT
    (draft-16 §3.1; the 0xffd277 datagram codepoint counts for 02 and 07 only)."""
    server = peer_settings([draft], server=True)
    assert supported_by_peer(draft, server, peer_is_server=True)
    no_datagrams = {k: v for k, v in server.items() if k != 0x33}
    assert supported_by_peer(draft, no_datagrams, True) is (draft is Draft.DRAFT02)
    assert supported_by_peer(draft, {**no_datagrams, 0xFFD277: 1}, True) is (
        draft in (Draft.DRAFT02, Draft.DRAFT07)
    )
    no_connect = {k: v for k, v in server.items() if k != 0x08}
    assert supported_by_peer(draft, no_connect, True) is (draft in (Draft.DRAFT02, Draft.DRAFT07))
    assert supported_by_peer(draft, no_connect, peer_is_server=False)  # clients: not needed


@pytest.mark.parametrize("draft", [Draft.DRAFT07, Draft.DRAFT13])
def test_session_count_marker(draft: Draft) -> None:
    """Draft-07/13: a server's session count of 0 means no support; a client's marker
    counts whatever its value."""
    (setting,) = MARKERS[draft]
    server = {**peer_settings([draft], server=True), setting: 0}
    assert not supported_by_peer(draft, server, peer_is_server=True)
    assert supported_by_peer(draft, {**server, setting: 1}, peer_is_server=True)
    assert supported_by_peer(draft, {**server, 0x08: 0}, peer_is_server=False)


@pytest.mark.parametrize("server_drafts", OUR_SETS, ids=_id)
@pytest.mark.parametrize("client_drafts", OUR_SETS, ids=_id)
def test_our_client_and_server_agree(
    client_drafts: tuple[Draft, ...], server_drafts: tuple[Draft, ...]
) -> None:
    p = wt_pair(config(*client_drafts), config(*server_drafts))
    expected = _expected(client_drafts, server_drafts)
    assert p.client.draft is expected
    if expected is None:
        sid = p.client.connect("localhost", "/wt")
        p.pump()
        (rejected,) = p.of(SessionRejected, "client")
        assert rejected.session_id == sid and rejected.status == 0
        assert not p.of(SessionRequested)
        return
    sid = establish(p)
    assert p.of(SessionRequested)[0].draft is expected
    assert p.of(SessionEstablished, "client")[0].draft is expected
    assert p.server.session_draft(sid) is expected is p.client.session_draft(sid)


@pytest.mark.parametrize("server_drafts", OUR_SETS, ids=_id)
def test_server_without_reset_stream_at_never_gets_draft13_or_16(
    server_drafts: tuple[Draft, ...],
) -> None:
    """Our strict client against a server that did not send reset_stream_at: the
    newest other common draft, or none (draft-16 §3.1: "A client MUST NOT establish
    WebTransport sessions if ... the server's transport parameters do not have correct
    values"). By default (not strict) such a server still gets draft-16."""
    strict = config(require_reset_stream_at=True)
    lacking = {"reset_stream_at": False}
    p = wt_pair(strict, config(*server_drafts), server_quic=lacking)
    assert not p.client.quic.peer_accepts_reset_stream_at
    older = tuple(d for d in server_drafts if d not in NEED_RSA)
    assert p.client.draft is (max(older) if older else None)
    p = wt_pair(config(), config(*server_drafts), server_quic=lacking)
    assert p.client.draft is max(server_drafts)


def test_server_without_quic_datagrams_gets_no_draft() -> None:
    p = wt_pair(config(), config(), server_quic={"max_datagram_frame_size": None})
    assert p.client.quic.max_datagram_payload == 0
    assert p.client.draft is None


def test_client_on_fake_quic_sees_the_same_table() -> None:
    """The connection applies select_draft to exactly what the server sent."""
    for peer in PEER_SETS:
        wt, _ = client_fed(peer_settings(peer, server=True))
        assert wt.draft is _expected(peer, tuple(Draft)), peer
