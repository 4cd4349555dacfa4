"""Flow control credit and receive windows (RFC 9000 §4.1, §4.2)."""

from __future__ import annotations

import pytest

from quic.buffer import VARINT_MAX
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.flow_control import ReceiveWindow, SendCredit

# ---------------------------------------------------------------------- SendCredit


def test_send_credit_available_and_consume() -> None:
    c = SendCredit(100)
    assert c.available() == 100
    c.consume(40)
    assert c.used == 40
    assert c.available() == 60
    c.consume(60)
    assert c.available() == 0


def test_send_credit_overspend_is_local_error() -> None:
    c = SendCredit(10)
    with pytest.raises(ValueError):
        c.consume(11)
    with pytest.raises(ValueError):
        c.consume(-1)
    assert c.used == 0


def test_send_credit_ignores_decreases() -> None:
    # RFC 9000 §4.1: a sender MUST ignore MAX_DATA / MAX_STREAM_DATA that do not increase
    c = SendCredit(100)
    assert c.update_limit(200) is True
    assert c.max_data == 200
    assert c.update_limit(150) is False
    assert c.update_limit(200) is False
    assert c.max_data == 200


def test_send_credit_blocked_reported_once_per_limit() -> None:
    c = SendCredit(10)
    assert c.blocked_at is None  # credit left: not blocked
    c.consume(10)
    assert c.blocked_at == 10
    c.mark_blocked_sent()
    assert c.blocked_at is None  # already reported at this limit
    c.update_limit(20)
    assert c.blocked_at is None  # credit available again
    c.consume(10)
    assert c.blocked_at == 20  # new limit: report again
    c.mark_blocked_sent()
    assert c.blocked_at is None


def test_send_credit_blocked_lost_rearms_only_same_limit() -> None:
    c = SendCredit(5)
    c.consume(5)
    c.mark_blocked_sent()
    c.on_blocked_lost(3)  # stale frame: no effect
    assert c.blocked_at is None
    c.on_blocked_lost(5)
    assert c.blocked_at == 5
    c.mark_blocked_sent()
    c.rearm_blocked()
    assert c.blocked_at == 5


def test_send_credit_zero_limit_blocked_immediately() -> None:
    c = SendCredit()
    assert c.available() == 0
    assert c.blocked_at == 0


# ---------------------------------------------------------------------- ReceiveWindow


def test_receive_window_on_data_returns_delta() -> None:
    w = ReceiveWindow(1000)
    assert w.on_data(100) == 100
    assert w.on_data(50) == 0  # reordered / duplicate data
    assert w.on_data(100) == 0
    assert w.on_data(1000) == 900
    assert w.highest_received == 1000


def test_receive_window_violation_is_flow_control_error() -> None:
    w = ReceiveWindow(1000)
    with pytest.raises(QuicProtocolError) as info:
        w.on_data(1001)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert w.highest_received == 0


def test_receive_window_on_received_connection_sum() -> None:
    w = ReceiveWindow(100)
    w.on_received(60)
    w.on_received(0)
    w.on_received(40)
    assert w.highest_received == 100
    with pytest.raises(QuicProtocolError) as info:
        w.on_received(1)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR


def test_receive_window_update_after_half_consumed() -> None:
    w = ReceiveWindow(1000)
    w.on_data(1000)
    w.on_consumed(499, now=0.0, rtt=0.0)
    assert not w.should_update()
    w.on_consumed(1, now=0.0, rtt=0.0)
    assert w.should_update()
    assert w.next_limit() == 1500  # consumed + window
    assert w.max_data == 1500
    assert not w.should_update()


def test_receive_window_autotune_doubles_when_fast() -> None:
    w = ReceiveWindow(1000, max_window=3000)
    w.on_data(600)
    w.on_consumed(100, now=10.0, rtt=0.1)  # starts the measurement epoch
    w.on_consumed(400, now=10.05, rtt=0.1)  # half window in 50 ms < 2 RTT
    assert w.should_update()
    assert w.next_limit() == 500 + 2000
    assert w.window == 2000
    # Again fast: doubles but capped at max_window.
    w.on_data(1600)
    w.on_consumed(1100, now=10.1, rtt=0.1)
    assert w.should_update()
    assert w.next_limit() == 1600 + 3000
    assert w.window == 3000


def test_receive_window_no_autotune_when_slow() -> None:
    w = ReceiveWindow(1000, max_window=8000)
    w.on_data(1000)
    w.on_consumed(100, now=0.0, rtt=0.1)
    w.on_consumed(500, now=1.0, rtt=0.1)  # 1 s >> 2 RTT
    assert w.should_update()
    assert w.next_limit() == 1600
    assert w.window == 1000


def test_receive_window_no_autotune_with_unknown_rtt() -> None:
    w = ReceiveWindow(1000, max_window=8000)
    w.on_data(1000)
    w.on_consumed(600, now=0.0, rtt=0.0)
    assert w.next_limit() == 1600
    assert w.window == 1000


def test_receive_window_epoch_restarts_at_each_update() -> None:
    w = ReceiveWindow(1000, max_window=8000)
    w.on_data(1000)
    w.on_consumed(100, now=0.0, rtt=0.1)
    w.on_consumed(500, now=1.0, rtt=0.1)
    assert w.next_limit() == 1600  # slow epoch: window unchanged
    assert w.window == 1000
    w.on_data(1600)
    w.on_consumed(500, now=1.1, rtt=0.1)  # 100 ms after the last update
    assert w.should_update()
    assert w.next_limit() == 1100 + 2000
    assert w.window == 2000


def test_receive_window_lost_update_resent() -> None:
    w = ReceiveWindow(100)
    w.on_data(100)
    w.on_consumed(60, now=0.0, rtt=0.0)
    limit = w.next_limit()
    assert limit == 160
    assert not w.should_update()
    w.on_update_lost(120)  # an older value: superseded, nothing to do
    assert not w.should_update()
    w.on_update_lost(160)
    assert w.should_update()
    assert w.next_limit() == 160
    assert not w.should_update()


def test_receive_window_ensure_window() -> None:
    w = ReceiveWindow(100)
    w.ensure_window(50)
    assert w.window == 100
    w.ensure_window(400)
    assert w.window == 400
    assert w.max_window >= 400


def test_receive_window_zero_never_updates() -> None:
    w = ReceiveWindow(0)
    assert not w.should_update()
    with pytest.raises(QuicProtocolError):
        w.on_data(1)


def test_receive_window_limit_capped_at_varint_max() -> None:
    w = ReceiveWindow(VARINT_MAX)
    w.on_data(VARINT_MAX)
    w.on_consumed(VARINT_MAX, now=0.0, rtt=0.0)
    assert w.next_limit() == VARINT_MAX


def test_receive_window_rejects_negative() -> None:
    with pytest.raises(ValueError):
        ReceiveWindow(-1)


def test_receive_window_peer_blocked_at_our_limit_doubles_window() -> None:
    # RFC 9000 §19.12/§19.13: the peer is blocked at our limit while the application
    # keeps up, so the window (not the path, not the reader) limits it: it doubles
    w = ReceiveWindow(1000, max_window=3000)
    w.on_data(1000)
    w.on_consumed(600, now=0.0, rtt=0.0)
    assert w.on_peer_blocked(1000)
    assert w.window == 2000
    assert w.should_update()
    assert w.next_limit() == 600 + 2000
    # the frame of the previous limit, crossed by our update, counts too
    assert w.on_peer_blocked(1000)
    assert w.window == 3000  # capped at max_window
    assert not w.on_peer_blocked(2600)
    assert w.window == 3000


def test_receive_window_peer_blocked_at_another_limit_changes_nothing() -> None:
    w = ReceiveWindow(1000, max_window=8000)
    w.on_data(1000)
    w.on_consumed(600, now=0.0, rtt=0.0)
    assert w.next_limit() == 1600
    w.on_data(1600)
    w.on_consumed(600, now=0.0, rtt=0.0)
    assert w.next_limit() == 2200  # previous limit now 1600
    assert not w.on_peer_blocked(1000)  # older than the previous limit
    assert not w.on_peer_blocked(5000)  # a limit we never advertised
    assert w.window == 1000


def test_receive_window_peer_blocked_does_not_grow_an_unread_buffer() -> None:
    # A peer cannot make us buffer more for an application that does not read: credit
    # still follows consumption (§4.2)
    w = ReceiveWindow(1000, max_window=8000)
    w.on_data(1000)
    w.on_consumed(400, now=0.0, rtt=0.0)  # 600 unread: more than half the window
    assert not w.on_peer_blocked(1000)
    assert w.window == 1000
    assert not w.should_update()
    assert w.max_data == 1000
