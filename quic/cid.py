"""Connection IDs: the ones we issue and the ones the peer gives us (RFC 9000 §5.1).

Theory of operation
-------------------
*Local* connection IDs route incoming packets to this connection. Sequence number 0 is
the Source Connection ID of our handshake packets; more are issued with
NEW_CONNECTION_ID frames up to the peer's ``active_connection_id_limit`` (§5.1.1), each
with a stateless reset token (§10.3). When the peer retires one (§19.16) it is dropped
and a replacement issued. The connection asks :meth:`ConnectionIdManager.
new_connection_id_frames` for frames to send and reports their fate back.

*Peer* connection IDs are the ones we may put in the Destination Connection ID field.
NEW_CONNECTION_ID frames add to the set, ``Retire Prior To`` forces retirements
(§5.1.2), and exceeding our own ``active_connection_id_limit`` is
CONNECTION_ID_LIMIT_ERROR (§5.1.1). Retirements are queued as RETIRE_CONNECTION_ID
frames.

Randomness is injected (``token_bytes``) so tests can be deterministic.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from quic.errors import QuicProtocolError, TransportErrorCode

__all__ = ["ConnectionIdManager", "LocalConnectionId", "PeerConnectionId"]

#: How many NEW_CONNECTION_ID we keep outstanding at most, whatever the peer allows.
MAX_ISSUED = 8


@dataclass(slots=True)
class LocalConnectionId:
    sequence: int
    cid: bytes
    reset_token: bytes
    announced: bool = False  # a NEW_CONNECTION_ID carrying it was sent (seq 0: implicit)
    acked: bool = False


@dataclass(slots=True)
class PeerConnectionId:
    sequence: int
    cid: bytes
    reset_token: bytes | None


class ConnectionIdManager:
    """Local and peer connection IDs of one connection."""

    def __init__(
        self,
        initial_local_cid: bytes,
        cid_length: int,
        local_limit: int,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._token_bytes = token_bytes
        self.cid_length = cid_length
        self.local_limit = local_limit  # our active_connection_id_limit (for peer CIDs)
        self.peer_limit = 2  # peer's active_connection_id_limit (for our CIDs)
        self.local: dict[int, LocalConnectionId] = {
            0: LocalConnectionId(0, initial_local_cid, token_bytes(16), announced=True)
        }
        self._next_local_sequence = 1
        self.peer: dict[int, PeerConnectionId] = {}
        self.peer_active_sequence = 0
        self._peer_retire_prior_to = 0
        self._retire_pending: list[int] = []
        self.issue_pending = True  # NEW_CONNECTION_ID frames may be due (cheap hot-path check)
        self._issued_cids: list[bytes] = []  # newly issued, for routing updates
        self._retired_cids: list[bytes] = []  # retired local, for routing updates

    # -- peer connection IDs ----------------------------------------------------------

    def set_initial_peer_cid(self, cid: bytes, reset_token: bytes | None = None) -> None:
        self.peer = {0: PeerConnectionId(0, cid, reset_token)}
        self.peer_active_sequence = 0

    def set_peer_reset_token(self, sequence: int, token: bytes) -> None:
        entry = self.peer.get(sequence)
        if entry is not None:
            entry.reset_token = token

    @property
    def peer_cid(self) -> bytes:
        """The Destination Connection ID to use now."""
        return self.peer[self.peer_active_sequence].cid

    def on_new_connection_id(
        self, sequence: int, retire_prior_to: int, cid: bytes, reset_token: bytes
    ) -> None:
        """Handle NEW_CONNECTION_ID (RFC 9000 §19.15, §5.1.2)."""
        if self.peer and len(self.peer_cid) == 0:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "NEW_CONNECTION_ID while using zero-length connection IDs",
                0x18,
            )
        existing = self.peer.get(sequence)
        if existing is not None:
            if existing.cid != cid or existing.reset_token != reset_token:
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    "sequence number reused for another connection ID",
                    0x18,
                )
            return
        if sequence < self._peer_retire_prior_to:
            # already retired by an earlier Retire Prior To: retire this one at once
            if sequence not in self._retire_pending:
                self._retire_pending.append(sequence)
            return
        for entry in self.peer.values():
            if entry.cid == cid:
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    "connection ID repeated with another sequence number",
                    0x18,
                )
        self.peer[sequence] = PeerConnectionId(sequence, cid, reset_token)
        if retire_prior_to > self._peer_retire_prior_to:
            self._peer_retire_prior_to = retire_prior_to
            for seq in sorted(s for s in self.peer if s < retire_prior_to):
                del self.peer[seq]
                self._retire_pending.append(seq)
            if self.peer_active_sequence < retire_prior_to:
                self.peer_active_sequence = min(self.peer)
        if len(self.peer) > self.local_limit:
            raise QuicProtocolError(
                TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                f"more than {self.local_limit} active connection IDs",
                0x18,
            )

    def retire_frames(self) -> list[int]:
        """Sequence numbers to send RETIRE_CONNECTION_ID for (and forget)."""
        pending = self._retire_pending
        self._retire_pending = []
        return pending

    def on_retire_lost(self, sequence: int) -> None:
        self._retire_pending.append(sequence)

    def is_peer_stateless_reset(self, token: bytes) -> bool:
        """True if ``token`` is the reset token of a peer connection ID (§10.3.1)."""
        return any(e.reset_token == token for e in self.peer.values() if e.reset_token)

    # -- local connection IDs ---------------------------------------------------------

    def new_connection_id_frames(self) -> list[LocalConnectionId]:
        """Issue local CIDs until the peer holds as many as it allows (§5.1.1)."""
        if self.cid_length == 0:
            return []
        want = min(self.peer_limit, MAX_ISSUED)
        out = [e for e in self.local.values() if not e.announced]
        while len(self.local) < want:
            seq = self._next_local_sequence
            self._next_local_sequence += 1
            entry = LocalConnectionId(
                seq, self._token_bytes(self.cid_length), self._token_bytes(16)
            )
            self.local[seq] = entry
            self._issued_cids.append(entry.cid)
            out.append(entry)
        for entry in out:
            entry.announced = True
        self.issue_pending = False
        return out

    def on_new_connection_id_lost(self, sequence: int) -> None:
        entry = self.local.get(sequence)
        if entry is not None and not entry.acked:
            entry.announced = False
            self.issue_pending = True

    def on_new_connection_id_acked(self, sequence: int) -> None:
        entry = self.local.get(sequence)
        if entry is not None:
            entry.acked = True

    def on_retire_connection_id(self, sequence: int, packet_dcid: bytes) -> None:
        """Handle RETIRE_CONNECTION_ID (RFC 9000 §19.16)."""
        if self.cid_length == 0 or sequence >= self._next_local_sequence:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "retiring a connection ID never issued",
                0x19,
            )
        entry = self.local.get(sequence)
        if entry is None:
            return  # already retired
        if entry.cid == packet_dcid:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "retiring the connection ID the packet was sent to",
                0x19,
            )
        del self.local[sequence]
        self._retired_cids.append(entry.cid)
        self.issue_pending = True

    def is_local_cid(self, cid: bytes) -> bool:
        return any(e.cid == cid for e in self.local.values())

    def local_reset_tokens(self) -> dict[bytes, bytes]:
        return {e.cid: e.reset_token for e in self.local.values()}

    def pop_routing_changes(self) -> tuple[list[bytes], list[bytes]]:
        """(issued, retired) local CIDs since the last call, for the endpoint's routing."""
        issued, retired = self._issued_cids, self._retired_cids
        self._issued_cids, self._retired_cids = [], []
        return issued, retired
