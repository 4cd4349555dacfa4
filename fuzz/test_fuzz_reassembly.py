"""Stateful tests with hostile input: stream reassembly and flow control, and ACK state
under a peer that never acknowledges (issue 8; RFC 9000 §2.2, §4, §13.2, §21.7).

* ``HostileReassembly`` drives two RecvStreams that share one connection
  :class:`~quic.reassembly.ReassemblyBudget` with hostile fragments (random offsets and
  lengths, duplicates, overlaps, wrong FINs, RESET_STREAM, STOP_SENDING) interleaved
  with in-order data and reads. A model tracks which bytes arrived. After every step:
  the data read is the message's prefix, the stored segments are exactly the model's
  holes (merged), the bytes held lie inside the advertised window, the shared budget is
  the sum over the streams, and the only exceptions are QuicProtocolError with the code
  the model predicts (after which that stream is treated as closed, as its connection).
* ``NeverAckingPeer`` drives an AckTracker (packets received with gaps, duplicates and
  reordering) and a LossRecovery (ACK-only and ack-eliciting packets sent, PTO timers)
  while the peer never acknowledges: the tables stay within their limits, duplicate
  detection is sound, and every packet's fate is reported at most once.

Example counts are modest by default; ``FUZZ_PROFILE=deep`` runs >= 100,000 examples
each (``FUZZ_EXAMPLES`` to choose); a deep run takes about an hour per machine, longer
than pytest-timeout's 300 s default, hence ``--timeout=0``::

    FUZZ_PROFILE=deep python3 -m pytest -p no:cacheprovider --timeout=0 \
        fuzz/test_fuzz_reassembly.py
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fuzz.profiles import examples  # FUZZ_PROFILE=deep: >= 100,000 examples
from quic import reassembly
from quic.ack import AckTracker
from quic.congestion import NewReno
from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.recovery import LossRecovery, SentPacket
from quic.rtt import RttEstimator
from quic.stream_recv import SMALL_CHUNK, ReassemblyBudget, RecvState, RecvStream

WINDOW = 2000
MAX_WINDOW = 4000
LENGTH = 3000
STREAM_FRAGMENTS = 6
BUDGET_FRAGMENTS = 9
BUDGET_BYTES = 1500
PV = TransportErrorCode.PROTOCOL_VIOLATION
FSE = TransportErrorCode.FINAL_SIZE_ERROR
FCE = TransportErrorCode.FLOW_CONTROL_ERROR


class _Model:
    """What one stream should hold: received offsets, read offset, final size."""

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.got = bytearray(len(message) + 1)  # 1 = byte received
        self.highest = 0
        self.read = 0
        self.final: int | None = None
        self.reset = False
        self.stopped = False
        self.closed = False  # a connection error happened on this stream

    def first_missing(self) -> int:
        i = self.got.find(0)
        return len(self.got) if i < 0 else i

    def holes_after(self, extra: tuple[int, int] | None = None) -> tuple[int, int]:
        """(segments, bytes) held beyond the first missing byte, optionally with
        ``extra`` = [start, end) added."""
        got = self.got
        if extra is not None:
            got = bytearray(got)
            got[extra[0] : extra[1]] = b"\x01" * (extra[1] - extra[0])
        first = got.find(0)
        if first < 0:
            return 0, 0
        rest = got[first:]
        segments = rest.count(b"\x00\x01")
        return segments, rest.count(1)


class HostileReassembly(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.budget = ReassemblyBudget(BUDGET_BYTES, BUDGET_FRAGMENTS)
        self.streams: list[RecvStream] = []
        self.models: list[_Model] = []
        self.read: list[bytearray] = []

    @initialize(seed=st.integers(0, 2**32 - 1), small=st.sampled_from([4, 8, 8, 64, SMALL_CHUNK]))
    def setup(self, seed: int, small: int) -> None:
        # smaller chunk thresholds make multi-chunk segments (ropes) common
        reassembly.SMALL_CHUNK = small
        rng = random.Random(seed)
        for sid in (0, 4):
            self.streams.append(
                RecvStream(
                    sid,
                    WINDOW,
                    MAX_WINDOW,
                    max_fragments=STREAM_FRAGMENTS,
                    budget=self.budget,
                )
            )
            self.models.append(_Model(rng.randbytes(LENGTH)))
            self.read.append(bytearray())

    # -- the oracle -----------------------------------------------------------------

    def _expected_error(self, k: int, offset: int, end: int, fin: bool) -> int | None:
        r, m = self.streams[k], self.models[k]
        if m.final is not None:
            if end > m.final or (fin and end != m.final):
                return FSE
        elif fin and end < m.highest:
            return FSE
        if end > r.window.max_data:
            return FCE
        receiving = r.state in (RecvState.RECV, RecvState.SIZE_KNOWN)
        if not receiving or end <= offset or end <= m.first_missing():
            return None
        if offset <= m.first_missing():
            return None  # in order: what becomes contiguous is never refused
        segments, nbytes = m.holes_after((offset, end))
        old_segments, old_bytes = m.holes_after()
        if segments > old_segments and segments > STREAM_FRAGMENTS:
            return PV
        if self.budget.bytes + nbytes - old_bytes > BUDGET_BYTES:
            return PV
        if segments > old_segments and self.budget.fragments + 1 > BUDGET_FRAGMENTS:
            return PV
        return None

    def _frame(self, k: int, offset: int, length: int, fin: bool) -> None:
        r, m = self.streams[k], self.models[k]
        if m.closed:
            return
        offset = max(0, min(offset, LENGTH))
        end = min(offset + length, LENGTH)
        data = m.message[offset:end]
        expected = self._expected_error(k, offset, end, fin)
        receiving = r.state in (RecvState.RECV, RecvState.SIZE_KNOWN)
        before = (r.fragments, r.out_of_order_bytes, self.budget.bytes, self.budget.fragments)
        try:
            r.on_stream_frame(offset, data, fin)
        except QuicProtocolError as exc:
            assert exc.error_code == expected, (exc, expected)
            if expected == PV:  # refused before the store or the budget changed
                after = (r.fragments, r.out_of_order_bytes)
                assert (*after, self.budget.bytes, self.budget.fragments) == before
            self._close(k)
            return
        assert expected is None, f"expected error {expected!r}"
        m.highest = max(m.highest, end)
        if not receiving:
            return  # late data after all was received, or after a reset: discarded
        if fin and m.final is None:
            m.final = end
        m.got[offset:end] = b"\x01" * (end - offset)

    def _close(self, k: int) -> None:
        """A connection error: the stream is abandoned (its budget share released, as
        when the connection and its budget go away)."""
        self.models[k].closed = True
        r = self.streams[k]
        self.budget.bytes -= r.out_of_order_bytes
        self.budget.fragments -= r.fragments
        r.reassembly.nbytes = 0
        r.reassembly.starts.clear()
        r.reassembly.ends.clear()
        r.reassembly.segments.clear()

    # -- rules ----------------------------------------------------------------------

    @rule(k=st.sampled_from([0, 1]), n=st.integers(1, 400))
    def in_order(self, k: int, n: int) -> None:
        m = self.models[k]
        start = m.first_missing()
        self._frame(k, start, n, False)

    @rule(
        k=st.sampled_from([0, 1]),
        offset=st.integers(0, LENGTH),
        length=st.integers(0, 40),
        fin=st.booleans(),
    )
    def hostile_fragment(self, k: int, offset: int, length: int, fin: bool) -> None:
        self._frame(k, offset, length, fin and offset % 7 == 0)

    @rule(k=st.sampled_from([0, 1]), offset=st.integers(0, LENGTH), length=st.integers(0, 900))
    def large_frame(self, k: int, offset: int, length: int) -> None:
        self._frame(k, offset, length, False)

    @rule(
        k=st.sampled_from([0, 1]),
        offset=st.integers(1, LENGTH),
        sizes=st.lists(st.integers(1, 30), min_size=2, max_size=8),
        backwards=st.booleans(),
    )
    def run_of_frames(self, k: int, offset: int, sizes: list[int], backwards: bool) -> None:
        """Adjacent frames: one segment of several chunks (a rope), built either way."""
        frames = []
        for n in sizes:
            frames.append((offset, n))
            offset += n
        for start, n in reversed(frames) if backwards else frames:
            self._frame(k, start, n, False)

    @rule(
        k=st.sampled_from([0, 1]),
        offset=st.integers(1, LENGTH - 400),
        left=st.lists(st.integers(1, 40), min_size=1, max_size=8),
        gap=st.integers(1, 20),
        right=st.lists(st.integers(1, 40), min_size=1, max_size=8),
        overlap=st.integers(0, 5),
    )
    def bridge(
        self, k: int, offset: int, left: list[int], gap: int, right: list[int], overlap: int
    ) -> None:
        """Two multi-chunk segments with a hole between, then a frame over the hole
        (and a little of each side): the ropes are joined, the shorter onto the longer."""
        start = offset
        for n in left:
            self._frame(k, offset, n, False)
            offset += n
        hole = offset
        offset += gap
        for n in right:
            self._frame(k, offset, n, False)
            offset += n
        low = max(start, hole - overlap)
        self._frame(k, low, hole + gap + overlap - low, False)

    @rule(k=st.sampled_from([0, 1]), data=st.data())
    def duplicate_of_held(self, k: int, data: st.DataObject) -> None:
        m = self.models[k]
        held = [i for i in range(m.first_missing(), LENGTH) if m.got[i]]
        if held:
            start = data.draw(st.sampled_from(held))
            self._frame(
                k, start - data.draw(st.integers(0, 3)), data.draw(st.integers(1, 60)), False
            )

    @rule(k=st.sampled_from([0, 1]), size=st.integers(0, LENGTH), code=st.integers(0, 9))
    def reset(self, k: int, size: int, code: int) -> None:
        r, m = self.streams[k], self.models[k]
        if m.closed:
            return
        if (m.final is not None and size != m.final) or size < m.highest:
            expected: int | None = FSE
        elif size > r.window.max_data:
            expected = FCE
        else:
            expected = None
        try:
            r.on_reset(code, size)
        except QuicProtocolError as exc:
            assert exc.error_code == expected
            self._close(k)
            return
        assert expected is None
        m.highest = max(m.highest, size)
        if m.final is None or r.is_reset:
            m.final = size
        if r.is_reset:
            m.reset = True
            assert r.fragments == 0 and r.out_of_order_bytes == 0

    @rule(k=st.sampled_from([0, 1]), n=st.integers(-1, 700))
    def read_some(self, k: int, n: int) -> None:
        r, m = self.streams[k], self.models[k]
        if m.closed:
            return
        try:
            data = r.read(n)
        except StreamResetError:
            assert m.reset
            return
        if not m.stopped:
            self.read[k] += data
            m.read += len(data)

    @precondition(lambda self: self.streams)
    @rule(k=st.sampled_from([0, 1]))
    def stop_sending(self, k: int) -> None:
        if not self.models[k].closed:
            self.streams[k].stop_sending(1)
            self.models[k].stopped = True

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        total_bytes = total_segments = 0
        for k, r in enumerate(self.streams):
            m = self.models[k]
            if m.closed:
                continue
            got = self.read[k]
            assert got == m.message[: len(got)]
            if not m.reset:
                if not m.stopped:  # the contiguous data ends where the model's does
                    assert r.read_offset + r.readable == m.first_missing()
                segments, nbytes = m.holes_after()
                assert r.fragments == segments
                assert r.out_of_order_bytes == nbytes
                small = reassembly.SMALL_CHUNK
                assert r.reassembly.chunk_count() <= 2 * nbytes // small + segments
                # every byte buffered lies below the limit we advertised (RFC 9000 §4.1)
                assert r.read_offset + r.readable + r.out_of_order_bytes <= r.window.max_data
                assert r.highest_received <= r.window.max_data
            assert r.fragments <= STREAM_FRAGMENTS
            total_bytes += r.out_of_order_bytes
            total_segments += r.fragments
        assert self.budget.bytes == total_bytes <= BUDGET_BYTES
        assert self.budget.fragments == total_segments <= BUDGET_FRAGMENTS

    def teardown(self) -> None:
        try:
            self._finish()
        finally:
            reassembly.SMALL_CHUNK = SMALL_CHUNK

    def _finish(self) -> None:
        # a well-behaved ending: exactly the missing bytes, so that every byte held out
        # of order is delivered from the store, then everything read
        for k, r in enumerate(self.streams):
            m = self.models[k]
            if m.closed or m.reset or m.stopped:
                continue
            limit = min(r.window.max_data, m.final if m.final is not None else LENGTH)
            pos = m.first_missing()
            while pos < limit:
                stop = pos
                while stop < limit and not m.got[stop]:
                    stop += 1
                r.on_stream_frame(pos, m.message[pos:stop], False)
                m.got[pos:stop] = b"\x01" * (stop - pos)
                pos = m.first_missing()
            self.read[k] += r.read()
            assert self.read[k] == m.message[:limit]
            assert r.fragments == 0 and r.out_of_order_bytes == 0


TestHostileReassembly = HostileReassembly.TestCase
TestHostileReassembly.settings = settings(
    max_examples=examples(150), stateful_step_count=50, deadline=None
)


# ---------------------------------------------------------------------- never-acking peer

MAX_RANGES = 5
MAX_ACK_ONLY = 7
MAX_SENT = 20


class NeverAckingPeer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ack = AckTracker(0.025, immediate=False, max_ranges=MAX_RANGES)
        self.processed: set[int] = set()
        self.next_pn = 0  # the peer's next packet number
        self.recovery = LossRecovery(
            NewReno(1200),
            RttEstimator(),
            0.025,
            is_client=False,
            max_ack_only=MAX_ACK_ONLY,
            max_sent=MAX_SENT,
        )
        self.recovery.handshake_confirmed = True
        self.sent_pn = 0
        self.now = 0.0
        self.fates: dict[int, int] = {}  # our packet number -> times its fate was told

    # -- receiving: the peer's packets, with gaps, reordering and duplicates ------------

    @rule(skip=st.integers(0, 4), eliciting=st.booleans())
    def peer_packet(self, skip: int, eliciting: bool) -> None:
        self.next_pn += skip
        self._receive(self.next_pn, eliciting)
        self.next_pn += 1

    @rule(back=st.integers(1, 40))
    def late_or_duplicate(self, back: int) -> None:
        self._receive(max(0, self.next_pn - back), True)

    def _receive(self, pn: int, eliciting: bool) -> None:
        if self.ack.is_duplicate(pn):
            return  # the connection drops it unprocessed (RFC 9000 §12.3)
        assert pn not in self.processed, "a packet processed twice"
        self.processed.add(pn)
        self.ack.on_packet(pn, eliciting, self.now)

    # -- sending: our packets, which the peer never acknowledges -------------------------

    def _fate(self, acked: bool, pn: int) -> None:
        assert not acked
        self.fates[pn] = self.fates.get(pn, 0) + 1

    @rule(eliciting=st.booleans(), size=st.integers(30, 1200))
    def send(self, eliciting: bool, size: int) -> None:
        packet = SentPacket(2, self.sent_pn, size, eliciting, eliciting)
        packet.handlers.append((self._fate, (self.sent_pn,)))
        self.recovery.on_packet_sent(packet, self.now)
        self.sent_pn += 1

    @rule(dt=st.floats(0.001, 5.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.ack.on_ack_sent()
        self.recovery.on_loss_detection_timeout(self.now)

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def bounded_and_sound(self) -> None:
        ack = self.ack
        assert len(ack.received) <= MAX_RANGES
        if self.processed:
            assert ack.largest == max(self.processed)
            assert ack.largest in ack.received
            for lo, hi in ack.ranges():
                assert all(pn in self.processed for pn in range(lo, hi + 1))
            assert all(ack.is_duplicate(pn) for pn in self.processed)
        space = self.recovery.spaces[2]
        assert len(space.sent) <= MAX_SENT
        assert sum(1 for p in space.sent.values() if not p.ack_eliciting) <= MAX_ACK_ONLY
        assert len(space.ack_only or ()) <= MAX_ACK_ONLY
        assert all(n == 1 for n in self.fates.values())
        assert not set(self.fates) & set(space.sent)  # told once, then gone
        in_flight = sum(p.size for p in space.sent.values() if p.in_flight)
        assert self.recovery.congestion.bytes_in_flight == in_flight
        assert space.ack_eliciting_in_flight == sum(
            1 for p in space.sent.values() if p.ack_eliciting and p.in_flight
        )


TestNeverAckingPeer = NeverAckingPeer.TestCase
TestNeverAckingPeer.settings = settings(
    max_examples=examples(150), stateful_step_count=60, deadline=None
)
