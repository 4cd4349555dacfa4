"""Every congestion controller on real connections over an impaired in-memory link
(fake clock, netsim): transfers complete byte-exact; CUBIC reacts with beta = 0.7; BBR
keeps the bottleneck queue short where a loss-based controller fills the buffer."""

from __future__ import annotations

import hashlib
import random

import pytest

from quic.cc_bbr import Bbr, BbrState
from quic.cc_cubic import Cubic
from quic.congestion import NewReno
from quic.connection import ConnectionState
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

CONTROLLERS = {"reno": NewReno, "newreno": NewReno, "cubic": Cubic, "bbr": Bbr}


def _pair(name: str, seed: int = 0, **link: object) -> Pair:
    kwargs = {"congestion_control": name}
    return make_pair(seed=seed, client_kwargs=kwargs, server_kwargs=kwargs, **link)


def _transfer(pair: Pair, size: int, seed: int, max_time: float = 120.0) -> bytes:
    payload = random.Random(seed).randbytes(size)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=max_time)
    got = bytes(pair.data["server"][sid])
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return got


@pytest.mark.parametrize("name", ["reno", "cubic", "bbr"])
def test_transfer_over_lossy_delayed_link(name: str) -> None:
    pair = _pair(name, seed=5, delay=0.02, jitter=0.002, loss=0.03)
    pair.handshake()
    assert type(pair.client.recovery.congestion) is CONTROLLERS[name]
    assert type(pair.server.recovery.congestion) is CONTROLLERS[name]
    _transfer(pair, 2 * 1024 * 1024, seed=5)
    assert pair.client.last_internal_error is None and pair.server.last_internal_error is None
    assert pair.client.state is ConnectionState.CONNECTED


def test_unknown_controller_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        _pair("vegas")


def _bottleneck(name: str, buffer: int) -> tuple[Pair, float]:
    """A 1.2 MB/s bottleneck, 50 ms RTT, a drop-tail buffer of ``buffer`` bytes; a
    3 MB transfer. Returns the pair and the longest queueing delay seen."""
    pair = _pair(name, seed=7, delay=0.025)
    link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    link.bandwidth = 1_200_000.0
    link.buffer = buffer
    pair.handshake()
    _transfer(pair, 3 * 1024 * 1024, seed=7)
    return pair, link.max_queue_delay


def test_bbr_keeps_the_bottleneck_queue_short() -> None:
    """With a deep buffer (about 0.5 s of queue), NewReno and CUBIC fill it before
    they see a loss; BBR's queue stays near one BDP (50 ms) plus startup overshoot."""
    buffer = 600_000
    _, reno_queue = _bottleneck("reno", buffer)
    bbr_pair, bbr_queue = _bottleneck("bbr", buffer)
    _, cubic_queue = _bottleneck("cubic", buffer)
    bbr = bbr_pair.client.recovery.congestion
    assert isinstance(bbr, Bbr)
    assert bbr.state in (BbrState.PROBE_BW, BbrState.PROBE_RTT)
    assert bbr.btl_bw == pytest.approx(1_200_000, rel=0.15)
    assert bbr_queue < 0.15
    assert reno_queue > 0.3
    assert cubic_queue > 0.3
    assert reno_queue > 2 * bbr_queue


def test_cubic_reduces_by_seven_tenths_on_a_real_loss() -> None:
    pair = _pair("cubic", seed=11, delay=0.02)
    link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    link.bandwidth = 2_000_000.0
    link.buffer = 40_000
    pair.handshake()
    cc = pair.client.recovery.congestion
    assert isinstance(cc, Cubic)
    _transfer(pair, 2 * 1024 * 1024, seed=11)
    assert link.overflowed, "the drop-tail buffer must overflow"
    assert cc.ssthresh is not None
    # the last congestion event: ssthresh = 0.7 * the window before it (RFC 9438 §4.6)
    assert cc.ssthresh == int(cc.cwnd_prior * 0.7)
    assert cc.w_max <= cc.cwnd_prior


@pytest.mark.parametrize(("name", "asked"), [("newreno", False), ("cubic", False), ("bbr", True)])
def test_app_limited_is_asked_only_of_controllers_that_use_it(
    name: str, asked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9002 §7.8: after a build that left room in the window, the send path tells
    the controller it is application-limited only if ``app_limited_hook`` says its
    ``on_app_limited`` does something (BBR's delivery-rate samples); NewReno and CUBIC
    apply §7.8 per ACK and are not asked (issue 10: a no-op call per build)."""
    calls: list[float] = []
    cls = {"newreno": NewReno, "cubic": Cubic, "bbr": Bbr}[name]
    original = cls.on_app_limited

    def spy(self: object, now: float) -> None:
        calls.append(now)
        original(self, now)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "on_app_limited", spy)
    pair = make_pair(seed=3, client_kwargs={"congestion_control": name})
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"ping", end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=5)
    assert type(pair.client.recovery.congestion) is cls
    assert bool(calls) is asked
