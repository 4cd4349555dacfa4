""":class:`~pywebtransport.interop.runner_peer.RunnerPeer` in memory: the real stream
classes of the asyncio API on a recording stub link, fed chunk by chunk like the
network would. Bad requests are refused with their codes after a bounded read (N
against 4N bytes of hostile input: the bytes taken before the refusal do not grow),
files outside ``<www>/<endpoint>`` are never served, pushes nobody asked for leave no
state and write nothing, datagram requests keep a bounded window."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from pywebtransport.interop.runner_options import RunnerLimits
from pywebtransport.interop.runner_peer import RunnerPeer
from pywebtransport.interop.runner_wire import RunnerErrorCode, encode_push
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import WebTransportReceiveStream, WebTransportStream

CHUNK = 1024
LIMITS = RunnerLimits()


class StubLink:
    """What the stream classes call on their link, recorded."""

    send_buffer_high = 1 << 20

    def __init__(self) -> None:
        self.stops: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self.sent: dict[int, bytearray] = {}
        self.fins: set[int] = set()
        self.consumed = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def consume(self, stream_id: int, n: int) -> None:
        self.consumed += n

    def remove_stream(self, stream_id: int) -> None:
        pass

    def stop_sending(self, stream_id: int, code: int) -> None:
        self.stops[stream_id] = code

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.resets[stream_id] = code

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool) -> int:
        self.sent.setdefault(stream_id, bytearray()).extend(bytes(data))
        if end_stream:
            self.fins.add(stream_id)
        return len(data)

    def flush(self) -> None:
        pass

    def send_buffered(self, stream_id: int) -> int:
        return 0

    def check_open(self) -> None:
        pass


class StubSession:
    """What :class:`RunnerPeer` and the streams call on their session, recorded."""

    session_id = 0
    max_datagram_size = 1200

    def __init__(self) -> None:
        self.link = StubLink()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.datagrams: list[bytes] = []

    def stream_ended(self, stream_id: int) -> None:
        pass

    def check_usable(self) -> None:
        pass

    async def wait_credit(self) -> None:
        pass

    def send_datagram(self, data: bytes) -> None:
        self.datagrams.append(bytes(data))


def make_peer(tmp_path: Path, wanted: tuple[str, ...] = (), **limits: Any) -> RunnerPeer:
    www = tmp_path / "www"
    (www / "ep").mkdir(parents=True, exist_ok=True)
    session = cast(WebTransportSession, StubSession())
    return RunnerPeer(
        session,
        "ep",
        www=www,
        downloads=tmp_path / "dl",
        wanted=wanted,
        limits=RunnerLimits(**limits) if limits else LIMITS,
    )


def stub(peer: RunnerPeer) -> StubSession:
    return cast(StubSession, peer.session)


async def feed_until_stopped(stream: Any, data: bytes, fin: bool = True) -> int:
    """Deliver ``data`` in CHUNK pieces, letting the reader run after each; stop when
    the reader stopped the stream. The bytes delivered until then."""
    fed = 0
    for offset in range(0, len(data), CHUNK):
        if stream._stopped:
            return fed
        piece = data[offset : offset + CHUNK]
        stream.on_data(piece, fin and offset + CHUNK >= len(data))
        fed += len(piece)
        for _ in range(3):
            await asyncio.sleep(0)
    return fed


async def run_with_feed(
    peer_call: Callable[[Any], Any], stream: Any, data: bytes, fin: bool = True
) -> int:
    task = asyncio.ensure_future(peer_call(stream))
    fed = await feed_until_stopped(stream, data, fin)
    await asyncio.wait_for(task, 5)
    return fed


# ======================================================================================
# bounded reads of hostile requests (N vs 4N)
# ======================================================================================


async def overlong_bidi(tmp_path: Path, size: int) -> tuple[int, StubLink]:
    peer = make_peer(tmp_path)
    stream = WebTransportStream(peer.session, 0)
    fed = await run_with_feed(peer._answer_bidi, stream, b"GET " + b"a" * size)
    return fed, stub(peer).link


async def test_overlong_bidi_request_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    n = 64 * 1024
    fed_n, link_n = await overlong_bidi(tmp_path / "n", n)
    fed_4n, link_4n = await overlong_bidi(tmp_path / "4n", 4 * n)
    for link in (link_n, link_4n):
        assert link.stops == {0: RunnerErrorCode.BAD_REQUEST}
        assert link.resets == {0: RunnerErrorCode.BAD_REQUEST}
        assert not link.sent
    # the request was refused once the limit was passed: not after N or 4N bytes
    assert fed_n == fed_4n <= LIMITS.max_request_size + CHUNK


async def overlong_uni(tmp_path: Path, data: bytes) -> tuple[int, RunnerPeer]:
    peer = make_peer(tmp_path)
    stream = WebTransportReceiveStream(peer.session, 2)
    fed = await run_with_feed(peer._on_uni, stream, data)
    return fed, peer


@pytest.mark.parametrize("shape", ["no newline", "GET line then a long tail"])
async def test_overlong_unidirectional_input_is_refused_after_a_bounded_read(
    tmp_path: Path, shape: str
) -> None:
    n = 64 * 1024

    def data(size: int) -> bytes:
        if shape == "no newline":
            return b"PUSH " + b"b" * size
        return b"GET a\n" + b"c" * size

    fed_n, peer_n = await overlong_uni(tmp_path / "n", data(n))
    fed_4n, peer_4n = await overlong_uni(tmp_path / "4n", data(4 * n))
    limit = max(LIMITS.max_request_size, LIMITS.max_push_header)
    assert fed_n == fed_4n <= limit + CHUNK
    for peer in (peer_n, peer_4n):
        assert stub(peer).link.stops == {2: RunnerErrorCode.BAD_REQUEST}
        assert peer.refused == 1
        assert not stub(peer).link.sent


async def pushes_nobody_asked_for(tmp_path: Path, count: int) -> RunnerPeer:
    peer = make_peer(tmp_path, wanted=("wanted",))
    for i in range(count):
        stream = WebTransportReceiveStream(peer.session, 4 * i + 3)
        await run_with_feed(peer._on_uni, stream, encode_push(f"x{i}") + os.urandom(3 * CHUNK))
    # a push of the wanted file, then the same name again while and after it is saved
    first = WebTransportReceiveStream(peer.session, 4 * count + 3)
    await run_with_feed(peer._on_uni, first, encode_push("wanted") + b"W" * 5000)
    again = WebTransportReceiveStream(peer.session, 4 * count + 7)
    await run_with_feed(peer._on_uni, again, encode_push("wanted") + b"X" * 5000)
    return peer


async def test_pushes_nobody_asked_for_leave_no_state_and_write_nothing(tmp_path: Path) -> None:
    n = 50
    small = await pushes_nobody_asked_for(tmp_path / "n", n)
    large = await pushes_nobody_asked_for(tmp_path / "4n", 4 * n)
    for peer, count in ((small, n), (large, 4 * n)):
        assert peer.pushes_refused == count + 1  # the second push of "wanted" too
        assert peer._receiving == set()
        assert peer.missing == []
        assert peer.saved == ["wanted"]
        assert [p.name for p in (peer.downloads / "ep").iterdir()] == ["wanted"]
        assert (peer.downloads / "ep" / "wanted").read_bytes() == b"W" * 5000
        codes = set(stub(peer).link.stops.values())
        assert codes == {RunnerErrorCode.UNEXPECTED_PUSH}
        assert len(stub(peer).link.stops) == count + 1


# ======================================================================================
# answering: only files of <www>/<endpoint>
# ======================================================================================


@pytest.mark.parametrize(
    ("request_line", "code"),
    [
        (b"GET ../secret", RunnerErrorCode.BAD_REQUEST),
        (b"GET /etc/passwd", RunnerErrorCode.BAD_REQUEST),
        (b"GET link-out", RunnerErrorCode.NOT_FOUND),
        (b"GET missing", RunnerErrorCode.NOT_FOUND),
        (b"GET sub", RunnerErrorCode.NOT_FOUND),
        (b"PUT file", RunnerErrorCode.BAD_REQUEST),
    ],
)
async def test_bidi_requests_outside_the_endpoint_are_refused(
    tmp_path: Path, request_line: bytes, code: RunnerErrorCode
) -> None:
    peer = make_peer(tmp_path)
    (tmp_path / "www" / "secret").write_bytes(b"S")
    (tmp_path / "www" / "ep" / "sub").mkdir()
    os.symlink(tmp_path / "www" / "secret", tmp_path / "www" / "ep" / "link-out")
    stream = WebTransportStream(peer.session, 0)
    await run_with_feed(peer._answer_bidi, stream, request_line)
    assert stub(peer).link.resets == {0: code}
    assert not stub(peer).link.sent
    assert peer.answered == 0


async def test_bidi_request_is_answered_on_its_stream(tmp_path: Path) -> None:
    peer = make_peer(tmp_path)
    body = os.urandom(200_000)
    (tmp_path / "www" / "ep" / "file").write_bytes(body)
    stream = WebTransportStream(peer.session, 0)
    await run_with_feed(peer._answer_bidi, stream, b"GET file")
    link = stub(peer).link
    assert bytes(link.sent[0]) == body
    assert link.fins == {0}
    assert not link.resets
    assert peer.answered == 1


def test_datagram_requests(tmp_path: Path) -> None:
    peer = make_peer(tmp_path)
    session = stub(peer)
    (tmp_path / "www" / "ep" / "small").write_bytes(b"s" * 900)
    (tmp_path / "www" / "ep" / "big").write_bytes(b"b" * 1200)
    (tmp_path / "www" / "top").write_bytes(b"t")
    peer._answer_datagram("small")
    assert session.datagrams == [b"PUSH small\n" + b"s" * 900]
    for name in ("big", "missing", "../top"):
        with pytest.raises(Exception) as info:
            peer._answer_datagram(name)
        assert getattr(info.value, "error_code", None) is not None
    assert len(session.datagrams) == 1


# ======================================================================================
# requesting over datagrams: a bounded window, sent again after silence
# ======================================================================================


async def test_datagram_requests_keep_a_bounded_window(tmp_path: Path) -> None:
    names = tuple(f"d{i}" for i in range(100))
    peer = make_peer(tmp_path, wanted=names, datagram_window=8, datagram_retry=0.005)
    session = stub(peer)
    peer.request("datagram")
    await asyncio.sleep(0.1)  # several silent rounds: the same 8 GETs again
    asked = {d.removeprefix(b"GET ").decode() for d in session.datagrams}
    assert asked == set(names[:8])
    assert len(session.datagrams) > 8
    # answers (and duplicates of them) open the window further, one file each
    for name in names[:8]:
        peer._on_push_datagram(name, name.encode())
        peer._on_push_datagram(name, b"duplicate")
    await asyncio.sleep(0.05)
    asked = {d.removeprefix(b"GET ").decode() for d in session.datagrams}
    assert asked == set(names[:16])
    assert (peer.downloads / "ep" / "d0").read_bytes() == b"d0"
    for name in names[8:]:
        peer._on_push_datagram(name, b"x")
    assert await asyncio.wait_for(peer._all_saved.wait(), 1) is True
    await peer.stop()
    assert peer.missing == []
