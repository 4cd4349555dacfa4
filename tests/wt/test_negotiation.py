"""The owned negotiation component (pywebtransport.protocol.negotiation): what a
connection's answers are before and after the peer's SETTINGS, per draft."""

from __future__ import annotations

import pytest

from pywebtransport.protocol.drafts import Draft
from tests.wt.wtpair import config, wt_pair


def test_nothing_is_agreed_before_the_settings() -> None:
    p = wt_pair(wait_settings=False)
    for conn in (p.client,):
        nego = conn.negotiation
        assert nego.peer_settings is None and nego.draft is None and not nego.flow_control
        assert conn.peer_settings is None and conn.draft is None and not conn.flow_control


@pytest.mark.parametrize("draft", [Draft.DRAFT16, Draft.DRAFT13, Draft.DRAFT07, Draft.DRAFT02])
def test_after_the_settings_the_connection_reads_the_component(draft: Draft) -> None:
    p = wt_pair(config(draft), config(draft))
    client, server = p.client, p.server
    assert client.draft is draft and client.negotiation.draft is draft
    assert server.draft is None  # a server picks per request (draft-16 §7.1)
    for conn in (client, server):
        nego = conn.negotiation
        assert conn.peer_settings is nego.peer_settings is conn.h3.peer_settings
        assert conn.flow_control is nego.flow_control
        assert conn.flow_control_for(draft) == nego.flow_control_for(draft)
        flow = nego.new_flow(draft)
        assert (flow is not None) == nego.flow_control_for(draft)
        assert nego.session_limit(draft) == conn._session_limit(draft) >= 1
    # draft-16 and draft-13 announce windows; the older drafts have no flow control
    assert client.flow_control_for(draft) == (draft in (Draft.DRAFT16, Draft.DRAFT13))
