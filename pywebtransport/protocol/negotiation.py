"""What the two ends of one WebTransport connection agreed on: SETTINGS, draft, flow control.

Theory of operation
-------------------
:class:`Negotiation` is owned by
:class:`~pywebtransport.protocol.connection.WebTransportConnection`. It reads the
peer's HTTP/3 SETTINGS once (:meth:`Negotiation.on_settings`) and answers the
connection's questions from them and from the peer's QUIC transport parameters:

* **flow control** (draft-16 §5.1): on for the connection when one of our drafts has it,
  the peer announced WT_INITIAL_MAX_* windows and we announced a non-zero one; per
  draft with :meth:`flow_control_for` (draft-13 declares it by its own settings,
  :func:`~pywebtransport.protocol.drafts.declares_flow_control`);
* **the draft** a client speaks (draft-16 §3.1, §7.1): the newest common one whose
  requirements the server's SETTINGS and transport parameters meet
  (:func:`~pywebtransport.protocol.drafts.select_draft`); a server picks per request,
  and checks the client's transport parameters with :meth:`transport_meets`;
* **a session's limits**: its flow-control state (:meth:`new_flow`, the windows we
  announced against the peer's) and the number of sessions allowed at once
  (:meth:`session_limit`, draft-16 §5.2).

Nothing here sends anything; the connection acts on the answers.
"""

from __future__ import annotations

from pywebtransport.protocol.drafts import (
    PROFILES,
    Draft,
    announced_windows,
    declares_flow_control,
    flow_control_settings,
    select_draft,
    session_limit,
)
from pywebtransport.protocol.flow import SessionFlowControl
from pywebtransport.protocol.session import WebTransportConfiguration
from quic.connection import QuicConnection

__all__ = ["Negotiation"]


class Negotiation:
    """The peer's SETTINGS and what follows from them (see the module docstring)."""

    __slots__ = ("config", "draft", "flow_control", "is_client", "peer_settings", "quic")

    def __init__(self, quic: QuicConnection, config: WebTransportConfiguration) -> None:
        self.quic = quic
        self.config = config
        self.is_client = quic.is_client
        #: the peer's SETTINGS (HTTP/3's own table), None before they arrived
        self.peer_settings: dict[int, int] | None = None
        #: client: the draft chosen from the server's SETTINGS (None before / if none)
        self.draft: Draft | None = None
        #: draft-16 §5.1 (draft-13: :meth:`flow_control_for`), known with the SETTINGS
        self.flow_control = False

    def on_settings(self, settings: dict[int, int], table: dict[int, int] | None) -> None:
        """The peer's SETTINGS arrived (``table``: HTTP/3's own copy, kept instead of
        the event's: one dict less per connection)."""
        self.peer_settings = table or settings
        self.flow_control = (  # draft-16 §5.1: both sides announced a non-zero window
            any(PROFILES[d].flow_control for d in self.config.drafts)
            and flow_control_settings(settings) is not None
            and any(self.windows())
        )
        if self.is_client:
            # the newest common draft whose requirements the server's SETTINGS and
            # transport parameters meet (draft-16 §3.1, §7.1)
            self.draft = select_draft(
                self.config.drafts,
                settings,
                peer_is_server=True,
                reset_stream_at=self.peer_reset_stream_at(),
                quic_datagrams=self.quic.max_datagram_payload > 0,
            )

    def peer_reset_stream_at(self) -> bool:
        """draft-16 §3.1's reset_stream_at is met, or not enforced (require_reset_...)."""
        return self.quic.peer_accepts_reset_stream_at or not self.config.require_reset_stream_at

    def transport_meets(self, draft: Draft) -> bool:
        """Server: the client's transport parameters meet ``draft``'s needs (§3.1)."""
        rsa_ok = self.peer_reset_stream_at() or not PROFILES[draft].reset_stream_at
        return rsa_ok and self.quic.max_datagram_payload > 0

    def windows(self) -> tuple[int, int, int]:
        """The WT_INITIAL_MAX_* windows we announced, hence enforce (drafts.py)."""
        config = self.config
        return announced_windows(config.drafts, self.is_client, config.flow_control_windows)

    def flow_control_for(self, draft: Draft) -> bool:
        """Both endpoints declared flow control for ``draft`` (draft-16 §5.1, drafts.py)."""
        peer = self.peer_settings
        if draft is Draft.DRAFT16 or peer is None:
            return self.flow_control and PROFILES[draft].flow_control
        return any(self.windows()) and declares_flow_control(draft, peer)

    def new_flow(self, draft: Draft) -> SessionFlowControl | None:
        """The flow-control state of a new session of ``draft``, or None without it."""
        if not self.flow_control_for(draft):
            return None
        assert self.peer_settings is not None
        # a draft-13 peer declaring it by its session count alone: limits start at 0 (§5.5)
        peer = flow_control_settings(self.peer_settings) or (0, 0, 0)
        return SessionFlowControl(self.windows(), peer)

    def session_limit(self, draft: Draft) -> int:
        """Sessions of ``draft`` allowed at once on this connection (draft-16 §5.2)."""
        flow, peer = self.flow_control_for(draft), self.peer_settings
        return session_limit(draft, flow, self.is_client, peer, self.config.max_sessions)
