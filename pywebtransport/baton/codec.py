"""Devious Baton: the message codec, the query parameters and the rules of the game.

Theory of operation
-------------------
Sans-I/O and clock-free; the asyncio players (:mod:`pywebtransport.baton.player`) drive
it. Section numbers are those of draft-frindell-webtrans-devious-baton-00 (protocol
version 0, the only one it defines).

* :func:`encode_baton` / :func:`decode_baton` — one Baton message (§4.3:
  ``padding length (i)``, ``padding``, ``baton (1)``), the latter for a datagram, which
  must hold exactly one message. :class:`BatonDecoder` takes a stream's bytes chunk by
  chunk and **discards the padding as it arrives**: a stream holds at most a few bytes
  of state whatever padding length the peer announces; an announced length above
  ``max_padding`` (ours, see :class:`BatonConfig`) stops the game (BORED, §4.7: we will
  not wait that long). A message cut short by the stream's FIN, an empty stream, or
  bytes after the baton byte are malformed (BRUH, §4.7). Every failure is a
  :class:`BatonError` carrying the session error code to close with; nothing else is
  ever raised on peer input.
* :func:`parse_query` — the query parameters of §3.1 (``version``, ``baton``,
  ``count``): a value that is not a plain decimal integer in range, a repeated
  parameter, an unsupported version or a ``count`` above ``max_count`` is a
  :class:`QueryError` whose ``status`` (400) rejects the session (§3.1: "MUST reject
  the WebTransport session with a 4xx status code").
* :class:`BatonGame` — the bookkeeping of one endpoint (§4): the number of active
  batons (decreased when a baton exchange completes — a 0 received or sent — or is
  reset, §4.5), the values expected on streams the peer will open (a message with
  another value is unexpected: SUS, §4.2), the number of peer streams being read at
  once (more than the active batons cannot be legitimate: SUS), and the datagram rule
  (§4.4: a client echoes values = 1 mod 7, a server values = 0 mod 7).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import parse_qsl

from quic.buffer import decode_varint, encode_varint, varint_size
from quic.errors import BufferReadError

__all__ = [
    "DEFAULT_PATH",
    "VERSION",
    "Answer",
    "BatonConfig",
    "BatonDecoder",
    "BatonError",
    "BatonGame",
    "BatonMessage",
    "BatonParams",
    "QueryError",
    "SessionErrorCode",
    "StreamErrorCode",
    "decode_baton",
    "encode_baton",
    "max_datagram_padding",
    "next_value",
    "parse_query",
    "query_string",
]

#: §3: the RECOMMENDED path of the Devious Baton endpoint.
DEFAULT_PATH = "/webtransport/devious-baton"
#: §3.2: the protocol version this draft defines (the only one we speak).
VERSION = 0
_SUPPORTED_VERSIONS = frozenset({VERSION})
#: BatonConfig.max_count's default
DEFAULT_MAX_COUNT = 256
_INTEGER = re.compile(r"[0-9]{1,10}")  # plain decimal, bounded: no sign, space or "_"


class StreamErrorCode(IntEnum):
    """§4.7.1: codes of RESET_STREAM and STOP_SENDING."""

    IDC = 0x01  # STOP_SENDING: I don't care about this stream
    WHATEVER = 0x02  # RESET_STREAM answering the peer's STOP_SENDING / bidi RESET_STREAM
    I_LIED = 0x03  # spontaneous RESET_STREAM


class SessionErrorCode(IntEnum):
    """§4.7.2: codes of CLOSE_WEBTRANSPORT_SESSION."""

    DA_YAMN = 0x01  # insufficient stream credit to continue the protocol
    BRUH = 0x02  # a malformed Baton message
    SUS = 0x03  # an unexpected Baton message
    BORED = 0x04  # tired of waiting for the next message


class BatonError(Exception):
    """A protocol failure of the game: close the session with :attr:`code`."""

    def __init__(self, code: SessionErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __repr__(self) -> str:
        return f"BatonError({self.code.name}, {str(self)!r})"


class QueryError(ValueError):
    """A query parameter the server cannot accept: reject with HTTP :attr:`status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class BatonConfig:
    """Our limits and timers of the game (docs/limits.md, "Devious Baton").

    The draft puts no bound on them; each is what we are willing to hold or wait for.
    """

    #: §3.1: the most batons a server plays in parallel (a larger ``count`` is refused
    #: with 400) and a client asks for; each baton holds one task and one or two
    #: streams at a time.
    max_count: int = DEFAULT_MAX_COUNT
    #: §4.3: the largest padding length we accept in a message we receive (the bytes are
    #: discarded as they arrive, so this bounds time, not memory); beyond it the session
    #: is closed with BORED (§4.7: we will not wait for that much padding).
    max_padding: int = 16 * 1024 * 1024
    #: §4.7: seconds without progress (a message or part of one received, a message
    #: sent) before the session is closed with BORED; also bounds a wait for
    #: flow-control credit (§4.2: "SHOULD close ... with BORED if the peer takes too
    #: long to grant credit").
    idle_timeout: float = 10.0
    #: §4.1, §4.2: seconds we wait for the stream credit to open the stream a baton
    #: needs before closing with DA_YAMN ("insufficient stream credit").
    stream_credit_timeout: float = 2.0
    #: §4.3: padding length of the messages we send (0: none).
    padding: int = 0

    def __post_init__(self) -> None:
        if self.max_count < 1:
            raise ValueError("max_count must be at least 1")
        if not 0 <= self.padding <= self.max_padding:
            raise ValueError("padding must be between 0 and max_padding")
        if self.idle_timeout <= 0 or self.stream_credit_timeout < 0:
            raise ValueError("timeouts must be positive")


# ======================================================================================
# messages (§4.3)
# ======================================================================================


@dataclass(frozen=True, slots=True)
class BatonMessage:
    """One decoded Baton message: the baton and how much padding preceded it."""

    value: int
    padding_length: int = 0


def encode_baton(value: int, padding: int = 0) -> bytes:
    """A Baton message with ``padding`` zero bytes of padding (§4.3)."""
    if not 0 <= value <= 255:
        raise ValueError(f"a baton is one byte: {value}")
    return encode_varint(padding) + bytes(padding) + bytes((value,))


def max_datagram_padding(max_size: int) -> int:
    """The largest padding whose message fits ``max_size`` bytes (-1: none fits)."""
    room = max_size - 1
    if room < 1:
        return -1
    padding = room - 1
    while padding >= 0 and varint_size(padding) + padding > room:
        padding -= 1
    return padding


def decode_baton(data: bytes | bytearray | memoryview, max_padding: int = 1 << 62) -> BatonMessage:
    """Exactly one Baton message (a datagram, §4.4); BatonError otherwise."""
    decoder = BatonDecoder(max_padding)
    decoder.feed(data)
    return decoder.finish()


class BatonDecoder:
    """Decode one Baton message from a stream's chunks; padding is not kept."""

    __slots__ = ("_head", "_max_padding", "_padding", "_remaining", "_value")

    def __init__(self, max_padding: int = 1 << 62) -> None:
        self._max_padding = max_padding
        self._head = b""  # the bytes of the padding length read so far (at most 8)
        self._padding = -1  # the padding length, once read
        self._remaining = 0  # padding bytes still to skip
        self._value = -1  # the baton, once read

    @property
    def done(self) -> bool:
        """The baton byte was read (only the stream's end may follow)."""
        return self._value >= 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the stream; BatonError on malformed input."""
        view = memoryview(data)
        while view:
            if self._value >= 0:
                raise BatonError(SessionErrorCode.BRUH, "bytes after the baton")
            if self._padding < 0:
                view = self._read_length(view)
            elif self._remaining:
                skip = min(self._remaining, len(view))
                self._remaining -= skip
                view = view[skip:]
            else:
                self._value = view[0]
                view = view[1:]

    def _read_length(self, view: memoryview) -> memoryview:
        head = self._head + bytes(view[: 8 - len(self._head)])
        try:
            length, end = decode_varint(head, 0)
        except BufferReadError:  # the varint continues in the next chunk
            taken = len(head) - len(self._head)
            self._head = head
            return view[taken:]
        if length > self._max_padding:
            raise BatonError(
                SessionErrorCode.BORED,
                f"padding of {length} bytes is more than we wait for ({self._max_padding})",
            )
        used = end - len(self._head)
        self._head = b""
        self._padding = self._remaining = length
        return view[used:]

    def finish(self) -> BatonMessage:
        """The stream ended (FIN): the message, or BatonError(BRUH) if incomplete."""
        if self._value < 0:
            raise BatonError(SessionErrorCode.BRUH, "incomplete Baton message")
        return BatonMessage(self._value, self._padding)


def next_value(value: int) -> int:
    """§4.2: the baton an endpoint sends after receiving ``value``."""
    return (value + 1) % 256


# ======================================================================================
# query parameters (§3.1)
# ======================================================================================


@dataclass(frozen=True, slots=True)
class BatonParams:
    """The session's parameters; ``baton`` None: the server picks one (§3.1)."""

    version: int = VERSION
    baton: int | None = None
    count: int = 1


def _integer(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise QueryError(f"{name} is not a decimal integer: {text[:20]!r}")
    return int(text)


def parse_query(query: str, max_count: int = DEFAULT_MAX_COUNT) -> BatonParams:
    """The parameters of a request's query string; QueryError if one is invalid."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError as exc:  # more fields than max_num_fields
        raise QueryError(str(exc)) from None
    values: dict[str, str] = {}
    for name, text in pairs:
        if name in ("version", "baton", "count"):
            if name in values:
                raise QueryError(f"{name} given twice")
            values[name] = text
    version = _integer("version", values["version"]) if "version" in values else VERSION
    if version not in _SUPPORTED_VERSIONS:
        raise QueryError(f"unsupported version {version}")
    baton: int | None = None
    if "baton" in values:
        baton = _integer("baton", values["baton"])
        if not 1 <= baton <= 255:
            raise QueryError(f"baton must be between 1 and 255: {baton}")
    count = _integer("count", values["count"]) if "count" in values else 1
    if count < 1:
        raise QueryError("count must be positive")
    if count > max_count:
        raise QueryError(f"count {count} is more than we play at once ({max_count})")
    return BatonParams(version, baton, count)


def query_string(
    version: int | None = None, baton: int | None = None, count: int | None = None
) -> str:
    """The query of a session URL (parameters left out when None)."""
    parts = [
        f"{name}={value}"
        for name, value in (("version", version), ("baton", baton), ("count", count))
        if value is not None
    ]
    return "&".join(parts)


# ======================================================================================
# the game (§4)
# ======================================================================================


class Answer(IntEnum):
    """Where the answer to a message we send will come (§4.2)."""

    SAME = 0  # on the bidirectional stream we opened for it
    PEER_UNI = 1  # on a unidirectional stream the peer opens (we answered on its bidi)
    PEER_BIDI = 2  # on a bidirectional stream the peer opens (we sent on our uni)


class BatonGame:
    """One endpoint's bookkeeping of a Devious Baton session; see the module doc."""

    __slots__ = (
        "_expected",
        "_wildcards",
        "active",
        "completed",
        "incoming",
        "incoming_peak",
        "is_client",
        "messages_received",
        "messages_sent",
        "reset",
    )

    def __init__(self, is_client: bool, count: int, initial: int | None) -> None:
        self.is_client = is_client
        #: §4.5: batons not yet completed or reset
        self.active = count
        self.completed = 0
        self.reset = 0
        self.messages_received = 0
        self.messages_sent = 0
        #: peer streams whose message is being read (and the most at once)
        self.incoming = 0
        self.incoming_peak = 0
        # (stream kind, value) expected on streams the peer opens, each at most once
        self._expected: Counter[tuple[Answer, int]] = Counter()
        self._wildcards = 0  # client without a `baton` parameter: any initial value
        if is_client:  # §4.1: the server's first batons come on unidirectional streams
            if initial is None:
                self._wildcards = count
            else:
                self._expected[Answer.PEER_UNI, initial] = count
        # a server expects the answers to its first batons once it sends them

    @property
    def over(self) -> bool:
        """§4.5: no active baton is left: the session is to be closed."""
        return self.active <= 0

    def peer_stream_opened(self) -> None:
        """A peer stream arrived: more being read than batons in play is SUS."""
        self.incoming += 1
        self.incoming_peak = max(self.incoming_peak, self.incoming)
        if self.incoming > self.active:
            raise BatonError(SessionErrorCode.SUS, "more peer streams than active batons")

    def peer_stream_read(self) -> None:
        """A peer stream's message was read (or the stream was reset)."""
        self.incoming -= 1

    def on_new_stream_message(self, value: int, bidirectional: bool) -> None:
        """A message on a stream the peer opened: it must be one we expect, on the
        kind of stream we expect it on (§4.2)."""
        self.messages_received += 1
        key = (Answer.PEER_BIDI if bidirectional else Answer.PEER_UNI, value)
        if self._take(key):
            return
        if self._wildcards > 0 and not bidirectional:
            self._wildcards -= 1
            return
        kind = "bidirectional" if bidirectional else "unidirectional"
        raise BatonError(SessionErrorCode.SUS, f"unexpected baton {value} on a {kind} stream")

    def _take(self, key: tuple[Answer, int]) -> bool:
        expected = self._expected
        if expected[key] <= 0:
            expected.pop(key, None)
            return False
        expected[key] -= 1
        if not expected[key]:
            del expected[key]
        return True

    def on_reply(self, sent: int, value: int) -> None:
        """The answer on a bidirectional stream we opened: ``sent`` + 1 (§4.2)."""
        self.messages_received += 1
        if value != next_value(sent):
            raise BatonError(SessionErrorCode.SUS, f"baton {value} answers {sent}")

    def received(self, value: int) -> int | None:
        """§4.2: the baton to send next, or None when ``value`` is 0 (completed)."""
        if value == 0:
            self._finish(completed=True)
            return None
        return next_value(value)

    def expect_answer(self, value: int, answer: Answer) -> None:
        """We are about to send ``value``: when its answer will come on a new peer
        stream, it is expected from now on (it may arrive before our write returns)."""
        if value and answer is not Answer.SAME:
            self._expected[answer, next_value(value)] += 1

    def sent(self, value: int) -> None:
        """We sent ``value`` and FIN: a 0 completes the exchange (§4.5)."""
        self.messages_sent += 1
        if value == 0:
            self._finish(completed=True)

    def unsent(self, value: int, answer: Answer) -> None:
        """A baton we were sending was reset: its answer is no longer expected."""
        if value and answer is not Answer.SAME:
            self._take((answer, next_value(value)))
        self._finish(completed=False)

    def lost(self) -> None:
        """§4.5: a baton's stream was reset."""
        self._finish(completed=False)

    def _finish(self, *, completed: bool) -> None:
        if completed:
            self.completed += 1
        else:
            self.reset += 1
        self.active -= 1

    def wants_datagram(self, value: int) -> bool:
        """§4.4: a client echoes values = 1 mod 7, a server values = 0 mod 7."""
        return value % 7 == (1 if self.is_client else 0)

    def expected_size(self) -> int:
        """Entries of the expected-value table (bounded by the count)."""
        return len(self._expected)
