"""The network path of a connection: address validation and path validation.

Theory of operation
-------------------
A connection uses one path (connection migration is not implemented; the peer's
``disable_active_migration`` is honoured trivially). :class:`PathManager` owns what
belongs to it:

* the peer's address and the largest UDP payload we send on the path
  (``max_datagram_size``, lowered to the peer's ``max_udp_payload_size``, RFC 9000
  §18.2);
* anti-amplification (RFC 9000 §8.1): until the peer's address is validated, a server
  sends at most three times the bytes it received. The connection reports each
  datagram in and out; :meth:`PathManager.send_budget` is what the next datagram may
  hold. A client's address counts as validated from the start (it chose the path);
  the server validates it when a Handshake packet arrives (§8.1);
* path validation (RFC 9000 §8.2): every PATH_CHALLENGE is answered with one
  PATH_RESPONSE echoing its data (§8.2.2), in a datagram expanded to 1200 bytes within
  the amplification limit. Responses wait in a queue bounded by
  ``max_pending_path_responses`` (§21.9 lets an endpoint limit its work for
  unproductive frames): a peer that floods challenges while withholding ACKs (so that
  congestion control holds our responses back) only ever keeps that many. When full,
  the *oldest* response is dropped: a peer that validates a path retransmits
  challenges with fresh data (§8.2.1) and waits for the answer to its latest one, so
  the newest challenges are the ones worth answering; dropping a response is allowed
  because PATH_RESPONSE is never retransmitted (§13.3) and the peer sends new
  challenges as needed (§8.2.2). The queue drains in O(1) per frame.

We never send PATH_CHALLENGE ourselves, so any PATH_RESPONSE received matches nothing;
RFC 9000 §19.18 allows, but does not require, treating that as PROTOCOL_VIOLATION, and
we ignore it (a stale response after a peer's migration test is not an attack).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from quic.frames import encode_path_response_frame
from quic.packet_builder import PacketAssembler

__all__ = ["PathManager"]

_PATH_RESPONSE_SIZE = 9  # type byte + 8 bytes of data (RFC 9000 §19.18)


class PathManager:
    """Address validation, anti-amplification and PATH_RESPONSE of the one path."""

    __slots__ = (
        "address_validated",
        "bytes_received",
        "bytes_sent",
        "max_datagram_size",
        "peer_address",
        "responses",
        "responses_dropped",
    )

    def __init__(self, is_client: bool, max_datagram_size: int, max_responses: int) -> None:
        self.peer_address: Any = None
        self.max_datagram_size = max_datagram_size
        self.address_validated = is_client  # RFC 9000 §8.1: the client chose the path
        self.bytes_received = 0
        self.bytes_sent = 0
        # PATH_RESPONSE data owed, oldest first (read-only outside this class)
        self.responses: deque[bytes] = deque(maxlen=max(1, max_responses))
        self.responses_dropped = 0  # challenges we did not answer (queue full)

    # -- anti-amplification (RFC 9000 §8.1) ---------------------------------------------

    def on_datagram_received(self, size: int) -> None:
        self.bytes_received += size

    def on_datagram_sent(self, size: int) -> None:
        self.bytes_sent += size

    def validate_address(self) -> None:
        self.address_validated = True

    def send_budget(self) -> int:
        """Bytes the next datagram may hold (path MTU, amplification limit)."""
        if self.address_validated:
            return self.max_datagram_size
        credit = 3 * self.bytes_received - self.bytes_sent
        return max(0, min(self.max_datagram_size, credit))

    def amplification_blocked(self) -> bool:
        return not self.address_validated and self.bytes_sent >= 3 * self.bytes_received

    def limit_datagram_size(self, peer_max_udp_payload: int) -> None:
        """The peer accepts at most this UDP payload (RFC 9000 §18.2)."""
        if peer_max_udp_payload < self.max_datagram_size:
            self.max_datagram_size = peer_max_udp_payload

    # -- path validation (RFC 9000 §8.2) ------------------------------------------------

    def on_path_challenge(self, data: bytes) -> None:
        """Queue the PATH_RESPONSE owed for a PATH_CHALLENGE (RFC 9000 §8.2.2)."""
        responses = self.responses
        if len(responses) == responses.maxlen:
            self.responses_dropped += 1  # the oldest gives way (see the module docstring)
        responses.append(data)

    def on_path_response(self, data: bytes) -> None:
        """We send no PATH_CHALLENGE: a response matches nothing (RFC 9000 §19.18)."""

    @property
    def pending_responses(self) -> int:
        return len(self.responses)

    def wants_send(self) -> bool:
        return bool(self.responses)

    def write(self, asm: PacketAssembler) -> None:
        """Write queued PATH_RESPONSE frames into the open packet, each sent once."""
        responses = self.responses
        if not responses or asm.room < _PATH_RESPONSE_SIZE:
            return
        packet = asm.packet
        while responses and asm.room >= _PATH_RESPONSE_SIZE:
            asm.push(encode_path_response_frame(responses.popleft()))
        packet.ack_eliciting = packet.in_flight = True
        asm.expand_datagram()  # RFC 9000 §8.2.2: at least 1200 bytes, budget permitting
