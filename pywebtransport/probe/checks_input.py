"""Probe checks of the server's reaction to malformed and unknown input.

Theory of operation
-------------------
Each check opens its own connection and injects raw bytes (built in
:mod:`pywebtransport.probe.wire`) through the public QUIC API once the server's
SETTINGS have arrived, so that our own SETTINGS went first:

* ``malformed.frame`` — MAX_PUSH_ID with a byte after its field on our control stream:
  H3_FRAME_ERROR (RFC 9114 §7.1);
* ``malformed.h2-frame`` — an HTTP/2 frame type (WINDOW_UPDATE, 0x08) on the control
  stream: H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8);
* ``malformed.second-settings`` — a second SETTINGS frame: H3_FRAME_UNEXPECTED
  (RFC 9114 §7.2.4);
  each expects the server to close the connection with that code within the timeout;
* ``malformed.capsule`` — a WT_CLOSE_SESSION capsule too short for its error code on
  an established session's CONNECT stream: a malformed message (RFC 9297 §3.3), so the
  server resets the CONNECT stream (H3_MESSAGE_ERROR, RFC 9114 §4.1.2) or closes the
  connection; a clean FIN, or nothing, fails;
* ``grease`` — a reserved frame type on the control stream (RFC 9114 §7.2.8), a
  unidirectional stream of a reserved type (§6.2.3), a reserved capsule type on the
  CONNECT stream (RFC 9297 §3.2) and the reserved setting in our SETTINGS (§7.2.4.1)
  are ignored: afterwards a request is still answered and the session is still open
  (§9: unknown extension points MUST be ignored).
"""

from __future__ import annotations

import random

from h3.errors import H3ErrorCode
from pywebtransport.probe.conn import ProbeConnection
from pywebtransport.probe.context import ProbeContext, describe_close
from pywebtransport.probe.report import CheckResult, failed, not_applicable, passed
from pywebtransport.probe.wire import (
    grease_capsule_data,
    grease_control_frame,
    grease_stream_header,
    h2_frame_on_control,
    malformed_close_capsule_data,
    malformed_max_push_id,
    second_settings_frame,
)
from pywebtransport.protocol import events as ev

__all__ = [
    "check_grease",
    "check_h2_frame",
    "check_malformed_capsule",
    "check_malformed_frame",
    "check_second_settings",
]


async def _control_violation(
    ctx: ProbeContext, check: str, section: str, payload: bytes, expected: H3ErrorCode
) -> CheckResult:
    async with ctx.connect("h3") as conn:
        if not await ctx.wait_settings(conn):
            return failed(check, section, f"no SETTINGS from the server: {describe_close(conn)}")
        control_id = conn.h3.control.control_id
        assert control_id is not None
        conn.inject(control_id, payload)
        await conn.wait_until(lambda: conn.closed, ctx.timeout)
        term = conn.terminated
    name = f"{expected.name} (0x{int(expected):x})"
    if term is None:
        return failed(
            check, section, f"connection still open {ctx.timeout:g} s later; {name} expected"
        )
    if not term.by_peer:
        return failed(check, section, f"{describe_close(conn)}; {name} expected from the server")
    if term.error_code == expected:
        return passed(check, section, f"connection closed with {name}")
    return failed(check, section, f"closed with 0x{term.error_code:x}; {name} expected")


async def check_malformed_frame(ctx: ProbeContext) -> CheckResult:
    return await _control_violation(
        ctx, "malformed.frame", "RFC 9114 §7.1", malformed_max_push_id(), H3ErrorCode.H3_FRAME_ERROR
    )


async def check_h2_frame(ctx: ProbeContext) -> CheckResult:
    return await _control_violation(
        ctx, "malformed.h2-frame", "RFC 9114 §7.2.8", h2_frame_on_control(),
        H3ErrorCode.H3_FRAME_UNEXPECTED,
    )  # fmt: skip


async def check_second_settings(ctx: ProbeContext) -> CheckResult:
    return await _control_violation(
        ctx, "malformed.second-settings", "RFC 9114 §7.2.4", second_settings_frame(),
        H3ErrorCode.H3_FRAME_UNEXPECTED,
    )  # fmt: skip


async def _session(ctx: ProbeContext, conn: ProbeConnection) -> int | None:
    answer = await ctx.open_session(conn)
    return answer.session_id if isinstance(answer, ev.SessionEstablished) else None


async def check_malformed_capsule(ctx: ProbeContext) -> CheckResult:
    check, section = "malformed.capsule", "RFC 9297 §3.3, RFC 9114 §4.1.2"
    if not ctx.common_drafts():
        return not_applicable(check, section, "no WebTransport draft in common")
    async with ctx.connect("wt") as conn:
        sid = await _session(ctx, conn)
        if sid is None:
            return not_applicable(check, section, "no session on the URL's path")
        conn.watch(sid)
        conn.inject(sid, malformed_close_capsule_data())
        await conn.wait_until(lambda: sid in conn.ends or conn.closed, ctx.timeout)
        end = conn.ends.get(sid)
    if end is not None and end[0] in ("reset", "stop"):
        code = end[1] or 0
        note = "" if code == H3ErrorCode.H3_MESSAGE_ERROR else " (H3_MESSAGE_ERROR expected)"
        return passed(check, section, f"CONNECT stream {end[0]} with 0x{code:x}{note}")
    if end is not None:
        return failed(check, section, "the server ended the CONNECT stream cleanly (FIN)")
    term = conn.terminated
    if term is not None and term.by_peer and term.error_code != H3ErrorCode.H3_NO_ERROR:
        return passed(check, section, f"connection closed with 0x{term.error_code:x}")
    if term is not None:
        return failed(check, section, describe_close(conn))
    return failed(check, section, f"no reaction within {ctx.timeout:g} s")


async def check_grease(ctx: ProbeContext) -> CheckResult:
    check, section = "grease", "RFC 9114 §7.2.8, §6.2.3, §9; RFC 9297 §3.2"
    rng = random.Random()
    wt = bool(ctx.common_drafts())
    async with ctx.connect("wt" if wt else "h3") as conn:
        sid = await _session(ctx, conn) if wt else None
        if wt and sid is None:
            return not_applicable(check, section, "no session on the URL's path")
        if not wt and not await ctx.wait_settings(conn):
            return failed(check, section, f"no SETTINGS: {describe_close(conn)}")
        control_id = conn.h3.control.control_id
        assert control_id is not None
        conn.inject(control_id, grease_control_frame(rng))
        conn.inject(conn.new_uni_stream(), grease_stream_header(rng) + b"grease", end_stream=True)
        if sid is not None:
            conn.watch(sid)
            conn.inject(sid, grease_capsule_data(rng))
        # a round trip after the GREASE: a plain request must still be answered
        request_id = conn.h3.get_next_available_stream_id()
        conn.watch(request_id)
        conn.h3.send_headers(request_id, ctx.get_headers(ctx.unknown_path), end_stream=True)
        conn.flush()

        def answered() -> bool:
            return (
                request_id in conn.ends
                or request_id in conn.answered
                or _h3_answer(conn, request_id)
            )

        await conn.wait_until(lambda: answered() or conn.closed, ctx.timeout)
        done = answered()
        session_end = conn.ends.get(sid) if sid is not None else None
        closed = describe_close(conn) if conn.closed else ""
    if closed:
        return failed(check, section, closed)
    if session_end is not None:
        return failed(check, section, f"the session ended after the GREASE ({session_end[0]})")
    if not done:
        return failed(check, section, f"no answer to a request {ctx.timeout:g} s after the GREASE")
    what = "frame, stream type, capsule and setting" if wt else "frame, stream type and setting"
    session = "; session open" if wt else ""
    return passed(check, section, f"reserved {what} ignored{session}")


def _h3_answer(conn: ProbeConnection, stream_id: int) -> bool:
    return conn.find(lambda e: getattr(e, "stream_id", None) == stream_id) is not None
