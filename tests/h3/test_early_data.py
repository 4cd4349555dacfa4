"""The server's policy for HTTP/3 requests received in 0-RTT (RFC 9114 §10.9, RFC 8470),
in memory on the fake clock with a resumed pair (tests/h3/early_pair.py).

Each request is written by the client before its handshake completes, so it rides in
0-RTT packets; the QUIC server marks those bytes (StreamDataReceived.early_data) and
h3.early applies H3Configuration.early_data_policy.
"""

from __future__ import annotations

from collections import deque

import pytest

from h3.connection import H3Configuration, H3Connection
from h3.early import EarlyRequests
from h3.events import H3Event, HeadersReceived
from quic import events as qe
from tests.h3.early_pair import EarlyH3, early_h3


def resumed(policy: str = "reject-unsafe", **cfg: object) -> EarlyH3:
    env = early_h3(H3Configuration(early_data_policy=policy, **cfg))  # type: ignore[arg-type]
    env.requests.clear()
    client = env.resume()
    assert client.quic.early_data_possible  # what follows is written in 0-RTT
    return env


def requests_of(env: EarlyH3) -> dict[int, tuple[bytes, bool, bool]]:
    return {s.stream_id: (s.method, s.early_data, s.after_handshake) for s in env.requests}


def server_h3(env: EarlyH3) -> H3Connection:
    """The server's HTTP/3 connection of the resumed connection."""
    (server,) = [h3 for c, h3 in env.h3.items() if not c.is_client and c.tls.session_resumed]
    return server


@pytest.mark.parametrize(
    ("policy", "statuses", "seen"),
    [
        # safe methods reach the application at once, marked; the others get 425
        (
            "reject-unsafe",
            {0: 200, 4: 425, 8: 425, 12: 200},
            {0: (b"GET", True, False), 12: (b"OPTIONS", True, False)},
        ),
        # everything is held until the handshake completes, then delivered, marked
        (
            "defer",
            {0: 200, 4: 200, 8: 200, 12: 200},
            {
                0: (b"GET", True, True),
                4: (b"POST", True, True),
                8: (b"CONNECT", True, True),
                12: (b"OPTIONS", True, True),
            },
        ),
        # the application decides, except for CONNECT (draft-ietf-webtrans-http3-16 §3.2)
        (
            "accept-all",
            {0: 200, 4: 200, 8: 425, 12: 200},
            {0: (b"GET", True, False), 4: (b"POST", True, False), 12: (b"OPTIONS", True, False)},
        ),
    ],
)
def test_policy_for_requests_in_zero_rtt(
    policy: str, statuses: dict[int, int], seen: dict[int, tuple[bytes, bool, bool]]
) -> None:
    env = resumed(policy)
    env.request("GET")
    env.request("POST", b"x" * 3000)
    env.request("CONNECT")
    env.request("OPTIONS")
    env.run(lambda: len(env.responses) == 4)
    assert env.responses == statuses
    assert requests_of(env) == seen
    assert not env.resets
    sizes = server_h3(env).state_sizes()
    assert sizes["early_streams"] == sizes["early_held_requests"] == sizes["early_held_bytes"] == 0


def test_requests_after_the_handshake_are_not_early() -> None:
    """The flag is not always on: a request written after the handshake completed (1-RTT)
    is a plain one, a POST included, under the default policy."""
    env = resumed()
    client = env.client
    assert client is not None
    env.run(lambda: client.quic.handshake_complete)
    env.request("POST", b"body")
    env.request("GET")
    env.run(lambda: len(env.responses) == 2)
    assert env.responses == {0: 200, 4: 200}
    assert requests_of(env) == {0: (b"POST", False, True), 4: (b"GET", False, True)}


def test_intermediary_early_data_header() -> None:
    """RFC 8470 §5.1: a request forwarded from an intermediary's early data carries
    Early-Data: 1; the server treats it as early even in 1-RTT (defer cannot help: the
    handshake is the intermediary's)."""
    env = resumed("defer")
    client = env.client
    assert client is not None
    env.run(lambda: client.quic.handshake_complete)
    env.request("POST", b"body", [(b"early-data", b"1")])
    env.request("GET", headers=[(b"early-data", b"1")])
    env.request("POST", b"body")
    env.run(lambda: len(env.responses) == 3)
    assert env.responses == {0: 425, 4: 200, 8: 200}
    assert requests_of(env) == {4: (b"GET", True, True), 8: (b"POST", False, True)}


def test_refused_body_is_credited_and_not_read() -> None:
    """A POST refused with 425 whose body is larger than the stream window: the server
    stops reading it (STOP_SENDING H3_NO_ERROR, RFC 9114 §4.1.1) and what was delivered
    is credited back, so the connection keeps working."""
    env = resumed()
    env.request("POST", b"y" * 200_000)
    env.run(lambda: len(env.responses) == 1)
    assert env.responses == {0: 425}
    client = env.client
    assert client is not None
    env.run(lambda: client.quic.handshake_complete)
    env.request("POST", b"z" * 200_000)  # 1-RTT now: accepted, the body read in full
    env.run(lambda: 4 in env.responses)
    assert env.responses[4] == 200
    assert [len(s.body) for s in env.requests] == [200_000]


def test_deferred_body_over_the_byte_bound_is_refused() -> None:
    env = resumed("defer", max_early_bytes_held=4096)
    env.request("POST", b"a" * 2000)
    env.request("POST", b"b" * 8000)
    env.run(lambda: len(env.responses) == 2)
    assert env.responses == {0: 200, 4: 425}
    assert requests_of(env) == {0: (b"POST", True, True)}
    assert env.requests[0].body == b"a" * 2000


def _peak_held(n: int) -> tuple[int, int, int, dict[int, int]]:
    """n GET requests in 0-RTT under "defer": the peak number of requests and bytes the
    server held, and how many were delivered and refused."""
    env = resumed("defer", max_early_requests_held=16)
    for _ in range(n):
        env.request("POST", b"p" * 100)
    peak = [0, 0]
    pump = env.pump

    def sampled() -> bool:
        busy = pump()
        for conn, h3 in env.h3.items():
            if not conn.is_client:
                sizes = h3.state_sizes()
                peak[0] = max(peak[0], sizes["early_held_requests"])
                peak[1] = max(peak[1], sizes["early_held_bytes"])
        return busy

    env.pump = sampled  # type: ignore[method-assign]
    env.pair.net.after_flush = sampled
    env.run(lambda: len(env.responses) == n, max_time=20)
    statuses: dict[int, int] = {}
    for status in env.responses.values():
        statuses[status] = statuses.get(status, 0) + 1
    return peak[0], peak[1], len(env.requests), statuses


def test_deferred_requests_are_bounded_n_vs_4n() -> None:
    """RFC 9114 §10.5: the held requests are bounded by max_early_requests_held whatever
    the number of early requests; the excess is answered 425 (RFC 8470 §5.2), the held
    ones are delivered after the handshake."""
    n = 16
    held_n, bytes_n, delivered_n, statuses_n = _peak_held(n)
    held_4n, bytes_4n, delivered_4n, statuses_4n = _peak_held(4 * n)
    assert held_n == held_4n == 16
    assert bytes_n == bytes_4n == 16 * 100
    assert delivered_n == delivered_4n == 16
    assert statuses_n == {200: 16}
    assert statuses_4n == {200: 16, 425: 48}


def test_reset_of_a_deferred_request_drops_it() -> None:
    """A held request the client abandons never reaches the application."""
    env = resumed("defer")
    client = env.client
    assert client is not None
    sid = client.get_next_available_stream_id()
    client.send_headers(
        sid,
        [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")],
    )
    client.send_data(sid, b"partial")
    env.run(lambda: any(h3.state_sizes()["early_held_requests"] for h3 in env.h3.values()))
    client.reset_stream(sid, 0x10C)  # H3_REQUEST_CANCELLED
    env.request("GET")
    env.run(lambda: 4 in env.responses)
    env.pair.net.settle(0.5)
    env.pump()
    assert requests_of(env) == {4: (b"GET", True, True)}
    sizes = server_h3(env).state_sizes()
    assert sizes["early_held_requests"] == sizes["early_held_bytes"] == sizes["early_streams"] == 0


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="early_data_policy"):
        EarlyRequests(False, "maybe")  # type: ignore[arg-type]


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[int, list[tuple[bytes, bytes]], bool]] = []
        self.consumed = 0

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        self.sent.append((stream_id, headers, end_stream))

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def consume_data(self, stream_id: int, nbytes: int) -> None:
        self.consumed += nbytes


def test_client_side_passes_everything() -> None:
    """A client receives no early data: the filter hands its events out untouched."""
    gate = EarlyRequests(True)
    gate.on_quic_event(qe.StreamDataReceived(0, b"x", False, early_data=True))
    event = HeadersReceived(0, [(b":status", b"425")], True)
    events: deque[H3Event] = deque([event])
    assert gate.next_event(events, _Sink()) is event
    assert gate.next_event(events, _Sink()) is None


@pytest.mark.parametrize(
    ("policy", "status", "delivered"),
    [("reject-unsafe", 425, False), ("accept-all", 425, False), ("defer", 200, True)],
)
def test_extended_connect_in_zero_rtt(policy: str, status: int, delivered: bool) -> None:
    """A WebTransport session request (extended CONNECT, RFC 9220) in 0-RTT: clients
    do not send one (draft-ietf-webtrans-http3-16 §3.2: CONNECT is not safe, RFC 9114
    §10.9), so the server never lets one from early data reach the application before
    the handshake: 425, or held until the handshake under "defer"."""
    env = early_h3(
        H3Configuration(
            early_data_policy=policy,  # type: ignore[arg-type]
            enable_connect_protocol=True,
            enable_webtransport=True,
        )
    )
    env.requests.clear()
    client = env.resume()
    assert client.quic.early_data_possible
    sid = client.get_next_available_stream_id()
    client.send_headers(
        sid,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport-h3"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/wt"),
        ],
        end_stream=True,
    )
    env.run(lambda: sid in env.responses)
    assert env.responses == {sid: status}
    assert requests_of(env) == ({sid: (b"CONNECT", True, True)} if delivered else {})


@pytest.mark.parametrize("policy", ["reject-unsafe", "defer", "accept-all"])
def test_passes_through_is_kept_with_the_released_and_dropped(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EarlyRequests.passes_through`` (read per datagram by
    :meth:`H3Connection.datagram_route`) is an attribute kept in step with what it
    stands for — no released event waits and no refused stream's events are to be
    skipped — after every input and every event taken, in each policy."""
    checked: list[bool] = []

    def check(early: EarlyRequests) -> None:
        assert early.passes_through == (not early._ready and not early._dropped)
        checked.append(early.passes_through)

    for name in ("on_quic_event", "next_event"):
        original = getattr(EarlyRequests, name)

        def wrapper(self: EarlyRequests, *args: object, _original: object = original) -> object:
            result = _original(self, *args)  # type: ignore[operator]
            check(self)
            return result

        monkeypatch.setattr(EarlyRequests, name, wrapper)
    env = resumed(policy)
    env.request("GET")
    env.request("POST", b"x" * 3000)
    env.request("CONNECT")
    env.request("OPTIONS")
    env.run(lambda: len(env.responses) == 4)
    env.pair.net.settle(0.5)
    env.pump()
    assert checked and checked[-1]  # all delivered: the next event is the next out
    if policy == "defer":
        assert False in checked  # released requests waited: it did not pass through
