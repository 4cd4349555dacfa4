"""Devious Baton: one endpoint of the game on an established WebTransport session.

Theory of operation
-------------------
A :class:`BatonPlayer` plays either role on a
:class:`~pywebtransport.session.WebTransportSession`, using only its public API
(streams, datagrams, close). The rules and the bookkeeping are those of
:class:`~pywebtransport.baton.codec.BatonGame`; section numbers are those of
draft-frindell-webtrans-devious-baton-00.

Each baton is carried by one task at a time, from the stream it arrives on to the
stream it leaves on (§4.2):

* a message on a **peer unidirectional stream** is answered on a bidirectional stream
  we open; the answer to that comes back on the same stream;
* a message on a **bidirectional stream we opened** is answered on a unidirectional
  stream we open; the peer answers that on a new bidirectional stream;
* a message on a **peer bidirectional stream** is answered on that stream.

Every message is followed by FIN. The server starts the game by opening one
unidirectional stream per baton (§4.1). A baton of 0 is not answered: the exchange is
complete for both endpoints (the receiver, and the sender once its 0 is written). When
no baton is active the session is closed without error (§4.5), once every 0 this endpoint
sent was acknowledged (bounded wait): a close that overtook one — lost and sent again
while the game ended elsewhere — would end the peer's game with that baton active.

Errors (§4.7): a malformed message (BRUH), a value we did not expect or more peer
streams than batons in play (SUS), a stream we cannot open in
``stream_credit_timeout`` (DA_YAMN), or no progress for ``idle_timeout`` — also a
padding longer than ``max_padding`` — (BORED) close the session with that code. A
RESET_STREAM on a bidirectional stream we have not answered on is answered with
RESET_STREAM(WHATEVER) (§4.7); the baton on it counts as reset. A STOP_SENDING on a
stream we are still writing resets it too, with WHATEVER (§4.7: QUIC answers the
STOP_SENDING itself, RFC 9000 §3.5, with the code set beforehand by
``answer_stop_sending_with``), and the baton counts as reset.

A datagram (§4.4) is sent for each message received whose value is
= 1 mod 7 (client) or = 0 mod 7 (server), its padding cut to fit; datagrams received
must hold one well-formed message (BRUH otherwise).

Bounded state: at most two tasks per baton (one still waiting for its write to drain
when the answer arrives) plus five (two accept loops, the datagram reader, the idle
watchdog, the server's setup); peer streams being read at once never exceed the active batons
(one more is SUS); a stream's decoder holds at most eight bytes whatever the padding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from pywebtransport.baton.codec import (
    Answer,
    BatonConfig,
    BatonDecoder,
    BatonError,
    BatonGame,
    BatonMessage,
    SessionErrorCode,
    StreamErrorCode,
    decode_baton,
    encode_baton,
    max_datagram_padding,
)
from pywebtransport.exceptions import (
    SessionClosed,
    StreamError,
    StreamReset,
    WebTransportError,
)
from pywebtransport.session import WebTransportSession
from pywebtransport.stream import (
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)

__all__ = ["BatonOutcome", "BatonPlayer"]

logger = logging.getLogger("pywebtransport.baton")

#: a message's bytes are written in pieces of this size (each one is progress)
_WRITE_PIECE = 1 << 16
#: seconds the sender of the last 0 waits for its acknowledgment before closing
_FLUSH_TIMEOUT = 2.0
#: seconds the baton tasks get to finish (read what already arrived) after the end
_END_GRACE = 1.0

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class BatonOutcome:
    """How a game ended, from one endpoint's point of view."""

    ok: bool
    count: int
    completed: int
    reset: int
    messages_sent: int
    messages_received: int
    datagrams_sent: int
    datagrams_received: int
    #: the session error code the game ended with (ours or the peer's), None: none
    error_code: int | None
    #: what went wrong ("" when ok)
    error: str
    #: the peer closed the session (or the connection went away), not us
    closed_by_peer: bool
    #: bounded state: the most tasks this player ran at once (at most 2 x count + 5: a
    #: baton's task may still wait for its write to drain when the answer arrives) and
    #: the most peer streams it read at once (the active batons at most)
    peak_tasks: int = 0
    peak_incoming: int = 0


class BatonPlayer:
    """Plays one side of a Devious Baton session; see the module docstring."""

    def __init__(self, session: WebTransportSession, game: BatonGame, config: BatonConfig) -> None:
        self.session = session
        self.game = game
        self.config = config
        self.count = game.active
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.peak_tasks = 0
        self._running = 0  # tasks started and not finished (``_tasks`` drops them later)
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._end: asyncio.Future[None] = self._loop.create_future()
        self._error: BatonError | None = None
        self._crash: BaseException | None = None
        self._progress = self._loop.time()
        #: the streams our 0s went out on (at most ``count``): acknowledged before the close
        self._zeros: list[WebTransportSendStream | WebTransportStream] = []

    @property
    def tasks(self) -> int:
        """Tasks of this player still running (at most 2 x count + 5)."""
        return self._running

    # -- the game ---------------------------------------------------------------------

    async def play(self, initial: int | None = None) -> BatonOutcome:
        """Play until the game ends; a server passes the ``initial`` baton (§4.1)."""
        session = self.session
        self._spawn(self._accept(session.incoming_unidirectional_streams(), self._peer_uni))
        self._spawn(self._accept(session.incoming_bidirectional_streams(), self._peer_bidi))
        self._spawn(self._datagrams())
        watchdog = self._spawn(self._watchdog())
        assert watchdog is not None
        if initial is not None:
            self._spawn(self._setup(initial))
        closed: asyncio.Future[Any] = asyncio.ensure_future(session.wait_closed())
        waits: set[asyncio.Future[Any]] = {self._end, closed}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            await self._close()
        finally:
            closed.cancel()
            watchdog.cancel()
            await self._stop_tasks()
        if self._crash is not None:
            raise self._crash
        return self._outcome()

    async def _close(self) -> None:
        session = self.session
        if session.is_closed:
            return
        error = self._error
        if error is not None:
            logger.info("baton session %d: %r", session.session_id, error)
            await session.close(int(error.code), str(error)[:200])
        elif self.game.over:
            await self._zeros_acknowledged()
            if not session.is_closed:
                await session.close(0, "")  # §4.5: no error (WT_CLOSE_SESSION 0 and FIN)

    async def _zeros_acknowledged(self) -> None:
        """Wait, ``_FLUSH_TIMEOUT`` at most in all, until every 0 we sent was
        acknowledged, so the close does not overtake one (see the module docstring)."""
        deadline = self._loop.time() + _FLUSH_TIMEOUT
        for stream in self._zeros:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            await stream.wait_flushed(remaining)
        self._zeros.clear()

    async def _stop_tasks(self) -> None:
        self._stopping = True  # nothing new is started from now on
        while tasks := list(self._tasks):  # each baton task reads what already arrived
            _, pending = await asyncio.wait(tasks, timeout=_END_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def _outcome(self) -> BatonOutcome:
        game = self.game
        info = self.session.close_info
        error_code: int | None = None
        by_peer = False
        error = ""
        if self._error is not None:
            error_code = int(self._error.code)
            error = f"{self._error.code.name}: {self._error}"
        elif info is not None and info.by_peer and (info.code or info.http_code):
            by_peer = True
            if info.http_code:
                error = f"session ended by the peer or the connection: {info}"
            else:
                error_code = info.code
                error = f"peer closed with {_code_name(info.code)}: {info.reason}"
        elif not game.over:
            by_peer = info is not None and info.by_peer
            error = f"session ended with {game.active} baton(s) still active"
        if info is not None and info.by_peer:
            by_peer = True
        return BatonOutcome(
            ok=not error,
            count=self.count,
            completed=game.completed,
            reset=game.reset,
            messages_sent=game.messages_sent,
            messages_received=game.messages_received,
            datagrams_sent=self.datagrams_sent,
            datagrams_received=self.datagrams_received,
            error_code=error_code,
            error=error,
            closed_by_peer=by_peer,
            peak_tasks=self.peak_tasks,
            peak_incoming=game.incoming_peak,
        )

    # -- tasks ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self._stopping:
            coro.close()
            return None

        async def runner() -> None:
            try:
                await coro
            except BatonError as exc:
                self._fail(exc)
            except (WebTransportError, ConnectionError) as exc:
                logger.debug("baton task ended: %r", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours: end the game, report it
                logger.exception("baton task failed")
                if self._crash is None:
                    self._crash = exc
                self._set_end()
            finally:
                self._running -= 1

        task = self._loop.create_task(runner())
        self._tasks.add(task)
        self._running += 1
        self.peak_tasks = max(self.peak_tasks, self._running)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fail(self, error: BatonError) -> None:
        if self._error is None and not self.session.is_closed:
            self._error = error
        self._set_end()

    def _set_end(self) -> None:
        if not self._end.done():
            self._end.set_result(None)

    def _check_over(self) -> None:
        if self.game.over:
            self._set_end()

    def _touch(self) -> None:
        self._progress = self._loop.time()

    async def _watchdog(self) -> None:
        timeout = self.config.idle_timeout
        while True:
            idle = self._loop.time() - self._progress
            if idle >= timeout:
                raise BatonError(SessionErrorCode.BORED, f"no progress for {timeout:g} s")  # §4.7
            await asyncio.sleep(timeout - idle)

    async def _accept(
        self, incoming: AsyncIterator[S], carrier: Callable[[S], Coroutine[Any, Any, None]]
    ) -> None:
        async for stream in incoming:
            self.game.peer_stream_opened()  # SUS beyond the active batons
            self._spawn(carrier(stream))

    async def _datagrams(self) -> None:
        session = self.session
        while True:
            try:
                data = await session.receive_datagram()
            except SessionClosed:
                return
            self.datagrams_received += 1
            decode_baton(data, self.config.max_padding)  # §4.7: BRUH if malformed

    async def _setup(self, initial: int) -> None:
        """§4.1: the server opens one unidirectional stream per baton."""
        streams = [await self._open(bidirectional=False) for _ in range(self.count)]
        for stream in streams:
            self._spawn(self._send_first(stream, initial))

    async def _send_first(self, stream: WebTransportSendStream, initial: int) -> None:
        await self._send(stream, initial, Answer.PEER_BIDI)

    # -- one baton --------------------------------------------------------------------

    async def _peer_uni(self, stream: WebTransportReceiveStream) -> None:
        """§4.2: a message on a peer unidirectional stream → our bidirectional one."""
        msg = await self._read_new(stream)
        if msg is None:
            return
        nxt = self._received(msg)
        if nxt is None:
            return
        bidi = await self._open(bidirectional=True)
        if not await self._send(bidi, nxt, Answer.SAME):
            return
        if nxt == 0:  # completed: whatever comes back is not read as a message
            await _discard(bidi)
            return
        reply = await self._read(bidi)
        if reply is None:
            return
        self.game.on_reply(nxt, reply.value)
        nxt = self._received(reply)
        if nxt is None:
            return
        uni = await self._open(bidirectional=False)
        await self._send(uni, nxt, Answer.PEER_BIDI)

    async def _peer_bidi(self, stream: WebTransportStream) -> None:
        """§4.2: a message on a peer bidirectional stream is answered on it."""
        msg = await self._read_new(stream)
        if msg is None:
            return
        nxt = self._received(msg)
        if nxt is None:
            with contextlib.suppress(WebTransportError):
                await stream.close()  # nothing to answer: FIN
            return
        await self._send(stream, nxt, Answer.PEER_UNI)

    def _received(self, msg: BatonMessage) -> int | None:
        self._touch()
        self._maybe_datagram(msg)
        nxt = self.game.received(msg.value)
        if nxt is None:
            self._check_over()
        return nxt

    async def _read_new(
        self, stream: WebTransportReceiveStream | WebTransportStream
    ) -> BatonMessage | None:
        """The message of a stream the peer opened (counted by ``_accept``)."""
        try:
            msg = await self._read(stream)
        finally:
            self.game.peer_stream_read()
        if msg is not None:
            self.game.on_new_stream_message(msg.value, isinstance(stream, WebTransportStream))
        return msg

    async def _read(
        self, stream: WebTransportReceiveStream | WebTransportStream
    ) -> BatonMessage | None:
        """One message up to FIN; None if the peer reset the stream (§4.7)."""
        decoder = BatonDecoder(self.config.max_padding)
        try:
            async for chunk in stream:
                self._touch()
                decoder.feed(chunk)
        except StreamReset:
            self.game.lost()  # §4.5: a reset baton
            if isinstance(stream, WebTransportStream) and not stream.is_write_closed:
                stream.reset(StreamErrorCode.WHATEVER)  # §4.7
            self._check_over()
            return None
        return decoder.finish()

    async def _open(self, bidirectional: bool) -> Any:
        session = self.session
        try:
            async with asyncio.timeout(self.config.stream_credit_timeout):
                if bidirectional:
                    return await session.create_bidirectional_stream()
                return await session.create_unidirectional_stream()
        except TimeoutError:
            kind = "bidirectional" if bidirectional else "unidirectional"
            raise BatonError(
                SessionErrorCode.DA_YAMN, f"no credit for a {kind} stream"
            ) from None  # §4.1, §4.2

    async def _send(
        self,
        stream: WebTransportSendStream | WebTransportStream,
        value: int,
        answer: Answer,
    ) -> bool:
        """Send ``value`` and FIN; False when the peer stopped the stream (§4.7)."""
        game = self.game
        data = encode_baton(value, self.config.padding)
        stream.answer_stop_sending_with(StreamErrorCode.WHATEVER)  # §4.7
        game.expect_answer(value, answer)  # before it can arrive
        try:
            view = memoryview(data)
            while True:
                piece, view = view[:_WRITE_PIECE], view[_WRITE_PIECE:]
                await stream.write(piece, end_stream=not view)
                self._touch()
                if not view:
                    break
        except StreamError:  # STOP_SENDING (QUIC may have reset our half already)
            stream.reset(StreamErrorCode.WHATEVER)  # §4.7; a no-op once QUIC reset it
            game.unsent(value, answer)
            self._check_over()
            return False
        game.sent(value)
        if value == 0:
            self._zeros.append(stream)  # acknowledged before the close (_close)
        self._check_over()
        return True

    def _maybe_datagram(self, msg: BatonMessage) -> None:
        """§4.4: echo the message in a datagram (padding cut to fit)."""
        if not self.game.wants_datagram(msg.value):
            return
        session = self.session
        room = max_datagram_padding(session.max_datagram_size)
        if room < 0:
            return
        try:
            session.send_datagram(encode_baton(msg.value, min(msg.padding_length, room)))
        except WebTransportError as exc:  # no datagrams on this path: like a loss
            logger.debug("baton datagram not sent: %s", exc)
            return
        self.datagrams_sent += 1


async def _discard(stream: WebTransportStream) -> None:
    with contextlib.suppress(WebTransportError):
        async for _ in stream:
            pass


def _code_name(code: int) -> str:
    try:
        return SessionErrorCode(code).name
    except ValueError:
        return f"code {code:#x}"
