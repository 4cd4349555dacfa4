"""What every probe check shares: the target, the options, what was learned so far.

Theory of operation
-------------------
:class:`ProbeOptions` are the user's choices (trust, drafts, per-check timeout).
:class:`ProbeContext` holds the parsed target URL, the server's SETTINGS once the first
connection read them, and the helpers checks use: :meth:`ProbeContext.connect` opens a
:class:`~pywebtransport.probe.conn.ProbeConnection` (our client restricted to some
drafts, with per-check QUIC/WebTransport overrides, e.g. small flow-control windows),
:meth:`ProbeContext.open_session` starts a session and waits for the answer, and
:meth:`ProbeContext.request` sends a raw HTTP/3 request and waits for its fate
(status, reset, or the connection's end). Every wait is bounded by the check's
timeout.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from h3 import events as he
from h3.connection import H3Connection
from pywebtransport.client import parse_url
from pywebtransport.config import DEFAULT_DRAFTS, ClientConfig, draft_name, parse_draft
from pywebtransport.probe.conn import Mode, ProbeConnection, ProbeLimits, open_probe_connection
from pywebtransport.protocol import Draft
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.session import Headers, connect_request_headers, header_value

__all__ = ["Answer", "ProbeContext", "ProbeOptions"]


@dataclass(kw_only=True)
class ProbeOptions:
    """How the probe connects and how long each check may take."""

    ca_certs: str | None = None
    cert_hashes: list[bytes] = field(default_factory=list)
    insecure: bool = False
    #: drafts our client may use (names as in :data:`pywebtransport.config.DEFAULT_DRAFTS`)
    drafts: tuple[str, ...] = DEFAULT_DRAFTS
    #: seconds each check may take (a check that hangs fails with "timed out")
    timeout: float = 5.0
    #: the session-limit check opens at most this many sessions
    max_probed_sessions: int = 16
    limits: ProbeLimits = field(default_factory=ProbeLimits)


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one request: a status, a reset of its stream, or nothing."""

    status: int | None = None
    reset: int | None = None
    closed: str = ""  # the connection ended: how

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is not None:
            return f"status {self.status}"
        if self.reset is not None:
            return f"stream reset with 0x{self.reset:x}"
        return self.closed or "no answer"


class ProbeContext:
    """Target, options and shared findings of one probe run."""

    def __init__(self, url: str, options: ProbeOptions) -> None:
        self.url = url
        self.options = options
        self.host, self.port, self.authority, self.path = parse_url(url)
        self.spoken: tuple[Draft, ...] = tuple(
            dict.fromkeys(parse_draft(name) for name in options.drafts)
        )
        #: the server's SETTINGS (first value of each identifier), once read
        self.settings: dict[int, int] = {}
        self.offered: list[int] = []  # draft numbers, newest first
        #: which checks found an echo service on the URL's path
        self.echo_bidi = False
        self.echo_uni = False
        self.goaway_seen: int | None = None
        self.drain_seen = False
        self.unknown_path = f"/.well-known/pywebtransport-probe-{secrets.token_hex(4)}"

    @property
    def timeout(self) -> float:
        return self.options.timeout

    def common_drafts(self) -> list[Draft]:
        """Drafts both we (restricted by the options) and the server speak, newest first."""
        return [d for d in sorted(self.spoken, reverse=True) if int(d) in self.offered]

    def client_config(
        self, drafts: tuple[Draft, ...] | None = None, **overrides: Any
    ) -> ClientConfig:
        names = tuple(draft_name(d) for d in (drafts or self.spoken))
        config = ClientConfig(
            server_certificate_hashes=list(self.options.cert_hashes),
            ca_certs=self.options.ca_certs,
            insecure=self.options.insecure,
            drafts=names,
            connect_timeout=self.timeout,
            idle_timeout=max(30.0, 4 * self.timeout),
        )
        return dataclasses.replace(config, **overrides)

    @asynccontextmanager
    async def connect(
        self, mode: Mode, drafts: tuple[Draft, ...] | None = None, **overrides: Any
    ) -> AsyncIterator[ProbeConnection]:
        config = self.client_config(drafts, **overrides)
        async with open_probe_connection(
            self.host, self.port, config, mode, self.options.limits
        ) as conn:
            try:
                yield conn
            finally:
                self._note(conn)

    def _note(self, conn: ProbeConnection) -> None:
        """Remember GOAWAY / WT_DRAIN_SESSION seen on any connection (close checks)."""
        goaway = conn.h3.control.received_goaway
        if goaway is not None:
            self.goaway_seen = goaway
        if conn.find(lambda e: isinstance(e, ev.SessionDraining)) is not None:
            self.drain_seen = True

    async def wait_settings(self, conn: ProbeConnection) -> bool:
        """Wait for the server's SETTINGS (as HTTP/3 read them)."""
        h3 = conn.h3
        return await conn.wait_until(
            lambda: h3.peer_settings is not None or conn.sniffer.done or conn.closed,
            self.timeout,
        ) and (h3.peer_settings is not None)

    async def open_session(
        self, conn: ProbeConnection, path: str | None = None
    ) -> ev.SessionEstablished | ev.SessionRejected | None:
        """Start a session on ``path`` (default: the URL's) over a ``"wt"`` connection;
        the answer, or None if none came within the timeout."""
        assert conn.wt is not None
        sid = conn.wt.connect(self.authority, path or self.path)
        conn.flush()

        def answer() -> object | None:
            return conn.find(
                lambda e: (
                    isinstance(e, (ev.SessionEstablished, ev.SessionRejected))
                    and e.session_id == sid
                )
            )

        await conn.wait_until(lambda: answer() is not None or conn.closed, self.timeout)
        found = answer()
        if isinstance(found, (ev.SessionEstablished, ev.SessionRejected)):
            return found
        return None

    def connect_headers(self, draft: Draft, path: str | None = None) -> Headers:
        return connect_request_headers(draft, self.authority, path or self.path, (), [])

    def plain_connect_headers(self, path: str | None = None) -> Headers:
        """A CONNECT with ``:scheme`` and ``:path`` (what an extended CONNECT carries)
        for a server that offers no WebTransport draft."""
        return [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", (path or self.path).encode()),
        ]

    def get_headers(self, path: str) -> Headers:
        return [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
        ]

    async def request(self, conn: ProbeConnection, headers: Headers) -> tuple[int, Answer]:
        """Send ``headers`` on a new request stream of an ``"h3"`` connection; wait for
        a final status, a reset of the stream, or the end of the connection."""
        h3: H3Connection = conn.h3
        sid = h3.get_next_available_stream_id()
        conn.watch(sid)
        h3.send_headers(sid, headers)
        conn.flush()

        def fate() -> Answer | None:
            for event in conn.events:
                if isinstance(event, he.HeadersReceived) and event.stream_id == sid:
                    raw = header_value(event.headers, b":status") or b"0"
                    status = int(raw) if raw.isdigit() else 0
                    if status >= 200 or status == 0:
                        return Answer(status=status)
            end = conn.ends.get(sid)
            if end is not None and end[0] == "reset":
                return Answer(reset=end[1])
            if conn.terminated is not None:
                return Answer(closed=describe_close(conn))
            return None

        await conn.wait_until(lambda: fate() is not None, self.timeout)
        return sid, fate() or Answer()


def describe_close(conn: ProbeConnection) -> str:
    """How the connection ended, in words."""
    term = conn.terminated
    if term is None:
        return "connection open"
    side = "server" if term.by_peer else "probe"
    reason = f" ({term.reason_phrase})" if term.reason_phrase else ""
    return f"connection closed by the {side} with 0x{term.error_code:x}{reason}"
