"""Session flow control of a :class:`WebTransportConnection` (draft-16 §5.6).

Theory of operation
-------------------
The peer's flow-control capsules come in on the CONNECT stream (:func:`on_flow_capsule`:
more credit wakes the writers waiting for it, a FlowCreditAvailable event); ours go out
when the application consumed data or closed streams and the credit moved
(:func:`flush_flow_updates`, for the sessions marked in ``_flow_dirty``). Both are methods
of :class:`~pywebtransport.protocol.connection.WebTransportConnection` (assigned as class
attributes) kept here by responsibility. :func:`sent` runs a write that the peer's state
may have made impossible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from h3.capsules import CapsuleType, decode_varint_capsule
from h3.errors import H3StreamError
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.flow import SessionFlowControl
from pywebtransport.protocol.session import Session, SessionState
from quic.errors import StreamResetError

if TYPE_CHECKING:
    from pywebtransport.protocol.connection import WebTransportConnection

__all__ = ["SEND_FAILURES", "flush_flow_updates", "on_flow_capsule", "sent"]

# A write on a stream the peer abandoned: STOP_SENDING made QUIC reset our half
# (StreamResetError), the stream is gone or finished (ValueError, RuntimeError), or the
# peer's SETTINGS_MAX_FIELD_SECTION_SIZE forbids the header section (H3StreamError).
SEND_FAILURES = (StreamResetError, ValueError, RuntimeError, H3StreamError)


def sent(write: Callable[[], object]) -> bool:
    """Run ``write``; False if the peer's state made it impossible (SEND_FAILURES)."""
    try:
        write()
    except SEND_FAILURES:
        return False
    return True


def on_flow_capsule(
    conn: WebTransportConnection,
    session: Session,
    flow: SessionFlowControl,
    capsule_type: int,
    value: bytes,
) -> None:
    """WT_MAX_DATA / WT_MAX_STREAMS_* / WT_*_BLOCKED from the peer (draft-16 §5.6)."""
    number = decode_varint_capsule(value)
    sid = session.session_id
    if capsule_type == CapsuleType.WT_MAX_DATA:
        if flow.on_max_data(number):
            conn._emit(ev.FlowCreditAvailable(sid, "data"))
    elif capsule_type in (CapsuleType.WT_MAX_STREAMS_BIDI, CapsuleType.WT_MAX_STREAMS_UNI):
        bidi = capsule_type == CapsuleType.WT_MAX_STREAMS_BIDI
        if flow.on_max_streams(bidi, number):
            conn._emit(ev.FlowCreditAvailable(sid, "bidi" if bidi else "uni"))
    elif capsule_type != CapsuleType.WT_DATA_BLOCKED:
        flow.on_streams_blocked(number)


def flush_flow_updates(conn: WebTransportConnection) -> bool:
    """Send the WT_MAX_DATA / WT_MAX_STREAMS capsules of the sessions whose credit
    may have moved (draft-16 §5.6); True when some were written."""
    if not conn._flow_dirty:
        return False  # nothing moved (every datagram ends here)
    written = False
    dirty, conn._flow_dirty = conn._flow_dirty, {}
    for sid in dirty:
        session = conn._sessions.get(sid)
        if session is None:
            continue
        flow = session.flow
        if flow is None or session.state is not SessionState.ESTABLISHED:
            conn._flow_dirty[sid] = None  # sent once the session is established
            continue
        if session.fin_sent:
            continue
        updates = b"".join(flow.take_updates())
        if updates:  # a failed write: the CONNECT stream goes away with the session
            sent(lambda: conn._send_capsules(sid, updates))  # noqa: B023
            written = True
    return written
