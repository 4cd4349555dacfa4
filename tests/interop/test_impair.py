"""The impairment decision logic (:mod:`quic.interop.impair`), without sockets.

Every test feeds a :class:`LinkModel` datagrams with explicit arrival times and checks
its decisions: determinism per seed, the burst cap, the corruption window, drop lists,
blackhole periods, delay, duplication, reordering, the bandwidth queue, and the runner
scenario table.
"""

from __future__ import annotations

import itertools

import pytest

from quic.interop.impair import (
    CORRUPT_WINDOW,
    SCENARIOS,
    Fate,
    Impairment,
    LinkModel,
    Rebinding,
    parse_duration,
    runner_impairment,
)

SHORT = bytes([0x40]) + bytes(range(1, 200))  # a short-header datagram
VN = b"\x80\x00\x00\x00\x00" + bytes(60)  # Version Negotiation (RFC 8999 §6)


def run(model: LinkModel, n: int, size: int = 1200, gap: float = 0.001) -> list[Fate]:
    return [model.process(bytes(size), i * gap).fate for i in range(n)]


def longest_run(fates: list[Fate], fate: Fate) -> int:
    best = current = 0
    for f in fates:
        current = current + 1 if f is fate else 0
        best = max(best, current)
    return best


def test_same_seed_same_decisions_other_seed_differs() -> None:
    imp = Impairment(loss=0.3, corrupt=0.2, duplicate=0.1, reorder=0.1, reorder_delay=0.01)
    one, two, other = LinkModel(imp, seed=5), LinkModel(imp, seed=5), LinkModel(imp, seed=6)
    got = [one.process(SHORT, i * 0.01) for i in range(500)]
    assert got == [two.process(SHORT, i * 0.01) for i in range(500)]
    assert got != [other.process(SHORT, i * 0.01) for i in range(500)]
    assert [d.index for d in got] == list(range(1, 501))


def test_loss_rate_and_burst_cap() -> None:
    model = LinkModel(Impairment(loss=0.9, max_burst=3), seed=1)
    fates = run(model, 4000)
    assert longest_run(fates, Fate.LOST) == 3  # the cap is reached, never passed
    # with the cap, at most 3 of every 4 are lost; the draw makes it close to that
    assert 0.6 < fates.count(Fate.LOST) / len(fates) <= 0.75
    uncapped = run(LinkModel(Impairment(loss=0.9), seed=1), 4000)
    assert longest_run(uncapped, Fate.LOST) > 10


def test_moderate_loss_rate_matches_the_probability() -> None:
    fates = run(LinkModel(Impairment(loss=0.02), seed=3), 20_000)
    assert 0.015 < fates.count(Fate.LOST) / len(fates) < 0.025


def test_runner_burst_allows_one_more_than_its_parameter() -> None:
    # the simulator forwards once its count *exceeds* --burst: burst=3 lets 4 through
    imp = runner_impairment(rate=30, burst=3, bandwidth_mbps=None, queue=None)
    assert imp.max_burst == 4 and imp.loss == 0.3 and imp.corrupt == 0.0
    corrupt = runner_impairment(rate=2, burst=3, corrupt=True)
    assert corrupt.corrupt == 0.02 and corrupt.loss == 0.0


def test_corruption_changes_one_byte_in_the_first_51() -> None:
    model = LinkModel(Impairment(corrupt=1.0), seed=2)
    positions = set()
    for i in range(3000):
        decision = model.process(SHORT, i * 0.001)
        assert decision.fate is Fate.CORRUPTED
        ((_, delivered),) = decision.deliveries
        diff = [k for k in range(len(SHORT)) if delivered[k] != SHORT[k]]
        assert diff == [decision.corrupted_at]
        positions.add(decision.corrupted_at)
    assert positions == set(range(CORRUPT_WINDOW + 1))  # uniform over 0..50: all hit


def test_corruption_of_a_short_datagram_stays_inside_it() -> None:
    model = LinkModel(Impairment(corrupt=1.0), seed=2)
    for i in range(200):
        decision = model.process(b"\x41\x42\x43", float(i))
        assert decision.corrupted_at is not None and decision.corrupted_at <= 2
        assert len(decision.deliveries[0][1]) == 3


def test_corruption_burst_cap_and_version_negotiation_spared() -> None:
    model = LinkModel(Impairment(corrupt=0.95, max_burst=2), seed=4)
    fates = run(model, 2000)
    assert longest_run(fates, Fate.CORRUPTED) == 2
    vn = LinkModel(Impairment(corrupt=1.0), seed=4)
    assert all(vn.process(VN, float(i)).fate is Fate.FORWARDED for i in range(50))


def test_drop_list_counts_from_one() -> None:
    model = LinkModel(Impairment(drops=frozenset({2, 3, 4, 5, 6, 7})))
    fates = run(model, 10)
    assert [i + 1 for i, f in enumerate(fates) if f is Fate.LISTED] == [2, 3, 4, 5, 6, 7]
    assert model.fates[Fate.LISTED] == 6 and model.fates[Fate.FORWARDED] == 4


def test_blackhole_periods_count_from_the_first_datagram() -> None:
    model = LinkModel(Impairment(blackholes=((5.0, 7.0), (12.0, 14.0))))
    fates = {t: model.process(SHORT, 100.0 + t).fate for t in (0, 4.9, 5.0, 6.9, 7.0, 12.5, 14)}
    dropped = sorted(t for t, f in fates.items() if f is Fate.BLACKHOLE)
    assert dropped == [5.0, 6.9, 12.5]
    assert model.epoch == 100.0


def test_path_mtu_drops_larger_datagrams_from_its_start() -> None:
    model = LinkModel(Impairment(mtu=1252, mtu_from=2.0))
    at = {(t, n): model.process(bytes(n), 10.0 + t).fate for t, n in ((0, 1452), (1.9, 1400))}
    at |= {(t, n): model.process(bytes(n), 10.0 + t).fate for t, n in ((2.0, 1253), (3, 1252))}
    assert at == {
        (0, 1452): Fate.FORWARDED,  # before the path MTU drops
        (1.9, 1400): Fate.FORWARDED,
        (2.0, 1253): Fate.TOO_BIG,
        (3, 1252): Fate.FORWARDED,
    }
    assert Fate.TOO_BIG.dropped and model.fates[Fate.TOO_BIG] == 1


def test_delay_duplication_and_reordering() -> None:
    plain = LinkModel(Impairment(delay=0.015)).process(SHORT, 1.0)
    assert plain.deliveries == ((1.015, SHORT),)
    dup = LinkModel(Impairment(delay=0.01, duplicate=1.0)).process(SHORT, 2.0)
    assert dup.deliveries == ((2.01, SHORT), (2.01, SHORT))
    # a held-back datagram is overtaken by the next one
    model = LinkModel(Impairment(delay=0.01, reorder=0.5, reorder_delay=0.05), seed=9)
    times = [model.process(SHORT, i * 0.001).deliveries[0][0] for i in range(200)]
    assert any(later < earlier for earlier, later in itertools.pairwise(times))
    assert all(t >= i * 0.001 + 0.01 for i, t in enumerate(times))


def test_bandwidth_serialises_and_the_queue_tail_drops() -> None:
    # 1200 bytes at 9.6 Mbit/s take 1 ms on the wire
    model = LinkModel(Impairment(bandwidth=9.6e6, queue=2))
    decisions = [model.process(bytes(1200), 0.0) for _ in range(6)]
    fates = [d.fate for d in decisions]
    # one on the link, two waiting, the rest dropped
    assert fates == [Fate.FORWARDED] * 3 + [Fate.QUEUE] * 3
    leave = [d.deliveries[0][0] for d in decisions[:3]]
    assert leave == pytest.approx([0.001, 0.002, 0.003])
    # once the link drained, a datagram gets through again
    assert model.process(bytes(1200), 0.0035).deliveries[0][0] == pytest.approx(0.0045)


def test_rebinding_schedule() -> None:
    assert Rebinding(1.0, 5.0).times(12.0) == [1.0, 6.0, 11.0]
    assert Rebinding(2.0).times(100.0) == [2.0]
    assert Rebinding(2.0).times(1.0) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15ms", 0.015), ("2s", 2.0), ("750ms", 0.75), ("0.5", 0.5), ("10us", 1e-5), ("1min", 60)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": 1.5},
        {"corrupt": -0.1},
        {"delay": -1.0},
        {"max_burst": 0},
        {"bandwidth": 0.0},
        {"queue": -1},
        {"drops": frozenset({0})},
        {"blackholes": ((3.0, 2.0),)},
        {"mtu": 0},
    ],
)
def test_invalid_impairments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Impairment(**kwargs)  # type: ignore[arg-type]


def test_runner_scenarios() -> None:
    # the networks of testcases_quic.py, in the simulator's own words
    amp = SCENARIOS["amplificationlimit"]
    assert amp.to_server.drops == frozenset(range(2, 8)) and not amp.to_client.drops
    assert SCENARIOS["longrtt"].to_server.delay == 0.75
    hole = SCENARIOS["blackhole"].to_server
    assert hole.blackholes[0] == (5.0, 7.0)
    assert SCENARIOS["handshakeloss"].to_client.loss == 0.3
    assert SCENARIOS["transfercorruption"].to_server.corrupt == 0.02
    assert SCENARIOS["rebind-addr"].rebinding == Rebinding(1.0, 5.0, address=True)
    for scenario in SCENARIOS.values():
        assert scenario.to_server.bandwidth == 10e6 and scenario.to_server.queue == 25
        assert scenario.description.split()[0] in (
            "simple-p2p",
            "droplist",
            "blackhole",
            "drop-rate",
            "corrupt-rate",
            "rebind",
        )
        flat = scenario.scaled(bandwidth=False)
        assert flat.to_server.bandwidth is None and flat.to_client.queue is None
        assert flat.to_server.delay == scenario.to_server.delay


def test_state_is_constant_size_per_datagram() -> None:
    # a long run keeps no per-datagram state (the queue holds only datagrams in flight)
    def held(n: int) -> int:
        model = LinkModel(Impairment(bandwidth=1e9, queue=25, loss=0.1), seed=1)
        for i in range(n):
            model.process(bytes(1200), i * 0.001)
        return len(model._departures)

    assert held(1000) == held(4000) <= 2
