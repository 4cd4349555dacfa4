"""The WebTransport conformance probe: ``python -m pywebtransport probe URL``.

:func:`run_probe` connects to a WebTransport (or plain HTTP/3) server with our own
stack and runs RFC-cited checks; the :class:`ProbeReport` it returns holds one
pass / fail / n/a result per check with its spec section (docs/probe.md).
"""

from pywebtransport.probe.context import ProbeOptions
from pywebtransport.probe.report import CheckResult, Outcome, ProbeReport
from pywebtransport.probe.runner import add_probe_parser, run_probe, run_probe_command

__all__ = [
    "CheckResult",
    "Outcome",
    "ProbeOptions",
    "ProbeReport",
    "add_probe_parser",
    "run_probe",
    "run_probe_command",
]
