"""Stream events of one read batch merged per stream before they are handed up.

Theory of operation
-------------------
A burst of full-sized packets read in one batch yields one :class:`StreamDataReceived`
per packet; the pump (:mod:`quic.aio.pump`) hands them up merged: consecutive events of
one stream of one connection become one event, their bytes joined once
(:func:`merge_stream_events`). Only neighbours merge, so the order of events is kept,
and nothing is held back: a merge ends with the endpoint's queue, another event or a FIN.
"""

from __future__ import annotations

from quic.connection import QuicConnection
from quic.endpoint import QuicEndpoint
from quic.events import QuicEvent, StreamDataReceived

__all__ = ["Item", "merge_stream_events"]


#: a connection and one of its events, as the endpoint hands them out
Item = tuple[QuicConnection, QuicEvent]


def merge_stream_events(
    endpoint: QuicEndpoint, conn: QuicConnection, first: StreamDataReceived, item: Item
) -> tuple[StreamDataReceived, Item | None, int]:
    """Consecutive :class:`StreamDataReceived` of one stream of ``conn`` (a burst of
    packets read in one batch) become one event, their bytes joined once; returns it,
    the first event that does not belong to it and how many events were merged into it.
    Order is kept (only neighbours merge) and nothing is held back: the merge ends with
    the queue, another event, or a FIN."""
    sid = first.stream_id
    early = first.early_data
    parts = [first.data]
    last = first
    next_item: Item | None = item
    while next_item is not None:
        other, event = next_item
        if (
            other is not conn
            or type(event) is not StreamDataReceived
            or event.stream_id != sid
            or event.early_data != early
        ):
            break
        parts.append(event.data)
        last = event
        next_item = endpoint.next_event()
        if event.end_stream:
            break
    if last is first:
        return first, next_item, 0
    merged = StreamDataReceived(sid, b"".join(parts), last.end_stream, early)
    return merged, next_item, len(parts) - 1
