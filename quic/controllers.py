"""Congestion controllers by name (``QuicConfiguration.congestion_control``).

:func:`create_controller` makes the controller a connection's loss recovery uses:
``"reno"`` (also ``"newreno"``): RFC 9002 §7 NewReno (:mod:`quic.congestion`);
``"cubic"``: RFC 9438 CUBIC (:mod:`quic.cc_cubic`); ``"bbr"``: BBR v1
(:mod:`quic.cc_bbr`). Every controller implements
:class:`~quic.congestion.CongestionController`.
"""

from __future__ import annotations

from quic.cc_bbr import Bbr
from quic.cc_cubic import Cubic
from quic.congestion import CongestionController, NewReno
from quic.rtt import RttEstimator

__all__ = ["CONTROLLER_NAMES", "create_controller"]

#: Accepted names ("newreno" is an alias of "reno").
CONTROLLER_NAMES = ("reno", "newreno", "cubic", "bbr")


def create_controller(
    name: str,
    max_datagram_size: int,
    rtt: RttEstimator | None = None,
    hystart: bool | None = None,
) -> CongestionController:
    """The controller called ``name`` (case-insensitive); ValueError if unknown.

    ``hystart``: use HyStart++ (RFC 9406) for the initial slow start of NewReno and
    CUBIC; None: each controller's default (CUBIC yes, RFC 9438 §4.10; NewReno no).
    BBR has its own startup and ignores it.
    """
    key = name.lower()
    if key in ("reno", "newreno"):
        return NewReno(max_datagram_size, hystart=bool(hystart))
    if key == "cubic":
        return Cubic(max_datagram_size, rtt, hystart=hystart is None or hystart)
    if key == "bbr":
        return Bbr(max_datagram_size)
    raise ValueError(f"unknown congestion control {name!r} (one of {CONTROLLER_NAMES})")
