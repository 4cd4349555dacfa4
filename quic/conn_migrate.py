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
  control and RTT start over unless only the port changed (§9.4);
* connection IDs per path (§9.5, see below);
* a client migrates itself with :meth:`Migration.migrate` (§9.2): a new peer
  connection ID, a fresh congestion controller and RTT estimate, and a validation of
  the new path; the driver moves to a new local socket;
* :meth:`Migration.datagrams` builds the datagrams owed to paths other than the
  current one (PATH_CHALLENGE, PATH_RESPONSE) and addresses them;
* :meth:`Migration.handle_timer` drives validation timers; with no validated path left
  the connection is dropped silently (§9.3.2).

Connection IDs on several paths (RFC 9000 §9.5: "MUST NOT reuse a connection ID when
sending from more than one local address" nor "to more than one destination
address"): the current path sends with the peer ID in use; every other path we send
on holds an ID of its own, reserved in :class:`~quic.cid.ConnectionIdManager`, taken
when the path first needs one and retired (RETIRE_CONNECTION_ID) once it owes nothing
and is not being validated, or is forgotten (:meth:`Migration._release_idle`). When
the current path changes:

* to a path that holds an ID (one we probed or left earlier), that ID becomes the one
  in use and the path left keeps the previous one;
* when the peer moved to a new connection ID of ours (an active migration), the new
  path takes an unused peer ID and the path left keeps the previous one; with none
  unused the migration is not followed (§9.5: "An endpoint that exhausts available
  connection IDs cannot ... respond to ... attempts by its peer to migrate") and the
  packet is still processed (counted in ``cid_blocked``);
* after a NAT rebinding (same connection ID, new address) the new path keeps the ID in
  use (§9.5: "it MAY continue to use the current connection ID with the new remote
  address") and the path left needs an unused one for its PATH_CHALLENGE (§9.3.3);
  without one that challenge is skipped, never sent with a reused ID.

A PATH_RESPONSE or PATH_CHALLENGE owed on a path that cannot get an ID is dropped
(``cid_skipped``). Zero-length connection IDs cannot be told apart, so they are used
on every path (§9.5 only asks not to initiate migration with them). A client's
:meth:`Migration.migrate` needs an unused peer ID (else :class:`MigrationRefused`),
and the server's preferred address is probed with the ID of its transport parameter
(sequence 1, reserved for that path).
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
    from quic.conn_paths import Path, PathChange, PathManager
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

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_cids",
        "_handshake",
        "_is_client",
        "_keys",
        "_new_congestion",
        "_on_new_path",
        "_paths",
        "_preferred",
        "_reader",
        "_recovery",
        "_refuse_active",
        "_sender",
        "_use_preferred",
        "cid_blocked",
        "cid_skipped",
        "path_dcid",
        "refused",
    )

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
        self._preferred: Any = None  # client: the server's preferred address to probe
        self._use_preferred = use_preferred_address
        self.cid_blocked = 0  # RFC 9000 §9.5: migrations not followed (no unused ID)
        #: the connection ID of ours the peer used last on the current path (set by the
        #: connection for datagrams on it, and here when the path changes)
        self.path_dcid: bytes | None = None
        self.cid_skipped = 0  # ... probes and responses not sent (no unused ID)

    def pto(self) -> float:
        """The PTO of the current path (RFC 9002 §6.2.1)."""
        recovery = self._recovery
        return recovery.rtt.pto_base() + recovery.max_ack_delay

    # -- receiving ----------------------------------------------------------------------

    def admit(self, data: bytes, addr: Any, cid_length: int, local: int = 0) -> bool:
        """May a datagram from ``addr`` to our local address ``local`` (not the current
        path) be read?"""
        if not self._handshake.confirmed:
            return True
        if self._is_client:
            if self._paths.knows(addr):
                return True
            self.refused += 1  # RFC 9000 §9: not from the server's address
            return False
        if self._refuse_active and not local and data and not data[0] & 0x80:
            # (§9: the rule does not cover a client acting on our preferred_address)
            dcid = bytes(data[1 : 1 + cid_length])
            if dcid != self._reader.newest_dcid:
                self.refused += 1  # RFC 9000 §9: disable_active_migration, dropped
                return False
        return True

    def before_datagram(self) -> bytes:
        """Reset the per-datagram flags; returns the connection ID the peer uses on the
        current path: a datagram from elsewhere with another one is an active migration
        (§9.5) — also after a migration we did not follow, whose later packets repeat
        the new ID (comparing with the previous packet's ID would take them for a NAT
        rebinding)."""
        reader = self._reader
        reader.newest_non_probing = False
        return self.path_dcid if self.path_dcid is not None else reader.newest_dcid

    def after_datagram(
        self,
        addr: Any,
        size: int,
        processed: bool,
        previous_dcid: bytes,
        now: float,
        local: int = 0,
    ) -> None:
        """An authenticated datagram came on a path other than the current one (from a
        new address, or to another local address): count it, maybe migrate."""
        if not processed:
            return
        reader = self._reader
        paths = self._paths
        migrate = not self._is_client and reader.newest_non_probing and self._handshake.confirmed
        if local != paths.current.local:
            self._on_local(addr, size, local, migrate, now)
            return
        dcid_changed = reader.newest_dcid != previous_dcid
        if migrate and dcid_changed and not self._has_cid_for(addr, local):
            self.cid_blocked += 1  # RFC 9000 §9.5: no unused ID for the new path
            migrate = False
        change = paths.on_authenticated_from(addr, size, migrate, now, self.pto(), local)
        if change is None:
            self._release_idle()
            return
        self._move_cids(change.old_path, dcid_changed)
        self.path_dcid = reader.newest_dcid
        self._after_change(change, now)

    def _after_change(self, change: PathChange, now: float) -> None:
        self._recovery.process_waiting_ack()  # the old path's ACK, before the change
        if change.host_changed:
            self._reset_congestion(now)  # RFC 9000 §9.4
        else:  # a port change keeps the controller; the old path's packets do not count
            self._recovery.on_path_change(now)
        if self._on_new_path is not None:
            self._on_new_path(now, change.host_changed)
        recovery = self._recovery
        recovery.amplification_limited = self._paths.send_blocked()

    # -- the server's preferred address (server, RFC 9000 §9.6.2) ----------------------

    def _on_local(self, addr: Any, size: int, local: int, non_probing: bool, now: float) -> None:
        """A datagram to another local address of ours than the current path's. To
        the preferred address (``local`` 1, from the first): the server probes that
        path and moves there once it is validated and a non-probing packet came on it
        (RFC 9000 §9.6.2); back to the first address: processed, never followed
        (§9.6.2: "The server MAY continue to process delayed packets that are
        received on the old IP address")."""
        paths = self._paths
        paths.on_authenticated_from(addr, size, False, now, self.pto(), local)
        self._release_idle()  # a path the new one pushed out of the table
        if self._is_client or local == 0 or paths.current.local != 0:
            return
        path = paths.others.get(path_key(addr, local))
        if path is not None:
            paths.probe_local(path, non_probing, now, self.pto())
        self._switch_local(now)

    def _switch_local(self, now: float) -> None:
        paths = self._paths
        path = paths.local_switch_ready()
        if path is None or not self._has_cid_for(path.addr, path.local):
            return
        change = paths.switch_local(path, now, self.pto())
        self._move_cids(change.old_path, dcid_changed=True)  # §9.5: another local address
        self._after_change(change, now)

    # -- connection IDs per path (RFC 9000 §9.5; see the module docstring) --------------

    def _has_cid_for(self, addr: Any, local: int = 0) -> bool:
        """May the path to ``addr`` become current with an ID not used elsewhere?"""
        if not self._cids.peer_cid:
            return True  # zero-length IDs
        path = self._paths.others.get(path_key(addr, local))
        held = None if path is None or path.cid_seq is None else path.cid_seq
        if held is not None and self._cids.reserved_cid(held) is not None:
            return True
        return self._cids.unused_peer_cids() > 0

    def _move_cids(self, old: Path, dcid_changed: bool) -> None:
        """The current path changed (the previous current is ``old``): give each its
        connection ID (see the module docstring)."""
        cids, paths = self._cids, self._paths
        new = paths.current
        held, new.cid_seq = new.cid_seq, None
        if not cids.peer_cid:
            return  # zero-length IDs: nothing to tell apart
        if held is not None and cids.reserved_cid(held) is not None:
            old.cid_seq = cids.hand_over(held)
        elif dcid_changed:
            old.cid_seq = cids.hand_over()  # the peer moved to a new ID: so do we
        else:  # a NAT rebinding: the new path MAY keep the ID in use (§9.5)
            old.cid_seq = cids.reserve_peer_cid()
        if old.cid_seq is None and old.validating:
            paths.stop_validation(old)  # §9.3.3's challenge, but no ID to send it with
            self.cid_skipped += 1
        if paths.others.get(paths.key(old)) is not old:
            paths._forget(old)  # evicted already: its ID goes
        self._release_idle()

    def _path_cid(self, path: Path) -> bytes | None:
        """The Destination Connection ID for ``path`` (not the current one): its own,
        taken now if it has none; None if no unused ID is left (RFC 9000 §9.5)."""
        cids = self._cids
        if not cids.peer_cid:
            return b""  # zero-length IDs
        if path.cid_seq is not None:
            cid = cids.reserved_cid(path.cid_seq)
            if cid is not None:
                return cid
        path.cid_seq = cids.reserve_peer_cid()
        return None if path.cid_seq is None else cids.reserved_cid(path.cid_seq)

    def _release_idle(self) -> None:
        """Retire the IDs of paths forgotten or owing nothing any more (§9.5, §5.1.2)."""
        paths, cids = self._paths, self._cids
        if paths.released:
            for seq in paths.released:
                cids.release_peer_cid(seq)
            paths.released.clear()
        if paths.others:
            for path in paths.idle_paths():
                assert path.cid_seq is not None
                cids.release_peer_cid(path.cid_seq)
                path.cid_seq = None

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
            self._preferred = target

    def on_handshake_confirmed(self, now: float) -> None:
        """RFC 9000 §9.6.1: once confirmed, the client validates the preferred address."""
        addr = self._preferred
        self._preferred = None
        if addr is None or not self._is_client or self._paths.is_current(addr):
            return
        # RFC 9000 §9.6.1, §9.5: the preferred_address connection ID (sequence 1,
        # §5.1.1) for that path, never the one in use on the original path
        seq = self._cids.reserve_peer_cid(1)
        if seq is None:
            seq = self._cids.reserve_peer_cid()  # retired meanwhile: any unused one
        if seq is None:
            self.cid_skipped += 1
            return
        self._paths.probe_preferred(addr, seq, now, self.pto())

    def adopt_preferred(self, now: float) -> None:
        """The preferred address is validated: move there with its connection ID."""
        old = self._paths.adopt_preferred()
        if old is None:
            return
        self._move_cids(old, dcid_changed=True)
        self._reset_congestion(now)  # RFC 9000 §9.4: a new path
        if self._on_new_path is not None:
            self._on_new_path(now, True)

    # -- sending and timers -------------------------------------------------------------

    def datagrams(self, now: float, version: int) -> list[tuple[bytes, Any, int]]:
        """Datagrams owed to paths other than the current one: ``(data, peer address,
        index of the local address to send from)``."""
        paths = self._paths
        if self._keys.spaces[APPLICATION].write is None:
            return []
        out: list[tuple[bytes, Any, int]] = []
        if not paths.others:
            return out
        for path in paths.off_path_pending():
            dcid = self._path_cid(path)
            if dcid is None:  # RFC 9000 §9.5: never another path's ID
                self.cid_skipped += paths.drop_responses(path) + path.challenge_owed
                if path.validating:
                    paths.stop_validation(path)
                continue
            data = self._sender.build_on_path(now, version, path, dcid)
            if data is not None:
                out.append((data, path.addr, path.local))
        self._release_idle()
        return out

    def get_timer(self) -> float | None:
        return self._paths.get_timer()

    def handle_timer(self, now: float) -> bool:
        """False when no validated path is left (RFC 9000 §9.3.2)."""
        paths = self._paths
        current = paths.current
        alive = paths.handle_timer(now)
        if alive and paths.current is not current:
            self._recovery.amplification_limited = paths.send_blocked()
            self._after_revert()
        self._release_idle()
        return alive

    def _after_revert(self) -> None:
        """RFC 9000 §9.3.2: back on the last validated path, the failed one forgotten:
        the fallback's own ID (or an unused one) becomes the one in use and the failed
        path's is retired; with neither, the ID in use is kept (the failed path is never
        sent to again)."""
        cids, current = self._cids, self._paths.current
        held, current.cid_seq = current.cid_seq, None
        if not cids.peer_cid:
            return
        if held is not None and cids.reserved_cid(held) is not None:
            previous = cids.hand_over(held)
        else:
            previous = cids.hand_over()
        if previous is not None:
            cids.release_peer_cid(previous)
