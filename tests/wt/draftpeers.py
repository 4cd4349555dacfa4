"""Peers for the draft tests: what each draft's SETTINGS look like, written out from
the draft texts (not from :mod:`pywebtransport.protocol.drafts`, so the tests check the
code against the table, not against itself), and one WebTransport endpoint on the fake
QUIC connection fed hand-made SETTINGS frames (any values, even invalid ones).

Marker settings (docs/webtransport-drafts.md):

* draft-02: ENABLE_WEBTRANSPORT 0x2b603742 = 1 (draft-02 §8.2) and, as Chromium and
  Firefox send it, the draft-04 H3_DATAGRAM 0xffd277 = 1;
* draft-07: WEBTRANSPORT_MAX_SESSIONS 0xc671706a = N;
* draft-13: WT_MAX_SESSIONS 0x14e9cd29 = N (issue 11);
* draft-16: WT_ENABLED 0x2c7cf000 = 1 (draft-16 §9.2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from h3.frames import FrameType, encode_frame
from h3.streams import StreamType, encode_uni_stream_header
from pywebtransport.protocol import Draft, WebTransportConfiguration, WebTransportConnection
from quic import events as qe
from quic.buffer import encode_varint
from tests.wt.fakequic import FakeQuic, feed

__all__ = [
    "CONNECT_PROTOCOL",
    "H3_DATAGRAM",
    "MARKERS",
    "WINDOWS",
    "client_fed",
    "markers",
    "peer_settings",
    "raw_settings_frame",
    "server_fed",
    "subsets",
]

H3_DATAGRAM = 0x33  # RFC 9297 §2.1.1
CONNECT_PROTOCOL = 0x08  # RFC 9220 §3
WINDOWS = (0x2B61, 0x2B65, 0x2B64)  # WT_INITIAL_MAX_DATA, _STREAMS_BIDI, _STREAMS_UNI

MARKERS: dict[Draft, dict[int, int]] = {
    Draft.DRAFT02: {0x2B603742: 1, 0xFFD277: 1},
    Draft.DRAFT07: {0xC671706A: 4},
    Draft.DRAFT13: {0x14E9CD29: 4},
    Draft.DRAFT16: {0x2C7CF000: 1},
}


def subsets(*, empty: bool) -> list[tuple[Draft, ...]]:
    """Every subset of the four drafts, newest first inside each."""
    drafts = sorted(Draft, reverse=True)
    return [
        combo
        for size in range(0 if empty else 1, len(drafts) + 1)
        for combo in itertools.combinations(drafts, size)
    ]


def markers(drafts: Iterable[Draft]) -> dict[int, int]:
    out: dict[int, int] = {}
    for draft in drafts:
        out.update(MARKERS[draft])
    return out


def peer_settings(
    drafts: Iterable[Draft], *, server: bool, windows: tuple[int, int, int] = (1000, 10, 10)
) -> dict[int, int]:
    """A well-formed peer of ``drafts``: markers, H3_DATAGRAM, extended CONNECT (server),
    flow-control windows."""
    settings = {H3_DATAGRAM: 1, **markers(drafts)}
    if server:
        settings[CONNECT_PROTOCOL] = 1
    settings.update((k, v) for k, v in zip(WINDOWS, windows, strict=True) if v)
    return settings


def raw_settings_frame(settings: dict[int, int]) -> bytes:
    """A control stream's start with SETTINGS, encoded without any validation."""
    payload = b"".join(encode_varint(k) + encode_varint(v) for k, v in settings.items())
    return encode_uni_stream_header(StreamType.CONTROL) + encode_frame(FrameType.SETTINGS, payload)


class _NoTickets:
    """The handshake part an HTTP/3 client asks about tickets (h3.remembered): none."""

    ticket = None

    def __init__(self) -> None:
        self.early = self

    def hold_tickets(self) -> None:
        pass

    def set_application_data(self, data: bytes) -> None:
        pass


def _fed(
    is_client: bool,
    settings: dict[int, int],
    config: WebTransportConfiguration | None,
    reset_stream_at: bool,
) -> tuple[WebTransportConnection, FakeQuic]:
    quic = FakeQuic(is_client=is_client)
    quic.peer_accepts_reset_stream_at = reset_stream_at
    if is_client:  # a fresh connection: no ticket, no 0-RTT
        quic.handshake = _NoTickets()  # type: ignore[attr-defined]
        quic.early_data_possible = False  # type: ignore[attr-defined]
    wt = WebTransportConnection(quic, config)  # type: ignore[arg-type]
    feed(wt, qe.HandshakeCompleted("h3"))
    control = 3 if is_client else 2  # the peer's first unidirectional stream
    feed(wt, qe.StreamDataReceived(control, raw_settings_frame(settings), False))
    return wt, quic


def client_fed(
    settings: dict[int, int],
    config: WebTransportConfiguration | None = None,
    *,
    reset_stream_at: bool = True,
) -> tuple[WebTransportConnection, FakeQuic]:
    """Our client after a server's SETTINGS ``settings`` (fake QUIC)."""
    return _fed(True, settings, config, reset_stream_at)


def server_fed(
    settings: dict[int, int],
    config: WebTransportConfiguration | None = None,
    *,
    reset_stream_at: bool = True,
) -> tuple[WebTransportConnection, FakeQuic]:
    """Our server after a client's SETTINGS ``settings`` (fake QUIC)."""
    return _fed(False, settings, config, reset_stream_at)
