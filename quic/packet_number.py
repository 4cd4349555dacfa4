"""Packet number truncation and recovery (RFC 9000 §17.1, Appendix A.2 and A.3).

Theory of operation
-------------------
Packet numbers are 62-bit integers (RFC 9000 §12.3) but travel on the wire as their
1 to 4 least significant bytes. The sender picks the shortest encoding whose range is
at least twice the number of packet numbers that could still be outstanding, counted
from the largest packet number the peer has acknowledged (§17.1, pseudocode in
Appendix A.2). The receiver, once header protection is removed, rebuilds the full
number as the value closest to the next expected packet number, that is the largest
packet number successfully processed so far plus one (§17.1, Appendix A.3).

Both functions are pure integer arithmetic. :func:`decode_packet_number` is fed with
values taken from the network; it accepts any truncated value that fits in the given
width and never raises for them.
"""

from __future__ import annotations

__all__ = [
    "MAX_PACKET_NUMBER",
    "decode_packet_number",
    "encode_packet_number",
    "packet_number_length",
]

#: Largest packet number (RFC 9000 §12.3: packet numbers are in 0..2^62-1).
MAX_PACKET_NUMBER = (1 << 62) - 1

# Outstanding-range thresholds for each encoded length: n bytes are enough when
# twice the range fits in 8n bits, i.e. range <= 2^(8n - 1) (RFC 9000 Appendix A.2).
_RANGE_1 = 1 << 7
_RANGE_2 = 1 << 15
_RANGE_3 = 1 << 23
_RANGE_4 = 1 << 31


def packet_number_length(full_pn: int, largest_acked: int | None) -> int:
    """Return the number of bytes (1-4) used to encode ``full_pn`` (RFC 9000 §17.1).

    ``largest_acked`` is the largest packet number acknowledged by the peer in this
    packet number space, or ``None`` when nothing has been acknowledged yet, in which
    case the range is counted from zero (RFC 9000 Appendix A.2).

    Raises :class:`ValueError` for a packet number that is not above
    ``largest_acked`` or whose outstanding range needs more than 32 bits; both are
    bugs in the sender, not network input.
    """
    if largest_acked is None:
        num_unacked = full_pn + 1
    else:
        num_unacked = full_pn - largest_acked
    if num_unacked <= 0 or not 0 <= full_pn <= MAX_PACKET_NUMBER:
        raise ValueError(f"packet number {full_pn} not above largest acked {largest_acked}")
    # RFC 9000 Appendix A.2: min_bits = log2(num_unacked) + 1, bytes = ceil(min_bits / 8)
    if num_unacked <= _RANGE_1:
        return 1
    if num_unacked <= _RANGE_2:
        return 2
    if num_unacked <= _RANGE_3:
        return 3
    if num_unacked <= _RANGE_4:
        return 4
    raise ValueError(f"{num_unacked} unacknowledged packet numbers cannot be encoded")


def encode_packet_number(full_pn: int, largest_acked: int | None) -> tuple[int, int]:
    """Return ``(truncated_pn, length_in_bytes)`` for ``full_pn`` (RFC 9000 Appendix A.2)."""
    length = packet_number_length(full_pn, largest_acked)
    return full_pn & ((1 << (8 * length)) - 1), length


def decode_packet_number(truncated_pn: int, pn_nbits: int, largest_pn: int) -> int:
    """Recover a full packet number (RFC 9000 Appendix A.3).

    ``truncated_pn`` is the value of the Packet Number field, ``pn_nbits`` its width
    in bits (8, 16, 24 or 32) and ``largest_pn`` the largest packet number
    successfully processed in this packet number space (``-1`` when none has been).
    """
    expected_pn = largest_pn + 1
    pn_win = 1 << pn_nbits
    pn_hwin = pn_win >> 1
    pn_mask = pn_win - 1
    # The result is the candidate closest to expected_pn: it lies in
    # (expected_pn - pn_hwin, expected_pn + pn_hwin], staying within 0..2^62-1.
    candidate_pn = (expected_pn & ~pn_mask) | truncated_pn
    if candidate_pn <= expected_pn - pn_hwin and candidate_pn < (1 << 62) - pn_win:
        return candidate_pn + pn_win
    if candidate_pn > expected_pn + pn_hwin and candidate_pn >= pn_win:
        return candidate_pn - pn_win
    return candidate_pn
