"""Property tests for session tickets (RFC 9846 §4.7.1): any bytes presented as a
ticket either open to a ticket of ours or are ignored — nothing raises.

- TicketState.decode(encode(s)) == s for hypothesis-built states;
- arbitrary bytes into TicketState.decode and SessionTicketKeys.open give None or a
  value, never an exception; a sealed ticket with any single byte changed never opens;
- arbitrary bytes as the PSK identity of a real ClientHello: the server ignores the
  offer (full handshake) or, for the one real ticket, checks the binder.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from quic.tls.antireplay import AntiReplay
from quic.tls.engine import Epoch, TlsEngine
from quic.tls.extensions import OfferedPsks, PskIdentity, PskKeyExchangeMode
from quic.tls.messages import ClientHello, decode_handshake, encode_handshake
from quic.tls.suites import CipherSuite
from quic.tls.tickets import SessionTicketKeys, TicketState
from tests.tls.pair import CLIENT_TP, SERVER_TP, client_config, server_config

KEYS = SessionTicketKeys(bytes(range(32)))

states = st.builds(
    TicketState,
    ticket_id=st.binary(min_size=16, max_size=16),
    issued_at_ms=st.integers(0, 2**64 - 1),
    lifetime=st.integers(0, 2**32 - 1),
    ticket_age_add=st.integers(0, 2**32 - 1),
    cipher_suite=st.sampled_from([int(s) for s in CipherSuite]),
    early_data=st.booleans(),
    psk=st.binary(max_size=64),
    alpn_protocol=st.binary(max_size=255),
    server_name=st.binary(max_size=300),
    transport_parameters=st.binary(max_size=600),
)


@settings(max_examples=examples(200))
@given(states)
def test_ticket_state_round_trip(state: TicketState) -> None:
    assert TicketState.decode(state.encode()) == state
    assert TicketState.decode(KEYS.open(KEYS.seal(state.encode())) or b"") == state


@settings(max_examples=examples(300))
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    state = TicketState.decode(data)
    assert state is None or isinstance(state, TicketState)
    assert KEYS.open(data) is None  # not sealed by us: never opens


@settings(max_examples=examples(200))
@given(states, st.data())
def test_any_altered_ticket_does_not_open(state: TicketState, data: st.DataObject) -> None:
    blob = bytearray(KEYS.seal(state.encode()))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    assert KEYS.open(bytes(blob)) is None


def _client_hello() -> ClientHello:
    client = TlsEngine(client_config(), CLIENT_TP)
    client.start()
    ((_, raw),) = client.pop_output()
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    return ch


CH = _client_hello()


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=300), st.integers(0, 2**32 - 1))
def test_server_ignores_unknown_tickets(identity: bytes, age: int) -> None:
    ch = dataclasses.replace(
        CH,
        psk_key_exchange_modes=(PskKeyExchangeMode.psk_dhe_ke,),
        early_data=True,
        pre_shared_key=OfferedPsks((PskIdentity(identity, age),), (bytes(32),)),
    )
    server = TlsEngine(server_config(ticket_keys=KEYS), SERVER_TP)
    server.receive(Epoch.INITIAL, encode_handshake(ch))  # no exception: full handshake
    assert not server.session_resumed and not server.early_data_accepted
    assert server.early_data_refusal == "no usable ticket"


@settings(max_examples=examples(200))
@given(
    st.lists(
        st.tuples(st.integers(0, 15), st.floats(0, 30), st.floats(0, 5)),
        max_size=200,
    ),
    st.integers(1, 8),
)
def test_anti_replay_admits_one_zero_rtt_per_client_hello(
    offers: list[tuple[int, float, float]], max_entries: int
) -> None:
    """RFC 9846 §8: whatever the order and timing, one ClientHello (ticket ID and
    expected arrival) gets 0-RTT at most once, and the memory never exceeds its cap."""
    memory = AntiReplay(window=5.0, max_entries=max_entries)
    memory.start(0.0)
    now = 0.0
    admitted: set[tuple[int, float]] = set()
    for ticket, expected, step in offers:
        now += step
        key = (ticket, expected)
        if memory.admit(bytes([ticket]) * 16, 0.0, expected, now):
            assert key not in admitted
            admitted.add(key)
        assert len(memory) <= max_entries
