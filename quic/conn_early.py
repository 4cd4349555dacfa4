"""0-RTT of one connection: tickets, remembered transport parameters, the outcome.

Theory of operation
-------------------
:class:`EarlyData` is the 0-RTT component of a connection (RFC 9001 §4.6, RFC 9000
§7.4.1). The TLS engine does the cryptography (:mod:`quic.tls.psk`); this component
holds the QUIC rules around it.

Client:

* :func:`pick_ticket` chooses the ticket to resume with: ``session_ticket`` if the
  application gave one, else one taken from ``session_ticket_store`` for the server
  name (each ticket is offered once, RFC 9001 §4.5). Every ticket the server sends goes
  to the store and to ``session_ticket_handler``.
* If TLS offers early data, the server's transport parameters remembered in the ticket
  apply until the handshake completes (RFC 9000 §7.4.1): only the remembered subset
  (:func:`remembered_parameters`) — never ack_delay_exponent, max_ack_delay, the
  connection IDs, preferred_address or the reset token. The send path then writes
  0-RTT packets (long header, type 0-RTT) with stream, flow-control and DATAGRAM frames
  (RFC 9000 §12.4), with the ZERO_RTT write keys (:mod:`quic.conn_keys`).
* When the handshake completes the outcome is known (EncryptedExtensions' early_data,
  RFC 9001 §4.6.2). Accepted: the server's new limits must not be smaller than the
  remembered ones (RFC 9000 §7.4.1), else PROTOCOL_VIOLATION; the in-flight 0-RTT
  packets are acknowledged as usual. Rejected (RFC 9001 §4.6.2: "all connection
  characteristics that the client assumed might be incorrect"): if the ALPN protocol is
  the ticket's and the new limits hold everything already written
  (:func:`fits_peer_params`), every 0-RTT packet
  counts as lost and its frames are sent again in 1-RTT packets — the server then sees
  the streams exactly as they were written; otherwise those streams cannot be kept and
  the connection closes (NO_ERROR, with the reason). Either way the 0-RTT keys
  are dropped: a client sends no 0-RTT once it has 1-RTT keys (RFC 9001 §4.6.1). An
  acknowledgment of a 0-RTT packet does not confirm the handshake (RFC 9001 §4.1.2:
  only one of a 1-RTT packet does): ``one_rtt_from`` tells them apart.

Application data with the ticket (client): the application protocol may remember
something with each ticket (``SessionTicket.application_data``; HTTP/3: the server's
SETTINGS, RFC 9114 §7.2.4.2). It says so with :meth:`EarlyData.hold_tickets`; tickets
then wait (at most :data:`MAX_HELD_TICKETS`, the oldest dropped) until
:meth:`EarlyData.set_application_data` gives the data, which every ticket of the
connection carries from then on to the store and ``session_ticket_handler``. Tickets
still held when the connection ends are dropped (RFC 9114 §7.2.4.2 lets a client not
store settings "if the session ticket is received before the SETTINGS frame"; it
then resumes without them). On resumption the application reads it back from
``EarlyData.ticket``.

Server:

* TLS accepts 0-RTT only if :func:`accepts_remembered` agrees: none of the limits in
  RFC 9000 §7.4.1 (and max_datagram_frame_size, RFC 9221 §3) is now smaller than the
  value remembered in the ticket, and ``early_data_application_check`` (the
  application's rule over the ``ticket_application_data`` it had sealed into the
  ticket, RFC 9114 §7.2.4.2) agrees. The ZERO_RTT read keys then open 0-RTT packets; those
  that arrive before the ClientHello is processed are buffered with the other
  undecryptable packets (``max_buffered_undecryptable_packets``, RFC 9001 §4.7, §5.7).
  The keys are dropped once the handshake is confirmed (RFC 9001 §4.9.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from quic.conn_keys import APPLICATION
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.tparams import TransportParameters

if TYPE_CHECKING:
    from quic.configuration import QuicConfiguration
    from quic.conn_streams import StreamController
    from quic.connection import QuicConnection
    from quic.tls.tickets import SessionTicket

__all__ = [
    "MAX_HELD_TICKETS",
    "REMEMBERED_LIMITS",
    "EarlyData",
    "accepts_remembered",
    "fits_peer_params",
    "pick_ticket",
    "remembered_parameters",
    "settle_early_data",
]

#: RFC 9000 §7.4.1: a server accepting 0-RTT must not make these smaller
#: (max_datagram_frame_size: RFC 9221 §3).
REMEMBERED_LIMITS = (
    "active_connection_id_limit",
    "initial_max_data",
    "initial_max_stream_data_bidi_local",
    "initial_max_stream_data_bidi_remote",
    "initial_max_stream_data_uni",
    "initial_max_streams_bidi",
    "initial_max_streams_uni",
    "max_datagram_frame_size",
)


#: Client: tickets held until the application data to store with them is known (a
#: server sends one or two per connection; RFC 9846 §4.6.1 allows several).
MAX_HELD_TICKETS = 4

TicketHandler = Callable[["SessionTicket"], None]


def pick_ticket(configuration: QuicConfiguration) -> SessionTicket | None:
    """Client: the ticket to resume with, if any (see the module docstring)."""
    if configuration.session_ticket is not None:
        return configuration.session_ticket
    store = configuration.session_ticket_store
    name = configuration.server_name
    if store is None or name is None or configuration.clock is None:
        return None
    return store.take(name, configuration.clock())


def remembered_parameters(raw: bytes) -> TransportParameters | None:
    """The server's parameters from a ticket, reduced to those a client may use for
    0-RTT (RFC 9000 §7.4.1); None if they do not decode."""
    try:
        params = TransportParameters.decode(raw, is_client_sender=False)
    except QuicProtocolError:
        return None
    return replace(
        params,
        original_destination_connection_id=None,
        stateless_reset_token=None,
        ack_delay_exponent=3,
        max_ack_delay=25,
        preferred_address=None,
        initial_source_connection_id=None,
        retry_source_connection_id=None,
    )


def accepts_remembered(local: TransportParameters, raw: bytes) -> bool:
    """Server: may 0-RTT made with the remembered parameters ``raw`` be accepted with
    our ``local`` ones (RFC 9000 §7.4.1: "MUST reject ... if ... cannot be supported")?"""
    remembered = remembered_parameters(raw)
    if remembered is None:
        return False
    return all(getattr(local, name) >= getattr(remembered, name) for name in REMEMBERED_LIMITS)


class EarlyData:
    """0-RTT state of one connection (see the module docstring)."""

    __slots__ = (
        "_app_data",
        "_handler",
        "_held",
        "accepted",
        "attempted",
        "one_rtt_from",
        "remembered",
        "ticket",
    )

    def __init__(self, ticket: SessionTicket | None) -> None:
        self.ticket = ticket  # client: the ticket offered
        self.remembered: TransportParameters | None = None  # client: in force for 0-RTT
        self.attempted = False  # client: TLS offered early data (0-RTT keys exist)
        self.accepted: bool | None = None  # None until the handshake completes
        # client: the first 1-RTT packet number (0-RTT ones come before it in the same
        # space): only an acknowledgment from here on confirms the handshake (RFC 9001
        # §4.1.2 speaks of 1-RTT packets; an ACK of 0-RTT data comes before the
        # server has our Finished)
        self.one_rtt_from = 0
        # client: where new tickets go, and the application data they carry
        self._handler: TicketHandler | None = None
        self._app_data: bytes | None = b""  # None: held until set_application_data
        self._held: list[SessionTicket] = []

    # -- application data with new tickets (client) -------------------------------------

    def ticket_handler(self, handler: TicketHandler | None) -> TicketHandler | None:
        """Client: the TLS handler for new tickets: through this component to
        ``handler`` (the store and the application's), stamped with the data."""
        self._handler = handler
        return None if handler is None else self._on_ticket

    def hold_tickets(self) -> None:
        """Client: new tickets wait for :meth:`set_application_data`."""
        if self._app_data == b"":
            self._app_data = None

    def set_application_data(self, data: bytes) -> None:
        """Client: store ``data`` with the tickets of this connection (held ones too)."""
        self._app_data = data
        held, self._held = self._held, []
        for ticket in held:
            self._on_ticket(ticket)

    @property
    def held_tickets(self) -> int:
        return len(self._held)

    def _on_ticket(self, ticket: SessionTicket) -> None:
        data = self._app_data
        if data is None:
            self._held.append(ticket)
            del self._held[:-MAX_HELD_TICKETS]
            return
        if self._handler is not None:
            self._handler(replace(ticket, application_data=data) if data else ticket)

    def start(self, offered: bool) -> TransportParameters | None:
        """Client: TLS has sent its ClientHello; if it offered early data, the
        remembered parameters to apply until the handshake completes."""
        if not offered or self.ticket is None:
            return None
        self.remembered = remembered_parameters(self.ticket.transport_parameters)
        self.attempted = self.remembered is not None
        return self.remembered

    def complete(self, accepted: bool, params: TransportParameters | None) -> None:
        """Client: the handshake completed; check an accepted 0-RTT's new limits."""
        self.accepted = accepted and self.attempted
        remembered = self.remembered
        if not self.accepted or remembered is None or params is None:
            return
        for name in REMEMBERED_LIMITS:
            if getattr(params, name) < getattr(remembered, name):
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    f"0-RTT accepted but {name} was reduced (RFC 9000 §7.4.1)",
                )

    def settle(
        self,
        accepted: bool,
        alpn: str | None,
        params: TransportParameters | None,
        streams: StreamController,
    ) -> bool:
        """Client: the outcome, once the handshake completed (see the module
        docstring). True: 0-RTT was rejected and its packets must count as lost (their
        frames are sent again in 1-RTT). Raises QuicProtocolError to close."""
        self.complete(accepted, params)
        if not self.rejected:
            return False
        ticket = self.ticket
        if (
            ticket is None
            or ticket.alpn_protocol != alpn
            or params is None
            or not fits_peer_params(streams, params)
        ):
            raise QuicProtocolError(
                TransportErrorCode.NO_ERROR,
                "0-RTT rejected with another ALPN protocol or smaller limits: "
                "the streams written in 0-RTT cannot be kept (RFC 9001 §4.6.2)",
            )
        return True

    @property
    def rejected(self) -> bool:
        """Client: 0-RTT was sent and the server rejected it."""
        return self.attempted and self.accepted is False


def settle_early_data(conn: QuicConnection, now: float) -> None:
    """Client, handshake complete: 0-RTT accepted, rejected or never tried (RFC 9001
    §4.6.2); what was sent in 0-RTT and rejected is sent again in 1-RTT packets."""
    early = conn.handshake.early
    tls = conn.tls
    resend = early.settle(
        tls.early_data_accepted, tls.alpn_protocol, conn.handshake.peer_params, conn.streams
    )
    early.one_rtt_from = conn.keys.spaces[APPLICATION].next_pn
    conn.keys.discard_zero_rtt()  # RFC 9001 §4.6.1: no 0-RTT once 1-RTT keys exist
    if resend:  # the application space holds only 0-RTT packets yet
        conn.recovery.discard_space(APPLICATION, now, notify_lost=True)


def fits_peer_params(streams: StreamController, params: TransportParameters) -> bool:
    """Would what ``streams`` already sent (in 0-RTT, under remembered limits) stay
    within ``params``: streams opened, connection and per-stream data (RFC 9000
    §7.4.1)?"""
    manager = streams.manager
    client = streams.is_client
    for bidi, limit in (
        (True, params.initial_max_streams_bidi),
        (False, params.initial_max_streams_uni),
    ):
        if manager.opened_count((0 if client else 1) | (0 if bidi else 2)) > limit:
            return False
    if streams.credit.used > params.initial_max_data:
        return False
    for sid, stream in manager.streams.items():
        send = stream.send
        if send is None or not manager.is_local(sid):
            continue
        limit = params.initial_max_stream_data_uni
        if sid & 2 == 0:
            limit = params.initial_max_stream_data_bidi_remote
        if send.credit.used > limit:
            return False
    return True
