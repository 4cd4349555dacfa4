"""The network paths of a connection: address validation, path validation, migration.

Theory of operation
-------------------
A path is the pair (our address, the peer's address). The connection knows its own
address only as an index (``local``: 0 for the address the connection began on, 1 for
a server's preferred address, given by the I/O layer with each datagram), so
:class:`PathManager` tells paths apart by the peer's ``(host, port)`` and that index
(:func:`path_key`) and knows:

* the *current* path, where every non-probing packet goes (``peer_address``);
* a *fallback*, the last validated path (RFC 9000 §9.3.2: where we return when the
  validation of a new peer address fails);
* other *known* paths (at most ``max_paths``, oldest forgotten first but never the
  fallback): addresses an authenticated packet came from without moving the
  connection there (probes), and the paths we left.

Anti-amplification (RFC 9000 §8.1, §9.3): on a path whose peer address is not
validated we send at most three times the bytes received on that path
(:meth:`PathManager.send_budget` for the current path, :meth:`PathManager.path_budget`
for the others). A client's first path counts as validated (it chose it); the server
validates the client's first address when a Handshake packet arrives (§8.1).

Migration (RFC 9000 §9.3), a server's decision: the connection reports each
authenticated datagram from an address that is not the current one
(:meth:`PathManager.on_authenticated_from`) and whether it carried the newest
non-probing packet (§9.1: anything but PATH_CHALLENGE, PATH_RESPONSE,
NEW_CONNECTION_ID and PADDING; §9.3: only the highest-numbered packet moves us). Then
the path becomes current; a path never validated is validated now (§9.3, §8.2), and
the path we left gets a PATH_CHALLENGE too (§9.3.3: an attacker forwarding copies of
genuine packets loses when the old path answers). The connection resets congestion
control and RTT unless only the port changed (§9.4) and moves to a new connection ID
when the peer did (§9.5). A client never follows a server to a new address (§9); it
migrates itself (:meth:`PathManager.restart_current`).

A server's preferred address (RFC 9000 §9.6.2): a datagram to it (``local`` 1) opens
the path (1, client); the server answers its challenges there, challenges it itself
("The server MUST probe on the path toward the client from its preferred address",
:meth:`PathManager.probe_local`), and makes it current only when it is validated and
a non-probing packet with a new largest packet number came on it
(:meth:`PathManager.local_switch_ready`, :meth:`PathManager.switch_local`): "The server
MUST send non-probing packets from its original address until it receives a
non-probing packet from the client at its preferred address and until the server has
validated the new path." The path left is not challenged (the client's address did
not change). Each path other than the current one holds the sequence number of a peer
connection ID of its own (``cid_seq``, RFC 9000 §9.5; see :mod:`quic.conn_migrate`).

Path validation (RFC 9000 §8.2): a PATH_CHALLENGE with 8 fresh unpredictable bytes,
sent again with new bytes after a PTO, doubling (§8.2.1: no more often than an
Initial would be), each in a datagram expanded to 1200 bytes within the amplification
limit; the path is validated by a PATH_RESPONSE echoing any of its last challenges,
on whatever path it arrives (§8.2.3). It is abandoned three PTOs after it started,
using the larger of the current PTO and one computed from kInitialRtt (§8.2.4); a
current path that fails makes us return to the fallback (§9.3.2), and with no
validated path left the connection is dropped silently (§9.3.2).

PATH_RESPONSE (RFC 9000 §8.2.2): every PATH_CHALLENGE is answered once, on the path it
came from, in a datagram expanded to 1200 bytes within the amplification limit.
Responses wait in a queue bounded by ``max_pending_path_responses`` (§21.9 lets an
endpoint limit its work for unproductive frames): when full the *oldest* is dropped —
a validating peer retransmits challenges with fresh data and waits for the answer to
its latest one, and PATH_RESPONSE is never retransmitted (§13.3). Responses and
challenges for another path than the current one are sent in their own datagrams
(:meth:`PathManager.off_path_pending`, built by the send scheduler), addressed to that
path; a PATH_RESPONSE matching no challenge is ignored (§19.18 allows it).

Every table here is bounded: ``max_paths`` known paths, four outstanding challenge
values per path, ``max_pending_path_responses`` responses.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from quic.frames import encode_path_challenge_frame, encode_path_response_frame
from quic.packet_builder import MIN_INITIAL_DATAGRAM, PacketAssembler
from quic.rtt import K_INITIAL_RTT

__all__ = ["Path", "PathChange", "PathManager", "path_key"]

_FRAME_SIZE = 9  # PATH_CHALLENGE / PATH_RESPONSE: type byte + 8 bytes (RFC 9000 §19.17)
_MAX_CHALLENGES = 4  # outstanding PATH_CHALLENGE values remembered per path
#: Smallest datagram worth sending on an unvalidated path once 1-RTT keys are in use
#: (an ACK or a PATH_CHALLENGE fits); before that, 1200 bytes (Initial padding).
MIN_SHORT_DATAGRAM = 64
#: PTO computed from kInitialRtt (RFC 9002 §6.2.1), for a new path (RFC 9000 §8.2.4).
_INITIAL_PTO = K_INITIAL_RTT + 4 * (K_INITIAL_RTT / 2)


def path_key(addr: Any, local: int = 0) -> Any:
    """What identifies a path: ``(host, port)`` of the peer's socket address, and the
    index of our local address when it is not the first one (a server's preferred
    address, RFC 9000 §9.6)."""
    if isinstance(addr, tuple) and len(addr) > 2:
        addr = addr[:2]
    return (local, addr) if local else addr


def _owed_on(responses: Iterable[tuple[Any, Any]], key: Any) -> bool:
    """A response of ``responses`` is owed on the path of ``key`` (a function of its
    own: a generator over a caller's local builds a cell per call, taken or not)."""
    return any(k == key for _, k in responses)


def _key(path: Path) -> Any:
    return path_key(path.addr, path.local)


class Path:
    """One peer address and what we know about it."""

    __slots__ = (
        "abandon_at",
        "addr",
        "challenge_owed",
        "challenges",
        "cid_seq",
        "interval",
        "local",
        "next_challenge",
        "received",
        "sent",
        "switch_wanted",
        "trusted",
        "validated",
    )

    def __init__(self, addr: Any, validated: bool, local: int = 0) -> None:
        self.addr = addr
        self.local = local  # index of our local address (0: the connection's first)
        # server, preferred address: a non-probing packet came on it (RFC 9000 §9.6.2)
        self.switch_wanted = False
        self.validated = validated
        self.received = 0  # bytes received on the path (amplification credit)
        self.sent = 0  # bytes sent on the path
        # our recent PATH_CHALLENGE data; a deque from the first one (idle memory)
        self.challenges: deque[bytes] | None = None
        self.challenge_owed = False  # a PATH_CHALLENGE waits to be written
        self.next_challenge: float | None = None  # when to send a fresh one
        self.abandon_at: float | None = None  # validation in progress until then
        self.interval = 0.0
        # RFC 9000 §9.5: sequence of the peer connection ID reserved for sending on this
        # path while it is not the current one (the current path uses the ID in use)
        self.cid_seq: int | None = None
        # not amplification-limited although unvalidated: an address the peer gave us
        # in its authenticated transport parameters (the server's preferred address)
        self.trusted = False

    @property
    def validating(self) -> bool:
        return self.abandon_at is not None

    def budget(self, max_datagram_size: int) -> int:
        """Bytes the next datagram on this path may hold (RFC 9000 §8.1)."""
        if self.validated or self.trusted:
            return max_datagram_size
        return max(0, min(max_datagram_size, 3 * self.received - self.sent))


class PathChange:
    """What a migration changed (the connection resets what depends on it)."""

    __slots__ = ("host_changed", "old", "old_path")

    def __init__(self, old_path: Path, host_changed: bool) -> None:
        self.old_path = old_path  # the path left (still known unless evicted)
        self.old = old_path.addr
        self.host_changed = host_changed  # RFC 9000 §9.4: more than the port changed


class PathManager:
    """The paths of one connection (see the module docstring)."""

    __slots__ = (
        "_max_paths",
        "_max_responses",
        "_token_bytes",
        "bytes_received",
        "bytes_sent",
        "current",
        "fallback",
        "is_client",
        "max_datagram_size",
        "migrations",
        "min_datagram",
        "others",
        "preferred",
        "preferred_ready",
        "receiving",
        "receiving_local",
        "released",
        "responses",
        "responses_dropped",
        "validations_failed",
    )

    def __init__(
        self,
        is_client: bool,
        max_datagram_size: int,
        max_responses: int,
        max_paths: int = 4,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.is_client = is_client
        self.max_datagram_size = max_datagram_size
        self._max_paths = max(1, max_paths)
        self._token_bytes = token_bytes
        # RFC 9000 §8.1: the client chose its path, the server validates the client's
        self.current = Path(None, validated=is_client)
        self.fallback: Path | None = None  # the last validated path (RFC 9000 §9.3.2)
        self.others: dict[Any, Path] = {}  # known paths by path_key, oldest first
        self.receiving: Any = None  # peer address of the datagram being processed
        self.receiving_local = 0  # ... and the index of the local address it came to
        self.min_datagram = MIN_INITIAL_DATAGRAM  # see MIN_SHORT_DATAGRAM
        self.bytes_received = 0  # all paths
        self.bytes_sent = 0
        # PATH_RESPONSE data owed and the path_key it goes to, oldest first
        # (a deque from the first one, and again None once sent: idle memory)
        self._max_responses = max(1, max_responses)
        self.responses: deque[tuple[bytes, Any]] | None = None
        self.responses_dropped = 0  # challenges we did not answer (queue full)
        self.migrations = 0  # times the current path changed
        self.preferred: Path | None = None  # client: the server's preferred address
        self.preferred_ready = False  # ... validated: the connection moves there
        self.validations_failed = 0
        # RFC 9000 §9.5: connection IDs of paths forgotten, to retire (Migration drains)
        self.released: list[int] = []

    # -- the current path ---------------------------------------------------------------

    @property
    def peer_address(self) -> Any:
        return self.current.addr

    @peer_address.setter
    def peer_address(self, addr: Any) -> None:
        self.current.addr = addr

    @property
    def address_validated(self) -> bool:
        return self.current.validated

    def is_current(self, addr: Any, local: int = 0) -> bool:
        current = self.current
        if local == current.local and addr == current.addr:
            return True  # the common case, per datagram: no keys built
        return bool(path_key(addr, local) == _key(current))

    def received_on_current(self, addr: Any, local: int, size: int) -> bool:
        """:meth:`is_current`, and if so :meth:`on_datagram_received` (one call per
        datagram on the receive path)."""
        current = self.current
        if (local != current.local or addr != current.addr) and not self.is_current(addr, local):
            return False
        self.bytes_received += size
        current.received += size
        return True

    def knows(self, addr: Any, local: int = 0) -> bool:
        return self.is_current(addr, local) or path_key(addr, local) in self.others

    @staticmethod
    def key(path: Path) -> Any:
        return _key(path)

    def handshake_done(self) -> None:
        """1-RTT from now on: small datagrams may go to an unvalidated address."""
        self.min_datagram = MIN_SHORT_DATAGRAM

    # -- anti-amplification (RFC 9000 §8.1) ---------------------------------------------

    def on_datagram_received(self, size: int) -> None:
        """A datagram arrived on the current path."""
        self.bytes_received += size
        self.current.received += size

    def on_datagram_sent(self, size: int) -> None:
        """Datagrams went out on the current path."""
        self.bytes_sent += size
        self.current.sent += size

    def validate_address(self) -> None:
        self.current.validated = True

    def send_budget(self) -> int:
        """Bytes the next datagram may hold (path MTU, amplification limit)."""
        return self.current.budget(self.max_datagram_size)

    def path_budget(self, path: Path) -> int:
        return path.budget(self.max_datagram_size)

    def send_blocked(self) -> bool:
        """Nothing worth a datagram may be sent on the current path (§8.1)."""
        current = self.current
        return not current.validated and self.send_budget() < self.min_datagram

    def amplification_blocked(self) -> bool:
        current = self.current
        return not current.validated and current.sent >= 3 * current.received

    def limit_datagram_size(self, peer_max_udp_payload: int) -> None:
        """The peer accepts at most this UDP payload (RFC 9000 §18.2)."""
        if peer_max_udp_payload < self.max_datagram_size:
            self.max_datagram_size = peer_max_udp_payload

    # -- migration (RFC 9000 §9) --------------------------------------------------------

    def on_authenticated_from(
        self, addr: Any, size: int, migrate: bool, now: float, pto: float, local: int = 0
    ) -> PathChange | None:
        """An authenticated datagram from ``addr`` to our local address ``local``, not
        on the current path.

        ``migrate``: it held the newest non-probing packet and migration is allowed
        (RFC 9000 §9.3); the connection then moves to ``addr``.
        """
        key = path_key(addr, local)
        path = self.others.get(key)
        if path is None:
            path = self._remember(Path(addr, validated=False, local=local))
        path.addr = addr
        path.received += size
        self.bytes_received += size
        if not migrate:
            return None
        return self._move_to(path, now, pto, challenge_old=True)

    def _move_to(self, path: Path, now: float, pto: float, challenge_old: bool) -> PathChange:
        key = _key(path)
        old = self.current
        del self.others[key]
        if old.addr is not None:
            self._remember(old)
            if old.validated:
                self.fallback = old
                if challenge_old:
                    # RFC 9000 §9.3.3: challenge the path we leave (it answers if it lives)
                    self._start_validation(old, now, pto)
        self.current = path
        self.migrations += 1
        if not path.validated:
            self._start_validation(path, now, pto)  # RFC 9000 §9.3, §8.2
        old_host = path_key(old.addr)[0] if isinstance(old.addr, tuple) else old.addr
        new_addr = path_key(path.addr)
        new_host = new_addr[0] if isinstance(new_addr, tuple) else new_addr
        return PathChange(old, old_host != new_host or old.local != path.local)

    def probe_local(self, path: Path, non_probing: bool, now: float, pto: float) -> None:
        """Server: an authenticated datagram came to our preferred address (RFC 9000
        §9.6.2): "The server MUST probe on the path toward the client from its
        preferred address", and a non-probing packet there asks for the switch."""
        if not path.validated:
            self._start_validation(path, now, pto)
        if non_probing:
            path.switch_wanted = True

    def local_switch_ready(self) -> Path | None:
        """Server: the path to our preferred address, once it is validated and a
        non-probing packet came on it (RFC 9000 §9.6.2: "Once the server has completed
        its path validation and has received a non-probing packet with a new largest
        packet number on its preferred address, the server begins sending non-probing
        packets to the client exclusively from its preferred IP address")."""
        for path in self.others.values():
            if path.local and path.switch_wanted and path.validated:
                return path
        return None

    def switch_local(self, path: Path, now: float, pto: float) -> PathChange:
        """Server: move to the validated path of our preferred address; the path left
        is validated and the peer's address did not change, so it is not challenged."""
        path.switch_wanted = False
        return self._move_to(path, now, pto, challenge_old=False)

    def probe_preferred(self, addr: Any, cid_seq: int, now: float, pto: float) -> None:
        """Client: validate the server's preferred address (RFC 9000 §9.6.1) with the
        peer connection ID ``cid_seq`` reserved for it."""
        path = self._remember(Path(addr, validated=False))
        path.cid_seq = cid_seq
        path.trusted = True  # RFC 9000 §9.6.1: the server's own word, authenticated
        self.preferred = path
        self._start_validation(path, now, pto)

    def adopt_preferred(self) -> Path | None:
        """Client: the preferred address is validated; make it the current path
        (RFC 9000 §9.6.1: "begin sending all future packets to the new server
        address"). Returns the path left, now the fallback."""
        path = self.preferred
        self.preferred = None
        self.preferred_ready = False
        if path is None or _key(path) not in self.others:
            return None
        old = self.current
        del self.others[_key(path)]
        self._remember(old)
        self.fallback = old
        self.current = path
        self.migrations += 1
        return old

    def restart_current(self, now: float, pto: float) -> None:
        """We moved to a new local address (client migration, RFC 9000 §9.2): the
        current peer address is unchanged but the path is new; validate it."""
        self.migrations += 1
        self.current.received = self.current.sent = 0
        self._start_validation(self.current, now, pto)

    def _remember(self, path: Path) -> Path:
        others = self.others
        key = _key(path)
        replaced = others.pop(key, None)
        if replaced is not None and replaced is not path:
            self._forget(replaced)
        others[key] = path
        while len(others) > self._max_paths:
            # the oldest, but never the fallback: it is the last validated address
            oldest = next(k for k, p in others.items() if p is not self.fallback)
            self._forget(others.pop(oldest))
        return path

    def _forget(self, path: Path) -> None:
        if path.cid_seq is not None:
            self.released.append(path.cid_seq)  # RFC 9000 §9.5: its ID is retired
            path.cid_seq = None

    def stop_validation(self, path: Path) -> None:
        """Give up validating ``path`` without counting a failure (RFC 9000 §9.5: no
        connection ID to send on it)."""
        self._end_validation(path)

    def idle_paths(self) -> list[Path]:
        """Paths other than the current one that hold a connection ID but owe nothing
        and are not being validated: their ID may be retired. The fallback keeps its
        ID while the current path is not validated (we may return to it, §9.3.2)."""
        current = self.current
        keep_fallback = not current.validated
        owed = {key for _, key in self.responses or ()}
        return [
            p
            for p in self.others.values()
            if p.cid_seq is not None
            and not p.validating
            and not p.challenge_owed
            and not (keep_fallback and p is self.fallback)
            and _key(p) not in owed
        ]

    def drop_responses(self, path: Path) -> int:
        """Forget the PATH_RESPONSEs owed on ``path`` (no connection ID to send them,
        RFC 9000 §9.5); returns how many."""
        responses = self.responses
        if not responses:
            return 0
        key = _key(path)
        kept = deque(((d, k) for d, k in responses if k != key), maxlen=self._max_responses)
        dropped = len(responses) - len(kept)
        self.responses = kept or None
        self.responses_dropped += dropped
        return dropped

    # -- path validation (RFC 9000 §8.2) ------------------------------------------------

    def _start_validation(self, path: Path, now: float, pto: float) -> None:
        if path.validating:
            return
        path.challenge_owed = True
        path.interval = pto
        path.next_challenge = now + pto
        # RFC 9000 §8.2.4: three times the larger of the current PTO and the new path's
        path.abandon_at = now + 3 * max(pto, _INITIAL_PTO)

    def _end_validation(self, path: Path) -> None:
        path.challenges = None
        path.challenge_owed = False
        path.next_challenge = path.abandon_at = None

    def on_path_challenge(self, data: bytes) -> None:
        """Queue the PATH_RESPONSE owed, for the path it came on (RFC 9000 §8.2.2)."""
        responses = self.responses
        if responses is None:
            responses = self.responses = deque(maxlen=self._max_responses)
        if len(responses) == responses.maxlen:
            self.responses_dropped += 1  # the oldest gives way (see the module docstring)
        responses.append((data, path_key(self.receiving, self.receiving_local)))

    def on_path_response(self, data: bytes) -> None:
        """A response to any of our recent challenges validates its path, wherever it
        arrives (RFC 9000 §8.2.3); one matching nothing is ignored (§19.18)."""
        for path in (self.current, *self.others.values()):
            if path.challenges and data in path.challenges:
                path.validated = True
                self._end_validation(path)
                if path is self.preferred:
                    self.preferred_ready = True
                return

    def get_timer(self) -> float | None:
        timer: float | None = None
        others = self.others
        if not others and self.current.abandon_at is None:
            return None  # the common case, asked after every build: nothing validating
        for path in (self.current, *others.values()) if others else (self.current,):
            if path.abandon_at is None:
                continue
            for when in (path.next_challenge, path.abandon_at):
                if when is not None and (timer is None or when < timer):
                    timer = when
        return timer

    def handle_timer(self, now: float) -> bool:
        """Retransmit due challenges, abandon expired validations; False when no
        validated path is left (RFC 9000 §9.3.2: drop the connection silently)."""
        for path in [self.current, *self.others.values()]:
            abandon = path.abandon_at
            if abandon is None:
                continue
            if now >= abandon:
                self._end_validation(path)
                self.validations_failed += 1
                if not self._on_failed(path):
                    return False
            elif path.next_challenge is not None and now >= path.next_challenge:
                path.challenge_owed = True
                path.interval *= 2  # RFC 9000 §8.2.1: no more often than an Initial
                path.next_challenge = now + path.interval
        return True

    def _on_failed(self, path: Path) -> bool:
        if path is not self.current:
            # a path never validated is forgotten; the fallback stays the last validated
            # address (RFC 9000 §9.3.2) even if its re-check (§9.3.3) got no answer
            if not path.validated:
                gone = self.others.pop(_key(path), None)
                if gone is not None:
                    self._forget(gone)
                if path is self.preferred:
                    self.preferred = None  # RFC 9000 §9.6.1: stay on the original
            return True
        if path.validated:
            return True  # a check of a validated path (our own migration): keep it
        fallback = self.fallback
        if fallback is None:
            return False
        # RFC 9000 §9.3.2: revert to the last validated peer address
        self.others.pop(_key(fallback), None)
        self.current = fallback  # the failed address is forgotten
        self.fallback = None
        self.migrations += 1
        return True

    # -- frames to send -----------------------------------------------------------------

    @property
    def pending_responses(self) -> int:
        return len(self.responses) if self.responses else 0

    def wants_send(self) -> bool:
        """Frames are owed on the current path."""
        if self.current.challenge_owed:
            return True
        if not self.responses:
            return False
        return _owed_on(self.responses, _key(self.current))

    def off_path_pending(self) -> list[Path]:
        """Known paths other than the current one that are owed frames; responses for
        a path no longer known are dropped."""
        out: list[Path] = [p for p in self.others.values() if p.challenge_owed]
        if self.responses:
            current = _key(self.current)
            kept: deque[tuple[bytes, Any]] = deque(maxlen=self._max_responses)
            for data, key in self.responses:
                if key == current:
                    kept.append((data, key))
                    continue
                path = self.others.get(key)
                if path is None:
                    self.responses_dropped += 1
                    continue
                kept.append((data, key))
                if path not in out:
                    out.append(path)
            self.responses = kept or None
        return out

    def write(self, asm: PacketAssembler, path: Path | None = None) -> None:
        """Write the PATH_CHALLENGE and PATH_RESPONSE frames owed on ``path`` (the
        current one by default) into the open packet; each is sent once."""
        if path is None:
            path = self.current
        if asm.room < _FRAME_SIZE:
            return
        packet = asm.packet
        wrote = False
        if path.challenge_owed:
            data = self._token_bytes(8)  # RFC 9000 §8.2.1: unpredictable, fresh each time
            if path.challenges is None:
                path.challenges = deque(maxlen=_MAX_CHALLENGES)
            path.challenges.append(data)
            path.challenge_owed = False
            asm.push(encode_path_challenge_frame(data))
            wrote = True
        responses = self.responses
        if responses:
            key = _key(path)
            kept: deque[tuple[bytes, Any]] = deque(maxlen=self._max_responses)
            for data, where in responses:
                if where == key and asm.room >= _FRAME_SIZE:
                    asm.push(encode_path_response_frame(data))
                    wrote = True
                else:
                    kept.append((data, where))
            self.responses = kept or None
        if wrote:
            packet.ack_eliciting = packet.in_flight = True
            asm.expand_datagram()  # RFC 9000 §8.2.1, §8.2.2: 1200 bytes, budget permitting

    def on_path_datagram_sent(self, path: Path, size: int) -> None:
        """A datagram went out on a path other than the current one."""
        self.bytes_sent += size
        path.sent += size
