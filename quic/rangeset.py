"""A set of integers stored as sorted, merged, half-open ranges.

Theory of operation
-------------------
:class:`RangeSet` keeps two parallel Python lists, ``_starts`` and ``_stops``, such that
range ``k`` is ``[_starts[k], _stops[k])``. The ranges are sorted, non-empty and never
touch or overlap: adding ``[5, 7)`` to ``{[0, 5)}`` yields ``{[0, 7)}``. Keeping the
bounds in two flat integer lists lets :mod:`bisect` work on plain ints (no key
function, no tuple comparisons).

The common cases are cheap:

* appending at or past the end (received packet numbers, in-order stream data) touches
  only the last range: O(1) amortised;
* any other insertion or removal is two bisections plus one slice assignment, i.e.
  O(log n) comparisons and an O(n) ``memmove`` in C.

Users: received packet numbers (ACK generation, RFC 9000 §13.2), stream reassembly
(RFC 9000 §2.2) and acknowledged stream ranges. :meth:`RangeSet.ack_ranges_descending`
yields exactly what an ACK frame encodes (RFC 9000 §19.3.1): inclusive
``(smallest, largest)`` pairs, largest first.

Empty ranges (``stop <= start``) are ignored by :meth:`add` and :meth:`subtract`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["RangeSet"]


class RangeSet:
    """Sorted, non-overlapping, merged half-open integer ranges ``[start, stop)``."""

    __slots__ = ("_starts", "_stops")

    def __init__(self, ranges: Iterable[range | tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._stops: list[int] = []
        for item in ranges:
            if isinstance(item, range):
                self.add(item.start, item.stop)
            else:
                self.add(item[0], item[1])

    # -- mutation ---------------------------------------------------------------------

    def extend_last(self, value: int) -> bool:
        """Add ``value`` if it is the integer just past the last range (that range
        grows by one); False, and nothing changes, otherwise. The in-order case of
        :meth:`add`, for a receiver's packet numbers."""
        stops = self._stops
        if stops and stops[-1] == value:
            stops[-1] = value + 1
            return True
        return False

    def add(self, start: int, stop: int | None = None) -> None:
        """Add ``[start, stop)``; ``stop=None`` adds the single integer ``start``."""
        if stop is None:
            stop = start + 1
        elif stop <= start:
            return
        starts = self._starts
        stops = self._stops
        # Fast paths: strictly past the end, or merging into the last range.
        if not stops or start > stops[-1]:
            starts.append(start)
            stops.append(stop)
            return
        if start >= starts[-1]:
            if stop > stops[-1]:
                stops[-1] = stop
            return
        # General case: ranges i..j-1 touch or overlap [start, stop).
        i = bisect_left(stops, start)  # first range with stop >= start
        j = bisect_right(starts, stop, i)  # first range with start > stop
        if i == j:
            starts.insert(i, start)
            stops.insert(i, stop)
            return
        if starts[i] < start:
            start = starts[i]
        if stops[j - 1] > stop:
            stop = stops[j - 1]
        starts[i:j] = (start,)
        stops[i:j] = (stop,)

    def subtract(self, start: int, stop: int) -> None:
        """Remove every integer of ``[start, stop)``."""
        if stop <= start:
            return
        starts = self._starts
        stops = self._stops
        i = bisect_right(stops, start)  # first range with stop > start
        j = bisect_left(starts, stop, i)  # first range with start >= stop
        if i >= j:
            return
        new_starts: list[int] = []
        new_stops: list[int] = []
        if starts[i] < start:
            new_starts.append(starts[i])
            new_stops.append(start)
        if stops[j - 1] > stop:
            new_starts.append(stop)
            new_stops.append(stops[j - 1])
        starts[i:j] = new_starts
        stops[i:j] = new_stops

    def clear_below(self, value: int) -> None:
        """Remove every integer smaller than ``value``."""
        stops = self._stops
        if not stops or self._starts[0] >= value:
            return
        i = bisect_right(stops, value)  # ranges entirely below value
        if i:
            del self._starts[:i]
            del stops[:i]
        if self._starts and self._starts[0] < value:
            self._starts[0] = value

    def shift(self) -> range:
        """Remove and return the first (lowest) range; IndexError when empty."""
        return range(self._starts.pop(0), self._stops.pop(0))

    def clear(self) -> None:
        """Remove everything."""
        self._starts.clear()
        self._stops.clear()

    def copy(self) -> RangeSet:
        """Return an independent copy."""
        other = RangeSet()
        other._starts = self._starts.copy()
        other._stops = self._stops.copy()
        return other

    # -- queries ----------------------------------------------------------------------

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._stops[i]

    def intersects(self, start: int, stop: int) -> bool:
        """True if any integer of ``[start, stop)`` is in the set."""
        if stop <= start:
            return False
        i = bisect_right(self._stops, start)  # first range with stop > start
        return i < len(self._starts) and self._starts[i] < stop

    def covers(self, start: int, stop: int) -> bool:
        """True if every integer of ``[start, stop)`` is in the set (vacuous if empty)."""
        if stop <= start:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._stops[i] >= stop

    def first_missing_from(self, value: int) -> int:
        """The smallest integer ``>= value`` not in the set (O(log n))."""
        i = bisect_right(self._starts, value) - 1
        if i >= 0 and value < self._stops[i]:
            return self._stops[i]
        return value

    def bounds(self) -> range:
        """``range(smallest, largest + 1)`` spanning the whole set; IndexError when empty."""
        return range(self._starts[0], self._stops[-1])

    def first(self) -> range:
        """The lowest range; IndexError when empty."""
        return range(self._starts[0], self._stops[0])

    def last(self) -> range:
        """The highest range; IndexError when empty."""
        return range(self._starts[-1], self._stops[-1])

    def total(self) -> int:
        """Number of integers in the set."""
        return sum(self._stops) - sum(self._starts)

    def ack_ranges_descending(self, limit: int) -> tuple[tuple[int, int], ...]:
        """At most ``limit`` inclusive ``(smallest, largest)`` pairs, largest first.

        This is the content of an ACK frame (RFC 9000 §19.3.1): the first pair holds the
        Largest Acknowledged; when there are more than ``limit`` ranges the oldest are
        omitted (RFC 9000 §13.2.4).
        """
        n = len(self._starts)
        if n == 1 and limit > 0:  # one range (in-order arrival): no slices, no zip
            return ((self._starts[0], self._stops[0] - 1),)
        lo = n - limit if limit < n else 0
        if lo >= n:
            return ()
        starts = self._starts[lo:]
        stops = self._stops[lo:]
        return tuple(zip(reversed(starts), [s - 1 for s in reversed(stops)], strict=True))

    def __iter__(self) -> Iterator[range]:
        return map(range, self._starts, self._stops)

    def __getitem__(self, index: int) -> range:
        return range(self._starts[index], self._stops[index])

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._stops == other._stops

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"[{a}, {b})" for a, b in zip(self._starts, self._stops, strict=True))
        return f"RangeSet({{{inner}}})"
