"""Command line, environment and test cases of the WebTransport interop endpoint.

Theory of operation
-------------------
quic-interop-runner's WebTransport mode starts an endpoint with environment variables
(``ROLE``, ``TESTCASE``, ``REQUESTS``, ``PROTOCOLS``, ``SSLKEYLOGFILE``, ``QLOGDIR``) and
fixed paths (``/certs``, ``/www``, ``/downloads``, port 443). Locally the same endpoint
is driven by arguments. :func:`parse_options` merges the two: an argument wins, else its
environment variable, else the runner's default. The role is the first argument when it
is ``server`` or ``client``, else ``$ROLE``. ``PROTOCOLS`` falls back to
``PROTOCOLS_SERVER`` / ``PROTOCOLS_CLIENT`` (the names the runner's test cases use) and
``DOWNLOADS`` to ``DOWNLOAD_DIR`` (the name its protocol text uses).

:data:`TESTCASES` maps each supported case name to what the endpoint does
(:class:`RunnerCase`); any other name exits with :data:`EXIT_UNSUPPORTED` (127). The
runner hands each side the name that concerns it: for ``transfer-<kind>-receive`` the
client gets that name and the server gets ``transfer`` (answer every request); for
``transfer-<kind>-send`` the server gets it and the client gets ``transfer``. Both
sides accept every name, so either can be run by hand with the case's full name.

:class:`RunnerLimits` bounds what a peer can make the endpoint hold (listed in
``docs/limits.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "TESTCASES",
    "RunnerCase",
    "RunnerLimits",
    "RunnerOptions",
    "build_parser",
    "parse_options",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_UNSUPPORTED = 127  # the runner's "test case not supported"

ROLES = ("server", "client")
DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 120.0  # seconds for a whole client run, and for a server's requests

Transport = Literal["unidirectional", "bidirectional", "datagram"]


@dataclass(frozen=True, slots=True)
class RunnerCase:
    """What one test case asks of the endpoint.

    ``transport`` is how files are requested, ``requester`` which role requests them
    (the other only answers); ``None``: no transfer is requested (``handshake``,
    ``transfer``). Every endpoint answers every request of its peer in every case.
    """

    name: str
    description: str
    transport: Transport | None = None
    requester: Literal["server", "client"] | None = None


def _transfer_cases() -> list[RunnerCase]:
    kinds: tuple[tuple[Transport, str], ...] = (
        ("unidirectional", "unidirectional streams"),
        ("bidirectional", "bidirectional streams"),
        ("datagram", "datagrams"),
    )
    directions: tuple[tuple[str, Literal["server", "client"], str], ...] = (
        ("receive", "client", "server sends to client"),
        ("send", "server", "client sends to server"),
    )
    return [
        RunnerCase(f"transfer-{kind}-{direction}", f"{who} over {what}", kind, requester)
        for kind, what in kinds
        for direction, requester, who in directions
    ]


#: every supported test case, by the name the runner passes in ``TESTCASE``
TESTCASES: dict[str, RunnerCase] = {
    case.name: case
    for case in (
        RunnerCase(
            "handshake",
            "a session per endpoint, WT-Protocol negotiated; both write negotiated_protocol.txt",
        ),
        RunnerCase("transfer", "answer the peer's requests (streams and datagrams)"),
        *_transfer_cases(),
    )
}


@dataclass(frozen=True, slots=True)
class RunnerLimits:
    """What a peer can make this endpoint hold (``docs/limits.md``)."""

    #: bytes of a GET request kept while reading it (a stream up to FIN); more: the
    #: request is refused (STOP_SENDING / RESET_STREAM with BAD_REQUEST) — the runner's
    #: requests are ``GET <slug>``
    max_request_size: int = 1100
    #: bytes of a ``PUSH <name>\\n`` line kept while looking for its newline; more: the
    #: stream is refused with STOP_SENDING (BAD_REQUEST)
    max_push_header: int = 1100
    #: datagram GETs in flight at once (the requester's window); the rest wait
    datagram_window: int = 32
    #: seconds without an answer before the datagram GETs in flight are sent again
    #: (datagrams may be lost, RFC 9221 §5); doubled after each silent round up to 2 s
    datagram_retry: float = 0.25
    #: requests of the peer answered at once per session; more wait for a slot (the
    #: stream limits of draft-16 §5.3 bound the streams themselves)
    max_concurrent_answers: int = 64


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Everything the endpoint needs, after merging arguments and environment."""

    role: str
    testcase: str
    host: str = "::"
    port: int = DEFAULT_PORT
    certs: Path = Path("/certs")
    www: Path = Path("/www")
    downloads: Path = Path("/downloads")
    requests: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    keylog_file: str | None = None
    qlog_dir: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    insecure: bool = False
    verbose: bool = False
    limits: RunnerLimits = field(default_factory=RunnerLimits)


# option dest → (environment variables, first found wins; runner default)
_ENVIRONMENT: dict[str, tuple[tuple[str, ...], str | None]] = {
    "testcase": (("TESTCASE",), None),
    "port": (("PORT",), str(DEFAULT_PORT)),
    "certs": (("CERTS",), "/certs"),
    "www": (("WWW",), "/www"),
    "downloads": (("DOWNLOADS", "DOWNLOAD_DIR"), "/downloads"),
    "keylog_file": (("SSLKEYLOGFILE",), None),
    "qlog_dir": (("QLOGDIR",), None),
}


def _words(value: str) -> tuple[str, ...]:
    """A space-separated list; quotes a shell left around it are dropped."""
    return tuple(w for w in value.strip().strip("\"'").split() if w)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--testcase",
        help=f"$TESTCASE; supported: {', '.join(TESTCASES)} (others exit with code 127)",
    )
    parser.add_argument(
        "--protocols", help="$PROTOCOLS: space-separated application protocols, preferred first"
    )
    parser.add_argument("--certs", help="$CERTS, default /certs (cert.pem, priv.key, ca.pem)")
    parser.add_argument("--www", help="$WWW, default /www: files served, <www>/<endpoint>/<name>")
    parser.add_argument(
        "--downloads", help="$DOWNLOADS, default /downloads: files saved, negotiated_protocol.txt"
    )
    parser.add_argument("--keylog-file", help="$SSLKEYLOGFILE: write TLS secrets (NSS key log)")
    parser.add_argument(
        "--qlog-dir", help="$QLOGDIR: one <ODCID hex>_<role>.sqlog qlog file per connection"
    )
    parser.add_argument(
        "--timeout", type=float, help=f"seconds before giving up (default {DEFAULT_TIMEOUT:g})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pywebtransport.interop",
        description=(
            "quic-interop-runner WebTransport endpoint. Arguments override the runner's "
            "environment variables, which override its defaults."
        ),
        epilog="Without a role argument the role is taken from $ROLE.",
    )
    roles = parser.add_subparsers(dest="role", metavar="{server,client}")
    server = roles.add_parser("server", help="accept sessions until killed")
    _common(server)
    server.add_argument("--host", default="::", help="address to bind (default :: dual-stack)")
    server.add_argument("--port", help=f"$PORT, default {DEFAULT_PORT} (0: any free port)")
    server.add_argument(
        "--requests", help="$REQUESTS: space-separated <endpoint>/<file> to request of clients"
    )
    client = roles.add_parser("client", help="open sessions to the URLs' endpoints")
    _common(client)
    client.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server certificate when <certs>/ca.pem is absent",
    )
    client.add_argument("urls", nargs="*", metavar="URL", help="default: $REQUESTS")
    return parser


def _value(ns: argparse.Namespace, env: Mapping[str, str], dest: str) -> str | None:
    given = getattr(ns, dest, None)
    if given is not None:
        return str(given)
    variables, default = _ENVIRONMENT[dest]
    for variable in variables:
        if env.get(variable):
            return env[variable]
    return default


def parse_options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> RunnerOptions:
    """Merge ``argv`` (default ``sys.argv[1:]``) with ``environ`` (default ``os.environ``).

    Exits with status 2 (argparse) on a usage error.
    """
    env = os.environ if environ is None else environ
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args or args[0] not in (*ROLES, "-h", "--help"):
        role = env.get("ROLE", "")
        if role not in ROLES:
            parser.error("give the role (server or client) as first argument or in $ROLE")
        args.insert(0, role)
    ns = parser.parse_args(args)
    testcase = _value(ns, env, "testcase")
    if not testcase:
        parser.error("give the test case with --testcase or $TESTCASE")
    try:
        port = int(_value(ns, env, "port") or DEFAULT_PORT)
    except ValueError:
        parser.error("invalid port")
    if not 0 <= port <= 0xFFFF:
        parser.error(f"invalid port {port}")
    if ns.role == "client":
        requests = tuple(ns.urls) or _words(env.get("REQUESTS", ""))
    else:
        requests = _words(ns.requests if ns.requests is not None else env.get("REQUESTS", ""))
    protocols_env = env.get("PROTOCOLS") or env.get(f"PROTOCOLS_{ns.role.upper()}", "")
    protocols = _words(ns.protocols if ns.protocols is not None else protocols_env)
    timeout = ns.timeout if ns.timeout is not None else DEFAULT_TIMEOUT
    if timeout <= 0:
        parser.error("the timeout must be positive")
    return RunnerOptions(
        role=ns.role,
        testcase=testcase,
        host=getattr(ns, "host", "::"),
        port=port,
        certs=Path(_value(ns, env, "certs") or "/certs"),
        www=Path(_value(ns, env, "www") or "/www"),
        downloads=Path(_value(ns, env, "downloads") or "/downloads"),
        requests=requests,
        protocols=protocols,
        keylog_file=_value(ns, env, "keylog_file"),
        qlog_dir=_value(ns, env, "qlog_dir"),
        timeout=timeout,
        insecure=getattr(ns, "insecure", False),
        verbose=ns.verbose,
    )
