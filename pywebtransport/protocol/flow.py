"""Session-level flow control of draft-ietf-webtrans-http3-16 §5.

Theory of operation
-------------------
Flow control is on for a connection when both endpoints sent a non-zero
SETTINGS_WT_INITIAL_MAX_* value (§5.1); then every session carries one
:class:`SessionFlowControl` with two halves:

* **receive** (limits we grant): the peer may open at most a limit of streams of each
  kind in total and send at most ``recv_max_data`` bytes of stream bodies (stream
  headers excluded, §5.4). Exceeding either is WT_FLOW_CONTROL_ERROR (§5.6.2,
  §5.6.4), raised as :class:`~pywebtransport.protocol.errors.SessionAbort`. Credit is
  given back QUIC-style (RFC 9000 §4.2) as the *application consumes* data, never on
  receipt alone: the data limit moves to ``consumed + window`` once less than half the
  window is left above what was consumed, so a reader that does not read holds at most
  ``window`` bytes however fast the peer writes. The stream limit moves to
  ``closed + window`` as the peer's streams finish (a stream finishes once its data
  was consumed), so ``window`` streams may be open at once. :meth:`take_updates`
  returns the WT_MAX_DATA / WT_MAX_STREAMS capsules to send.
* **send** (limits the peer granted): :meth:`can_open` / :meth:`send_credit` say what
  the peer allows; when blocked, :meth:`blocked_capsule` yields one WT_DATA_BLOCKED /
  WT_STREAMS_BLOCKED per limit (§5.6.3, §5.6.5). WT_MAX_DATA / WT_MAX_STREAMS must
  increase the limit, and Maximum Streams must not exceed 2**60; anything else is
  WT_FLOW_CONTROL_ERROR (§5.6.2, §5.6.4).
"""

from __future__ import annotations

from h3.capsules import MAX_STREAMS_LIMIT, CapsuleType, encode_varint_capsule
from h3.errors import H3ErrorCode
from pywebtransport.protocol.errors import SessionAbort

__all__ = ["SessionFlowControl"]

_DATA = "data"
# per stream and read (take_updates): module constants, not Enum attribute lookups
_WT_MAX_DATA = CapsuleType.WT_MAX_DATA
_MAX_STREAMS_KINDS = (
    (True, CapsuleType.WT_MAX_STREAMS_BIDI),
    (False, CapsuleType.WT_MAX_STREAMS_UNI),
)

# Offsets into SessionFlowControl._counts: each a pair of stream counts indexed by
# ``bidi`` (uni at +0, bidi at +1).
_RECV_MAX = 0  # the peer may open this many streams in total (we announced)
_PEER_OPENED = 2  # streams the peer opened
_PEER_CLOSED = 4  # ... of which finished
_SEND_MAX = 6  # we may open this many (the peer announced)
_OPENED = 8  # streams we opened


def _error(reason: str) -> SessionAbort:
    return SessionAbort(H3ErrorCode.WT_FLOW_CONTROL_ERROR, reason)


def _kind(bidi: bool) -> str:
    return "bidi" if bidi else "uni"


class SessionFlowControl:
    """Both directions of one session's limits; see the module docstring."""

    __slots__ = (
        "_blocked_sent",
        "_counts",
        "_windows",
        "consumed",
        "received",
        "recv_max_data",
        "send_max_data",
        "sent",
    )

    def __init__(self, local: tuple[int, int, int], peer: tuple[int, int, int]) -> None:
        # local = what we announced (max_data, bidi, uni); peer = what the peer announced.
        # The stream counts of both kinds in one list (offsets _RECV_MAX ... _OPENED,
        # plus ``bidi``): one object for the garbage collector per session instead of
        # five two-item lists (issue 10: tracked objects per idle session).
        self._windows = local
        self.recv_max_data = local[0]
        self.received = 0  # stream-body bytes received (limit check, §5.6.4)
        self.consumed = 0  # ... of which the application is done with (credit)
        self.send_max_data = peer[0]
        self.sent = 0
        self._counts = [local[2], local[1], 0, 0, 0, 0, peer[2], peer[1], 0, 0]
        self._blocked_sent: dict[str, int] | None = None  # made by the first BLOCKED

    # -- receive side ----------------------------------------------------------------

    def on_peer_stream(self, bidi: bool) -> None:
        """A peer stream of this session appeared (draft-16 §5.6.2)."""
        counts = self._counts
        count = counts[_PEER_OPENED + bidi] + 1
        if count > counts[_RECV_MAX + bidi]:
            raise _error(f"peer opened {count} {_kind(bidi)} streams, limit is "
                         f"{counts[_RECV_MAX + bidi]}")  # fmt: skip
        counts[_PEER_OPENED + bidi] = count

    def on_peer_stream_closed(self, bidi: bool) -> bool:
        """A peer stream of this session finished; True when a WT_MAX_STREAMS of its
        kind is now due (:meth:`take_updates` would write it): only then need the
        connection flush (per stream of a burst of short exchanges, issue 10)."""
        counts = self._counts
        closed = counts[_PEER_CLOSED + bidi] = counts[_PEER_CLOSED + bidi] + 1
        window = self._windows[1 if bidi else 2]  # take_updates' test, for this kind
        new_limit = min(closed + window, MAX_STREAMS_LIMIT)
        return bool(window) and new_limit - counts[_RECV_MAX + bidi] >= max(1, window // 2)

    def on_data_received(self, size: int) -> None:
        """``size`` more stream-body bytes from the peer (draft-16 §5.6.4)."""
        self.received += size
        if self.received > self.recv_max_data:
            raise _error(f"peer sent {self.received} bytes, limit is {self.recv_max_data}")

    def on_data_consumed(self, size: int) -> bool:
        """The application is done with ``size`` more bytes (or they were discarded:
        a reset stream, a stream we stopped reading): their credit may go back. True
        when a WT_MAX_DATA is now due (:meth:`take_updates` would write it)."""
        consumed = self.consumed = min(self.received, self.consumed + size)
        window = self._windows[0]  # take_updates' test
        return bool(window) and self.recv_max_data - consumed < (window + 1) // 2

    def take_updates(self) -> list[bytes]:
        """The WT_MAX_DATA / WT_MAX_STREAMS capsules due now (draft-16 §5.6)."""
        out: list[bytes] = []
        window = self._windows[0]
        if window and self.recv_max_data - self.consumed < (window + 1) // 2:
            self.recv_max_data = self.consumed + window
            out.append(encode_varint_capsule(_WT_MAX_DATA, self.recv_max_data))
        counts = self._counts
        for bidi, capsule_type in _MAX_STREAMS_KINDS:
            window = self._windows[1 if bidi else 2]
            new_limit = min(counts[_PEER_CLOSED + bidi] + window, MAX_STREAMS_LIMIT)
            if window and new_limit - counts[_RECV_MAX + bidi] >= max(1, window // 2):
                counts[_RECV_MAX + bidi] = new_limit
                out.append(encode_varint_capsule(capsule_type, new_limit))
        return out

    # -- send side -------------------------------------------------------------------

    def can_open(self, bidi: bool) -> bool:
        counts = self._counts
        return counts[_OPENED + bidi] < counts[_SEND_MAX + bidi]

    def on_open(self, bidi: bool) -> None:
        self._counts[_OPENED + bidi] += 1

    def send_credit(self) -> int:
        return max(0, self.send_max_data - self.sent)

    def on_sent(self, size: int) -> None:
        self.sent += size

    def blocked_capsule(self, kind: str) -> bytes | None:
        """One WT_DATA_BLOCKED / WT_STREAMS_BLOCKED per limit value (§5.6.3, §5.6.5)."""
        if kind == _DATA:
            limit, capsule_type = self.send_max_data, CapsuleType.WT_DATA_BLOCKED
        else:
            bidi = kind == "bidi"
            limit = self._counts[_SEND_MAX + bidi]
            capsule_type = (
                CapsuleType.WT_STREAMS_BLOCKED_BIDI if bidi else CapsuleType.WT_STREAMS_BLOCKED_UNI
            )
        sent = self._blocked_sent
        if sent is None:
            sent = self._blocked_sent = {}
        elif sent.get(kind) == limit:
            return None
        sent[kind] = limit
        return encode_varint_capsule(capsule_type, limit)

    def on_max_data(self, value: int) -> bool:
        """WT_MAX_DATA (§5.6.4); True if it unblocked us."""
        if value <= self.send_max_data:
            raise _error(f"WT_MAX_DATA {value} does not increase {self.send_max_data}")
        was_blocked = self.sent >= self.send_max_data
        self.send_max_data = value
        return was_blocked

    def on_max_streams(self, bidi: bool, value: int) -> bool:
        """WT_MAX_STREAMS (§5.6.2); True if it unblocked us."""
        if value > MAX_STREAMS_LIMIT:
            raise _error(f"WT_MAX_STREAMS {value} exceeds 2**60")
        counts = self._counts
        current = counts[_SEND_MAX + bidi]
        if value <= current:
            raise _error(f"WT_MAX_STREAMS {value} does not increase {current}")
        was_blocked = counts[_OPENED + bidi] >= current
        counts[_SEND_MAX + bidi] = value
        return was_blocked

    @staticmethod
    def on_streams_blocked(value: int) -> None:
        """WT_STREAMS_BLOCKED (§5.6.3): informational, but bounded by 2**60."""
        if value > MAX_STREAMS_LIMIT:
            raise _error(f"WT_STREAMS_BLOCKED {value} exceeds 2**60")
