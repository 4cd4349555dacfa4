"""Command line and environment of the interop endpoint, and its table of test cases.

Theory of operation
-------------------
The quic-interop-runner starts an endpoint with environment variables only (``ROLE``,
``TESTCASE``, ``REQUESTS``, ``SSLKEYLOGFILE``, ``QLOGDIR``) and fixed paths (``/certs``,
``/www``, ``/downloads``, port 443). Locally the same endpoint is driven by arguments.
:func:`parse_options` merges the two: an argument wins, else its environment variable,
else the runner's default. The role is the first argument when it is ``server`` or
``client``, else ``$ROLE``.

:data:`TESTCASES` says what each supported test case changes; a test case missing from
it makes the endpoint exit with :data:`EXIT_UNSUPPORTED` (127), as the runner expects.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from quic.interop.hq import ALPN, DEFAULT_PORT
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "ROLES",
    "TESTCASES",
    "InteropCase",
    "InteropOptions",
    "build_parser",
    "parse_options",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_UNSUPPORTED = 127  # the runner's "test case not supported"

ROLES = ("server", "client")
DEFAULT_TIMEOUT = 300.0  # client: whole run, seconds


@dataclass(frozen=True, slots=True)
class InteropCase:
    """What one runner test case asks of the endpoint.

    Most runner test cases differ only in the network between the endpoints; the
    runner then starts the endpoints with another case's name (its ``testname``:
    ``transfer`` for ``multiplexing``, ``blackhole``, ``transferloss``..., ``handshake``
    for ``longrtt``, ``multiconnect`` for ``handshakeloss``...). Those names are in the
    table too, with the behaviour of the case the runner would start, so that the
    endpoint can be run by hand with any case name.
    """

    name: str
    description: str = ""
    cipher_suites: tuple[CipherSuite, ...] | None = None  # None: the default offer
    connection_per_url: bool = False  # else all URLs of one server share a connection
    # client: start one 1-RTT key update early in the transfer (RFC 9001 §6.1)
    key_update: bool = False
    # implemented by a layer above QUIC (HTTP/3: h3.interop), found by entry point
    plugin: bool = False
    # the server's QuicConfiguration.retry (RFC 9000 §8.1.2); None: the default
    retry: Literal["never", "always", "auto"] | None = None
    # QUIC versions in order of preference (None: the default) and the client's first
    # one (None: the first of them); helper "conformance", case "v2"
    versions: tuple[int, ...] | None = None
    initial_version: int | None = None


#: Every supported test case. Other cases are appended to this table by the module that
#: implements them: ``TESTCASES[name] = InteropCase(name, ...)``.
TESTCASES: dict[str, InteropCase] = {
    case.name: case
    for case in (
        InteropCase("handshake", "one connection, one small file"),
        InteropCase("transfer", "one connection, all files on concurrent streams"),
        InteropCase(
            "multiconnect", "one connection per file, one after the other", connection_per_url=True
        ),
        InteropCase(
            "chacha20",
            "only TLS_CHACHA20_POLY1305_SHA256 is offered and accepted",
            cipher_suites=(CipherSuite.TLS_CHACHA20_POLY1305_SHA256,),
        ),
        InteropCase("http3", "the files over HTTP/3 (ALPN h3, h3.interop)", plugin=True),
        InteropCase(
            "keyupdate",
            "transfer; the client updates its 1-RTT keys once, early in the transfer",
            key_update=True,
        ),
        # the same endpoint behaviour as another case, over a different network
        InteropCase("longrtt", "handshake over a 1.5 s RTT (the ClientHello is retransmitted)"),
        InteropCase("multiplexing", "transfer of ~2000 small files; server stream limit <= 1000"),
        InteropCase("blackhole", "transfer across a network that is down 2 s of every 7"),
        InteropCase(
            "amplificationlimit",
            "transfer; server with a 9-certificate chain stays under 3x before validation",
        ),
        InteropCase("handshakeloss", "multiconnect under 30% loss", connection_per_url=True),
        InteropCase("transferloss", "transfer under 2% loss"),
        InteropCase(
            "handshakecorruption", "multiconnect under 30% corruption", connection_per_url=True
        ),
        InteropCase("transfercorruption", "transfer under 2% corruption"),
        InteropCase(
            "retry",
            "the server sends Retry (RFC 9000 §8.1.2); the client follows it",
            retry="always",
        ),
        InteropCase("ipv6", "transfer over IPv6 only"),
        InteropCase("goodput", "transfer of one 10 MB file, measured"),
        InteropCase("crosstraffic", "transfer of one 25 MB file next to a TCP flow, measured"),
        # helper "resumption": behaviour in quic.interop.resume
        InteropCase("resumption", "two connections; the second resumes with a session ticket"),
        InteropCase("zerortt", "two connections; the second sends its requests in 0-RTT"),
        # helper "paths": the client side of connectionmigration in quic.interop.migration
        InteropCase("rebind-port", "transfer while the NAT rebinds the client's port"),
        InteropCase("rebind-addr", "transfer while the NAT rebinds the client's address"),
        InteropCase(
            "connectionmigration",
            "transfer; the client migrates actively to a new socket and connection ID, "
            "or (older variant) to the server's --preferred-address",
        ),
        # RFC 9368 §2.3, RFC 9369 §4: the client starts on v1 offering v2, the server
        # prefers v2: the connection is upgraded without a round trip
        InteropCase(
            "v2",
            "transfer; the client starts on v1 offering v2 and the server upgrades to v2",
            versions=(QuicVersion.VERSION_2, QuicVersion.VERSION_1),
            initial_version=QuicVersion.VERSION_1,
        ),
        # helper "ecnpmtu": ECN marking, counts and validation are always on
        # (quic.conn_ecn); the socket layer sets and reads the ECN field (quic.aio.udp)
        InteropCase("ecn", "transfer; every datagram ECT(0)-marked, ACKs carry ECN counts"),
    )
}


@dataclass(frozen=True, slots=True)
class InteropOptions:
    """Everything the endpoint needs, after merging arguments and environment."""

    role: str
    testcase: str
    host: str = "::"
    port: int = DEFAULT_PORT
    certs: Path = Path("/certs")
    www: Path = Path("/www")
    downloads: Path = Path("/downloads")
    requests: tuple[str, ...] = ()
    keylog_file: str | None = None
    qlog_dir: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    verbose: bool = False
    # helper "paths2": server, a preferred address offered in the transport parameters
    # (RFC 9000 §9.6; the runner's older "connectionmigration" variant); port 0: any
    preferred_address: tuple[str, int] | None = None


# option dest → (environment variable, runner default)
_ENVIRONMENT: dict[str, tuple[str, str | None]] = {
    "testcase": ("TESTCASE", None),
    "port": ("PORT", str(DEFAULT_PORT)),
    "certs": ("CERTS", "/certs"),
    "www": ("WWW", "/www"),
    "downloads": ("DOWNLOADS", "/downloads"),
    "keylog_file": ("SSLKEYLOGFILE", None),
    "qlog_dir": ("QLOGDIR", None),
    "preferred_address": ("PREFERRED_ADDRESS", None),
}


def _host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    number = int(port)
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"invalid port {number}")
    return host.strip("[]"), number


def _common(parser: argparse.ArgumentParser) -> None:
    cases = ", ".join(TESTCASES)
    parser.add_argument(
        "--testcase", help=f"$TESTCASE; supported: {cases} (others exit with code 127)"
    )
    parser.add_argument("--keylog-file", help="$SSLKEYLOGFILE: write TLS secrets (NSS key log)")
    parser.add_argument(
        "--qlog-dir", help="$QLOGDIR: write one <ODCID hex>_<role>.sqlog qlog file per connection"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quic.interop",
        description=(
            f"QUIC interop runner endpoint (ALPN {ALPN}, HTTP/0.9; h3 for the http3 test "
            "case). Arguments override the "
            "runner's environment variables, which override its defaults."
        ),
        epilog="Without a role argument the role is taken from $ROLE.",
    )
    roles = parser.add_subparsers(dest="role", metavar="{server,client}")
    server = roles.add_parser("server", help="serve files from --www until killed")
    _common(server)
    server.add_argument("--host", default="::", help="address to bind (default :: dual-stack)")
    server.add_argument("--port", help=f"$PORT, default {DEFAULT_PORT} (0: any free port)")
    server.add_argument("--certs", help="$CERTS, default /certs: holds cert.pem and priv.key")
    server.add_argument("--www", help="$WWW, default /www: directory of files served")
    server.add_argument(
        "--preferred-address",
        metavar="HOST:PORT",
        help=(
            "$PREFERRED_ADDRESS: also listen there and offer it in the preferred_address "
            "transport parameter (RFC 9000 §9.6; port 0: any free port)"
        ),
    )
    client = roles.add_parser("client", help="download URLs into --downloads")
    _common(client)
    client.add_argument("--downloads", help="$DOWNLOADS, default /downloads")
    client.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="give up after SECONDS"
    )
    client.add_argument("urls", nargs="*", metavar="URL", help="default: $REQUESTS")
    return parser


def parse_options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> InteropOptions:
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
    values: dict[str, str | None] = {}
    for dest, (variable, default) in _ENVIRONMENT.items():
        given = getattr(ns, dest, None)
        values[dest] = given if given is not None else env.get(variable) or default
    testcase = values["testcase"]
    if not testcase:
        parser.error("give the test case with --testcase or $TESTCASE")
    try:
        port = int(values["port"] or DEFAULT_PORT)
    except ValueError:
        parser.error(f"invalid port {values['port']!r}")
    if not 0 <= port <= 0xFFFF:
        parser.error(f"invalid port {port}")
    urls = getattr(ns, "urls", None) or env.get("REQUESTS", "").split()
    preferred = values["preferred_address"] if ns.role == "server" else None
    try:
        preferred_address = _host_port(preferred) if preferred else None
    except ValueError as exc:
        parser.error(f"invalid preferred address: {exc}")
    return InteropOptions(
        role=ns.role,
        testcase=testcase,
        host=getattr(ns, "host", "::"),
        port=port,
        certs=Path(values["certs"] or "/certs"),
        www=Path(values["www"] or "/www"),
        downloads=Path(values["downloads"] or "/downloads"),
        requests=tuple(urls),
        keylog_file=values["keylog_file"],
        qlog_dir=values["qlog_dir"],
        timeout=getattr(ns, "timeout", DEFAULT_TIMEOUT),
        verbose=ns.verbose,
        preferred_address=preferred_address,
    )
