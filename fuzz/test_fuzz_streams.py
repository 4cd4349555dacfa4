"""Stateful and property tests for streams, reassembly and flow control (RFC 9000 §2-§4).

* ``StreamTransfer`` drives a SendStream and a RecvStream through a lossy, reordering,
  duplicating "network" made of lists of in-flight frames (STREAM, MAX_STREAM_DATA,
  RESET_STREAM, STOP_SENDING), with random writes, reads, losses, spurious losses,
  resets (RESET_STREAM, and RESET_STREAM_AT with a reliable size, which later resets
  may lower: draft-ietf-quic-reliable-stream-reset) and STOP_SENDING. At the end a
  perfect network drains everything: the
  receiver must have read exactly the bytes written (or, after a reset, a prefix of
  them with all remaining credit released, at least the smallest reliable size of a
  RESET_STREAM_AT), and both halves must be terminal.
* ``Reassembly`` feeds random slices of a fixed message in any order.
* Arbitrary frame sequences on a RecvStream and on a StreamManager either succeed or
  raise QuicProtocolError with one of the expected transport error codes.
"""

from __future__ import annotations

import contextlib

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fuzz.profiles import examples
from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.stream_manager import (
    FRAME_MAX_STREAM_DATA,
    FRAME_RESET_STREAM,
    FRAME_STOP_SENDING,
    FRAME_STREAM,
    FRAME_STREAM_DATA_BLOCKED,
    StreamLimits,
    StreamManager,
)
from quic.stream_recv import RecvState, RecvStream
from quic.stream_send import SendState, SendStream

BIG = 1 << 50
STREAM_ID = 4

StreamFrame = tuple[int, bytes, bool]


class StreamTransfer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        window = 600
        self.sender = SendStream(STREAM_ID, window)
        self.receiver = RecvStream(STREAM_ID, window, max_window=5000)
        self.written = bytearray()
        self.fin_written = False
        self.read_buf = bytearray()
        self.released = 0
        self.total_delta = 0
        self.now = 0.0
        self.stream_frames: list[StreamFrame] = []
        self.unacked: list[StreamFrame] = []  # delivered, fate not yet known to sender
        self.msd_frames: list[int] = []
        self.reset_frames: list[tuple[int, int, int | None]] = []
        self.min_reliable: int | None = None  # smallest reliable size of a reset sent
        self.stop_frames: list[int] = []
        self.stop_requested = False

    # ------------------------------------------------------------------ helpers

    def _deliver_stream(self, frame: StreamFrame) -> None:
        offset, data, fin = frame
        self.total_delta += self.receiver.on_stream_frame(offset, data, fin)
        self.released += self.receiver.pop_released()

    def _read(self, n: int) -> None:
        try:
            data = self.receiver.read(n, now=self.now, rtt=0.05)
        except StreamResetError:
            return
        self.read_buf += data
        limit = self.receiver.max_stream_data_frame()
        if limit is not None:
            self.msd_frames.append(limit)

    def _sender_active(self) -> bool:
        return self.sender.reset_error_code is None

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: not self.fin_written and self._sender_active())
    @rule(data=st.binary(max_size=400), end=st.integers(0, 7))
    def write(self, data: bytes, end: int) -> None:
        self.sender.write(data, end_stream=end == 0)
        self.written += data
        self.fin_written = end == 0

    @rule(max_payload=st.integers(0, 500), credit=st.integers(0, 2000))
    def send(self, max_payload: int, credit: int) -> None:
        out = self.sender.next_frame(max_payload, credit)
        if out is not None:
            offset, data, fin = out
            assert len(data) <= max_payload
            self.stream_frames.append((offset, bytes(data), fin))
        reset = self.sender.reset_frame()
        if reset is not None:
            self.reset_frames.append(reset)
        self.sender.blocked_frame()

    @precondition(lambda self: self.stream_frames)
    @rule(
        i=st.integers(0, 10_000),
        fate=st.sampled_from(["ack", "ack_lost", "no_ack"]),
        duplicate=st.booleans(),
    )
    def deliver(self, i: int, fate: str, duplicate: bool) -> None:
        i %= len(self.stream_frames)
        frame = self.stream_frames[i] if duplicate else self.stream_frames.pop(i)
        self._deliver_stream(frame)
        offset, data, fin = frame
        if fate == "ack":
            self.sender.on_acked(offset, len(data), fin)
        elif fate == "ack_lost":
            self.sender.on_lost(offset, len(data), fin)  # spurious loss
        else:
            self.unacked.append(frame)

    @precondition(lambda self: self.unacked)
    @rule(i=st.integers(0, 10_000), acked=st.booleans())
    def late_ack(self, i: int, acked: bool) -> None:
        offset, data, fin = self.unacked.pop(i % len(self.unacked))
        if acked:
            self.sender.on_acked(offset, len(data), fin)
        else:
            self.sender.on_lost(offset, len(data), fin)  # delivered, but declared lost

    @precondition(lambda self: self.stream_frames)
    @rule(i=st.integers(0, 10_000))
    def lose(self, i: int) -> None:
        offset, data, fin = self.stream_frames.pop(i % len(self.stream_frames))
        self.sender.on_lost(offset, len(data), fin)

    @rule(n=st.integers(-1, 700))
    def read(self, n: int) -> None:
        self.now += 0.01
        self._read(n)

    @precondition(lambda self: self.msd_frames)
    @rule(i=st.integers(0, 100), lost=st.booleans())
    def deliver_max_stream_data(self, i: int, lost: bool) -> None:
        limit = self.msd_frames.pop(i % len(self.msd_frames))
        if lost:
            self.receiver.on_max_stream_data_lost(limit)
            limit2 = self.receiver.max_stream_data_frame()
            if limit2 is not None:
                self.msd_frames.append(limit2)
        else:
            self.sender.on_max_stream_data(limit)

    @precondition(lambda self: self._sender_active())
    @rule(code=st.integers(0, 2**62 - 1), go=st.integers(0, 29))
    def reset(self, code: int, go: int) -> None:
        if go == 0:
            self.sender.reset(code)

    @precondition(lambda self: self._sender_active() or self.sender.reliable_size is not None)
    @rule(code=st.integers(0, 2**62 - 1), fraction=st.floats(0, 1), go=st.integers(0, 19))
    def reset_at(self, code: int, fraction: float, go: int) -> None:
        """RESET_STREAM_AT, or a later one lowering the reliable size (§5.2)."""
        if go:
            return
        size = int(len(self.written) * fraction)
        current = self.sender.reliable_size
        if current is not None and size >= current:
            assert self.sender.reset(code, size) is False  # never raised (§5.2)
            return
        if self.sender.reset(code, size):
            self.min_reliable = size if self.sender.reliable_size is not None else 0

    def _deliver_reset(self, frame: tuple[int, int, int | None]) -> None:
        code, final_size, reliable = frame
        if reliable is None:
            self.total_delta += self.receiver.on_reset(code, final_size)
        else:
            self.total_delta += self.receiver.on_reset(code, final_size, reliable, at=True)
        self.released += self.receiver.pop_released()
        self.sender.on_reset_acked(reliable)

    @precondition(lambda self: self.reset_frames)
    @rule(lost=st.booleans(), i=st.integers(0, 10))
    def deliver_reset(self, lost: bool, i: int) -> None:
        frame = self.reset_frames.pop(i % len(self.reset_frames))  # reordered too
        if lost:
            self.sender.on_reset_lost(frame[2])
            return
        self._deliver_reset(frame)

    @precondition(lambda self: not self.stop_requested)
    @rule(code=st.integers(0, 1000), go=st.integers(0, 29))
    def stop_sending(self, code: int, go: int) -> None:
        if go == 0:
            self.stop_requested = True
            self.receiver.stop_sending(code)
            self.released += self.receiver.pop_released()
            c = self.receiver.stop_sending_frame()
            if c is not None:
                self.stop_frames.append(c)

    @precondition(lambda self: self.stop_frames)
    @rule(lost=st.booleans())
    def deliver_stop_sending(self, lost: bool) -> None:
        code = self.stop_frames.pop(0)
        if lost:
            self.receiver.on_stop_sending_lost()
            c = self.receiver.stop_sending_frame()
            if c is not None:
                self.stop_frames.append(c)
        else:
            self.sender.on_stop_sending(code)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def read_is_prefix_of_written(self) -> None:
        n = len(self.read_buf)
        assert self.read_buf == self.written[:n]

    @invariant()
    def flow_control_respected(self) -> None:
        r = self.receiver
        assert r.window.highest_received <= r.window.max_data
        assert self.sender.highest_sent <= self.sender.credit.max_data
        assert r.read_offset + r.readable <= r.highest_received
        assert self.total_delta == r.highest_received

    # ------------------------------------------------------------------ drain

    def teardown(self) -> None:
        sender, receiver = self.sender, self.receiver
        if self._sender_active() and not self.fin_written:
            sender.write(b"", end_stream=True)
        for code in self.stop_frames:
            sender.on_stop_sending(code)
        self.stop_frames.clear()
        for frame in self.stream_frames:
            self._deliver_stream(frame)
            sender.on_acked(frame[0], len(frame[1]), frame[2])
        for frame in self.unacked:
            sender.on_acked(frame[0], len(frame[1]), frame[2])
        for limit in self.msd_frames:
            sender.on_max_stream_data(limit)
        for _ in range(100_000):
            if sender.is_finished and receiver.is_finished:
                break
            reset = sender.reset_frame()
            if reset is not None:
                self.reset_frames.append(reset)
            for frame in self.reset_frames:
                self._deliver_reset(frame)
            self.reset_frames.clear()
            while (out := sender.next_frame(1200, BIG)) is not None:
                offset, data, fin = out
                self._deliver_stream((offset, bytes(data), fin))
                sender.on_acked(offset, len(data), fin)
            self.now += 0.01
            self._read(-1)
            self.released += receiver.pop_released()
            for limit in self.msd_frames:
                sender.on_max_stream_data(limit)
            self.msd_frames.clear()
        else:
            raise AssertionError("transfer did not complete")
        event(f"end: {sender.state.value} / {receiver.state.value}")
        final_size = receiver.final_size
        assert final_size is not None
        assert len(self.read_buf) + self.released == final_size
        assert self.total_delta == final_size
        assert self.read_buf == self.written[: len(self.read_buf)]
        if self.min_reliable is not None:
            # draft-ietf-quic-reliable-stream-reset §5: the reliable bytes were delivered
            # (unless the reset was suppressed for a stream with every byte received)
            assert len(self.read_buf) >= self.min_reliable or receiver.at_eof
            assert receiver.state in (RecvState.DATA_READ, RecvState.RESET_READ)
        elif sender.state is SendState.DATA_RECVD:
            assert final_size == len(self.written)
        if (
            self.min_reliable is None
            and sender.state is SendState.DATA_RECVD
            and not self.stop_requested
        ):
            assert self.read_buf == self.written
            assert receiver.state is RecvState.DATA_READ
            assert receiver.at_eof
        else:
            assert receiver.state in (RecvState.DATA_READ, RecvState.RESET_READ)


TestStreamTransfer = StreamTransfer.TestCase
TestStreamTransfer.settings = settings(
    max_examples=examples(200), stateful_step_count=60, deadline=None
)


class Reassembly(RuleBasedStateMachine):
    """Random slices of one message, delivered in any order, reassemble exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.message = b""
        self.receiver = RecvStream(0, 0)
        self.got = bytearray()

    @initialize(message=st.binary(min_size=1, max_size=3000))
    def setup(self, message: bytes) -> None:
        self.message = message
        self.receiver = RecvStream(0, len(message))

    @rule(start=st.integers(0, 3000), length=st.integers(0, 600))
    def deliver(self, start: int, length: int) -> None:
        start %= len(self.message) + 1
        data = self.message[start : start + length]
        fin = start + len(data) == len(self.message)
        self.receiver.on_stream_frame(start, data, fin)

    @rule(n=st.integers(-1, 800))
    def read(self, n: int) -> None:
        self.got += self.receiver.read(n)

    @invariant()
    def prefix(self) -> None:
        assert self.got == self.message[: len(self.got)]

    def teardown(self) -> None:
        self.receiver.on_stream_frame(0, self.message, True)
        self.got += self.receiver.read()
        assert self.got == self.message
        assert self.receiver.state is RecvState.DATA_READ


TestReassembly = Reassembly.TestCase
TestReassembly.settings = settings(
    max_examples=examples(150), stateful_step_count=50, deadline=None
)


# ---------------------------------------------------------------------- arbitrary input

RECV_ERRORS = {TransportErrorCode.FINAL_SIZE_ERROR, TransportErrorCode.FLOW_CONTROL_ERROR}

recv_frames = st.lists(
    st.one_of(
        st.tuples(st.just("stream"), st.integers(0, 3000), st.binary(max_size=300), st.booleans()),
        st.tuples(st.just("reset"), st.integers(0, 2**62), st.integers(0, 4000), st.just(False)),
        st.tuples(st.just("read"), st.integers(-1, 500), st.just(b""), st.just(False)),
        st.tuples(st.just("stop"), st.integers(0, 9), st.just(b""), st.just(False)),
    ),
    max_size=40,
)


@settings(max_examples=examples(300), deadline=None)
@given(frames=recv_frames)
def test_recv_stream_arbitrary_frames(frames: list[tuple[str, int, bytes | int, bool]]) -> None:
    r = RecvStream(0, 2500)
    for kind, a, b, fin in frames:
        try:
            if kind == "stream":
                assert isinstance(b, bytes)
                r.on_stream_frame(a, b, fin)
            elif kind == "reset":
                assert isinstance(b, int)
                r.on_reset(a, b)
            elif kind == "read":
                r.read(a)
            else:
                r.stop_sending(a)
        except QuicProtocolError as exc:
            assert exc.error_code in RECV_ERRORS
            return
        except StreamResetError:
            assert r.state is RecvState.RESET_READ
        w = r.window
        assert w.highest_received <= w.max_data
        assert r.read_offset + r.readable <= w.highest_received
        if r.final_size is not None:
            assert w.highest_received == r.final_size or r.state is RecvState.SIZE_KNOWN


MANAGER_ERRORS = RECV_ERRORS | {
    TransportErrorCode.STREAM_STATE_ERROR,
    TransportErrorCode.STREAM_LIMIT_ERROR,
}
FRAME_TYPES = [
    FRAME_STREAM,
    FRAME_RESET_STREAM,
    FRAME_STOP_SENDING,
    FRAME_MAX_STREAM_DATA,
    FRAME_STREAM_DATA_BLOCKED,
]


@settings(max_examples=examples(300), deadline=None)
@given(
    is_client=st.booleans(),
    frames=st.lists(
        st.tuples(
            st.sampled_from(FRAME_TYPES),
            st.integers(0, 80),
            st.integers(0, 3000),
            st.binary(max_size=50),
            st.booleans(),
        ),
        max_size=40,
    ),
    opens=st.lists(st.booleans(), max_size=6),
)
def test_stream_manager_arbitrary_frames(
    is_client: bool,
    frames: list[tuple[int, int, int, bytes, bool]],
    opens: list[bool],
) -> None:
    limits = StreamLimits(3, 2, 1000, 1000, 1000)
    m = StreamManager(is_client, limits, limits)
    for bidi in opens:
        if m.can_open(bidi):
            m.open_stream(bidi)
    for frame_type, sid, value, data, fin in frames:
        try:
            if frame_type == FRAME_STREAM:
                m.on_stream_frame(sid, value, data, fin)
            elif frame_type == FRAME_RESET_STREAM:
                m.on_reset_stream(sid, 0, value)
            elif frame_type == FRAME_STOP_SENDING:
                m.on_stop_sending(sid, value)
            elif frame_type == FRAME_MAX_STREAM_DATA:
                m.on_max_stream_data(sid, value)
            else:
                m.on_stream_data_blocked(sid, value)
        except QuicProtocolError as exc:
            assert exc.error_code in MANAGER_ERRORS
            assert exc.frame_type == frame_type
            return
        stream = m.get(sid)
        if stream is not None and stream.recv is not None:
            with contextlib.suppress(StreamResetError):
                stream.recv.read()
        m.discard_finished()
        for sp_type in range(4):
            assert m.opened_count(sp_type) <= 80
