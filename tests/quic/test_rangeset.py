"""RangeSet: merged half-open integer ranges (ACK generation, reassembly)."""

from __future__ import annotations

import pytest

from quic.rangeset import RangeSet


def ranges(rs: RangeSet) -> list[tuple[int, int]]:
    return [(r.start, r.stop) for r in rs]


def test_empty() -> None:
    rs = RangeSet()
    assert len(rs) == 0
    assert not rs
    assert 0 not in rs
    assert list(rs) == []
    assert rs.total() == 0
    assert rs.ack_ranges_descending(10) == ()
    with pytest.raises(IndexError):
        rs.bounds()
    with pytest.raises(IndexError):
        rs.first()
    with pytest.raises(IndexError):
        rs.last()
    with pytest.raises(IndexError):
        rs.shift()


def test_append_in_order_merges_into_one_range() -> None:
    rs = RangeSet()
    for pn in range(100):
        rs.add(pn)
    assert ranges(rs) == [(0, 100)]
    assert len(rs) == 1
    assert rs.total() == 100
    assert 99 in rs
    assert 100 not in rs


def test_add_single_and_span() -> None:
    rs = RangeSet()
    rs.add(5)
    rs.add(10, 12)
    assert ranges(rs) == [(5, 6), (10, 12)]
    assert 5 in rs and 6 not in rs and 11 in rs and 12 not in rs and 4 not in rs


def test_add_empty_range_is_noop() -> None:
    rs = RangeSet([(1, 3)])
    rs.add(7, 7)
    rs.add(9, 4)
    assert ranges(rs) == [(1, 3)]


def test_adjacent_ranges_merge() -> None:
    rs = RangeSet()
    rs.add(0, 5)
    rs.add(5, 10)
    assert ranges(rs) == [(0, 10)]
    rs.add(20, 30)
    rs.add(15, 20)
    assert ranges(rs) == [(0, 10), (15, 30)]
    rs.add(10, 15)
    assert ranges(rs) == [(0, 30)]


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        ([(0, 2), (4, 6), (8, 10)], [(0, 2), (4, 6), (8, 10)]),
        ([(8, 10), (4, 6), (0, 2)], [(0, 2), (4, 6), (8, 10)]),
        ([(0, 2), (4, 6), (8, 10), (1, 9)], [(0, 10)]),
        ([(0, 2), (4, 6), (8, 10), (3, 4)], [(0, 2), (3, 6), (8, 10)]),
        ([(0, 2), (4, 6), (8, 10), (2, 4)], [(0, 6), (8, 10)]),
        ([(0, 2), (4, 6), (8, 10), (-5, 0)], [(-5, 2), (4, 6), (8, 10)]),
        ([(0, 2), (4, 6), (8, 10), (-5, 100)], [(-5, 100)]),
        ([(0, 2), (4, 6), (8, 10), (5, 9)], [(0, 2), (4, 10)]),
        ([(10, 20), (12, 15)], [(10, 20)]),
        ([(10, 20), (12, 25)], [(10, 25)]),
        ([(10, 20), (30, 40), (11, 12)], [(10, 20), (30, 40)]),
    ],
)
def test_add_cases(adds: list[tuple[int, int]], expected: list[tuple[int, int]]) -> None:
    rs = RangeSet()
    for start, stop in adds:
        rs.add(start, stop)
    assert ranges(rs) == expected


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        ((0, 100), []),
        ((3, 4), [(0, 3), (4, 10), (20, 30)]),
        ((0, 10), [(20, 30)]),
        ((5, 25), [(0, 5), (25, 30)]),
        ((10, 20), [(0, 10), (20, 30)]),
        ((-10, 0), [(0, 10), (20, 30)]),
        ((30, 40), [(0, 10), (20, 30)]),
        ((9, 21), [(0, 9), (21, 30)]),
        ((29, 30), [(0, 10), (20, 29)]),
        ((7, 7), [(0, 10), (20, 30)]),
    ],
)
def test_subtract_cases(sub: tuple[int, int], expected: list[tuple[int, int]]) -> None:
    rs = RangeSet([(0, 10), (20, 30)])
    rs.subtract(*sub)
    assert ranges(rs) == expected


def test_bounds_first_last_shift() -> None:
    rs = RangeSet([range(3, 5), (8, 9), (12, 20)])
    assert rs.bounds() == range(3, 20)
    assert rs.first() == range(3, 5)
    assert rs.last() == range(12, 20)
    assert rs[1] == range(8, 9)
    assert rs.shift() == range(3, 5)
    assert ranges(rs) == [(8, 9), (12, 20)]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, [(5, 10), (20, 30)]),
        (5, [(5, 10), (20, 30)]),
        (7, [(7, 10), (20, 30)]),
        (10, [(20, 30)]),
        (15, [(20, 30)]),
        (29, [(29, 30)]),
        (30, []),
        (100, []),
    ],
)
def test_clear_below(n: int, expected: list[tuple[int, int]]) -> None:
    rs = RangeSet([(5, 10), (20, 30)])
    rs.clear_below(n)
    assert ranges(rs) == expected


def test_ack_ranges_descending() -> None:
    rs = RangeSet()
    for pn in (0, 1, 2, 5, 6, 9, 12, 13, 14):
        rs.add(pn)
    assert rs.ack_ranges_descending(10) == ((12, 14), (9, 9), (5, 6), (0, 2))
    assert rs.ack_ranges_descending(2) == ((12, 14), (9, 9))
    assert rs.ack_ranges_descending(1) == ((12, 14),)
    assert rs.ack_ranges_descending(0) == ()


def test_intersects_and_covers() -> None:
    rs = RangeSet([(0, 10), (20, 30)])
    assert rs.intersects(5, 6)
    assert rs.intersects(9, 21)
    assert not rs.intersects(10, 20)
    assert not rs.intersects(30, 40)
    assert not rs.intersects(5, 5)
    assert rs.covers(0, 10)
    assert rs.covers(21, 29)
    assert not rs.covers(5, 25)
    assert not rs.covers(-1, 3)
    assert rs.covers(15, 15)


def test_equality_copy_repr_clear() -> None:
    a = RangeSet([(1, 3), (5, 8)])
    b = a.copy()
    assert a == b
    b.add(3, 5)
    assert a != b
    assert ranges(a) == [(1, 3), (5, 8)]
    assert repr(a) == "RangeSet({[1, 3), [5, 8)})"
    assert a != [(1, 3), (5, 8)]
    a.clear()
    assert not a


def test_large_in_order_append_is_fast() -> None:
    rs = RangeSet()
    for pn in range(0, 400_000, 2):  # every other number: one range each, all appends
        rs.add(pn)
    assert len(rs) == 200_000
    assert 399_998 in rs and 399_999 not in rs
