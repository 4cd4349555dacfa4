"""The acknowledged STREAM frames of an ACK frame, told to their streams by run.

Theory of operation
-------------------
:class:`~quic.recovery.LossRecovery` tells each acknowledged packet's frame handlers
their fate, in packet number order, through its ``fire_acked``. In a bulk transfer
every packet holds one STREAM frame of the same stream, each starting where the one
before ended, so an ACK frame of a round trip acknowledges tens of frames that
together are one byte range of one stream. :func:`merging_fire_acked` builds the
``fire_acked`` of a :class:`~quic.conn_streams.StreamController`: consecutive
acknowledged frames of its STREAM fate handler for the same stream, each starting at
the previous one's end and without FIN, are told as one frame spanning them — one
``fate(True, ...)`` per run instead of one per packet (issue 10). Anything else (a
FIN, another stream, a gap, any other handler) ends the run first, so every handler
still runs in packet order. A range acknowledged in pieces or at once leaves a
:class:`~quic.stream_send.SendStream` the same (its ``on_acked`` merges ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quic.recovery_state import SentPacket

__all__ = ["merging_fire_acked"]


def merging_fire_acked(fate: Callable[..., None]) -> Callable[[list[SentPacket]], None]:
    """A ``LossRecovery.fire_acked`` merging the contiguous frames whose handler is
    ``fate`` (called as ``fate(True, sid, send, offset, length, fin)``); ``fate`` must
    be the very object the frames were registered with (compared by identity)."""

    def fire_acked(packets: list[SentPacket]) -> None:
        send = None  # the stream of the run being merged, if any
        sid = start = end = 0
        for packet in packets:
            handlers = packet.handlers
            flat = packet.fate
            if flat is not None:  # the flat handler, first: as the loop below does
                args = packet.args
                if flat is fate and not args[4]:
                    if send is not None and args[1] is send and args[2] == end:
                        end += args[3]
                    else:
                        if send is not None:
                            fate(True, sid, send, start, end - start, False)
                        sid, send, start, length, _ = args
                        end = start + length
                else:
                    if send is not None:
                        fate(True, sid, send, start, end - start, False)
                        send = None
                    flat(True, *args)
                if not handlers:
                    continue
            for handler, args in handlers:
                if handler is fate and not args[4]:  # a STREAM frame without FIN
                    if send is not None:
                        if args[1] is send and args[2] == end:
                            end += args[3]
                            continue
                        fate(True, sid, send, start, end - start, False)
                    sid, send, start, length, _ = args
                    end = start + length
                    continue
                if send is not None:
                    fate(True, sid, send, start, end - start, False)
                    send = None
                handler(True, *args)
        if send is not None:
            fate(True, sid, send, start, end - start, False)

    return fire_acked
