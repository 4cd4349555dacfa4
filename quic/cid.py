"""Connection IDs: the ones we issue and the ones the peer gives us (RFC 9000 §5.1).

Theory of operation
-------------------
:class:`ConnectionIdManager` is the connection-ID component of a connection. It
handles the frames about connection IDs, writes its own (NEW_CONNECTION_ID and
RETIRE_CONNECTION_ID, through the codec's encoders) and learns their fate from the
handlers it registers on the packets that carry them.

*Local* connection IDs route incoming packets to this connection. Sequence number 0 is
the Source Connection ID of our handshake packets; more are issued with
NEW_CONNECTION_ID frames up to the peer's ``active_connection_id_limit`` (§5.1.1, at
most :data:`MAX_ISSUED`), each with a stateless reset token (§10.3). When the peer
retires one (§19.16) it is dropped and a replacement issued. Newly issued and retired
local IDs are collected for the endpoint's routing table
(:meth:`ConnectionIdManager.pop_routing_changes`, turned into events by the connection).

Issuing starts once the handshake is confirmed (the send scheduler passes
``may_issue``): at its completion for a server (RFC 9001 §4.1.2), at HANDSHAKE_DONE for a
client. The peer needs a spare ID of ours only when one of us moves to a new path, which
no endpoint starts before confirmation (RFC 9000 §9, §9.6.1); so the client's Finished
flight carries no 1-RTT packet of NEW_CONNECTION_ID frames — a shorter critical path
for every handshake, and no IDs made at all for a connection closed before it is
confirmed.

*Peer* connection IDs are the ones we may put in the Destination Connection ID field,
kept by sequence number and by value (so a repeated ID is found in O(1)).
NEW_CONNECTION_ID frames add to the set; exceeding our own
``active_connection_id_limit`` is CONNECTION_ID_LIMIT_ERROR (§5.1.1). An increased
Retire Prior To retires every older ID before the new one is added (§5.1.2), and an ID
that arrives already below Retire Prior To is retired at once.

Retirements are bounded (RFC 9000 §5.1.2, the "Retire Prior To games" of a hostile
peer): a retired sequence number waits in ``_retire_unsent`` (insertion-ordered, O(1)
membership) until a RETIRE_CONNECTION_ID frame carries it, then in
``_retire_in_flight`` until that frame is acknowledged (lost: back to unsent). The
number of retirements not yet acknowledged may not exceed ``max_pending_retirements``
— never below twice our ``active_connection_id_limit``, as §5.1.2 asks — and a peer
that pushes beyond it gets CONNECTION_ID_LIMIT_ERROR, which §5.1.2 allows. Each frame
costs O(1) plus the retirement of at most ``active_connection_id_limit`` IDs, and
frames are only written while they fit the open packet, so no datagram grows with the
queue.

Each local ID gets a stateless reset token (§10.3): by default random, or — when the
endpoint gives a ``reset_token`` function — derived from the ID with the endpoint's
static key (§10.3.2), so that the endpoint can send a Stateless Reset for a connection
it no longer knows. When we move to a new path (migration, §9.5)
:meth:`ConnectionIdManager.rotate_peer_cid` switches to an unused peer ID and retires
the one in use.

Peer IDs of other paths (RFC 9000 §9.5: "MUST NOT reuse a connection ID when sending
from more than one local address" or "to more than one destination address"): the ID
in use belongs to the current path; a path other than the current one that we send
on (a probe, the path we left, the server's preferred address) holds one of its own,
*reserved* (:meth:`ConnectionIdManager.reserve_peer_cid`) so that it is never the
current path's nor another path's. :meth:`ConnectionIdManager.hand_over` makes a
reserved or unused ID the one in use and reserves the previous one for the path left;
:meth:`ConnectionIdManager.release_peer_cid` retires a path's ID when the path is
abandoned. "Unused" means neither in use nor reserved: every ID we stop using is
retired, so an ID never used is never confused with one that was. If the peer retires
a reserved ID (Retire Prior To), the path simply loses it.

A stateless reset (§10.3.1) is recognised by comparing the last 16 bytes of a datagram
with the reset tokens of the peer connection IDs we used and did not retire — the one
in use and those reserved for other paths (at most ``active_connection_id_limit``) —
with :func:`hmac.compare_digest`, so the comparison leaks nothing about the token
(§10.3.1: "without leaking information about the value of the token").

Randomness is injected (``token_bytes``) so tests can be deterministic.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    FrameType,
    encode_new_connection_id_frame,
    encode_retire_connection_id_frame,
)
from quic.packet_builder import PacketAssembler

__all__ = ["MAX_ISSUED", "ConnectionIdManager", "LocalConnectionId", "PeerConnectionId"]

#: How many NEW_CONNECTION_ID we keep outstanding at most, whatever the peer allows.
MAX_ISSUED = 8

_NCID = FrameType.NEW_CONNECTION_ID
_RCID = FrameType.RETIRE_CONNECTION_ID


@dataclass(slots=True)
class LocalConnectionId:
    sequence: int
    cid: bytes
    reset_token: bytes
    acked: bool = False  # a NEW_CONNECTION_ID carrying it was acknowledged


@dataclass(slots=True)
class PeerConnectionId:
    sequence: int
    cid: bytes
    reset_token: bytes | None


class ConnectionIdManager:
    """Local and peer connection IDs of one connection."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_issued_cids",
        "_next_local_sequence",
        "_peer_by_cid",
        "_peer_retire_prior_to",
        "_reserved",
        "_reset_token",
        "_retire_in_flight",
        "_retire_unsent",
        "_retired_cids",
        "_token_bytes",
        "_unannounced",
        "active_peer_reset_token",
        "cid_length",
        "issue_pending",
        "local",
        "local_limit",
        "max_pending_retirements",
        "peer",
        "peer_active_sequence",
        "peer_cid",
        "peer_limit",
    )

    def __init__(
        self,
        initial_local_cid: bytes,
        cid_length: int,
        local_limit: int,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        max_pending_retirements: int = 0,
        reset_token: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._token_bytes = token_bytes
        # RFC 9000 §10.3.2: the endpoint derives tokens from the CID with a static key
        # (so it can reset a connection it forgot); else random per ID
        self._reset_token = reset_token or (lambda cid: token_bytes(16))
        self.cid_length = cid_length
        self.local_limit = local_limit  # our active_connection_id_limit (for peer CIDs)
        self.peer_limit = 2  # peer's active_connection_id_limit (for our CIDs)
        # RFC 9000 §5.1.2: track at least twice active_connection_id_limit retirements
        self.max_pending_retirements = max(max_pending_retirements, 2 * local_limit)
        self.local: dict[int, LocalConnectionId] = {
            0: LocalConnectionId(
                0, initial_local_cid, self._reset_token(initial_local_cid), acked=True
            )
        }
        self._next_local_sequence = 1
        self._unannounced: dict[int, None] = {}  # local sequences owing NEW_CONNECTION_ID
        self.issue_pending = False  # set once the peer's limit is known
        self.peer: dict[int, PeerConnectionId] = {}
        self._peer_by_cid: dict[bytes, int] = {}
        self.peer_active_sequence = 0
        #: The Destination Connection ID to use now: the ID of ``peer_active_sequence``
        #: (an attribute kept by :meth:`_activate`; read per packet sent).
        self.peer_cid = b""
        #: The peer's stateless reset token for the connection ID in use (§10.3.1), or
        #: None: kept with ``peer_cid`` (the endpoint compares it after every call).
        self.active_peer_reset_token: bytes | None = None
        self._peer_retire_prior_to = 0
        # RFC 9000 §9.5: peer sequences held by paths other than the current one
        self._reserved: dict[int, None] = {}
        self._retire_unsent: dict[int, None] = {}
        self._retire_in_flight: dict[int, None] = {}  # a dict as a set (64 B empty)
        self._issued_cids: list[bytes] = []  # newly issued, for routing updates
        self._retired_cids: list[bytes] = []  # retired local, for routing updates

    # -- peer connection IDs ----------------------------------------------------------

    def compact(self) -> None:
        """A quiet connection: an emptied table gives its storage back (issue 10)."""
        for table in (self._unannounced, self._retire_unsent, self._retire_in_flight):
            if not table:
                table.clear()

    def set_initial_peer_cid(self, cid: bytes, reset_token: bytes | None = None) -> None:
        self.peer = {0: PeerConnectionId(0, cid, reset_token)}
        self._peer_by_cid = {cid: 0}
        self._activate(0)

    def set_peer_reset_token(self, sequence: int, token: bytes) -> None:
        entry = self.peer.get(sequence)
        if entry is not None:
            entry.reset_token = token
            if sequence == self.peer_active_sequence:
                self.active_peer_reset_token = token

    def _activate(self, sequence: int) -> None:
        """Use the peer ID ``sequence`` from now on (every change of the one in use)."""
        self.peer_active_sequence = sequence
        entry = self.peer[sequence]
        self.peer_cid = entry.cid
        self.active_peer_reset_token = entry.reset_token

    @property
    def pending_retirements(self) -> int:
        """Retired peer IDs whose RETIRE_CONNECTION_ID is not acknowledged yet."""
        return len(self._retire_unsent) + len(self._retire_in_flight)

    def on_new_connection_id(
        self, sequence: int, retire_prior_to: int, cid: bytes, reset_token: bytes
    ) -> None:
        """Handle NEW_CONNECTION_ID (RFC 9000 §19.15, §5.1.2)."""
        if self.peer and len(self.peer_cid) == 0:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "NEW_CONNECTION_ID while using zero-length connection IDs",
                _NCID,
            )
        existing = self.peer.get(sequence)
        if existing is not None:
            if existing.cid != cid or existing.reset_token != reset_token:
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    "sequence number reused for another connection ID",
                    _NCID,
                )
            return
        if sequence < self._peer_retire_prior_to:
            # already retired by an earlier Retire Prior To: retire this one at once
            if not self._retiring(sequence):
                self._check_retirement_room(1)
                self._retire_unsent[sequence] = None
            return
        if cid in self._peer_by_cid:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "connection ID repeated with another sequence number",
                _NCID,
            )
        if retire_prior_to > self._peer_retire_prior_to:
            # RFC 9000 §5.1.2: retire the older IDs before adding the new one
            doomed = sorted(s for s in self.peer if s < retire_prior_to)
            self._check_retirement_room(sum(not self._retiring(s) for s in doomed))
            self._peer_retire_prior_to = retire_prior_to
            for seq in doomed:
                entry = self.peer.pop(seq)
                del self._peer_by_cid[entry.cid]
                self._reserved.pop(seq, None)  # the path holding it loses it
                if not self._retiring(seq):
                    self._retire_unsent[seq] = None
        self.peer[sequence] = PeerConnectionId(sequence, cid, reset_token)
        self._peer_by_cid[cid] = sequence
        if self.peer_active_sequence not in self.peer:
            # the ID in use was retired: an unused one, else one a path held
            unused = self._unused()
            active = min(unused) if unused else min(self.peer)
            self._reserved.pop(active, None)
            self._activate(active)
        if len(self.peer) > self.local_limit:
            raise QuicProtocolError(
                TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                f"more than {self.local_limit} active connection IDs",
                _NCID,
            )  # RFC 9000 §5.1.1

    def _retiring(self, sequence: int) -> bool:
        return sequence in self._retire_unsent or sequence in self._retire_in_flight

    def _check_retirement_room(self, more: int) -> None:
        """CONNECTION_ID_LIMIT_ERROR if ``more`` retirements would exceed the limit
        (RFC 9000 §5.1.2); checked before anything changes."""
        if more and self.pending_retirements + more > self.max_pending_retirements:
            raise QuicProtocolError(
                TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                f"more than {self.max_pending_retirements} connection IDs awaiting retirement",
                _NCID,
            )

    def _unused(self) -> list[int]:
        active, reserved = self.peer_active_sequence, self._reserved
        return [seq for seq in self.peer if seq != active and seq not in reserved]

    def unused_peer_cids(self) -> int:
        """Peer IDs never used yet: neither in use nor reserved for another path."""
        return len(self._unused())

    def rotate_peer_cid(self) -> bool:
        """Move to an unused peer connection ID and retire the one in use (RFC 9000
        §9.5: a new ID on a new path); False if none is unused, or the retirement
        queue is full (the ID in use is then kept)."""
        unused = self._unused()
        return bool(unused) and self.use_peer_cid(min(unused))

    # -- peer connection IDs of other paths (RFC 9000 §9.5) ---------------------------

    @property
    def reserved_peer_cids(self) -> int:
        return len(self._reserved)

    def reserve_peer_cid(self, sequence: int | None = None) -> int | None:
        """Hold an unused peer ID (the lowest, or ``sequence``) for a path other than
        the current one; None when there is none (RFC 9000 §9.5: then nothing may be
        sent on that path)."""
        if sequence is None:
            unused = self._unused()
            if not unused:
                return None
            sequence = min(unused)
        elif (
            sequence not in self.peer
            or sequence == self.peer_active_sequence
            or sequence in self._reserved
        ):
            return None
        self._reserved[sequence] = None
        return sequence

    def reserved_cid(self, sequence: int) -> bytes | None:
        """The ID a path holds, or None if the peer retired it meanwhile."""
        if sequence not in self._reserved:
            return None
        return self.peer[sequence].cid

    def release_peer_cid(self, sequence: int) -> None:
        """The path holding ``sequence`` is abandoned: retire the ID (RFC 9000 §5.1.2).
        At most one retirement per ID we held, so the queue stays bounded."""
        if sequence not in self._reserved:
            return  # already retired by the peer's Retire Prior To
        del self._reserved[sequence]
        entry = self.peer.pop(sequence)
        del self._peer_by_cid[entry.cid]
        if not self._retiring(sequence):
            self._retire_unsent[sequence] = None

    def hand_over(self, sequence: int | None = None) -> int | None:
        """The current path changes: ``sequence`` (reserved by the new current path, or
        by default the lowest unused ID) becomes the ID in use, and the previous one is
        reserved for the path left, whose sequence is returned. None (nothing changes)
        when no such ID exists."""
        if sequence is None:
            unused = self._unused()
            if not unused:
                return None
            sequence = min(unused)
        elif sequence not in self._reserved:
            return None
        else:
            del self._reserved[sequence]
        previous = self.peer_active_sequence
        self._reserved[previous] = None
        self._activate(sequence)
        return previous

    def is_peer_stateless_reset(self, token: bytes) -> bool:
        """True if ``token`` is the reset token of a peer ID we use (§10.3.1): the one
        in use or one reserved for another path.

        Only connection IDs we used are checked (§10.3.1: never one not used or
        retired), each in constant time.
        """
        found = False
        for seq in (self.peer_active_sequence, *self._reserved):
            entry = self.peer.get(seq)
            if entry is not None and entry.reset_token is not None:
                found |= hmac.compare_digest(entry.reset_token, token)
        return found

    # -- local connection IDs ---------------------------------------------------------

    def set_peer_limit(self, limit: int) -> None:
        """The peer's active_connection_id_limit is known: IDs may be issued (§5.1.1)."""
        self.peer_limit = limit
        self.issue_pending = self.cid_length > 0

    def on_retire_connection_id(self, sequence: int, packet_dcid: bytes) -> None:
        """Handle RETIRE_CONNECTION_ID (RFC 9000 §19.16)."""
        if self.cid_length == 0 or sequence >= self._next_local_sequence:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "retiring a connection ID never issued",
                _RCID,
            )
        entry = self.local.get(sequence)
        if entry is None:
            return  # already retired
        if entry.cid == packet_dcid:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "retiring the connection ID the packet was sent to",
                _RCID,
            )
        del self.local[sequence]
        self._unannounced.pop(sequence, None)
        self._retired_cids.append(entry.cid)
        self.issue_pending = True

    def is_local_cid(self, cid: bytes) -> bool:
        return any(e.cid == cid for e in self.local.values())

    def local_reset_tokens(self) -> dict[bytes, bytes]:
        return {e.cid: e.reset_token for e in self.local.values()}

    def has_routing_changes(self) -> bool:
        return bool(self._issued_cids or self._retired_cids)

    def pop_routing_changes(self) -> tuple[list[bytes], list[bytes]]:
        """(issued, retired) local CIDs since the last call, for the endpoint's routing."""
        issued, retired = self._issued_cids, self._retired_cids
        self._issued_cids, self._retired_cids = [], []
        return issued, retired

    def issue_preferred(self) -> LocalConnectionId:
        """Server: the connection ID of the preferred_address transport parameter,
        sequence number 1 (RFC 9000 §5.1.1); call before any other is issued."""
        seq = self._next_local_sequence
        self._next_local_sequence += 1
        cid = self._token_bytes(self.cid_length)
        entry = self.local[seq] = LocalConnectionId(seq, cid, self._reset_token(cid), acked=True)
        self._issued_cids.append(cid)
        return entry

    def add_preferred_peer_cid(self, cid: bytes, reset_token: bytes) -> None:
        """Client: the server's preferred_address connection ID, sequence 1 (§5.1.1)."""
        if cid in self._peer_by_cid or 1 in self.peer:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "preferred_address connection ID already in use",
            )
        self.peer[1] = PeerConnectionId(1, cid, reset_token)
        self._peer_by_cid[cid] = 1

    def use_peer_cid(self, sequence: int) -> bool:
        """Move to the unused peer ID ``sequence`` and retire the one in use (§9.5)."""
        active = self.peer_active_sequence
        if sequence == active or sequence not in self.peer or sequence in self._reserved:
            return False
        if self.pending_retirements >= self.max_pending_retirements:
            return False
        entry = self.peer.pop(active, None)
        if entry is not None:
            del self._peer_by_cid[entry.cid]
            if not self._retiring(active):
                self._retire_unsent[active] = None
        self._activate(sequence)
        return True

    def _issue(self) -> None:
        """Create local IDs until the peer may hold as many as it allows (§5.1.1)."""
        want = min(self.peer_limit, MAX_ISSUED)
        while len(self.local) < want:
            seq = self._next_local_sequence
            self._next_local_sequence += 1
            cid = self._token_bytes(self.cid_length)
            self.local[seq] = LocalConnectionId(seq, cid, self._reset_token(cid))
            self._unannounced[seq] = None
            self._issued_cids.append(cid)

    # -- frames to send ---------------------------------------------------------------

    def wants_send(self, may_issue: bool) -> bool:
        """Frames are owed: retirements, or (once allowed) new connection IDs."""
        if self._retire_unsent:
            return True
        if not may_issue or not self.issue_pending:
            return False
        return bool(self._unannounced) or len(self.local) < min(self.peer_limit, MAX_ISSUED)

    def write(self, asm: PacketAssembler, may_issue: bool) -> None:
        """Write RETIRE_CONNECTION_ID and NEW_CONNECTION_ID frames that fit the packet.

        ``may_issue``: new IDs are announced only once the handshake is confirmed.
        """
        packet = asm.packet
        handlers = packet.handlers
        unsent = self._retire_unsent
        while unsent:
            seq = next(iter(unsent))
            frame = encode_retire_connection_id_frame(seq)
            if len(frame) > asm.room:
                break  # the rest waits for the next packet
            del unsent[seq]
            self._retire_in_flight[seq] = None
            asm.push(frame)
            handlers.append((self._retire_fate, (seq,)))
            packet.ack_eliciting = packet.in_flight = True
        if not may_issue or not self.issue_pending:
            return
        self._issue()
        announce = self._unannounced
        while announce:
            seq = next(iter(announce))
            entry = self.local[seq]
            frame = encode_new_connection_id_frame(seq, 0, entry.cid, entry.reset_token)
            if len(frame) > asm.room:
                break
            del announce[seq]
            asm.push(frame)
            handlers.append((self._new_cid_fate, (seq,)))
            packet.ack_eliciting = packet.in_flight = True
        self.issue_pending = bool(announce)

    def _retire_fate(self, acked: bool, seq: int) -> None:
        self._retire_in_flight.pop(seq, None)
        if not acked:
            self._retire_unsent[seq] = None  # RFC 9000 §13.3: sent again until acknowledged

    def _new_cid_fate(self, acked: bool, seq: int) -> None:
        entry = self.local.get(seq)
        if entry is None or entry.acked:
            return  # retired meanwhile, or another copy was acknowledged
        if acked:
            entry.acked = True
        else:
            self._unannounced[seq] = None  # RFC 9000 §13.3: sent again
            self.issue_pending = True
