"""``python -m pywebtransport serve``: the WebTransport interop server.

Theory of operation
-------------------
``serve [--host 127.0.0.1] [--port 4433] [--cert C --key K] [--keylog FILE]`` runs a
:class:`~pywebtransport.app.ServerApp` with the routes of :mod:`pywebtransport.interop`
(``/echo``, ``/stats``, ``/status``) and the Devious Baton route
(``/webtransport/devious-baton``, :mod:`pywebtransport.baton`). Without ``--cert`` it
generates a self-signed ECDSA P-256 certificate valid for 13 days (browsers accept at
most 14 for ``serverCertificateHashes``) for ``localhost``, ``127.0.0.1`` and ``--host``.

The stdout contract, one flushed line each, in this order::

    CERT-SHA256 <64 hex digits>       (self-signed only: SHA-256 of the certificate DER)
    CERT-SHA256-BASE64 <base64>       (self-signed only: the same hash in base64)
    SPKI-SHA256-BASE64 <base64>       (self-signed only: --ignore-certificate-errors-spki-list)
    JS new WebTransport("https://.../echo", {serverCertificateHashes: [...]})
                                      (self-signed only: ready to paste in a console)
    LISTENING <port>

``baton URL [--count N] [--baton V] [--cert-hash HEX | --ca-certs F | --insecure]``
plays the client side of Devious Baton against any server (see
:mod:`pywebtransport.baton.client`; one ``BATON OK``/``BATON FAIL`` line, exit 0 when
the game completed).

``probe URL [--json] [--cert-hash HEX | --ca-certs F | --insecure] [--drafts LIST]
[--timeout S]`` runs the conformance checks of :mod:`pywebtransport.probe` against any
server (a table or JSON; exit 0 when no check failed, 1 when one did, 3 without a
connection).

``--redis URL`` joins the rooms of ``/rooms/<name>`` to every other server started with
the same Redis (:class:`~pywebtransport.backplane.RedisBackplane`): datagrams and stream
messages reach the room's members on all of them, and ``/status`` counts them all.

QUIC-LB (docs/quic-lb.md): ``--quic-lb-server-id HEX`` makes every connection ID the
server issues carry that server ID (draft-ietf-quic-load-balancers), so that a QUIC-LB
load balancer routes each connection to this server through migration;
``--quic-lb-config-rotation N`` (0..6), ``--quic-lb-nonce-length N`` (4..18) and
``--quic-lb-key HEX`` (16 bytes: encrypted CIDs) must match the balancer's configuration.

``--port 0`` binds any free port; LISTENING tells which. The server runs until SIGINT or
SIGTERM, then shuts down gracefully (GOAWAY, DRAIN, then close; see
``WebTransportServer.shutdown``) and exits 0.

Live output (:mod:`pywebtransport.live`), after LISTENING: with ``-v`` one
``SESSION-OPENED`` / ``SESSION-CLOSED`` line per session (path, peer, draft, duration,
close code and reason); a ``STATS`` summary (sessions, streams, bytes and datagrams in
and out) every 10 s when stdout is a terminal, or every S seconds with
``--stats-interval S`` (0: never), and once more at shutdown when summaries are on.

``serve --workers N`` (N > 1) runs N worker processes on one UDP port under a
supervisor (:mod:`pywebtransport.workers`): it prints ``WORKER <index> PID <pid>`` each
time a worker starts (again after a restart) and LISTENING once every worker listens;
SIGHUP restarts the workers one at a time, each draining first (GOAWAY, DRAIN); the
live output is not available there.

``demo`` (:mod:`pywebtransport.demo`) runs the same server plus a plain-HTTP page on
127.0.0.1 that shows WebTransport in the browser, and checks itself with our client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from pywebtransport import __version__
from pywebtransport.app import ServerApp
from pywebtransport.backplane.base import Backplane, BackplaneError
from pywebtransport.baton.client import add_baton_parser, run_baton_command
from pywebtransport.baton.server import add_baton_route
from pywebtransport.config import DEFAULT_DRAFTS, ConfigurationError, ServerConfig, parse_draft
from pywebtransport.interop import add_interop_routes
from pywebtransport.live import LiveOutput, summary_interval
from pywebtransport.probe import add_probe_parser, run_probe_command
from quic.aio import wall_clock
from quic.tls.selfsigned import SelfSignedCertificate, generate_self_signed

__all__ = [
    "CERT_DAYS",
    "DEFAULT_PORT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "add_quic_lb_options",
    "build_parser",
    "js_snippet",
    "main",
    "quic_lb_settings",
    "redis_backplane",
    "run_serve",
    "run_serve_workers",
    "server_config",
    "start_live_output",
    "url_host",
]

logger = logging.getLogger("pywebtransport.cli")

DEFAULT_PORT = 4433
DEFAULT_HOST = "127.0.0.1"
#: Validity of the generated certificate (browsers accept at most 14 days).
CERT_DAYS = 13
EXIT_OK = 0
EXIT_FAILURE = 3

_USAGE = """\
usage of serve:
  python -m pywebtransport serve [--host 127.0.0.1] [--port 4433] [--cert C --key K]
                                 [--keylog FILE] [--qlog-dir DIR] [--drafts LIST]
                                 [--max-sessions N] [--shutdown-timeout SECONDS]
                                 [--stats-interval S] [-v]
                                 [--workers N] [--redis URL]
                                 [--quic-lb-server-id HEX [--quic-lb-config-rotation N]
                                  [--quic-lb-nonce-length N] [--quic-lb-key HEX]]
  (python -m pywebtransport serve --help for details)
  python -m pywebtransport demo [--port 0] [--http-port 0] [--no-browser-page] [-v]

"""

_EPILOG = """\
routes:
  /echo    echoes each bidirectional stream chunk by chunk (FIN after the peer's FIN),
           every datagram, and each unidirectional stream on a new server stream
  /stats   each bidirectional stream gets this session's parameters and counters (JSON)
  /status  each bidirectional stream gets server-wide health and counters (JSON)
  /webtransport/devious-baton
           Devious Baton (draft-frindell-webtrans-devious-baton): ?version=0&baton=V&count=N

Without --cert a self-signed ECDSA P-256 certificate (13 days) is generated and its
SHA-256 printed in hex and base64, with a snippet for the browser console:
  new WebTransport(url, {serverCertificateHashes: [{algorithm: "sha-256", value: ...}]})
"LISTENING <port>" is printed once the server accepts sessions. SIGINT/SIGTERM shut it
down gracefully (GOAWAY, DRAIN, close).

live output: -v prints SESSION-OPENED / SESSION-CLOSED lines (path, peer, draft,
duration, close code); a STATS line (sessions, streams, bytes, datagrams in/out) comes
every 10 s on a terminal, or every S seconds with --stats-interval S (0: never).
"""


def js_snippet(url: str, certificate_hash: bytes) -> str:
    """A browser-console line connecting to ``url`` with the hash pinned."""
    values = ", ".join(str(b) for b in certificate_hash)
    return (
        f'new WebTransport("{url}", {{serverCertificateHashes: [{{algorithm: "sha-256", '
        f"value: Uint8Array.from([{values}])}}]}})"
    )


def url_host(host: str) -> str:
    """``host`` as written in a URL; a wildcard address becomes 127.0.0.1."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _self_signed(host: str) -> SelfSignedCertificate:
    names = ["localhost", "127.0.0.1"]
    if host not in ("", "0.0.0.0", "::", *names):
        names.append(host)
    cert = generate_self_signed(wall_clock(), hostnames=names, days=CERT_DAYS)
    print(f"CERT-SHA256 {cert.sha256_hex}", flush=True)
    print(f"CERT-SHA256-BASE64 {cert.sha256_base64}", flush=True)
    print(f"SPKI-SHA256-BASE64 {cert.spki_sha256_base64}", flush=True)
    return cert


def server_config(args: argparse.Namespace) -> tuple[ServerConfig, SelfSignedCertificate | None]:
    """The server configuration of ``serve``/``demo`` arguments, and the self-signed
    certificate made for it (None with ``--cert``)."""
    drafts = tuple(args.drafts.split(",")) if args.drafts else DEFAULT_DRAFTS
    for name in drafts:
        parse_draft(name)
    common = {
        "host": args.host,
        "port": args.port,
        "keylog_file": args.keylog,
        "qlog_dir": args.qlog_dir,
        "drafts": drafts,
        "max_sessions": args.max_sessions,
        "shutdown_timeout": args.shutdown_timeout,
        **quic_lb_settings(args),
    }
    if args.cert:
        config = ServerConfig(certfile=args.cert, keyfile=args.key, **common)
        config.quic_configuration()  # load now: report a bad file before binding
        return config, None
    ServerConfig(**common).quic_lb()  # report bad QUIC-LB values before the certificate
    cert = _self_signed(args.host)
    config = ServerConfig(
        certificate_chain=[cert.certificate], private_key=cert.private_key, **common
    )
    return config, cert


def quic_lb_settings(args: argparse.Namespace) -> dict[str, object]:
    """The ``quic_lb_*`` fields of :class:`ServerConfig` from the ``--quic-lb-*``
    options (none: an empty dict); :class:`ConfigurationError` for bad hex or an option
    without ``--quic-lb-server-id``."""
    server_id = getattr(args, "quic_lb_server_id", None)
    key = getattr(args, "quic_lb_key", None)
    if server_id is None:
        given = [
            f"--quic-lb-{name}"
            for name in ("config-rotation", "nonce-length", "key")
            if getattr(args, "quic_lb_" + name.replace("-", "_"), None) is not None
        ]
        if given:
            raise ConfigurationError(f"{', '.join(given)} needs --quic-lb-server-id")
        return {}
    settings: dict[str, object] = {
        "quic_lb_server_id": _hex("--quic-lb-server-id", server_id),
        "quic_lb_key": None if key is None else _hex("--quic-lb-key", key),
    }
    if args.quic_lb_config_rotation is not None:
        settings["quic_lb_config_rotation"] = args.quic_lb_config_rotation
    if args.quic_lb_nonce_length is not None:
        settings["quic_lb_nonce_length"] = args.quic_lb_nonce_length
    return settings


def _hex(option: str, text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x").replace(":", ""))
    except ValueError:
        raise ConfigurationError(f"{option}: not hexadecimal: {text!r}") from None


def add_quic_lb_options(parser: argparse.ArgumentParser) -> None:
    """The ``--quic-lb-*`` options of ``serve`` (docs/quic-lb.md)."""
    group = parser.add_argument_group(
        "QUIC-LB",
        "connection IDs a QUIC-LB load balancer routes to this server "
        "(draft-ietf-quic-load-balancers; the values must match the balancer's)",
    )
    group.add_argument(
        "--quic-lb-server-id",
        metavar="HEX",
        help="this server's ID, 1..15 bytes in hex: put in every connection ID issued",
    )
    group.add_argument(
        "--quic-lb-config-rotation",
        type=int,
        metavar="N",
        help="config rotation codepoint 0..6 (default 0)",
    )
    group.add_argument(
        "--quic-lb-nonce-length",
        type=int,
        metavar="N",
        help="nonce bytes 4..18, server ID + nonce at most 19 (default 8)",
    )
    group.add_argument(
        "--quic-lb-key",
        metavar="HEX",
        help="16-byte AES key in hex: encrypted connection IDs (default: plaintext)",
    )


def start_live_output(
    app: ServerApp, args: argparse.Namespace
) -> tuple[LiveOutput, asyncio.Task[None] | None]:
    """Session lines (``-v``) and periodic summaries for a listening ``app``; when the
    summaries are on, a last ``STATS`` line is written as the app shuts down."""
    loop = asyncio.get_running_loop()
    live = LiveOutput(app, sessions=bool(getattr(args, "verbose", False)), clock=loop.time)
    live.attach()
    interval = summary_interval(getattr(args, "stats_interval", None), sys.stdout.isatty())
    if interval is None:
        return live, None
    task = loop.create_task(live.run_summaries(interval))

    def last_summary() -> None:  # shutdown hooks run while the server's counters remain
        task.cancel()
        live.emit(live.summary())

    app.on_shutdown(last_summary)
    return live, task


async def stop_live_output(task: asyncio.Task[None] | None) -> None:
    """End the periodic summaries (if any)."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def build_app(config: ServerConfig) -> ServerApp:
    """A :class:`ServerApp` with the interop routes."""
    app = ServerApp(config=config)
    add_interop_routes(app)
    add_baton_route(app)
    return app


def redis_backplane(url: str) -> Backplane:
    """The backplane of ``serve --redis URL``: rooms shared by every server on that Redis
    (:class:`~pywebtransport.backplane.RedisBackplane`)."""
    from pywebtransport.backplane.redis_pubsub import RedisBackplane

    return RedisBackplane(url)


async def run_serve(args: argparse.Namespace) -> int:
    """Run the interop server until SIGINT/SIGTERM; the exit status."""
    backplane: Backplane | None = None
    if getattr(args, "redis", None):
        try:
            backplane = redis_backplane(args.redis)
        except (BackplaneError, ValueError) as exc:
            print(f"error: --redis: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    try:
        config, cert = server_config(args)
    except (ConfigurationError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    app = build_app(config)
    app.backplane = backplane
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.stop)
    serving = asyncio.create_task(app.serve(args.host, args.port))
    try:
        try:
            port = await app.wait_started()
        except OSError as exc:
            print(f"error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        if cert is not None:
            url = f"https://{url_host(args.host)}:{port}/echo"
            print(f"JS {js_snippet(url, cert.sha256)}", flush=True)
        print(f"LISTENING {port}", flush=True)
        _, summaries = start_live_output(app, args)
        try:
            await serving
        finally:
            await stop_live_output(summaries)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if not serving.done():
            serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    return EXIT_OK


def run_serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: the supervisor of :mod:`pywebtransport.workers`
    (blocking, no event loop here: the workers are forked); the exit status."""
    from pywebtransport.workers import run_workers

    if not 2 <= args.workers <= 256:
        print("error: --workers must be 1..256", file=sys.stderr)
        return 2
    try:
        config, cert = server_config(args)
        backplane = redis_backplane(args.redis) if getattr(args, "redis", None) else None
    except (BackplaneError, ConfigurationError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    app = build_app(config)
    app.backplane = backplane  # None: the workers' rooms meet over a MeshBackplane

    def listening(port: int) -> None:
        if cert is not None:
            url = f"https://{url_host(args.host)}:{port}/echo"
            print(f"JS {js_snippet(url, cert.sha256)}", flush=True)
        print(f"LISTENING {port}", flush=True)

    def worker(index: int, pid: int) -> None:
        print(f"WORKER {index} PID {pid}", flush=True)

    try:
        status = run_workers(
            app, args.host, args.port, args.workers, on_listening=listening, on_worker=worker
        )
    except OSError as exc:
        print(f"error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if status == 0 else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pywebtransport",
        description="WebTransport over HTTP/3 in pure Python: the interop server.",
        epilog=_USAGE + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pywebtransport {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the interop server (/echo, /stats, /status)",
        description="Run the WebTransport interop server (/echo, /stats, /status).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (%(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="UDP port (%(default)s; 0: any free)"
    )
    serve.add_argument("--cert", help="PEM certificate chain (default: a new self-signed one)")
    serve.add_argument("--key", help="PEM private key (default: in --cert)")
    serve.add_argument("--keylog", metavar="FILE", help="append TLS secrets (NSS key log)")
    serve.add_argument(
        "--qlog-dir", metavar="DIR", help="write a qlog trace of each connection into DIR"
    )
    serve.add_argument(
        "--drafts",
        metavar="LIST",
        help="comma-separated WebTransport drafts, preferred first "
        f"(default: {','.join(DEFAULT_DRAFTS)})",
    )
    serve.add_argument(
        "--max-sessions", type=int, default=100, help="sessions per connection (%(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the one UDP port (%(default)s; SIGHUP: rolling restart)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long draining sessions may take to end (%(default)s)",
    )
    add_stats_interval_option(serve)
    add_quic_lb_options(serve)
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share /rooms/<name> with every server on this Redis (redis://host:port/db; "
        "needs pip install 'pywebtransport[redis]')",
    )
    serve.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log to stderr; print a line per session opened/closed",
    )
    add_baton_parser(commands)
    from pywebtransport.demo import configure_demo_parser  # demo.py imports this module

    configure_demo_parser(
        commands.add_parser(
            "demo",
            help="WebTransport server + browser page + a self-check round trip",
            description="Run the WebTransport interop server with a fresh self-signed "
            "certificate, a page on http://127.0.0.1:PORT/ that uses it from a browser, and "
            "a round trip of our own client (bidi, datagram, uni). Ctrl-C stops it.",
        )
    )
    add_probe_parser(commands)
    return parser


def add_stats_interval_option(parser: argparse.ArgumentParser) -> None:
    """``--stats-interval S`` of ``serve`` and ``demo``."""
    parser.add_argument(
        "--stats-interval",
        type=float,
        metavar="S",
        help="print a STATS summary every S seconds (default: every 10 s when stdout is a "
        "terminal, else never; 0: never)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "key", None) and not args.cert:
        print("error: --key needs --cert", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "baton":
            return asyncio.run(run_baton_command(args))
        if args.command == "demo":
            from pywebtransport.demo import run_demo

            return asyncio.run(run_demo(args))
        if args.command == "probe":
            return asyncio.run(run_probe_command(args))
        if getattr(args, "workers", 1) > 1:
            return run_serve_workers(args)
        return asyncio.run(run_serve(args))
    except KeyboardInterrupt:
        return EXIT_FAILURE
