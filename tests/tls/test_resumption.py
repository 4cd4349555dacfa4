"""TLS session resumption and 0-RTT at the engine level (RFC 9846 §2.2, §4.3.10,
§4.3.11, §4.7.1, §8; RFC 9001 §4.5, §4.6).

A first handshake issues a ticket; a second one offers it. Every refusal of 0-RTT has
its own test, so does each tampering with the PSK offer. Clocks are fixed datetimes.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest

from quic.buffer import Buffer
from quic.tls.alerts import AlertDescription, TlsAlertError
from quic.tls.antireplay import AntiReplay
from quic.tls.engine import Epoch, TlsEngine
from quic.tls.extensions import (
    ExtensionType,
    OfferedPsks,
    encode_extension_block,
    parse_extension_block,
)
from quic.tls.key_schedule import Transcript
from quic.tls.keylog import KeyLogLabel
from quic.tls.messages import (
    ClientHello,
    HandshakeReader,
    NewSessionTicket,
    decode_handshake,
    decode_message,
    encode_handshake,
)
from quic.tls.psk import binder_for, offer, with_binder
from quic.tls.suites import CipherSuite
from quic.tls.tickets import (
    InMemorySessionTicketStore,
    SessionTicket,
    SessionTicketKeys,
    TicketState,
)
from quic.tls.verify import VerifyOptions
from tests.tls.pair import (
    CLIENT_TP,
    NOW,
    SERVER_TP,
    HandshakeResult,
    client_config,
    hrr_client_groups,
    run_handshake,
    server_config,
)

A = AlertDescription


class Server:
    """One server identity: ticket keys and anti-replay memory shared by handshakes."""

    def __init__(self, **overrides: Any) -> None:
        self.keys = SessionTicketKeys()
        self.anti_replay = AntiReplay(window=10.0)
        self.overrides = overrides

    def config(self, **overrides: Any) -> Any:
        settings = {"ticket_keys": self.keys, "anti_replay": self.anti_replay}
        settings.update(self.overrides)
        settings.update(overrides)
        return server_config(**settings)


def first_ticket(server: Server, **client: Any) -> SessionTicket:
    got: list[SessionTicket] = []
    result = run_handshake(
        client_config(session_ticket_handler=got.append, **client), server.config()
    )
    assert result.client.handshake_complete and not result.client.session_resumed
    assert len(got) == 1
    return got[0]


def resume(
    server: Server, ticket: SessionTicket, client: dict[str, Any] | None = None, **srv: Any
) -> HandshakeResult:
    return run_handshake(
        client_config(session_ticket=ticket, **(client or {})), server.config(**srv)
    )


def offered_hello(server: Server) -> tuple[SessionTicket, ClientHello, bytes]:
    """A first ticket of ``server``, and the ClientHello that offers it (and its bytes)."""
    ticket = first_ticket(server)
    client = TlsEngine(client_config(session_ticket=ticket), CLIENT_TP)
    client.start()
    ((_, raw),) = client.pop_output()
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    return ticket, ch, raw


def at(delta: timedelta) -> Any:
    return lambda: NOW + delta


def test_ticket_carries_what_resumption_needs() -> None:
    server = Server()
    ticket = first_ticket(server)
    assert ticket.server_name == "localhost"
    assert ticket.alpn_protocol == "h3"
    assert ticket.cipher_suite == CipherSuite.TLS_AES_128_GCM_SHA256
    assert ticket.allows_early_data  # RFC 9001 §4.6.1: 0xffffffff
    assert ticket.max_early_data_size == 0xFFFFFFFF
    assert ticket.transport_parameters == SERVER_TP
    assert ticket.lifetime == 86400
    state = TicketState.decode(server.keys.open(ticket.ticket) or b"")
    assert state is not None and state.transport_parameters == SERVER_TP
    assert state.psk == ticket.psk and state.alpn_protocol == b"h3"


def test_resumption_with_zero_rtt() -> None:
    server = Server()
    ticket = first_ticket(server)
    lines: list[str] = []
    result = resume(server, ticket, {"keylog": lines.append})
    client, srv = result.client, result.server
    assert client.handshake_complete and srv.handshake_complete
    assert client.session_resumed and srv.session_resumed
    assert client.early_data_accepted and srv.early_data_accepted
    assert srv.early_data_refusal is None
    early = result.secret(True, Epoch.ZERO_RTT, True)
    assert early == result.secret(False, Epoch.ZERO_RTT, False)
    assert result.secret(True, Epoch.ONE_RTT, True) == result.secret(False, Epoch.ONE_RTT, False)
    # psk_dhe_ke: no certificate in the resumed handshake (RFC 9846 §2.2)
    assert srv.peer_certificate is None and client.peer_certificate is None
    assert client.signature_scheme is None
    assert any(line.startswith(KeyLogLabel.CLIENT_EARLY_TRAFFIC_SECRET) for line in lines)
    assert f"{early.hex()}" in "".join(lines)
    # the ZERO_RTT secret is released right after the ClientHello, before anything else
    assert result.client_secrets[0].epoch == Epoch.ZERO_RTT
    # the resumed connection gets a new ticket too
    tickets = [m for m in result.flights if not m[0] and m[1] == Epoch.ONE_RTT]
    assert len(tickets) == 1


def test_resumption_without_early_data_when_client_does_not_want_it() -> None:
    server = Server()
    result = resume(server, first_ticket(server), {"early_data": False})
    assert result.client.session_resumed and not result.client.early_data_accepted
    assert result.server.early_data_refusal == "not offered"
    assert not [s for s in result.client_secrets if s.epoch == Epoch.ZERO_RTT]


def test_ticket_without_early_data_when_server_has_no_anti_replay() -> None:
    server = Server(anti_replay=None)
    ticket = first_ticket(server)
    assert not ticket.allows_early_data and ticket.max_early_data_size is None
    result = resume(server, ticket)
    assert result.client.session_resumed and not result.client.early_data_accepted
    assert result.server.early_data_refusal == "not offered"  # the client did not try


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"accept_early_data": False}, "disabled"),
        ({"alpn_protocols": ["h3-29", "h3"]}, "alpn"),
        ({"early_data_check": lambda params: False}, "transport parameters"),
        ({"anti_replay": None}, "no anti-replay"),
        # a memory started after the ticket was issued (a restart, RFC 9846 §8.2)
        ({"anti_replay": "fresh", "clock": at(timedelta(seconds=1))}, "replay"),
    ],
)
def test_zero_rtt_rejected(change: dict[str, Any], reason: str) -> None:
    server = Server()
    ticket = first_ticket(server)
    client = {"alpn_protocols": ["h3-29", "h3"]} if "alpn_protocols" in change else {}
    if change.get("anti_replay") == "fresh":
        change = {**change, "anti_replay": AntiReplay()}
    result = resume(server, ticket, client, **change)
    assert result.client.session_resumed and result.server.session_resumed
    assert result.server.early_data_refusal == reason
    assert not result.client.early_data_accepted and not result.server.early_data_accepted
    assert not [s for s in result.server_secrets if s.epoch == Epoch.ZERO_RTT]
    # the client did release 0-RTT keys: QUIC learns of the rejection at completion
    assert [s for s in result.client_secrets if s.epoch == Epoch.ZERO_RTT]


def test_early_data_check_sees_the_remembered_transport_parameters() -> None:
    seen: list[bytes] = []
    server = Server()
    ticket = first_ticket(server)
    resume(server, ticket, early_data_check=lambda p: seen.append(p) is None)
    assert seen == [SERVER_TP]


def test_replayed_ticket_gets_no_second_zero_rtt() -> None:
    server = Server()
    ticket = first_ticket(server)
    assert resume(server, ticket).server.early_data_accepted
    again = resume(server, ticket)
    assert again.server.session_resumed  # (EC)DHE: a replayer cannot finish it anyway
    assert again.server.early_data_refusal == "replay"
    assert server.anti_replay.refused == 1


def test_stale_client_hello_outside_the_freshness_window() -> None:
    server = Server()
    ticket = first_ticket(server)
    # the client reports an age 60 s smaller than the time that passed on the server
    late = dataclasses.replace(ticket, received_at=NOW + timedelta(seconds=60))
    result = resume(
        server, late, {"clock": at(timedelta(seconds=61))}, clock=at(timedelta(seconds=121))
    )
    assert result.server.session_resumed and result.server.early_data_refusal == "replay"


def test_expired_ticket_is_not_offered_by_the_client() -> None:
    server = Server()
    ticket = first_ticket(server)
    later = at(timedelta(seconds=86400))
    result = resume(server, ticket, {"clock": later}, clock=later)
    assert first_client_hello(result).pre_shared_key is None
    assert not result.client.session_resumed


def first_client_hello(result: HandshakeResult) -> ClientHello:
    (raw,) = [d for c, e, d in result.flights[:1] if c and e == Epoch.INITIAL]
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    return ch


def test_expired_ticket_is_ignored_by_the_server() -> None:
    server = Server()
    ticket = first_ticket(server)
    result = resume(server, ticket, clock=at(timedelta(seconds=86400)))
    assert not result.client.session_resumed and not result.server.session_resumed
    assert result.server.early_data_refusal == "no usable ticket"
    assert result.client.handshake_complete and result.client.peer_certificate is not None


def test_ticket_lifetime_is_the_configured_one() -> None:
    server = Server(ticket_lifetime=30)
    ticket = first_ticket(server)
    assert ticket.lifetime == 30
    assert resume(server, ticket, clock=at(timedelta(seconds=29))).server.session_resumed
    ticket = first_ticket(server)
    assert not resume(server, ticket, clock=at(timedelta(seconds=30))).server.session_resumed


def test_unknown_or_rotated_out_ticket_means_full_handshake() -> None:
    server = Server()
    ticket = first_ticket(server)
    server.keys.rotate()  # max_keys=2: the old key still opens
    assert resume(server, ticket).server.session_resumed
    ticket = first_ticket(server)
    server.keys.rotate()
    server.keys.rotate()
    result = resume(server, ticket)
    assert result.client.handshake_complete and not result.client.session_resumed
    stranger = Server()
    result = resume(stranger, first_ticket(server))
    assert result.client.handshake_complete and not result.server.session_resumed


def test_ticket_for_another_server_name_is_not_resumed() -> None:
    server = Server()
    ticket = first_ticket(server)
    other_name = {"server_name": "example.com", "verify": VerifyOptions(verify=False)}
    result = resume(server, ticket, other_name)
    assert first_client_hello(result).pre_shared_key is not None
    assert result.client.handshake_complete and not result.server.session_resumed


def _tamper_binder(from_client: bool, epoch: Epoch, data: bytes) -> bytes:
    if from_client and epoch == Epoch.INITIAL:
        return data[:-1] + bytes([data[-1] ^ 1])  # the binder is the last field
    return data


def test_tampered_binder_is_decrypt_error() -> None:
    server = Server()
    ticket = first_ticket(server)
    with pytest.raises(TlsAlertError) as exc:
        run_handshake(client_config(session_ticket=ticket), server.config(), _tamper_binder)
    assert exc.value.alert == A.decrypt_error  # RFC 9846 §4.3.11.2, §6.2
    assert exc.value.quic_error_code == 0x100 + 51


def test_wrong_psk_is_decrypt_error() -> None:
    server = Server()
    ticket = dataclasses.replace(first_ticket(server), psk=bytes(32))
    with pytest.raises(TlsAlertError) as exc:
        resume(server, ticket)
    assert exc.value.alert == A.decrypt_error


def test_resumption_after_hello_retry_request_has_no_zero_rtt() -> None:
    server = Server()
    ticket = first_ticket(server)
    groups = hrr_client_groups(server.config().groups[0])
    result = resume(
        server, ticket, {"key_share_groups": groups}, groups=(server.config().groups[0],)
    )
    assert result.client.hello_retry_request_received
    assert result.client.session_resumed and result.server.session_resumed
    assert result.server.early_data_refusal == "hello retry"
    assert not result.client.early_data_accepted


def test_psk_of_another_hash_is_dropped_after_hello_retry_request() -> None:
    server = Server(cipher_suites=(CipherSuite.TLS_AES_256_GCM_SHA384,))
    ticket = first_ticket(server)
    assert ticket.cipher_suite == CipherSuite.TLS_AES_256_GCM_SHA384
    # the next server prefers a SHA-256 suite and a group the client has no share for
    result = resume(
        server,
        ticket,
        {"key_share_groups": hrr_client_groups(server.config().groups[0])},
        groups=(server.config().groups[0],),
        cipher_suites=(CipherSuite.TLS_AES_256_GCM_SHA384,),
    )
    assert result.client.session_resumed  # same hash: offered again with a new binder


def _select_identity(index: int) -> Any:
    def tamper(from_client: bool, epoch: Epoch, data: bytes) -> bytes:
        if from_client or epoch != Epoch.INITIAL:
            return data
        sh = decode_handshake(data)
        return encode_handshake(dataclasses.replace(sh, pre_shared_key=index))  # type: ignore[arg-type]

    return tamper


def test_server_selecting_a_psk_when_none_was_offered_is_unsupported_extension() -> None:
    with pytest.raises(TlsAlertError) as exc:
        run_handshake(tamper=_select_identity(0))
    assert exc.value.alert == A.unsupported_extension  # RFC 9846 §4.2


def test_server_selecting_identity_out_of_range_is_illegal_parameter() -> None:
    server = Server()
    ticket = first_ticket(server)
    with pytest.raises(TlsAlertError) as exc:
        run_handshake(client_config(session_ticket=ticket), server.config(), _select_identity(1))
    assert exc.value.alert == A.illegal_parameter  # RFC 9846 §4.3.11


def test_new_session_tickets_are_bounded_at_the_client() -> None:
    got: list[SessionTicket] = []
    result = run_handshake(client_config(session_ticket_handler=got.append))
    for i in range(100):
        nst = NewSessionTicket(3600, i, bytes([i]), b"t%d" % i, max_early_data_size=0xFFFFFFFF)
        result.client.receive(Epoch.ONE_RTT, encode_handshake(nst))
    assert len(result.client.new_session_tickets) <= 4
    assert len(got) == 100  # each handed to the application's store
    assert len({t.psk for t in got}) == 100  # PSK depends on the nonce (§4.7.1)
    result.client.receive(Epoch.ONE_RTT, encode_handshake(NewSessionTicket(0, 0, b"", b"z")))
    assert len(got) == 100  # lifetime 0: discard (§4.7.1)


def test_quic_transport_parameters_draft_codepoint_only_is_missing_extension() -> None:
    """RFC 9001 §8.2: the old draft codepoint 0xffa5 does not count."""
    client = TlsEngine(client_config(), CLIENT_TP)
    client.start()
    ((_, raw),) = client.pop_output()
    ch = decode_handshake(raw)
    assert isinstance(ch, ClientHello)
    draft = dataclasses.replace(
        ch, quic_transport_parameters=None, other_extensions=((0xFFA5, CLIENT_TP),)
    )
    server = TlsEngine(server_config(), SERVER_TP)
    with pytest.raises(TlsAlertError) as exc:
        server.receive(Epoch.INITIAL, encode_handshake(draft))
    assert exc.value.alert == A.missing_extension
    assert exc.value.quic_error_code == 0x16D
    assert ExtensionType.quic_transport_parameters == 57


# -- bounded state ------------------------------------------------------------------------


def _ticket(name: str, i: int, when: Any = NOW) -> SessionTicket:
    return SessionTicket(
        server_name=name,
        ticket=b"t%d" % i,
        psk=bytes(32),
        cipher_suite=CipherSuite.TLS_AES_128_GCM_SHA256,
        alpn_protocol="h3",
        ticket_age_add=0,
        lifetime=3600,
        received_at=when,
        max_early_data_size=None,
        transport_parameters=b"x" * 100,
    )


def _store_footprint(n: int) -> tuple[int, int]:
    store = InMemorySessionTicketStore(max_servers=64, max_tickets_per_server=4)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(n):
        store.add(_ticket(f"host{i % (n // 2)}", i))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return len(store), grown


def test_ticket_store_is_bounded_n_vs_4n() -> None:
    small_len, small_bytes = _store_footprint(1000)
    big_len, big_bytes = _store_footprint(4000)
    assert small_len == big_len <= 64 * 4
    assert big_bytes < 2 * max(small_bytes, 1)


def test_ticket_store_takes_each_ticket_once_and_skips_expired() -> None:
    store = InMemorySessionTicketStore()
    store.add(_ticket("a", 1))
    store.add(_ticket("a", 2, NOW - timedelta(hours=2)))  # newest added but expired
    taken = store.take("a", NOW)
    assert taken is not None and taken.ticket == b"t1"
    assert store.take("a", NOW) is None and len(store) == 0


def _anti_replay_peak(n: int) -> tuple[int, int]:
    """n 0-RTT handshakes, 10 per second: the memory holds ~2 windows of them."""
    memory = AntiReplay(window=10.0, max_entries=100_000)
    memory.start(-10.0)
    peak = 0
    for i in range(n):
        now = i / 10
        assert memory.admit(b"%016d" % i, now - 5, now, now)
        peak = max(peak, len(memory))
    return peak, len(memory._heap)


def test_anti_replay_memory_is_bounded_by_the_window_n_vs_4n() -> None:
    peak_n, heap_n = _anti_replay_peak(2000)
    peak_4n, heap_4n = _anti_replay_peak(8000)
    assert peak_n == peak_4n <= 2 * 10 * 10 + 1
    assert heap_n == heap_4n


def test_anti_replay_refuses_when_full_instead_of_forgetting() -> None:
    memory = AntiReplay(window=10.0, max_entries=8)
    memory.start(0.0)
    admitted = [memory.admit(b"%d" % i, 0.0, 1.0, 1.0) for i in range(20)]
    assert admitted == [True] * 8 + [False] * 12
    assert len(memory) == 8
    assert not memory.admit(b"0", 0.0, 1.0, 1.0)  # still remembered: no replay


def test_split_messages_helper_reads_a_ticket_flight() -> None:
    server = Server()
    got: list[SessionTicket] = []
    result = run_handshake(client_config(session_ticket_handler=got.append), server.config())
    (data,) = [d for c, e, d in result.flights if not c and e == Epoch.ONE_RTT]
    reader = HandshakeReader()
    reader.feed(data)
    item = reader.next_message()
    assert item is not None
    nst = decode_message(item[0], item[1])
    assert isinstance(nst, NewSessionTicket) and nst.ticket == got[0].ticket


def test_zero_rtt_with_a_clock_between_milliseconds() -> None:
    """Tickets carry milliseconds; a real clock has microseconds (the anti-replay
    memory must not see the ticket as issued before it started)."""
    server = Server(clock=at(timedelta(microseconds=700)))
    ticket = first_ticket(server, clock=at(timedelta(microseconds=700)))
    later = at(timedelta(seconds=1, microseconds=300))
    result = resume(server, ticket, {"clock": later}, clock=later)
    assert result.server.early_data_accepted, result.server.early_data_refusal


def test_binder_covers_the_client_hello_as_received() -> None:
    """A peer may order extensions differently from our encoder: the server checks
    the binder over the bytes it received, not over a re-encoding (found with aioquic)."""
    server = Server()
    ticket, ch, raw = offered_hello(server)
    assert ch.pre_shared_key is not None
    body = raw[4:]
    buf = Buffer(body)
    buf.pull_bytes(2 + 32)
    buf.pull_vector(1)
    buf.pull_vector(2)
    buf.pull_vector(1)
    head = body[: buf.position]
    extensions = parse_extension_block(buf)
    *others, psk = extensions
    reordered = [*reversed(others), psk]  # pre_shared_key stays last (§4.3.11)
    new_body = head + encode_extension_block(reordered)
    framed = bytes((1,)) + len(new_body).to_bytes(3, "big") + new_body
    truncated = framed[: len(framed) - ch.pre_shared_key.binders_length()]
    binder = binder_for(ticket.cipher_suite, ticket.psk, Transcript(), truncated)
    framed = truncated + framed[len(truncated) : len(truncated) + 3] + binder
    assert decode_handshake(framed) != ch  # the same hello, other bytes
    engine = TlsEngine(server.config(), SERVER_TP)
    engine.receive(Epoch.INITIAL, framed)
    assert engine.session_resumed and engine.early_data_accepted


def test_client_hello_with_binder_is_encoded_once_and_binds_its_own_bytes() -> None:
    """``with_binder`` writes the binder into the one encoding of the ClientHello: the
    bytes sent are the encoding of the bound hello, and the binder is the one over
    those bytes without the binders list (RFC 9846 §4.3.11.2)."""
    server = Server()
    ticket, ch, raw = offered_hello(server)
    assert ch.pre_shared_key is not None
    assert encode_handshake(ch) == raw
    expected = binder_for(ticket.cipher_suite, ticket.psk, Transcript(), ch.truncated_for_binders())
    assert ch.pre_shared_key.binders == (expected,)
    placeholder = dataclasses.replace(ch, pre_shared_key=offer(ticket, NOW))
    bound, framed = with_binder(placeholder, ticket, Transcript())
    assert framed == encode_handshake(bound) and bound.pre_shared_key is not None
    assert bound.pre_shared_key.binders[0] != bytes(len(expected))
    short = dataclasses.replace(
        placeholder,
        pre_shared_key=OfferedPsks(placeholder.pre_shared_key.identities, (b"\x00" * 8,)),
    )
    with pytest.raises(ValueError, match="placeholder binder"):
        with_binder(short, ticket, Transcript())
