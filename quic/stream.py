"""A QUIC stream: an optional sending half and an optional receiving half (RFC 9000 §2-§3).

Theory of operation
-------------------
Bidirectional streams have both halves; a unidirectional stream has only the half that
matches our role (send for streams we opened, receive for streams the peer opened).
The halves are independent state machines (:mod:`quic.stream_send`,
:mod:`quic.stream_recv`); this module only groups them and answers composite questions
such as "are both directions in a terminal state", which decides when the stream
manager can forget the stream (RFC 9000 §3.4).
"""

from __future__ import annotations

from quic.stream_recv import RecvEvent, RecvState, RecvStream
from quic.stream_send import SendEvent, SendState, SendStream, StreamUsageError

__all__ = [
    "QuicStream",
    "RecvEvent",
    "RecvState",
    "RecvStream",
    "SendEvent",
    "SendState",
    "SendStream",
    "StreamUsageError",
]


class QuicStream:
    """One stream id with its send and/or receive half."""

    __slots__ = ("recv", "send", "stream_id")

    def __init__(self, stream_id: int, send: SendStream | None, recv: RecvStream | None) -> None:
        if send is None and recv is None:
            raise ValueError("a stream needs at least one half")
        self.stream_id = stream_id
        self.send = send
        self.recv = recv

    @property
    def is_bidi(self) -> bool:
        return not self.stream_id & 0x02

    @property
    def is_finished(self) -> bool:
        """Both present halves are in terminal states (RFC 9000 §3.4, "closed")."""
        send = self.send
        recv = self.recv
        return (send is None or send.finished) and (recv is None or recv.is_finished)

    def __repr__(self) -> str:
        send = self.send.state.value if self.send is not None else "-"
        recv = self.recv.state.value if self.recv is not None else "-"
        return f"QuicStream(id={self.stream_id}, send={send!r}, recv={recv!r})"
