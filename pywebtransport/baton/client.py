"""Devious Baton: the client, as a Python API and as ``python -m pywebtransport baton``.

Theory of operation
-------------------
:func:`run_baton_client` opens one session to the URL with the query parameters of
draft-frindell-webtrans-devious-baton-00 §3.1 added (``version``, ``baton``, ``count``;
only those given, and none that the URL already carries), plays the client's side
(:class:`~pywebtransport.baton.player.BatonPlayer`) until the game ends, and returns a
:class:`BatonResult`. It never raises for what the server or the network does: a
rejection (its HTTP status), a failed connection, or a session error of either side
is a result whose ``ok`` is False. A URL without a path gets the RECOMMENDED one
(``/webtransport/devious-baton``, §3).

The command line (:func:`add_baton_parser`, :func:`run_baton_command`) prints one
summary line (``BATON OK ...`` or ``BATON FAIL ...``) and exits 0 when the game
completed, 1 when it failed (a session error, a rejection, batons left) and 3 when no
session could be set up (connection, certificate, timeout).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from pywebtransport.baton.codec import (
    DEFAULT_PATH,
    BatonConfig,
    BatonGame,
    BatonParams,
    QueryError,
    parse_query,
    query_string,
)
from pywebtransport.baton.player import BatonPlayer
from pywebtransport.client import WebTransportClient
from pywebtransport.cliopts import add_trust_options, parse_trust
from pywebtransport.config import DEFAULT_DRAFTS, ClientConfig
from pywebtransport.exceptions import SessionRejected, WebTransportError

__all__ = [
    "EXIT_FAILED",
    "EXIT_NO_SESSION",
    "EXIT_OK",
    "BatonResult",
    "add_baton_parser",
    "baton_url",
    "run_baton_client",
    "run_baton_command",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_SESSION = 3


@dataclass(frozen=True, slots=True)
class BatonResult:
    """What a client game did."""

    ok: bool
    url: str
    count: int = 0
    completed: int = 0
    reset: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    draft: str = ""
    #: the session error code (ours or the server's), None: none
    error_code: int | None = None
    error: str = ""
    closed_by_peer: bool = False
    #: the HTTP status of a rejected session
    rejected_status: int | None = None
    #: no session was set up (connection, certificate, timeout)
    no_session: bool = False
    elapsed: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for humans and scripts."""
        head = "BATON OK" if self.ok else "BATON FAIL"
        parts = [
            head,
            f"url={self.url}",
            f"draft={self.draft or '-'}",
            f"count={self.count}",
            f"completed={self.completed}",
            f"reset={self.reset}",
            f"sent={self.messages_sent}",
            f"received={self.messages_received}",
            f"datagrams={self.datagrams_sent}/{self.datagrams_received}",
            f"elapsed={self.elapsed:.3f}s",
        ]
        if self.rejected_status is not None:
            parts.append(f"status={self.rejected_status}")
        if self.error:
            side = " (peer)" if self.closed_by_peer else ""
            parts.append(f"error={self.error}{side}")
        return " ".join(parts)


def baton_url(
    url: str,
    *,
    version: int | None = None,
    baton: int | None = None,
    count: int | None = None,
) -> str:
    """``url`` with the default path if it has none and the given parameters added
    (a parameter already in its query is left as it is)."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    present = {item.partition("=")[0] for item in parts.query.split("&") if item}
    extra = query_string(
        version=None if "version" in present else version,
        baton=None if "baton" in present else baton,
        count=None if "count" in present else count,
    )
    query = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def _local_params(url: str, max_count: int) -> BatonParams:
    """What the client plays with; a query the server must refuse plays defaults."""
    try:
        return parse_query(urlsplit(url).query, max(max_count, 1 << 32))
    except QueryError:
        return BatonParams()


async def run_baton_client(
    url: str,
    *,
    count: int | None = None,
    baton: int | None = None,
    version: int | None = None,
    config: ClientConfig | None = None,
    baton_config: BatonConfig | None = None,
) -> BatonResult:
    """Play a Devious Baton game against the server at ``url``; see the module doc."""
    baton_config = baton_config or BatonConfig()
    target = baton_url(url, version=version, baton=baton, count=count)
    params = _local_params(target, baton_config.max_count)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with WebTransportClient(config or ClientConfig()) as client:
        try:
            session = await client.connect(target)
        except SessionRejected as exc:
            return BatonResult(
                ok=False,
                url=target,
                count=params.count,
                rejected_status=exc.status_code,
                error=f"rejected with {exc.status_code}",
                elapsed=loop.time() - started,
            )
        except WebTransportError as exc:
            return BatonResult(
                ok=False,
                url=target,
                no_session=True,
                error=str(exc),
                elapsed=loop.time() - started,
            )
        game = BatonGame(is_client=True, count=params.count, initial=params.baton)
        outcome = await BatonPlayer(session, game, baton_config).play()
        return BatonResult(
            ok=outcome.ok,
            url=target,
            count=outcome.count,
            completed=outcome.completed,
            reset=outcome.reset,
            messages_sent=outcome.messages_sent,
            messages_received=outcome.messages_received,
            datagrams_sent=outcome.datagrams_sent,
            datagrams_received=outcome.datagrams_received,
            draft=session.draft,
            error_code=outcome.error_code,
            error=outcome.error,
            closed_by_peer=outcome.closed_by_peer,
            elapsed=loop.time() - started,
        )


# ======================================================================================
# the command line
# ======================================================================================


def add_baton_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``baton`` subcommand of ``python -m pywebtransport``."""
    parser = commands.add_parser(
        "baton",
        help="play Devious Baton against a server",
        description="Play the client side of Devious Baton "
        "(draft-frindell-webtrans-devious-baton) against URL; prints one summary line, "
        "exits 0 when the game completed, 1 when it failed, 3 without a session.",
    )
    parser.add_argument("url", help=f"https://host:port[/path] (default path {DEFAULT_PATH})")
    parser.add_argument("--count", type=int, help="batons in parallel (query `count`)")
    parser.add_argument("--baton", type=int, help="initial baton 1..255 (query `baton`)")
    parser.add_argument(
        "--protocol-version",
        type=int,
        dest="baton_version",
        help="Devious Baton version (query `version`)",
    )
    parser.add_argument("--padding", type=int, default=0, help="padding bytes per message we send")
    add_trust_options(parser, DEFAULT_DRAFTS)
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="connect timeout (%(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="BORED after this long without progress (%(default)s)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log to stderr"
    )


def _client_config(args: argparse.Namespace) -> ClientConfig:
    trust = parse_trust(args)
    return ClientConfig(
        server_certificate_hashes=trust.cert_hashes,
        ca_certs=trust.ca_certs,
        insecure=trust.insecure,
        drafts=trust.drafts or DEFAULT_DRAFTS,
        connect_timeout=args.timeout,
    )


async def run_baton_command(args: argparse.Namespace) -> int:
    """``python -m pywebtransport baton``: play, print the summary, the exit status."""
    try:
        config = _client_config(args)
        baton_config = BatonConfig(idle_timeout=args.idle_timeout, padding=args.padding)
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    result = await run_baton_client(
        args.url,
        count=args.count,
        baton=args.baton,
        version=args.baton_version,
        config=config,
        baton_config=baton_config,
    )
    print(result.summary(), flush=True)
    if result.ok:
        return EXIT_OK
    return EXIT_NO_SESSION if result.no_session else EXIT_FAILED
