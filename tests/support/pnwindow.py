"""Packet number window edges (RFC 9000 Appendix A.3) for the openers' decoding tests."""

from __future__ import annotations

from collections.abc import Iterator

#: the largest packet number there is, plus one (RFC 9000 §12.3: 0..2^62-1)
PN_LIMIT = 1 << 62


def window_edges(pn_length: int) -> Iterator[tuple[int, int]]:
    """``(largest, truncated)`` pairs for a Packet Number Length of ``pn_length`` bytes:
    the largest packet number received at each edge of the window (below 0, around half
    and a whole window, an arbitrary middle, near 2^62), and the truncated numbers at the
    edges of the window around the next expected number, in ascending order."""
    window = 1 << (8 * pn_length)
    half = window >> 1
    largests = [-1, 0, 1, half - 2, half - 1, half, window - 2, window - 1, window]
    largests += [0x12345678 + d for d in (-1, 0, 1)]
    largests += [PN_LIMIT - window - 1, PN_LIMIT - half - 1, PN_LIMIT - half, PN_LIMIT - 2]
    for largest in largests:
        expected = largest + 1
        truncs = {0, 1, half - 1, half, half + 1, window - 1}
        truncs |= {(expected + d) % window for d in (-half, 1 - half, 0, half - 1, half)}
        for truncated in sorted(truncs):
            yield largest, truncated
