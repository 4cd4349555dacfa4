"""Probe checks of sessions: drafts, CONNECT answers, echo, flow control, close, limits.

Theory of operation
-------------------
Each check is an ``async def check_*(ctx) -> CheckResult`` over its own connection(s)
(:meth:`~pywebtransport.probe.context.ProbeContext.connect`), so that what one check
provokes cannot spoil the next. The runner bounds each by the per-check timeout.

* ``wt.draft-NN`` — for each draft both sides speak, a session on a connection whose
  client speaks only that draft is established with that draft (draft-16 §7.1);
* ``connect.accept`` / ``connect.unknown-path`` — the URL's path is accepted with a
  2xx, an unknown path is refused: 404, or the 405 draft-16 §3.2 recommends;
* ``connect.no-protocol`` — a CONNECT with ``:scheme`` and ``:path`` but no
  ``:protocol`` is malformed (RFC 9114 §4.4, §4.1.2) and must not open a session;
  ``connect.bad-protocol`` — an unknown ``:protocol`` token is refused (RFC 9220 §3);
* ``echo.bidi`` / ``echo.uni`` / ``echo.datagram`` — where the path echoes (else n/a
  with the reason);
* ``flow.stream`` — with a 16 KiB stream window the server stops at our credit and
  resumes when we read (RFC 9000 §4.1); ``flow.wt`` — draft-16 WT_MAX_DATA and
  WT_MAX_STREAMS respected (draft-16 §5.3, §5.4);
* ``close.session`` — after our WT_CLOSE_SESSION (code and reason) + FIN the server
  closes or resets its side of the CONNECT stream (draft-16 §6); ``close.goaway-drain``
  — GOAWAY / WT_DRAIN_SESSION, if any was seen, were well-formed (RFC 9114 §5.2);
* ``sessions.limit`` — one more session than the server allows (draft-07's
  WEBTRANSPORT_MAX_SESSIONS, or one for draft-16 without flow control, §5.2) is refused.
"""

from __future__ import annotations

import os

from h3.errors import H3ErrorCode
from h3.settings import SettingId
from pywebtransport.probe.checks_settings import DRAFT13_MAX_SESSIONS
from pywebtransport.probe.conn import ProbeConnection, StreamRecord
from pywebtransport.probe.context import ProbeContext, describe_close
from pywebtransport.probe.report import CheckResult, failed, not_applicable, passed
from pywebtransport.protocol import Draft
from pywebtransport.protocol import events as ev
from pywebtransport.protocol.drafts import flow_control_settings, supported_by_peer

__all__ = [
    "ECHO_SIZE",
    "FLOW_WINDOW",
    "check_bad_protocol",
    "check_close",
    "check_connect_accept",
    "check_draft",
    "check_echo",
    "check_flow_stream",
    "check_flow_wt",
    "check_goaway_drain",
    "check_no_protocol",
    "check_session_limit",
    "check_unknown_path",
]

ECHO_SIZE = 4096
#: our stream receive window in ``flow.stream``, and what the server must stop at
FLOW_WINDOW = 16 * 1024
FLOW_PAYLOAD = 4 * FLOW_WINDOW
CLOSE_CODE = 0x50524F42  # "PROB"
CLOSE_REASON = "pywebtransport probe: closing"


def _no_wt(check: str, section: str, ctx: ProbeContext) -> CheckResult | None:
    if not ctx.common_drafts():
        offered = ", ".join(f"{d:02d}" for d in ctx.offered) or "none"
        return not_applicable(
            check, section, f"no WebTransport draft in common (server: {offered})"
        )
    return None


async def check_draft(ctx: ProbeContext, draft: int) -> CheckResult:
    check, section = f"wt.draft-{draft:02d}", "draft-16 §7.1"
    if draft not in ctx.offered:
        return not_applicable(check, section, "not offered by the server")
    spoken = [d for d in ctx.spoken if int(d) == draft]
    if not spoken:
        return not_applicable(check, section, "offered; excluded by --drafts")
    if not supported_by_peer(spoken[0], ctx.settings, peer_is_server=True):
        return failed(check, section, "marker sent but the draft's other SETTINGS are missing")
    async with ctx.connect("wt", drafts=(spoken[0],)) as conn:
        answer = await ctx.open_session(conn)
    if isinstance(answer, ev.SessionEstablished):
        if answer.draft is not spoken[0]:
            return failed(check, section, f"established with draft {int(answer.draft):02d}")
        return passed(check, section, f"session established on {ctx.path}")
    if isinstance(answer, ev.SessionRejected):
        return failed(check, section, f"rejected: {answer.status or answer.reason}")
    return failed(check, section, f"no answer to the CONNECT: {describe_close(conn)}")


async def check_connect_accept(ctx: ProbeContext) -> CheckResult:
    check, section = "connect.accept", "draft-16 §3.2"
    skip = _no_wt(check, section, ctx)
    if skip is not None:
        return skip
    async with ctx.connect("wt") as conn:
        answer = await ctx.open_session(conn)
    if isinstance(answer, ev.SessionEstablished):
        return passed(check, section, f"2xx for {ctx.path} (draft-{int(answer.draft):02d})")
    if isinstance(answer, ev.SessionRejected):
        return failed(check, section, f"{ctx.path} refused: {answer.status or answer.reason}")
    return failed(check, section, f"no answer for {ctx.path}: {describe_close(conn)}")


async def check_unknown_path(ctx: ProbeContext) -> CheckResult:
    check, section = "connect.unknown-path", "draft-16 §3.2"
    skip = _no_wt(check, section, ctx)
    if skip is not None:
        return skip
    async with ctx.connect("h3") as conn:
        await ctx.wait_settings(conn)
        _, answer = await ctx.request(
            conn, ctx.connect_headers(ctx.common_drafts()[0], ctx.unknown_path)
        )
    if answer.accepted:
        return failed(check, section, f"{ctx.unknown_path} accepted with {answer.status}")
    if answer.status in (404, 405):
        return passed(check, section, f"{ctx.unknown_path}: {answer.status}")
    if answer.status is not None or answer.reset is not None:
        return passed(check, section, f"refused ({answer.describe()}; 404 or 405 expected)")
    return failed(check, section, f"no answer: {answer.describe()}")


async def _refused(ctx: ProbeContext, check: str, section: str, token: bytes | None) -> CheckResult:
    """A CONNECT whose ``:protocol`` is missing (``token`` None) or ``token``; on a plain
    HTTP/3 server too (RFC 9114 §4.4: ``:scheme``/``:path`` without ``:protocol``)."""
    common = ctx.common_drafts()
    base = ctx.connect_headers(common[0]) if common else ctx.plain_connect_headers()
    headers = [(k, v) for k, v in base if k != b":protocol"]
    if token is not None:
        headers.insert(1, (b":protocol", token))
    async with ctx.connect("h3") as conn:
        await ctx.wait_settings(conn)
        _, answer = await ctx.request(conn, headers)
    if answer.accepted:
        return failed(check, section, f"accepted with {answer.status}: a session was opened")
    if answer.status is None and answer.reset is None and not answer.closed:
        return failed(check, section, "no answer")
    return passed(check, section, f"refused: {answer.describe()}")


async def check_no_protocol(ctx: ProbeContext) -> CheckResult:
    return await _refused(ctx, "connect.no-protocol", "RFC 9114 §4.4, §4.1.2", None)


async def check_bad_protocol(ctx: ProbeContext) -> CheckResult:
    return await _refused(
        ctx, "connect.bad-protocol", "RFC 9220 §3, draft-16 §3.2", b"x-probe-unknown"
    )


async def check_echo(ctx: ProbeContext) -> list[CheckResult]:
    """``echo.bidi``, ``echo.uni``, ``echo.datagram`` on one session."""
    names = (("echo.bidi", "draft-16 §4.3"), ("echo.uni", "draft-16 §4.2"),
             ("echo.datagram", "draft-16 §4.5, RFC 9297 §2.1"))  # fmt: skip
    skip = _no_wt("echo", "", ctx)
    if skip is not None:
        return [not_applicable(n, s, skip.detail) for n, s in names]
    async with ctx.connect("wt") as conn:
        answer = await ctx.open_session(conn)
        if not isinstance(answer, ev.SessionEstablished):
            return [not_applicable(n, s, "no session on the URL's path") for n, s in names]
        sid = answer.session_id
        bidi = await _echo_stream(ctx, conn, sid, True)
        uni = await _echo_stream(ctx, conn, sid, False)
        dgram = await _echo_datagram(ctx, conn, sid)
    ctx.echo_bidi = bidi.outcome.value == "pass"
    ctx.echo_uni = uni.outcome.value == "pass"
    results = [bidi, uni, dgram]
    return [
        CheckResult(name, r.outcome, section, r.detail)
        for (name, section), r in zip(names, results, strict=True)
    ]


async def _echo_stream(
    ctx: ProbeContext, conn: ProbeConnection, sid: int, bidi: bool
) -> CheckResult:
    assert conn.wt is not None
    payload = os.urandom(ECHO_SIZE)
    stream_id = conn.wt.open_stream(sid, bidirectional=bidi)
    conn.wt.send_stream_data(stream_id, payload, end_stream=True)
    conn.flush()

    def echo_record() -> StreamRecord | None:
        if bidi:
            record = conn.streams.get(stream_id)
            return record if record is not None and (record.fin or record.reset) else None
        for key, record in conn.streams.items():
            if record.opened_by_peer and not record.bidirectional and (record.fin or record.reset):
                conn.streams.pop(key)
                return record
        return None

    found: list[StreamRecord] = []

    def ready() -> bool:
        if not found:
            record = echo_record()
            if record is not None:
                found.append(record)
        return bool(found) or conn.closed

    await conn.wait_until(ready, ctx.timeout)
    kind = "stream"
    if not found:
        if conn.closed:
            return failed("", "", f"{describe_close(conn)} during the {kind} echo")
        return not_applicable("", "", f"no echo within {ctx.timeout:g} s (the path may not echo)")
    record = found[0]
    data = bytes(record.data)
    if data == payload:
        return passed("", "", f"{ECHO_SIZE} bytes echoed")
    return not_applicable("", "", f"answered with {len(data)} other bytes: not an echo service")


async def _echo_datagram(ctx: ProbeContext, conn: ProbeConnection, sid: int) -> CheckResult:
    assert conn.wt is not None
    if conn.quic.max_datagram_payload <= 0:
        return not_applicable("", "", "the server takes no QUIC datagrams")
    payloads = [b"probe-datagram-%d" % i for i in range(5)]
    for payload in payloads:
        conn.wt.send_datagram(sid, payload)
    conn.flush()

    def echoed() -> bool:
        return (
            conn.find(lambda e: isinstance(e, ev.DatagramReceived) and e.data in payloads)
            is not None
        )

    if await conn.wait_until(lambda: echoed() or conn.closed, ctx.timeout) and echoed():
        return passed("", "", "datagram echoed")
    if conn.closed:
        return failed("", "", describe_close(conn))
    return not_applicable("", "", f"none of 5 datagrams echoed within {ctx.timeout:g} s")


async def check_flow_stream(ctx: ProbeContext) -> CheckResult:
    check, section = "flow.stream", "RFC 9000 §4.1"
    if not ctx.echo_bidi:
        return not_applicable(check, section, "needs a bidirectional echo on the URL's path")
    async with ctx.connect(
        "wt", initial_max_stream_data=FLOW_WINDOW, stream_receive_buffer=FLOW_WINDOW
    ) as conn:
        answer = await ctx.open_session(conn)
        if not isinstance(answer, ev.SessionEstablished):
            return failed(check, section, "no session for the flow-control check")
        assert conn.wt is not None
        stream_id = conn.wt.open_stream(answer.session_id)
        conn.held.add(stream_id)
        conn.wt.send_stream_data(stream_id, os.urandom(FLOW_PAYLOAD), end_stream=True)
        conn.flush()

        def received() -> int:
            record = conn.streams.get(stream_id)
            return record.received if record is not None else 0

        await conn.wait_until(lambda: received() >= FLOW_WINDOW or conn.closed, ctx.timeout)
        await conn.settle(min(0.3, ctx.timeout / 4))  # anything beyond the window?
        if conn.closed:
            return failed(check, section, f"{describe_close(conn)} (beyond our credit?)")
        stalled = received()
        if stalled > FLOW_WINDOW:  # our QUIC would have closed: defensive
            return failed(check, section, f"{stalled} bytes with a {FLOW_WINDOW}-byte window")
        if stalled == 0:
            return not_applicable(check, section, "nothing echoed: the stream did not start")
        conn.release(stream_id)

        def done() -> bool:
            conn.release(stream_id)
            record = conn.streams.get(stream_id)
            return record is not None and record.fin

        await conn.wait_until(lambda: done() or conn.closed, ctx.timeout)
        total = received()
    if total != FLOW_PAYLOAD:
        return failed(
            check, section, f"stopped at {stalled} bytes, then only {total} of {FLOW_PAYLOAD}"
        )
    return passed(
        check,
        section,
        f"stopped at {stalled} bytes ({FLOW_WINDOW}-byte window) until read, "
        f"then all {FLOW_PAYLOAD}",
    )


async def check_flow_wt(ctx: ProbeContext) -> CheckResult:
    check, section = "flow.wt", "draft-16 §5.3, §5.4"
    if 16 not in ctx.offered or Draft.DRAFT16 not in ctx.spoken:
        return not_applicable(check, section, "draft-16 not in common")
    if flow_control_settings(ctx.settings) is None:
        return not_applicable(check, section, "the server did not enable WebTransport flow control")
    if not ctx.echo_uni:
        return not_applicable(check, section, "needs a unidirectional echo on the URL's path")
    streams, size = 3, 2048
    async with ctx.connect(
        "wt", drafts=(Draft.DRAFT16,), wt_initial_max_streams_uni=1, wt_initial_max_data=size
    ) as conn:
        answer = await ctx.open_session(conn)
        if not isinstance(answer, ev.SessionEstablished):
            return failed(check, section, "no draft-16 session for the flow-control check")
        assert conn.wt is not None
        sid = answer.session_id
        for _ in range(streams):
            stream_id = conn.wt.open_stream(sid, bidirectional=False)
            conn.wt.send_stream_data(stream_id, os.urandom(size), end_stream=True)
        conn.flush()

        def echoed() -> int:
            return sum(
                1
                for r in conn.streams.values()
                if r.opened_by_peer and not r.bidirectional and r.fin and r.received == size
            )

        def aborted() -> ev.SessionClosed | None:
            found = conn.find(lambda e: isinstance(e, ev.SessionClosed) and e.session_id == sid)
            return found if isinstance(found, ev.SessionClosed) else None

        await conn.wait_until(
            lambda: echoed() >= streams or aborted() is not None or conn.closed, ctx.timeout
        )
        closed = aborted()
        count = echoed()
    if closed is not None and closed.http_code == H3ErrorCode.WT_FLOW_CONTROL_ERROR:
        return failed(check, section, f"the server exceeded our limits: {closed.reason}")
    if count >= streams:
        return passed(
            check, section, f"{streams} streams of {size} B echoed within WT_MAX_STREAMS_UNI=1, "
            f"WT_MAX_DATA={size}"
        )  # fmt: skip
    if conn.closed:
        return failed(check, section, describe_close(conn))
    return failed(check, section, f"only {count} of {streams} echoes within {ctx.timeout:g} s")


async def check_close(ctx: ProbeContext) -> CheckResult:
    check, section = "close.session", "draft-16 §6"
    skip = _no_wt(check, section, ctx)
    if skip is not None:
        return skip
    async with ctx.connect("wt") as conn:
        answer = await ctx.open_session(conn)
        if not isinstance(answer, ev.SessionEstablished):
            return failed(check, section, "no session to close")
        assert conn.wt is not None
        sid = answer.session_id
        conn.watch(sid)
        conn.wt.close_session(sid, CLOSE_CODE, CLOSE_REASON)
        conn.flush()
        await conn.wait_until(lambda: sid in conn.ends or conn.closed, ctx.timeout)
        end = conn.ends.get(sid)
    if end is not None:
        how = "FIN" if end[0] == "fin" else f"{end[0]} 0x{end[1] or 0:x}"
        return passed(check, section, f"CONNECT stream ended by the server ({how})")
    if conn.closed and conn.terminated is not None and conn.terminated.by_peer:
        return passed(check, section, f"the server ended the connection: {describe_close(conn)}")
    return failed(
        check, section, f"CONNECT stream still open {ctx.timeout:g} s after WT_CLOSE_SESSION"
    )


async def check_goaway_drain(ctx: ProbeContext) -> CheckResult:
    check, section = "close.goaway-drain", "RFC 9114 §5.2, draft-16 §4.7"
    goaway = ctx.goaway_seen
    if goaway is None and not ctx.drain_seen:
        return not_applicable(check, section, "the server sent neither GOAWAY nor WT_DRAIN_SESSION")
    if goaway is not None and goaway % 4 != 0:
        return failed(check, section, f"GOAWAY {goaway} is not a client bidirectional stream ID")
    seen = [
        w for w, s in (("GOAWAY", goaway is not None), ("WT_DRAIN_SESSION", ctx.drain_seen)) if s
    ]
    return passed(check, section, " and ".join(seen) + " handled")


async def check_session_limit(ctx: ProbeContext) -> CheckResult:
    check, section = (
        "sessions.limit",
        "draft-16 §5.2; draft-07 WEBTRANSPORT_MAX_SESSIONS; draft-13 WT_MAX_SESSIONS",
    )
    limit, draft = _session_limit(ctx)
    if draft is None:
        return not_applicable(check, section, "no session limit advertised by a draft we speak")
    if limit > ctx.options.max_probed_sessions:
        return not_applicable(
            check, section, f"limit {limit} above the {ctx.options.max_probed_sessions} probed"
        )
    async with ctx.connect("h3", drafts=(draft,), max_sessions=limit + 1) as conn:
        await ctx.wait_settings(conn)
        for index in range(limit):
            _, answer = await ctx.request(conn, ctx.connect_headers(draft))
            if not answer.accepted:
                return failed(
                    check, section, f"session {index + 1} of {limit} refused: {answer.describe()}"
                )
        _, extra = await ctx.request(conn, ctx.connect_headers(draft))
    if extra.accepted:
        return failed(check, section, f"session {limit + 1} accepted beyond the limit of {limit}")
    if extra.status is None and extra.reset is None:
        return failed(check, section, f"session {limit + 1}: {extra.describe()}")
    return passed(
        check, section, f"limit {limit} (draft-{int(draft):02d}); one more: {extra.describe()}"
    )


def _session_limit(ctx: ProbeContext) -> tuple[int, Draft | None]:
    if Draft.DRAFT07 in ctx.spoken and 7 in ctx.offered:
        return ctx.settings.get(SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07, 0), Draft.DRAFT07
    if Draft.DRAFT13 in ctx.spoken and 13 in ctx.offered:
        return ctx.settings.get(DRAFT13_MAX_SESSIONS, 0), Draft.DRAFT13
    if (
        Draft.DRAFT16 in ctx.spoken
        and 16 in ctx.offered
        and flow_control_settings(ctx.settings) is None
    ):
        return 1, Draft.DRAFT16  # §5.2: no more than one session without flow control
    return 0, None
