"""Endpoint for the QUIC interop runner (quic-interop-runner), ALPN ``hq-interop``.

Theory of operation
-------------------
``python -m quic.interop server|client ...`` is what the runner's container would run:

* ``server --testcase NAME --port P --certs DIR --www DIR``: serve the files of
  ``--www`` over HTTP/0.9 (:mod:`quic.interop.server`) until killed;
* ``client --testcase NAME --downloads DIR URL [URL ...]``: fetch the URLs into
  ``--downloads`` (:mod:`quic.interop.client`), exit 0 if all arrived, else 1.

Absent arguments come from the runner's environment (``ROLE``, ``TESTCASE``,
``REQUESTS``, ``SSLKEYLOGFILE``, ``QLOGDIR``, ``CERTS``, ``WWW``, ``DOWNLOADS``, ``PORT``)
and then its defaults (:mod:`quic.interop.options`). Supported test cases are those of
:data:`~quic.interop.options.TESTCASES` (``handshake``, ``transfer``, ``multiconnect``,
``chacha20``, ``keyupdate``, ``http3`` — ALPN ``h3``, the same files over HTTP/3 — and
the names of the cases that only change the network: ``longrtt``, ``multiplexing``,
``blackhole``, ``amplificationlimit``, the loss and corruption cases, ``ipv6``,
``goodput``, ``crosstraffic``); any other exits with status 127. HTTP/3 sits one layer above
QUIC, so this package never imports it: a case whose runners live in a higher layer is
found through the ``quic.interop.runners`` entry point of the installed distribution
(``http3`` → :data:`h3.interop.RUNNERS`, declared in ``pyproject.toml``).
The hq wire protocol is in :mod:`quic.interop.hq`. With ``QLOGDIR`` (``--qlog-dir``)
each connection writes a JSON-SEQ qlog file ``<ODCID hex>_<role>.sqlog`` there (:mod:`quic.qlog`).

For tests, :mod:`quic.interop.proxy` (with the Sans-I/O decisions of
:mod:`quic.interop.impair`) is the runner's network simulator on loopback, and
:mod:`quic.interop.trace` replays the runner's checks on what the proxy captured.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from quic.interop.client import run_client
from quic.interop.hq import ALPN
from quic.interop.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    TESTCASES,
    InteropCase,
    InteropOptions,
    parse_options,
)
from quic.interop.server import run_server

__all__ = [
    "ALPN",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "TESTCASES",
    "InteropCase",
    "InteropOptions",
    "main",
    "parse_options",
    "run_client",
    "run_server",
]

logger = logging.getLogger("quic.interop")

Runner = Callable[[InteropOptions, InteropCase], Coroutine[Any, Any, int]]

#: entry-point group of test cases implemented by a layer above QUIC
RUNNER_GROUP = "quic.interop.runners"


def plugin_runners(name: str) -> tuple[Runner, Runner] | None:
    """(server, client) runners registered for test case ``name`` by an installed
    package (entry point group :data:`RUNNER_GROUP`), or None."""
    for entry in entry_points(group=RUNNER_GROUP, name=name):
        runners = entry.load()
        server, client = runners
        return server, client
    return None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one endpoint; returns the process exit status."""
    options = parse_options(argv, environ)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    case = TESTCASES.get(options.testcase)
    if case is None:
        logger.error("test case %r is not supported", options.testcase)
        return EXIT_UNSUPPORTED
    runner: Runner
    if case.plugin:
        found = plugin_runners(case.name)
        if found is None:
            logger.error("test case %r needs a package that is not installed", case.name)
            return EXIT_UNSUPPORTED
        runner = found[0] if options.role == "server" else found[1]
    else:
        runner = run_server if options.role == "server" else run_client
    try:
        return asyncio.run(runner(options, case))
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception:
        logger.exception("%s failed", options.role)
        return EXIT_FAILURE
