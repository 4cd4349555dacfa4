"""Property tests for WebTransport draft selection (draft-ietf-webtrans-http3-16 §7.1):
over random SETTINGS maps (the WebTransport markers, HTTP datagrams, extended CONNECT,
flow-control windows and unrelated identifiers, with any values the SETTINGS decoder
lets through), random transport parameters and any set of drafts we offer,
:func:`select_draft` returns the newest offered draft the peer allows and never one it
does not allow. What "allows" means is written out here from the draft table
(docs/webtransport-drafts.md), independently of the code under test.

``FUZZ_PROFILE=deep`` runs it with at least 100,000 examples (fuzz/profiles.py).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from pywebtransport.protocol.drafts import Draft, select_draft, supported_by_peer
from quic.buffer import VARINT_MAX

BOOLEANS = [0x08, 0x33, 0xFFD277, 0x2B603742, 0x2C7CF000]  # 0 or 1 once decoded
COUNTS = [0xC671706A, 0x14E9CD29, 0x2B61, 0x2B64, 0x2B65, 0x01, 0x06, 0x07]

values = st.one_of(st.sampled_from([0, 1, 2, 100]), st.integers(0, VARINT_MAX))
setting_maps = st.fixed_dictionaries(
    {},
    optional={
        **{k: st.integers(0, 1) for k in BOOLEANS},
        **{k: values for k in COUNTS},
    },
).flatmap(
    lambda known: st.dictionaries(
        st.integers(0x09, VARINT_MAX).filter(lambda k: k not in BOOLEANS + COUNTS),
        values,
        max_size=3,
    ).map(lambda other: {**other, **known})
)
offered = st.sets(st.sampled_from(list(Draft)), max_size=len(Draft))


def allowed(
    draft: Draft, s: dict[int, int], server: bool, reset_stream_at: bool, datagrams: bool
) -> bool:
    """The peer's SETTINGS and transport parameters meet ``draft``'s requirements."""
    h3_datagram = s.get(0x33) == 1
    any_datagram = h3_datagram or s.get(0xFFD277) == 1  # draft-04 codepoint: 02 and 07
    connect = not server or s.get(0x08) == 1
    if not datagrams:
        return False
    if draft is Draft.DRAFT16:
        return reset_stream_at and s.get(0x2C7CF000) == 1 and h3_datagram and connect
    if draft is Draft.DRAFT13:
        count = s.get(0x14E9CD29)
        declared = count is not None and (count > 0 or not server)
        return reset_stream_at and declared and h3_datagram and connect
    if draft is Draft.DRAFT07:
        count = s.get(0xC671706A)
        return count is not None and (count > 0 or not server) and any_datagram
    return s.get(0x2B603742) == 1 and any_datagram


@settings(max_examples=examples(400), deadline=None)
@given(setting_maps, offered, st.booleans(), st.booleans(), st.booleans())
def test_select_draft_is_the_newest_allowed(
    peer: dict[int, int], ours: set[Draft], server: bool, reset_stream_at: bool, datagrams: bool
) -> None:
    chosen = select_draft(
        ours, peer, server, reset_stream_at=reset_stream_at, quic_datagrams=datagrams
    )
    ok = {d for d in ours if allowed(d, peer, server, reset_stream_at, datagrams)}
    assert chosen == (max(ok) if ok else None)
    if chosen is not None:  # never a draft we do not speak or the peer did not allow
        assert chosen in ours and allowed(chosen, peer, server, reset_stream_at, datagrams)
    for draft in Draft:
        assert supported_by_peer(
            draft, peer, server, reset_stream_at=reset_stream_at, quic_datagrams=datagrams
        ) is allowed(draft, peer, server, reset_stream_at, datagrams)
