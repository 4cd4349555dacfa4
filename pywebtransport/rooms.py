"""Rooms: named groups of sessions, with broadcast of datagrams and stream messages.

Theory of operation
-------------------
:class:`Rooms` (``ServerApp.rooms``) holds named :class:`Room` s, made on the first join
and forgotten when their last member leaves or closes (a room is never kept empty). A
session joins with ``rooms.join(name, session)``; it leaves with ``leave`` or by closing
(its ``closed`` event removes it from every room it was in).

Broadcast never waits for a member (issue 13: "a slow session drops datagrams or is
disconnected by policy, never blocks the room"):

* :meth:`Room.send_datagram` hands the datagram to each member's session at once; below
  it each QUIC connection queues at most ``QuicConfiguration.max_datagram_queue``
  datagrams and drops beyond (RFC 9221 §5: datagrams may be dropped). A member whose
  session cannot take it (closing, too large for its path) is skipped and counted.
* :meth:`Room.send_message` delivers bytes, or an object through a serializer
  (:mod:`pywebtransport.serializers`), as one unidirectional stream per message and per
  member, written to its FIN. Each member has a queue of at most
  :attr:`RoomPolicy.max_pending` messages and one writer task (started with the first
  message, ended when the queue is empty): a member whose queue is full either loses the
  message (``slow="drop"``, counted in ``dropped``) or is closed with
  :attr:`RoomPolicy.close_code` (``slow="disconnect"``).

Bounds: rooms at most :attr:`RoomPolicy.max_rooms` (a join beyond raises
:class:`RoomLimitError`), members per room at most :attr:`RoomPolicy.max_members`, pending
messages per member at most ``max_pending``, one writer task per member at a time.

Across instances (:mod:`pywebtransport.backplane`): with a backplane attached
(``Rooms.backplane``, ``ServerApp(backplane=...)``), both sends fan out locally first and
then publish the datagram or the message's bytes (serialized once) to the other
instances; an event from another instance is fanned out to the local members only (never
published again), through the same per-member queues and slow policy. Each join and
leave tells the backplane the room's local member count; :meth:`Rooms.count` and
:attr:`Room.total_members` add the other instances' counts to the local one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pywebtransport.backplane.codec import EventKind, RoomEvent
from pywebtransport.events import Event, EventType
from pywebtransport.exceptions import WebTransportError
from pywebtransport.serializers import Serializer
from pywebtransport.session import WebTransportSession

if TYPE_CHECKING:
    from pywebtransport.backplane.base import Backplane

__all__ = ["Room", "RoomLimitError", "RoomPolicy", "RoomStats", "Rooms"]


class RoomLimitError(WebTransportError):
    """A join beyond :attr:`RoomPolicy.max_rooms` or :attr:`RoomPolicy.max_members`."""


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """Bounds and the slow-member policy of the rooms of one app."""

    max_rooms: int = 10_000
    max_members: int = 10_000  # per room
    max_pending: int = 64  # stream messages queued per member
    slow: Literal["drop", "disconnect"] = "drop"
    close_code: int = 0x5C0  # WebTransport application code used by slow="disconnect"
    close_reason: str = "too slow for the room"


@dataclass(slots=True)
class RoomStats:
    """Counters of one room (monotonic, except ``members``)."""

    members: int = 0
    datagrams_sent: int = 0
    datagrams_skipped: int = 0
    messages_queued: int = 0
    messages_sent: int = 0
    dropped: int = 0
    disconnected: int = 0


class _Member:
    """One session in one room: its pending stream messages and their writer."""

    __slots__ = ("pending", "session", "writer")

    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        self.pending: deque[bytes] = deque()
        self.writer: asyncio.Task[None] | None = None


class Room:
    """A named set of sessions; see the module docstring."""

    def __init__(self, name: str, policy: RoomPolicy, rooms: Rooms) -> None:
        self.name = name
        self.policy = policy
        self.stats = RoomStats()
        self._rooms = rooms
        self._members: dict[WebTransportSession, _Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, session: object) -> bool:
        return session in self._members

    @property
    def sessions(self) -> list[WebTransportSession]:
        return list(self._members)

    @property
    def total_members(self) -> int:
        """Members here plus those on the other instances of the backplane."""
        return self._rooms.count(self.name)

    def _add(self, session: WebTransportSession) -> bool:
        if session in self._members:
            return False
        if len(self._members) >= self.policy.max_members:
            raise RoomLimitError(f"room {self.name!r} has {self.policy.max_members} members")
        self._members[session] = _Member(session)
        self.stats.members = len(self._members)
        return True

    def _remove(self, session: WebTransportSession) -> None:
        member = self._members.pop(session, None)
        if member is None:
            return
        member.pending.clear()
        if member.writer is not None and not member.writer.done():
            member.writer.cancel()
        self.stats.members = len(self._members)

    def send_datagram(
        self, data: bytes | bytearray | memoryview, exclude: WebTransportSession | None = None
    ) -> int:
        """Send ``data`` as a datagram to every member but ``exclude``, and to the other
        instances' members through the backplane; returns how many local sessions took
        it (the others are counted in ``stats.datagrams_skipped``)."""
        sent = self._fan_out_datagram(data, exclude)
        self._rooms._publish(self.name, EventKind.DATAGRAM, data)
        return sent

    def _fan_out_datagram(
        self, data: bytes | bytearray | memoryview, exclude: WebTransportSession | None
    ) -> int:
        sent = 0
        for session in list(self._members):
            if session is exclude:
                continue
            try:
                session.send_datagram(data)
            except WebTransportError:
                self.stats.datagrams_skipped += 1
                continue
            sent += 1
        self.stats.datagrams_sent += sent
        return sent

    def send_message(
        self,
        message: Any,
        serializer: Serializer | None = None,
        exclude: WebTransportSession | None = None,
    ) -> int:
        """Queue ``message`` (bytes, or an object ``serializer`` turns into bytes) for
        every member but ``exclude``, each on a new unidirectional stream; returns how
        many local members queued it; the bytes are published to the other instances
        too. Never waits: a full queue applies the slow policy."""
        data = _message_bytes(message, serializer)
        queued = self._fan_out_message(data, exclude)
        self._rooms._publish(self.name, EventKind.MESSAGE, data)
        return queued

    def _fan_out_message(self, data: bytes, exclude: WebTransportSession | None) -> int:
        queued = 0
        for member in list(self._members.values()):
            if member.session is exclude:
                continue
            if len(member.pending) >= self.policy.max_pending:
                self._too_slow(member)
                continue
            member.pending.append(data)
            queued += 1
            if member.writer is None or member.writer.done():
                member.writer = asyncio.get_running_loop().create_task(self._write(member))
        self.stats.messages_queued += queued
        return queued

    def _too_slow(self, member: _Member) -> None:
        if self.policy.slow == "drop":
            self.stats.dropped += 1
            return
        self.stats.disconnected += 1
        session = member.session
        self._rooms.leave_all(session)
        policy = self.policy
        asyncio.get_running_loop().create_task(
            _close_quietly(session, policy.close_code, policy.close_reason)
        )

    async def _write(self, member: _Member) -> None:
        pending = member.pending
        while pending:
            data = pending.popleft()
            try:
                stream = await member.session.create_unidirectional_stream()
                await stream.write(data, end_stream=True)
            except WebTransportError:
                pending.clear()  # the session is gone; its closed event removes it
                return
            self.stats.messages_sent += 1


def _message_bytes(message: Any, serializer: Serializer | None) -> bytes:
    if serializer is not None:
        return serializer.dumps(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError("a message that is not bytes needs a serializer")


async def _close_quietly(session: WebTransportSession, code: int, reason: str) -> None:
    with contextlib.suppress(WebTransportError):
        await session.close(code, reason)


class Rooms:
    """The rooms of one app (``ServerApp.rooms``); see the module docstring."""

    def __init__(
        self, policy: RoomPolicy | None = None, backplane: Backplane | None = None
    ) -> None:
        self.policy = policy or RoomPolicy()
        self._backplane: Backplane | None = None
        self.backplane = backplane
        self._rooms: dict[str, Room] = {}
        self._joined: dict[WebTransportSession, set[str]] = {}
        # sessions whose closed event is hooked (once per session, until it closes)
        self._hooked: set[WebTransportSession] = set()

    def __len__(self) -> int:
        return len(self._rooms)

    def __contains__(self, name: object) -> bool:
        return name in self._rooms

    @property
    def backplane(self) -> Backplane | None:
        """The backplane that joins these rooms to other instances' (None: local only)."""
        return self._backplane

    @backplane.setter
    def backplane(self, backplane: Backplane | None) -> None:
        self._backplane = backplane
        if backplane is not None:
            backplane.attach(self)

    def count(self, name: str) -> int:
        """Members of room ``name`` here and on every other instance of the backplane."""
        room = self._rooms.get(name)
        local = len(room) if room is not None else 0
        backplane = self._backplane
        return local + (backplane.remote_members(name) if backplane is not None else 0)

    def local_members(self) -> int:
        """Members of every room here (a session in two rooms counts twice)."""
        return sum(len(room) for room in self._rooms.values())

    def total_members(self) -> int:
        """Members of every room on every instance of the backplane."""
        backplane = self._backplane
        remote = backplane.remote.members() if backplane is not None else 0
        return self.local_members() + remote

    def local_counts(self) -> list[tuple[str, int]]:
        """(name, local members) of every room (the backplane's snapshot)."""
        return [(name, len(room)) for name, room in self._rooms.items()]

    def deliver(self, event: RoomEvent) -> None:
        """A broadcast from another instance: to the local members of its room only."""
        room = self._rooms.get(event.room)
        if room is None:
            return
        if event.kind == EventKind.DATAGRAM:
            room._fan_out_datagram(event.payload, None)
        else:
            room._fan_out_message(event.payload, None)

    def send_datagram(self, name: str, data: bytes | bytearray | memoryview) -> int:
        """Send ``data`` to every member of room ``name``, here and (through the
        backplane) on the other instances — also when no member is here; returns how
        many local sessions took it."""
        room = self._rooms.get(name)
        sent = room._fan_out_datagram(data, None) if room is not None else 0
        self._publish(name, EventKind.DATAGRAM, data)
        return sent

    def send_message(self, name: str, message: Any, serializer: Serializer | None = None) -> int:
        """:meth:`Room.send_message` to every member of room ``name``, here and on the
        other instances — also when no member is here; returns how many local members
        queued it."""
        data = _message_bytes(message, serializer)
        room = self._rooms.get(name)
        queued = room._fan_out_message(data, None) if room is not None else 0
        self._publish(name, EventKind.MESSAGE, data)
        return queued

    def _publish(self, name: str, kind: EventKind, data: bytes | bytearray | memoryview) -> None:
        if self._backplane is not None:
            self._backplane.publish(name, kind, bytes(data))

    def _count_changed(self, name: str, count: int) -> None:
        if self._backplane is not None:
            self._backplane.local_count_changed(name, count)

    def get(self, name: str) -> Room | None:
        """The room ``name``, or None when it has no member."""
        return self._rooms.get(name)

    def names(self) -> list[str]:
        return list(self._rooms)

    def join(self, name: str, session: WebTransportSession) -> Room:
        """Add ``session`` to room ``name`` (made if needed); RoomLimitError beyond the
        policy's bounds, WebTransportError for a closed session."""
        if session.is_closed:
            raise WebTransportError("a closed session cannot join a room")
        room = self._rooms.get(name)
        if room is None:
            if len(self._rooms) >= self.policy.max_rooms:
                raise RoomLimitError(f"{self.policy.max_rooms} rooms already")
            room = Room(name, self.policy, self)
        if room._add(session):
            self._rooms[name] = room
            self._count_changed(name, len(room))
            names = self._joined.get(session)
            if names is None:
                names = self._joined[session] = set()
            names.add(name)
            if session not in self._hooked:
                self._hooked.add(session)
                session.events.once(EventType.CLOSED, self._closed_handler(session))
        return room

    def leave(self, name: str, session: WebTransportSession) -> None:
        """Remove ``session`` from room ``name`` (nothing if it is not a member)."""
        room = self._rooms.get(name)
        if room is not None and session in room:
            room._remove(session)
            if not len(room):
                del self._rooms[name]
            self._count_changed(name, len(room))
        names = self._joined.get(session)
        if names is not None:
            names.discard(name)
            if not names:
                del self._joined[session]

    def leave_all(self, session: WebTransportSession) -> None:
        """Remove ``session`` from every room it is in."""
        for name in list(self._joined.get(session, ())):
            self.leave(name, session)

    def rooms_of(self, session: WebTransportSession) -> list[str]:
        return sorted(self._joined.get(session, ()))

    def _closed_handler(self, session: WebTransportSession) -> Any:
        def on_closed(_event: Event) -> None:
            self._hooked.discard(session)
            self.leave_all(session)

        return on_closed
