"""Sans-I/O WebTransport over HTTP/3 (drafts 02, 07, 13 and 16).

:class:`WebTransportConnection` wraps an :class:`h3.connection.H3Connection` and turns
its events into the WebTransport events of :mod:`pywebtransport.protocol.events`.
Driving it::

    wt.handle_event(quic_event)               # returns nothing
    while (event := wt.next_event()) is not None:
        ...                                   # StreamData: call consume_stream_data()
                                              # once the bytes are read (credit)
"""

from pywebtransport.protocol.connection import (
    FlowControlBlocked,
    WebTransportConnection,
    h3_configuration,
)
from pywebtransport.protocol.drafts import Draft
from pywebtransport.protocol.errors import (
    SessionAbort,
    WebTransportError,
    http_code_to_webtransport_code,
    webtransport_code_to_http_code,
)
from pywebtransport.protocol.events import (
    DatagramReceived,
    FlowCreditAvailable,
    SessionClosed,
    SessionDraining,
    SessionEstablished,
    SessionRejected,
    SessionRequested,
    StopSending,
    StreamData,
    StreamOpened,
    StreamReset,
    WebTransportEvent,
)
from pywebtransport.protocol.session import SessionState, WebTransportConfiguration

__all__ = [
    "DatagramReceived",
    "Draft",
    "FlowControlBlocked",
    "FlowCreditAvailable",
    "SessionAbort",
    "SessionClosed",
    "SessionDraining",
    "SessionEstablished",
    "SessionRejected",
    "SessionRequested",
    "SessionState",
    "StopSending",
    "StreamData",
    "StreamOpened",
    "StreamReset",
    "WebTransportConfiguration",
    "WebTransportConnection",
    "WebTransportError",
    "WebTransportEvent",
    "h3_configuration",
    "http_code_to_webtransport_code",
    "webtransport_code_to_http_code",
]
