"""The conformance probe: runs every check against one URL; ``python -m pywebtransport probe``.

Theory of operation
-------------------
:func:`run_probe` first opens one connection to learn what the server offers: the QUIC
handshake (ALPN ``h3``), its SETTINGS as sent and its transport parameters; the
SETTINGS checks (:mod:`~pywebtransport.probe.checks_settings`) judge them. Then every
other check runs in turn, each on its own connection(s), in :data:`CHECK_ORDER`:
draft negotiation, CONNECT answers, echo, GREASE, malformed input, flow control,
close, session limits (:mod:`~pywebtransport.probe.checks_session`,
:mod:`~pywebtransport.probe.checks_input`).

Every check is bounded: it gets :data:`CHECK_BUDGET` times the per-check timeout in
all (its connection, its session, its waits); beyond that it is a ``fail`` with
"timed out", and the run goes on. Nothing a check raises stops the run: a connection
failure or an unexpected exception is that check's ``fail`` with the reason. If the
first connection cannot be made at all, the report holds the failed ``quic.handshake``
alone and the exit status is :data:`EXIT_NO_CONNECTION`.

The command line (:func:`add_probe_parser`, :func:`run_probe_command`) prints the
table (or the JSON document with ``--json``) and exits 0 when no check failed, 1 when
one did, 2 on bad arguments, 3 without a connection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable

from pywebtransport.cliopts import add_trust_options, parse_trust
from pywebtransport.config import DEFAULT_DRAFTS, ConfigurationError
from pywebtransport.probe import checks_input as ci
from pywebtransport.probe import checks_session as cs
from pywebtransport.probe.checks_settings import (
    TransportFacts,
    offered_drafts,
    settings_checks,
    settings_map,
)
from pywebtransport.probe.context import ProbeContext, ProbeOptions, describe_close
from pywebtransport.probe.report import CheckResult, ProbeReport, failed, passed
from quic.aio import ConnectionClosed

__all__ = [
    "CHECK_BUDGET",
    "EXIT_NO_CONNECTION",
    "EXIT_USAGE",
    "add_probe_parser",
    "run_probe",
    "run_probe_command",
]

logger = logging.getLogger("pywebtransport.probe")

#: each check may take this many times the per-check timeout, all waits included
CHECK_BUDGET = 4
EXIT_USAGE = 2
EXIT_NO_CONNECTION = 3

Check = Callable[[ProbeContext], Awaitable[CheckResult | list[CheckResult]]]


def _draft_check(draft: int) -> Check:
    async def check(ctx: ProbeContext) -> CheckResult:
        return await cs.check_draft(ctx, draft)

    return check


#: (check id for a failure of the whole check, section, the check), in running order
CHECK_ORDER: list[tuple[str, str, Check]] = [
    *((f"wt.draft-{d:02d}", "draft-16 §7.1", _draft_check(d)) for d in (16, 13, 7, 2)),
    ("connect.accept", "draft-16 §3.2", cs.check_connect_accept),
    ("connect.unknown-path", "draft-16 §3.2", cs.check_unknown_path),
    ("connect.no-protocol", "RFC 9114 §4.4, §4.1.2", cs.check_no_protocol),
    ("connect.bad-protocol", "RFC 9220 §3, draft-16 §3.2", cs.check_bad_protocol),
    ("echo", "draft-16 §4", cs.check_echo),
    ("grease", "RFC 9114 §7.2.8, §6.2.3, §9; RFC 9297 §3.2", ci.check_grease),
    ("malformed.frame", "RFC 9114 §7.1", ci.check_malformed_frame),
    ("malformed.h2-frame", "RFC 9114 §7.2.8", ci.check_h2_frame),
    ("malformed.second-settings", "RFC 9114 §7.2.4", ci.check_second_settings),
    ("malformed.capsule", "RFC 9297 §3.3, RFC 9114 §4.1.2", ci.check_malformed_capsule),
    ("flow.stream", "RFC 9000 §4.1", cs.check_flow_stream),
    ("flow.wt", "draft-16 §5.3, §5.4", cs.check_flow_wt),
    ("close.session", "draft-16 §6", cs.check_close),
    ("sessions.limit", "draft-16 §5.2", cs.check_session_limit),
    ("close.goaway-drain", "RFC 9114 §5.2, draft-16 §4.7", cs.check_goaway_drain),
]


async def _guarded(ctx: ProbeContext, check: str, section: str, run: Check) -> list[CheckResult]:
    budget = CHECK_BUDGET * ctx.timeout
    try:
        async with asyncio.timeout(budget):
            result = await run(ctx)
    except TimeoutError:
        return [failed(check, section, f"timed out after {budget:g} s")]
    except ConnectionClosed as exc:
        return [failed(check, section, f"connection failed: {exc}")]
    except OSError as exc:
        return [failed(check, section, f"network error: {exc}")]
    except Exception as exc:  # a bug of ours or an unforeseen answer: this check fails
        logger.debug("probe check %s raised", check, exc_info=exc)
        return [failed(check, section, f"probe error: {type(exc).__name__}: {exc}")]
    return result if isinstance(result, list) else [result]


async def _discover(ctx: ProbeContext, report: ProbeReport) -> bool:
    """The first connection: handshake, SETTINGS, transport parameters."""
    section = "RFC 9114 §3.1"
    try:
        async with asyncio.timeout(CHECK_BUDGET * ctx.timeout):
            async with ctx.connect("wt") as conn:
                await ctx.wait_settings(conn)
                sniffer = conn.sniffer
                params = conn.quic.peer_params
                facts = TransportFacts(
                    params.max_datagram_frame_size if params is not None else 0,
                    conn.quic.peer_accepts_reset_stream_at,
                )
                closed = describe_close(conn) if conn.closed else ""
    except TimeoutError:
        report.add(failed("quic.handshake", section, f"no connection within {ctx.timeout:g} s"))
        return False
    except (ConnectionClosed, OSError) as exc:
        report.add(failed("quic.handshake", section, f"cannot connect: {exc}"))
        return False
    report.add(passed("quic.handshake", section, "QUIC handshake with ALPN h3"))
    pairs = sniffer.pairs
    error = sniffer.error or (closed or "no SETTINGS within the timeout")
    report.extend(settings_checks(pairs, error, facts))
    if pairs is not None:
        ctx.settings = settings_map(pairs)
        ctx.offered = offered_drafts(ctx.settings)
        report.info["settings"] = [[f"0x{s:x}", v] for s, v in pairs]
    report.info["drafts_offered"] = [f"draft-{d:02d}" for d in ctx.offered]
    report.info["max_datagram_frame_size"] = facts.max_datagram_frame_size
    report.info["reset_stream_at"] = facts.reset_stream_at
    return True


async def run_probe(url: str, options: ProbeOptions | None = None) -> ProbeReport:
    """Run every check against ``url``; ValueError for a URL that is not https."""
    options = options or ProbeOptions()
    ctx = ProbeContext(url, options)
    report = ProbeReport(url)
    if not await _discover(ctx, report):
        report.info["connected"] = False
        return report
    report.info["connected"] = True
    for check, section, run in CHECK_ORDER:
        for result in await _guarded(ctx, check, section, run):
            report.add(result)
    return report


# ======================================================================================
# the command line
# ======================================================================================


def add_probe_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``probe`` subcommand of ``python -m pywebtransport``."""
    parser = commands.add_parser(
        "probe",
        help="check a WebTransport / HTTP/3 server against the specs",
        description="Connect to URL and run RFC-cited conformance checks (SETTINGS, drafts, "
        "extended CONNECT, echo, malformed input, GREASE, flow control, close, session "
        "limits). Exit 0 when no check failed, 1 when one did, 3 without a connection.",
    )
    parser.add_argument("url", help="https://host:port/path (an echo path enables more checks)")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    add_trust_options(parser, DEFAULT_DRAFTS)
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help=f"per check wait (%(default)s; a check takes at most {CHECK_BUDGET}x)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log to stderr"
    )


def _options(args: argparse.Namespace) -> ProbeOptions:
    trust = parse_trust(args)
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    options = ProbeOptions(
        ca_certs=trust.ca_certs,
        cert_hashes=trust.cert_hashes,
        insecure=trust.insecure,
        timeout=args.timeout,
    )
    if trust.drafts is not None:
        options.drafts = trust.drafts
    return options


async def run_probe_command(args: argparse.Namespace) -> int:
    """``python -m pywebtransport probe``: run, print, the exit status."""
    try:
        options = _options(args)
        ProbeContext(args.url, options)  # validates the URL and the drafts
    except (ValueError, ConfigurationError) as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_USAGE
    report = await run_probe(args.url, options)
    print(report.json_text() if args.json else report.table(), flush=True)
    if not report.info.get("connected"):
        return EXIT_NO_CONNECTION
    return report.exit_status()
