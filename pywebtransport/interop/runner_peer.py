"""Both halves of the runner's WebTransport protocol on one session.

Theory of operation
-------------------
A :class:`RunnerPeer` runs on one established session, on either side (the runner's
protocol is symmetric once the session is up; :mod:`pywebtransport.interop.runner_wire`
describes it):

*answering*: every request of the peer is answered from ``<www>/<endpoint>/``: a
``GET`` on a unidirectional stream by a new unidirectional stream ``PUSH <name>\\n`` +
bytes, a ``GET`` on a bidirectional stream on that stream, a ``GET`` datagram by one
``PUSH`` datagram. A bad request is refused with RESET_STREAM / STOP_SENDING and a
:class:`~pywebtransport.interop.runner_wire.RunnerErrorCode`; a missing file or one
outside the endpoint directory likewise (``NOT_FOUND``); a datagram request that cannot
be answered is dropped.

*requesting*: :meth:`RunnerPeer.request` asks for the files ``wanted`` over one
transport, all in parallel, and saves them to ``<downloads>/<endpoint>/<name>``. A push
for a file not asked for (or already saved, or arriving twice at once) is refused with
STOP_SENDING (``UNEXPECTED_PUSH``) and nothing is written. Datagram requests keep at most
``datagram_window`` GETs in flight and send the unanswered ones again after
``datagram_retry`` seconds of silence (doubling up to 2 s): datagrams may be lost
(RFC 9221 §5), a GET is idempotent.

Incoming unidirectional streams carry both requests (``GET <name>`` up to FIN) and
pushes (``PUSH <name>\\n`` ...): the first line, read with a bounded ``readuntil``, tells
which. What a peer can make us hold is bounded by :class:`RunnerLimits` (request bytes,
push header bytes, concurrent answers) and by the session's own limits (stream and
datagram queues); the state per session is the set of files still wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from pywebtransport.exceptions import WebTransportError
from pywebtransport.interop import _Tasks
from pywebtransport.interop.runner_options import RunnerLimits, Transport
from pywebtransport.interop.runner_wire import (
    RunnerErrorCode,
    RunnerWireError,
    download_path,
    encode_get,
    encode_push,
    parse_get,
    parse_push_datagram,
    parse_push_header,
    resolve_file,
)
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import (
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)

__all__ = ["FILE_CHUNK", "RunnerPeer"]

logger = logging.getLogger("pywebtransport.interop.runner")

FILE_CHUNK = 64 * 1024  # bytes read from a file per stream write
_MAX_RETRY = 2.0  # seconds: ceiling of the datagram retry interval


class RunnerPeer:
    """The runner protocol on one session: answers the peer, requests ``wanted``."""

    def __init__(
        self,
        session: WebTransportSession,
        endpoint: str,
        *,
        www: Path | None,
        downloads: Path,
        wanted: Iterable[str] = (),
        limits: RunnerLimits | None = None,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.www = www
        self.downloads = downloads
        self.limits = limits or RunnerLimits()
        self._wanted: dict[str, None] = dict.fromkeys(wanted)  # still missing, in order
        self._receiving: set[str] = set()  # pushes being written
        self.saved: list[str] = []
        self._all_saved = asyncio.Event()
        if not self._wanted:
            self._all_saved.set()
        self._progress = asyncio.Event()
        self._answers = asyncio.Semaphore(self.limits.max_concurrent_answers)
        self._tasks = _Tasks()
        # counters (tests and logs)
        self.answered = 0
        self.refused = 0
        self.pushes_refused = 0
        self.get_datagrams_sent = 0

    @property
    def missing(self) -> list[str]:
        return list(self._wanted)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start answering the peer (streams and datagrams) until :meth:`stop`."""
        session = self.session
        self._tasks.spawn(
            self._tasks.for_each(session.incoming_unidirectional_streams(), self._on_uni)
        )
        self._tasks.spawn(
            self._tasks.for_each(session.incoming_bidirectional_streams(), self._answer_bidi)
        )
        self._tasks.spawn(self._datagrams())

    async def stop(self) -> None:
        await self._tasks.cancel()

    def request(self, transport: Transport) -> None:
        """Request every wanted file over ``transport``, in parallel (background)."""
        names = list(self._wanted)
        if transport == "datagram":
            self._tasks.spawn(self._request_datagrams(names))
        elif transport == "bidirectional":
            for name in names:
                self._tasks.spawn(self._fetch_bidi(name))
        else:
            for name in names:
                self._tasks.spawn(self._send_uni_get(name))

    async def wait_saved(self) -> bool:
        """Wait until every wanted file is saved (True) or the session ended (False,
        unless everything was saved by then)."""
        saved = asyncio.ensure_future(self._all_saved.wait())
        closed = asyncio.ensure_future(self.session.wait_closed())
        try:
            await asyncio.wait({saved, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            saved.cancel()
            closed.cancel()
            await asyncio.gather(saved, closed, return_exceptions=True)
        return not self._wanted

    def _saved(self, name: str) -> None:
        self._wanted.pop(name, None)
        self.saved.append(name)
        self._progress.set()
        if not self._wanted:
            self._all_saved.set()
        logger.info("%s: saved %s", self.endpoint, name)

    # -- answering ----------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        found = resolve_file(self.www, self.endpoint, name) if self.www is not None else None
        if found is None:
            raise RunnerWireError(RunnerErrorCode.NOT_FOUND, f"no file {name!r}")
        return found

    async def _read_request(self, stream: WebTransportReceiveStream | WebTransportStream) -> str:
        """The file name of a stream's request, reading no more than the limit + 1."""
        limit = self.limits.max_request_size
        data = bytearray()
        while chunk := await stream.read(limit + 1 - len(data)):
            data += chunk
            if len(data) > limit:
                raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "request too long")
        return parse_get(bytes(data))

    async def _on_uni(self, stream: WebTransportReceiveStream) -> None:
        limit = max(self.limits.max_push_header, self.limits.max_request_size)
        try:
            head = await stream.readuntil(b"\n", limit=limit)
        except asyncio.IncompleteReadError as exc:  # FIN before a newline: a request
            await self._answer_uni(exc.partial)
            return
        except asyncio.LimitOverrunError:
            self._refuse_receive(stream, RunnerErrorCode.BAD_REQUEST, "first line too long")
            return
        if head.startswith(b"GET "):  # a request ended by a newline: read up to FIN
            rest = bytearray(head)
            while chunk := await stream.read(limit + 1 - len(rest)):
                rest += chunk
                if len(rest) > limit:
                    self._refuse_receive(stream, RunnerErrorCode.BAD_REQUEST, "request too long")
                    return
            await self._answer_uni(bytes(rest))
        else:
            await self._receive_push(head, stream)

    def _refuse_receive(
        self,
        stream: WebTransportReceiveStream | WebTransportStream,
        code: RunnerErrorCode,
        why: str,
    ) -> None:
        self.refused += 1
        logger.info("%s: stream %d refused: %s", self.endpoint, stream.stream_id, why)
        stream.stop_receiving(code)

    async def _answer_uni(self, request: bytes) -> None:
        try:
            name = parse_get(request)
            path = self._file(name)
        except RunnerWireError as exc:  # the request stream is finished: nothing to reset
            self.refused += 1
            logger.info("%s: unidirectional GET refused: %s", self.endpoint, exc.reason)
            return
        async with self._answers:
            out = await self.session.create_unidirectional_stream()
            await out.write(encode_push(name))
            await self._send_file(out, path)
        self.answered += 1

    async def _answer_bidi(self, stream: WebTransportStream) -> None:
        try:
            name = await self._read_request(stream)
            path = self._file(name)
        except RunnerWireError as exc:
            self._refuse_receive(stream, exc.error_code, exc.reason)
            stream.reset(exc.error_code)
            return
        async with self._answers:
            await self._send_file(stream, path)
        self.answered += 1

    @staticmethod
    async def _send_file(stream: WebTransportSendStream | WebTransportStream, path: Path) -> None:
        try:
            fp = path.open("rb")
        except OSError:
            stream.reset(RunnerErrorCode.INTERNAL_ERROR)
            raise
        with fp:
            while chunk := fp.read(FILE_CHUNK):
                await stream.write(chunk)
        await stream.write(b"", end_stream=True)

    async def _datagrams(self) -> None:
        session = self.session
        while True:
            data = await session.receive_datagram()
            try:
                if data.startswith(b"GET "):
                    self._answer_datagram(parse_get(data))
                else:
                    self._on_push_datagram(*parse_push_datagram(data))
            except RunnerWireError as exc:
                self.refused += 1
                logger.info("%s: datagram dropped: %s", self.endpoint, exc.reason)
            except OSError as exc:  # a download that cannot be written: logged, not fatal
                logger.warning("%s: datagram not saved: %s", self.endpoint, exc)

    def _answer_datagram(self, name: str) -> None:
        path = self._file(name)
        header = encode_push(name)
        room = self.session.max_datagram_size - len(header)
        try:
            with path.open("rb") as fp:
                body = fp.read(room + 1)
        except OSError as exc:
            raise RunnerWireError(RunnerErrorCode.INTERNAL_ERROR, str(exc)) from None
        if len(body) > room:
            raise RunnerWireError(RunnerErrorCode.INTERNAL_ERROR, f"{name} fits no datagram")
        try:
            self.session.send_datagram(header + body)
        except WebTransportError as exc:
            raise RunnerWireError(RunnerErrorCode.INTERNAL_ERROR, str(exc)) from None
        self.answered += 1

    # -- requesting ---------------------------------------------------------------------

    def _claim(self, name: str) -> Path | None:
        """The download path of an expected push, now being received; None if the
        name was not asked for, is saved already or is being received."""
        if name not in self._wanted or name in self._receiving:
            return None
        target = download_path(self.downloads, self.endpoint, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._receiving.add(name)
        return target

    def _on_push_datagram(self, name: str, payload: bytes) -> None:
        target = self._claim(name)
        if target is None:
            return  # a duplicate answer to a GET sent again: ignored
        try:
            target.write_bytes(payload)
        finally:
            self._receiving.discard(name)
        self._saved(name)

    async def _receive_push(
        self, head: bytes, stream: WebTransportReceiveStream | WebTransportStream
    ) -> None:
        try:
            name = parse_push_header(head)
        except RunnerWireError as exc:
            self._refuse_receive(stream, exc.error_code, exc.reason)
            return
        target = self._claim(name)
        if target is None:
            self.pushes_refused += 1
            self._refuse_receive(stream, RunnerErrorCode.UNEXPECTED_PUSH, f"push of {name!r}")
            return
        await self._save_stream(name, target, stream)

    async def _save_stream(
        self, name: str, target: Path, stream: WebTransportReceiveStream | WebTransportStream
    ) -> None:
        done = False
        try:
            with target.open("wb") as fp:
                await _copy(stream, fp)
            done = True
        finally:
            self._receiving.discard(name)
            if not done:
                with contextlib.suppress(OSError):
                    target.unlink()
        self._saved(name)

    async def _send_uni_get(self, name: str) -> None:
        stream = await self.session.create_unidirectional_stream()
        await stream.write(encode_get(name), end_stream=True)

    async def _fetch_bidi(self, name: str) -> None:
        stream = await self.session.create_bidirectional_stream()
        await stream.write(encode_get(name), end_stream=True)
        target = self._claim(name)
        if target is None:
            stream.stop_receiving(RunnerErrorCode.NO_ERROR)
            return
        await self._save_stream(name, target, stream)

    async def _request_datagrams(self, names: list[str]) -> None:
        limits = self.limits
        queue = deque(names)
        in_flight: dict[str, None] = {}
        delay = limits.datagram_retry
        while self._wanted:
            while queue and len(in_flight) < limits.datagram_window:
                name = queue.popleft()
                if name in self._wanted:
                    in_flight[name] = None
                    self._send_get_datagram(name)
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), delay)
                delay = limits.datagram_retry
            except TimeoutError:
                for name in in_flight:
                    self._send_get_datagram(name)
                delay = min(delay * 2, _MAX_RETRY)
            in_flight = {n: None for n in in_flight if n in self._wanted}

    def _send_get_datagram(self, name: str) -> None:
        self.session.send_datagram(encode_get(name))
        self.get_datagrams_sent += 1


async def _copy(stream: WebTransportReceiveStream | WebTransportStream, fp: BinaryIO) -> None:
    async for chunk in stream:
        fp.write(chunk)
