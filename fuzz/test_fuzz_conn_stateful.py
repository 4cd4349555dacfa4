"""A hostile peer, as a Hypothesis state machine, against an established QUIC connection.

Each example completes a handshake in memory; then rules interleave normal traffic
(streams and datagrams sent by the client application, the network run for a while,
acknowledgments withheld for a time) with hostile frames the client seals in
authenticated 1-RTT packets (:mod:`tests.support.quicinject`) and hands to the server:
NEW_CONNECTION_ID with Retire Prior To games, RETIRE_CONNECTION_ID, PATH_CHALLENGE
floods, MAX_* and *_BLOCKED with any value, STREAM / RESET_STREAM / STOP_SENDING on all
four stream types, DATAGRAM, ACK of packets never sent, CRYPTO in 1-RTT; and, the
other way, a few frames only a client must judge (NEW_TOKEN, HANDSHAKE_DONE, ...).

After every step: no exception escaped and no internal error happened on either side,
every queue and table of both connections is within its limit, no datagram exceeded
``pmtud_max_datagram_size`` (path MTU discovery's ceiling), and a closed connection
closed with a known transport error.

Default runs are short; the deep profile is run by hand, without pytest's timeout::

    FUZZ_PROFILE=deep python3 -m pytest -p no:timeout fuzz/test_fuzz_conn_stateful.py
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from quic.buffer import VARINT_MAX
from quic.cid import MAX_ISSUED
from quic.connection import ConnectionState, QuicConnection
from quic.errors import TransportErrorCode
from quic.frames import (
    HANDSHAKE_DONE_FRAME,
    MAX_STREAMS_LIMIT,
    encode_ack_frame,
    encode_crypto_frame_header,
    encode_data_blocked_frame,
    encode_datagram_frame_header,
    encode_max_data_frame,
    encode_max_stream_data_frame,
    encode_max_streams_frame,
    encode_new_connection_id_frame,
    encode_new_token_frame,
    encode_path_challenge_frame,
    encode_reset_stream_frame,
    encode_retire_connection_id_frame,
    encode_stop_sending_frame,
    encode_stream_data_blocked_frame,
    encode_stream_frame_header,
    encode_streams_blocked_frame,
)
from tests.support.quicinject import ack_everything, seal_1rtt
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair

_EXAMPLES = examples(20)  # FUZZ_PROFILE=deep: >= 100,000 (fuzz/profiles.py)
_KNOWN_CODES = {int(code) for code in TransportErrorCode}

varints = st.one_of(
    st.integers(0, 64), st.integers(0, 1 << 20), st.integers(0, VARINT_MAX), st.just(VARINT_MAX)
)
# Mostly streams the client may use (its own, within the server's limits), so that
# examples go deep before an error ends them; sometimes any stream of any type.
_usable_ids = st.builds(
    lambda index, kind: 4 * index + kind, st.integers(0, 100), st.sampled_from([0, 0, 0, 2])
)
_any_ids = st.builds(lambda index, kind: 4 * index + kind, st.integers(0, 300), st.integers(0, 3))
stream_ids = st.one_of(_usable_ids, _usable_ids, _usable_ids, _any_ids)
offsets = st.one_of(st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.integers(0, 1 << 22))


class HostilePeer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        pair = make_pair()
        pair.handshake()
        pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
        self.pair = pair
        self.largest_sent = 0
        for side, endpoint in (("client", pair.client_endpoint), ("server", pair.server_endpoint)):
            self._watch(side, endpoint)

    def _watch(self, side: str, endpoint: Any) -> None:
        """Record the size of every datagram the endpoint sends."""
        original = endpoint.datagrams_to_send

        def sending(now: float) -> Any:
            out = original(now)
            for data, _ in out:
                self.largest_sent = max(self.largest_sent, len(data))
            return out

        endpoint.datagrams_to_send = sending

    @property
    def server(self) -> QuicConnection:
        return self.pair.server

    def inject(self, payload: bytes) -> None:
        pair = self.pair
        if pair.client.spaces[2].write is None or not payload:
            return
        data = seal_1rtt(pair.client, payload, pair.net.now)
        pair.server_endpoint.receive_datagram(data, CLIENT_ADDR, pair.net.now)
        pair.pump()

    # -- normal traffic -----------------------------------------------------------------

    @rule(bidi=st.booleans(), size=st.integers(0, 20_000), fin=st.booleans())
    def client_sends_stream(self, bidi: bool, size: int, fin: bool) -> None:
        client = self.pair.client
        if client.state is not ConnectionState.CONNECTED:
            return
        if not client.streams.manager.can_open(bidi):
            return
        sid = client.create_stream(bidi)
        client.send_stream_data(sid, os.urandom(size), end_stream=fin)

    @rule(size=st.integers(1, 1100))
    def client_sends_datagram(self, size: int) -> None:
        client = self.pair.client
        if client.state is ConnectionState.CONNECTED and size <= client.max_datagram_payload:
            client.send_datagram(os.urandom(size))

    @rule(seconds=st.sampled_from([0.001, 0.02, 0.2, 1.0]))
    def network_runs(self, seconds: float) -> None:
        self.pair.net.settle(seconds)
        self.pair.pump()

    @rule(withhold=st.booleans())
    def acks_withheld(self, withhold: bool) -> None:
        # the server's packets (and so its ACKs' acknowledgments) stop reaching the client
        self.pair.net.link(SERVER_ADDR, CLIENT_ADDR).loss = 1.0 if withhold else 0.0

    @rule()
    def attacker_acks_everything(self) -> None:
        self.inject(ack_everything(self.server))

    @rule()
    def client_updates_keys(self) -> None:
        client = self.pair.client
        if client.state is ConnectionState.CONNECTED:
            with contextlib.suppress(RuntimeError):  # refused until the phase is acked
                client.request_key_update()

    @rule(
        kind=st.integers(0, 5),
        value=st.integers(0, 1 << 20),
        data=st.binary(min_size=1, max_size=64),
    )
    def server_attacks_the_client(self, kind: int, value: int, data: bytes) -> None:
        """The other direction: a few frames a client must judge (RFC 9000 §19)."""
        pair = self.pair
        if pair.server.spaces[2].write is None:
            return
        payload = (
            encode_new_token_frame(data),
            HANDSHAKE_DONE_FRAME,
            encode_new_connection_id_frame(value, value // 2, data[:20], bytes(16)),
            encode_path_challenge_frame(data[:8].ljust(8, b"\0")),
            encode_stream_frame_header(4 * value + 1, 0, len(data), True) + data,
            encode_max_streams_frame(True, value),
        )[kind]
        packet = seal_1rtt(pair.server, payload, pair.net.now)
        pair.client_endpoint.receive_datagram(packet, SERVER_ADDR, pair.net.now)
        pair.pump()

    # -- connection IDs and paths -------------------------------------------------------

    @rule(
        seq=st.integers(8, 5000),  # the client issued 0-7 during the handshake
        jump=st.integers(0, 5000),
        count=st.integers(1, 12),
        cid_length=st.integers(1, 20),
    )
    def new_connection_id_games(self, seq: int, jump: int, count: int, cid_length: int) -> None:
        frames = []
        for i in range(count):
            sequence = seq + i
            retire_prior_to = min(sequence, jump + i)
            cid = sequence.to_bytes(4, "big").rjust(cid_length, b"\xee")[-cid_length:]
            token = sequence.to_bytes(16, "big")
            frames.append(encode_new_connection_id_frame(sequence, retire_prior_to, cid, token))
        self.inject(b"".join(frames))

    @rule(seqs=st.lists(st.integers(1, 7), min_size=1, max_size=20))  # the server issued 1-7
    def retire_connection_ids(self, seqs: list[int]) -> None:
        self.inject(b"".join(encode_retire_connection_id_frame(s) for s in seqs))

    @rule(count=st.integers(1, 150))
    def path_challenge_flood(self, count: int) -> None:
        self.inject(b"".join(encode_path_challenge_frame(os.urandom(8)) for _ in range(count)))

    # -- flow control and streams --------------------------------------------------------

    @rule(value=varints, sid=stream_ids, bidi=st.booleans(), kind=st.integers(0, 5))
    def max_and_blocked_games(self, value: int, sid: int, bidi: bool, kind: int) -> None:
        streams = min(value, MAX_STREAMS_LIMIT)
        frame = (
            encode_max_data_frame(value),
            encode_max_stream_data_frame(sid, value),
            encode_max_streams_frame(bidi, streams),
            encode_data_blocked_frame(value),
            encode_stream_data_blocked_frame(sid, value),
            encode_streams_blocked_frame(bidi, streams),
        )[kind]
        self.inject(frame)

    @rule(
        sid=stream_ids,
        offset=offsets,
        data=st.binary(max_size=1000),
        fin=st.booleans(),
    )
    def stream_frame(self, sid: int, offset: int, data: bytes, fin: bool) -> None:
        self.inject(encode_stream_frame_header(sid, offset, len(data), fin) + data)

    @rule(sid=stream_ids, code=varints, final_size=offsets)
    def reset_stream(self, sid: int, code: int, final_size: int) -> None:
        self.inject(encode_reset_stream_frame(sid, code, final_size))

    @rule(sid=stream_ids, code=varints)
    def stop_sending(self, sid: int, code: int) -> None:
        self.inject(encode_stop_sending_frame(sid, code))

    # -- everything else ----------------------------------------------------------------

    @rule(data=st.binary(max_size=1200))
    def datagram(self, data: bytes) -> None:
        self.inject(encode_datagram_frame_header(len(data)) + data)

    @rule(beyond=st.integers(1, 1000))
    def ack_of_unsent_packets(self, beyond: int) -> None:
        largest = self.server.recovery.spaces[2].largest_sent + beyond
        self.inject(encode_ack_frame([(0, largest)], 0))

    @rule(offset=st.integers(0, 1 << 20), data=st.binary(min_size=1, max_size=300))
    def crypto_in_1rtt(self, offset: int, data: bytes) -> None:
        self.inject(encode_crypto_frame_header(offset, len(data)) + data)

    def teardown(self) -> None:
        # statistics for --hypothesis-show-statistics: how deep the examples went
        close = self.server._close_frame
        if close is None:
            outcome = "open"
        elif close[1] in _KNOWN_CODES:
            outcome = TransportErrorCode(close[1]).name
        else:
            outcome = f"0x{close[1]:x}"
        event(f"server at the end: {outcome}")

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def bounded_and_clean(self) -> None:
        pair = self.pair
        # DPLPMTUD (on by default) probes up to pmtud_max_datagram_size and sends at
        # the size a probe proved: never above that ceiling (RFC 8899 MAX_PLPMTU)
        ceiling = min(c.configuration.pmtud_max_datagram_size for c in (pair.client, pair.server))
        assert self.largest_sent <= ceiling
        for conn in (pair.client, pair.server):
            assert conn.last_internal_error is None, repr(conn.last_internal_error)
            config = conn.configuration
            sizes = conn.queue_sizes()
            assert sizes["path_responses"] <= config.max_pending_path_responses
            assert sizes["cid_retirements"] <= conn.cids.max_pending_retirements
            assert sizes["peer_cids"] <= config.active_connection_id_limit + 1
            assert sizes["local_cids"] <= MAX_ISSUED
            assert sizes["buffered_packets"] <= config.max_buffered_undecryptable_packets
            assert sizes["datagrams_out"] <= config.max_datagram_queue
            assert sizes["probes"] <= 6
            limit = config.initial_max_streams_bidi + config.initial_max_streams_uni
            assert sizes["streams"] <= 2 * limit
            close = conn._close_frame
            if close is not None and not close[0]:
                assert close[1] in _KNOWN_CODES or 0x100 <= close[1] <= 0x1FF, close


HostilePeer.TestCase.settings = settings(
    max_examples=_EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestHostilePeer = HostilePeer.TestCase
