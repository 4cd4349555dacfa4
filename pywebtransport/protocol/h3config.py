"""The HTTP/3 configuration a WebTransport connection runs on (see
:mod:`pywebtransport.protocol.connection`).

Theory of operation
-------------------
:func:`h3_configuration` turns a :class:`WebTransportConfiguration` into the
:class:`~h3.connection.H3Configuration` that announces every draft it speaks: extended
CONNECT (server), HTTP datagrams, and each draft's SETTINGS (session limit, flow-control
windows). QPACK is kept small for one request per session: our decoder advertises a
dynamic table capacity of 0 (RFC 9204 §3.2.3) and our encoder keeps to the static table
unless the caller's ``base`` configuration says otherwise.
:func:`shared_h3_configuration` hands out one such configuration per distinct
WebTransport configuration, shared (the HTTP/3 layer only reads it).
"""

from __future__ import annotations

import functools

from h3.connection import H3Configuration
from pywebtransport.protocol.drafts import Draft, draft_settings
from pywebtransport.protocol.session import WebTransportConfiguration

__all__ = ["h3_configuration", "shared_h3_configuration"]


def h3_configuration(
    config: WebTransportConfiguration, is_client: bool, base: H3Configuration | None = None
) -> H3Configuration:
    """The HTTP/3 configuration that announces every draft of ``config``."""
    return _announce_drafts(
        base or _wt_h3_configuration(),
        tuple(config.drafts),
        is_client,
        config.max_sessions,
        tuple(config.flow_control_windows),
    )


def _announce_drafts(
    h3: H3Configuration,
    drafts: tuple[Draft, ...],
    is_client: bool,
    max_sessions: int,
    windows: tuple[int, ...],
) -> H3Configuration:
    settings = draft_settings(drafts, is_client, max_sessions, *windows)
    h3.enable_connect_protocol = not is_client
    h3.enable_datagrams = True
    h3.enable_webtransport = True
    h3.extra_settings = {**h3.extra_settings, **settings}
    if h3.qpack_encoder_dynamic_table is None:
        # one response (or request) per session: the encoder's dynamic table would
        # cost about 4.4 KB of native memory per connection for nothing (issue 10)
        h3.qpack_encoder_dynamic_table = False
    return h3


@functools.lru_cache(maxsize=16)
def shared_h3_configuration(
    drafts: tuple[Draft, ...], is_client: bool, max_sessions: int, windows: tuple[int, ...]
) -> H3Configuration:
    """One HTTP/3 configuration per distinct WebTransport configuration, shared by its
    connections (the HTTP/3 layer only reads it): not one each (issue 10, memory)."""
    return _announce_drafts(_wt_h3_configuration(), drafts, is_client, max_sessions, windows)


def _wt_h3_configuration() -> H3Configuration:
    """HTTP/3 defaults for WebTransport: our QPACK decoder advertises a maximum table
    capacity of 0 (RFC 9204 §3.2.3: the peer's encoder then uses the static table and
    literals only). One request per session gains little from a dynamic table, and a
    decoder without one keeps no engine per connection (4.5 KB, plus the table the
    peer would fill; h3.qpack, issue 10)."""
    return H3Configuration(qpack_max_table_capacity=0)
