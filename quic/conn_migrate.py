"""Connection migration: what a change of path means to the rest of a connection.

Theory of operation
-------------------
:class:`~quic.conn_paths.PathManager` knows the paths; :class:`Migration` applies the
rules of RFC 9000 §9 around each datagram and tells the other components what a new
path changes:

* before a datagram from an address that is not the current peer address is read
  (:meth:`Migration.admit`): a client drops it once the handshake is confirmed unless
  it is a path it probes (§9: a server never migrates, except to its preferred
  address); a server that sent ``disable_active_migration`` drops a datagram whose
  Destination Connection ID differs from the one its peer used last — an active
  migration it refused (§9: drop, never a Stateless Reset) — but follows a NAT
  rebinding (same connection ID, new address);
* after it was read (:meth:`Migration.after_datagram`): if it authenticated, its bytes
  count on its path; if it held the highest-numbered non-probing packet and the
  handshake is confirmed, a server moves to the new address (§9.3); then congestion
  control and RTT start over unless only the port changed (§9.4), and if the peer
  moved to a new connection ID we move to an unused one of the peer's too (§9.5; with
  none left we keep ours, as §9.5 allows after a change of path the peer did not
  announce);
* a client migrates itself with :meth:`Migration.migrate` (§9.2): a new peer
  connection ID, a fresh congestion controller and RTT estimate, and a validation of
  the new path; the driver moves to a new local socket;
* :meth:`Migration.datagrams` builds the datagrams owed to paths other than the
  current one (PATH_CHALLENGE, PATH_RESPONSE) and addresses them;
* :meth:`Migration.handle_timer` drives validation timers; with no validated path left
  the connection is dropped silently (§9.3.2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quic.conn_keys import APPLICATION
from quic.conn_paths import path_key
from quic.tparams import PreferredAddress

if TYPE_CHECKING:
    from quic.cid import ConnectionIdManager
    from quic.conn_handshake import HandshakeDriver
    from quic.conn_keys import PacketSpaces
    from quic.conn_paths import PathManager
    from quic.conn_receive import PacketReader
    from quic.conn_send import SendScheduler
    from quic.recovery import LossRecovery

__all__ = ["Migration", "MigrationRefused", "preferred_address_parameter"]


def preferred_address_parameter(
    addr: tuple[str, int] | None, cids: ConnectionIdManager
) -> PreferredAddress | None:
    """Server: the preferred_address transport parameter for ``addr`` (RFC 9000 §18.2),
    with a connection ID of sequence 1 and its reset token (§5.1.1); None without."""
    if addr is None:
        return None
    host, port = addr[0], addr[1]
    ip = ipaddress.ip_address(host)
    entry = cids.issue_preferred()
    v4, v6 = ipaddress.IPv4Address(0), ipaddress.IPv6Address(0)
    if isinstance(ip, ipaddress.IPv4Address):
        return PreferredAddress(ip, port, v6, 0, entry.cid, entry.reset_token)
    return PreferredAddress(v4, 0, ip, port, entry.cid, entry.reset_token)


class MigrationRefused(RuntimeError):
    """:meth:`Migration.migrate` cannot migrate now (the reason says why)."""


class Migration:
    """The migration rules of one connection (see the module docstring)."""

    def __init__(
        self,
        *,
        is_client: bool,
        disable_active_migration: bool,
        paths: PathManager,
        cids: ConnectionIdManager,
        reader: PacketReader,
        recovery: LossRecovery,
        handshake: HandshakeDriver,
        keys: PacketSpaces,
        sender: SendScheduler,
        new_congestion: Callable[[], Any],
        use_preferred_address: bool = True,
        on_new_path: Callable[[float, bool], None] | None = None,
    ) -> None:
        self._is_client = is_client
        self._refuse_active = disable_active_migration and not is_client
        self._paths = paths
        self._cids = cids
        self._reader = reader
        self._recovery = recovery
        self._handshake = handshake
        self._keys = keys
        self._sender = sender
        self._new_congestion = new_congestion
        # on_new_path(now, host_changed): the path-dependent components (ECN validation,
        # RFC 9000 §13.4.2; the path MTU, §14.3) start over on the new path
        self._on_new_path = on_new_path
        self.refused = 0  # datagrams dropped by the migration rules
        self._preferred: tuple[Any, bytes] | None = None  # client: (address, its CID)
        self._use_preferred = use_preferred_address

    def pto(self) -> float:
        """The PTO of the current path (RFC 9002 §6.2.1)."""
        recovery = self._recovery
        return recovery.rtt.pto_base() + recovery.max_ack_delay

    # -- receiving ----------------------------------------------------------------------

    def admit(self, data: bytes, addr: Any, cid_length: int) -> bool:
        """May a datagram from ``addr`` (not the current peer address) be read?"""
        if not self._handshake.confirmed:
            return True
        if self._is_client:
            if self._paths.knows(addr):
                return True
            self.refused += 1  # RFC 9000 §9: not from the server's address
            return False
        if self._refuse_active and data and not data[0] & 0x80:
            dcid = bytes(data[1 : 1 + cid_length])
            if dcid != self._reader.newest_dcid:
                self.refused += 1  # RFC 9000 §9: disable_active_migration, dropped
                return False
        return True

    def before_datagram(self) -> bytes:
        """Reset the per-datagram flags; returns the peer's connection ID so far."""
        reader = self._reader
        reader.newest_non_probing = False
        return reader.newest_dcid

    def after_datagram(
        self, addr: Any, size: int, processed: bool, previous_dcid: bytes, now: float
    ) -> None:
        """An authenticated datagram came from a new address: count it, maybe migrate."""
        if not processed:
            return
        reader = self._reader
        migrate = not self._is_client and reader.newest_non_probing and self._handshake.confirmed
        change = self._paths.on_authenticated_from(addr, size, migrate, now, self.pto())
        if change is None:
            return
        if change.host_changed:
            self._reset_congestion(now)  # RFC 9000 §9.4
        else:  # a port change keeps the controller; the old path's packets do not count
            self._recovery.on_path_change(now)
        if self._on_new_path is not None:
            self._on_new_path(now, change.host_changed)
        if reader.newest_dcid != previous_dcid:
            self._cids.rotate_peer_cid()  # RFC 9000 §9.5: the peer moved to a new ID
        recovery = self._recovery
        recovery.amplification_limited = self._paths.send_blocked()

    def _reset_congestion(self, now: float) -> None:
        """RFC 9000 §9.4: congestion control and RTT start over on the new path. The
        bytes still in flight on the old path stay counted (they leave the count as
        they are acknowledged or lost), and the new controller starts as if a recovery
        period had begun now, so that packets sent on the old path neither grow its
        window when acknowledged nor shrink it when lost (RFC 9000 §9.4: "MUST NOT
        contribute"; RFC 9002 §7.3.2)."""
        recovery = self._recovery
        fresh = self._new_congestion()
        fresh.bytes_in_flight = recovery.congestion.bytes_in_flight
        if hasattr(fresh, "congestion_recovery_start_time"):
            fresh.congestion_recovery_start_time = now
        recovery.congestion = fresh
        recovery.rtt.reset()
        recovery.on_path_change(now)

    # -- our own migration (client) -----------------------------------------------------

    def migrate(self, now: float) -> None:
        """Move to a new local address (RFC 9000 §9.2): a new connection ID, fresh
        congestion state, and a validation of the new path."""
        self.check()
        if not self._cids.rotate_peer_cid():
            raise MigrationRefused("no unused connection ID from the peer (RFC 9000 §9.5)")
        self._reset_congestion(now)
        if self._on_new_path is not None:
            self._on_new_path(now, True)
        self._paths.restart_current(now, self.pto())

    def check(self) -> None:
        """Raise :class:`MigrationRefused` unless :meth:`migrate` may proceed."""
        if not self._is_client:
            raise MigrationRefused("only a client migrates (RFC 9000 §9)")
        if not self._handshake.confirmed:
            raise MigrationRefused("migration before the handshake is confirmed (RFC 9000 §9)")
        params = self._handshake.peer_params
        if params is not None and params.disable_active_migration:
            raise MigrationRefused("the peer sent disable_active_migration (RFC 9000 §9)")
        if not self._cids.peer_cid:
            raise MigrationRefused("zero-length connection IDs (RFC 9000 §9.5)")
        cids = self._cids
        if not cids.unused_peer_cids() or cids.pending_retirements >= cids.max_pending_retirements:
            raise MigrationRefused("no unused connection ID from the peer (RFC 9000 §9.5)")

    # -- the server's preferred address (client, RFC 9000 §9.6) -------------------------

    def on_preferred_address(self, value: PreferredAddress) -> None:
        """The server's preferred_address: keep its connection ID (sequence 1) and the
        address of our family; it is validated once the handshake is confirmed."""
        self._cids.add_preferred_peer_cid(value.connection_id, value.stateless_reset_token)
        current = self._paths.peer_address
        host = current[0] if isinstance(current, tuple) else ""
        try:
            v6 = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            v6 = False
        target: Any = value.ipv6 if v6 else value.ipv4  # §9.6.3: the same family
        if target is not None and self._use_preferred:
            if v6 and isinstance(current, tuple) and len(current) == 4:
                target = (*target, 0, 0)
            self._preferred = (target, value.connection_id)

    def on_handshake_confirmed(self, now: float) -> None:
        """RFC 9000 §9.6.1: once confirmed, the client validates the preferred address."""
        preferred = self._preferred
        self._preferred = None
        if preferred is None or not self._is_client:
            return
        addr, cid = preferred
        if self._paths.is_current(addr):
            return
        self._paths.probe_preferred(addr, cid, now, self.pto())

    def adopt_preferred(self, now: float) -> None:
        """The preferred address is validated: move there with its connection ID."""
        path = self._paths.preferred
        if self._paths.adopt_preferred() is None or path is None:
            return
        self._cids.use_peer_cid(1)  # the preferred_address connection ID (§5.1.1)
        self._reset_congestion(now)  # RFC 9000 §9.4: a new path
        if self._on_new_path is not None:
            self._on_new_path(now, True)

    # -- sending and timers -------------------------------------------------------------

    def datagrams(self, now: float, version: int) -> list[tuple[bytes, Any]]:
        """Datagrams owed to paths other than the current one."""
        paths = self._paths
        if self._keys.spaces[APPLICATION].write is None:
            return []
        out: list[tuple[bytes, Any]] = []
        for path in paths.off_path_pending():
            data = self._sender.build_on_path(now, version, path)
            if data is not None:
                out.append((data, path.addr))
        return out

    def get_timer(self) -> float | None:
        return self._paths.get_timer()

    def handle_timer(self, now: float) -> bool:
        """False when no validated path is left (RFC 9000 §9.3.2)."""
        paths = self._paths
        current = path_key(paths.peer_address)
        alive = paths.handle_timer(now)
        if alive and path_key(paths.peer_address) != current:
            self._recovery.amplification_limited = paths.send_blocked()
        return alive
