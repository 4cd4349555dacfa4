"""Starting the first flight over, and changing version mid-handshake (client and server).

Theory of operation
-------------------
Three things can make a connection change the version or the connection IDs its
Initial packets are protected with before the handshake is done. :class:`FirstFlight`
owns the rules for all three, so the coordinator only routes the packets to it:

* **Version Negotiation** (RFC 9000 §6.2, RFC 9368 §2.1 and §4): a client that gets a
  Version Negotiation packet before any other packet, echoing its connection IDs and not
  listing the version it used, starts a new first flight in a version both support —
  conceptually a new connection, with a new Destination Connection ID — or, if there is
  none, ends the connection with VERSION_NEGOTIATION_ERROR. It reacts once.
* **Compatible version negotiation** (RFC 9368 §2.3, RFC 9369 §4): a long header of a
  version not in use is dropped, except an Initial of the version the negotiation left
  (read with the keys kept for it) and, on a client, the server's first packet of the
  Negotiated Version: the connection switches to it tentatively and switches back if the
  packet does not authenticate. The server switches when TLS hands it the client's
  transport parameters (see :mod:`quic.conn_handshake`).
* **Retry** (RFC 9000 §17.2.5.2): the client's Initial keys and Destination Connection
  ID come from the Retry's Source Connection ID, and its CRYPTO data goes again; 0-RTT
  packets the server dropped are declared lost so their frames go again (RFC 9001 §4.6.2).

The version in use and the original Destination Connection ID live in the
:class:`~quic.conn_handshake.HandshakeDriver`; this component changes them there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quic.cid import ConnectionIdManager
from quic.conn_crypto import CryptoStreams
from quic.conn_handshake import HandshakeDriver
from quic.conn_keys import APPLICATION, INITIAL, PacketSpaces
from quic.conn_receive import PacketReader
from quic.conn_send import SendScheduler
from quic.errors import TransportErrorCode
from quic.events import ConnectionTerminated, QuicEvent
from quic.packet import PacketHeader, PacketType
from quic.qlog import QuicLogger
from quic.recovery import LossRecovery

__all__ = ["FirstFlight"]


class FirstFlight:
    """Version Negotiation, compatible version switches and Retry (module docstring)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_cids",
        "_crypto",
        "_events",
        "_handshake",
        "_is_client",
        "_keys",
        "_on_restart",
        "_qlog",
        "_reader",
        "_recovery",
        "_sender",
        "_token_bytes",
        "ended",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        handshake: HandshakeDriver,
        keys: PacketSpaces,
        cids: ConnectionIdManager,
        crypto: CryptoStreams,
        recovery: LossRecovery,
        sender: SendScheduler,
        reader: PacketReader,
        events: list[QuicEvent],
        token_bytes: Callable[[int], bytes],
        on_restart: Callable[[float], None],
        qlog: QuicLogger | None,
    ) -> None:
        self._is_client = is_client
        self._handshake = handshake
        self._keys = keys
        self._cids = cids
        self._crypto = crypto
        self._recovery = recovery
        self._sender = sender
        self._reader = reader
        self._events = events
        self._token_bytes = token_bytes
        self._on_restart = on_restart  # hands the new ClientHello on (after a restart)
        self._qlog = qlog
        #: A Version Negotiation packet ended the connection (RFC 9000 §6.2)
        self.ended = False

    # -- compatible version negotiation --------------------------------------------------

    def read_long(
        self, data: bytes, pos: int, header: PacketHeader, addr: Any, now: float, ecn: int
    ) -> int | None:
        """Route one long-header packet: a Version Negotiation packet and a Retry are
        taken here; a packet of a version not in use is read only as compatible version
        negotiation allows (RFC 9369 §4), switching tentatively and back if it does not
        authenticate (RFC 9000 §12.2). Returns the index of the space of a processed
        packet, else None; :attr:`ended` tells that a Version Negotiation ended the
        connection."""
        if self._qlog is not None and header.packet_type is PacketType.VERSION_NEGOTIATION:
            # logged by its header on arrival; a Retry once accepted (see on_retry), a
            # rejected one as packet_dropped
            self._qlog.packet_received_header(now, header, header.end - pos)
        reader = self._reader
        if header.version == 0:
            if self.on_version_negotiation(header, now, reader.processed):
                self.ended = True
            return None
        switched_from = 0
        if header.version != self._handshake.version:
            other = self.other_version(header)
            if other is None:
                reader.drop(now, "unsupported", header.packet_type)
                return None
            switched_from = other
        if header.packet_type is PacketType.RETRY:
            self.on_retry(data, pos, header, now)
            return None
        index = reader.read_long(data, pos, header, addr, now, ecn)
        if switched_from and index is None:
            # not authenticated (or not readable yet): no switch (RFC 9000 §12.2)
            self.switch(switched_from, keep_previous=False)
        return index

    def other_version(self, header: PacketHeader) -> int | None:
        """A long header of a version not in use: None to drop it (RFC 9369 §4); 0 for
        an Initial of the version a compatible negotiation left (read with its kept
        keys); or — client — the version in use so far, after switching tentatively to
        the packet's: the server's first packet of the Negotiated Version (RFC 9368
        §2.3), kept only if it authenticates (else :meth:`switch` back)."""
        version = header.version
        assert version is not None
        if header.packet_type is PacketType.INITIAL and self._keys.reads_initial(version):
            return 0
        if header.packet_type is PacketType.RETRY:
            return None  # RFC 9369 §4: a Retry of another version is ignored
        if self._handshake.may_switch_to(version):
            previous = self._handshake.version
            self.switch(version)
            return previous
        return None

    def switch(self, version: int, keep_previous: bool = True) -> None:
        """Compatible version negotiation: ``version`` from now on (RFC 9369 §4)."""
        self._handshake.version = version
        self._keys.switch_initial_version(version, keep_previous)

    # -- Version Negotiation --------------------------------------------------------------

    def on_version_negotiation(
        self, header: PacketHeader, now: float, packets_processed: int
    ) -> bool:
        """RFC 9000 §6.2, RFC 9368 §2.1 and §4. True if it ended the connection (no
        version in common; the ConnectionTerminated event is queued)."""
        handshake = self._handshake
        if (
            not self._is_client
            or packets_processed  # only before any other packet was processed
            or handshake.retry_received
            or handshake.reacted_to_vn  # one reaction per connection attempt (§4)
            or header.dcid != handshake.host_cid
            or header.scid != handshake.original_dcid
            or handshake.version in header.supported_versions  # original version listed
        ):
            return False
        version = handshake.choose_version(header.supported_versions)
        if self._qlog is not None:
            self._qlog.version_information(now, version, header.supported_versions)
        if version is not None:
            self._restart_with_version(version, now)
            return False
        versions = ", ".join(f"0x{v:08x}" for v in header.supported_versions)
        self._events.append(
            ConnectionTerminated(
                TransportErrorCode.VERSION_NEGOTIATION_ERROR,
                f"server offers no version we support ({versions})",
                by_peer=True,
            )
        )
        if self._qlog is not None:
            self._qlog.connection_closed(
                now, trigger="version_mismatch", reason=versions, by_peer=True
            )
        return True

    def _restart_with_version(self, version: int, now: float) -> None:
        """A new first flight in ``version`` (RFC 9368 §2.1): conceptually a new
        connection, so it gets a new Destination Connection ID — a server that kept
        state for the first attempt does not mistake the new one for it."""
        original_dcid = self._token_bytes(8)  # RFC 9000 §7.2: at least 8 bytes
        self._cids.set_initial_peer_cid(original_dcid)
        self._crypto.reset()
        self._recovery.discard_space(INITIAL, now)
        self._sender.discard(INITIAL)
        self._keys.install_initial(version, original_dcid)
        self._handshake.restart(version, original_dcid)
        self._on_restart(now)

    # -- Retry ----------------------------------------------------------------------------

    def on_retry(self, data: bytes, pos: int, header: PacketHeader, now: float) -> None:
        """A Retry: start over with its connection ID and token (RFC 9000 §17.2.5.2)."""
        if not self._handshake.accept_retry(data, pos, header, self._cids.peer_cid):
            self._reader.drop(now, "unexpected_packet", PacketType.RETRY)
            return
        if self._qlog is not None:
            self._qlog.packet_received_header(now, header, header.end - pos)
        self._cids.set_initial_peer_cid(header.scid)
        self._keys.install_initial(self._handshake.version, header.scid)
        self._crypto.requeue_unacked(INITIAL)
        self._recovery.discard_space(INITIAL)
        if self._keys.zero_rtt_write is not None:
            # RFC 9001 §4.6.2: a Retry does not reject 0-RTT; the server dropped our
            # 0-RTT packets, so their frames go again (to the new connection ID)
            self._recovery.discard_space(APPLICATION, now, notify_lost=True)
