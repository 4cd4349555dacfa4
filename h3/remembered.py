"""HTTP/3 SETTINGS remembered with a session ticket (RFC 9114 §7.2.4.2).

Theory of operation
-------------------
RFC 9114 §7.2.4.2: "When a 0-RTT QUIC connection is being used, the initial value of
each server setting is the value used in the previous session. Clients SHOULD store
the settings the server provided in the HTTP/3 connection where resumption information
was provided [...] A client MUST comply with stored settings -- or default values if no
values are stored -- when attempting 0-RTT." And for the server: "A server can remember
the settings that it advertised or store an integrity-protected copy of the values in
the ticket [...] If the server cannot determine that the settings remembered by a client
are compatible with its current settings, it MUST NOT accept 0-RTT data. Remembered
settings are compatible if a client complying with those settings would not violate the
server's current settings." Once it accepted 0-RTT, its SETTINGS frame "MUST NOT reduce
any limits or alter any values that might be violated by the client with its 0-RTT
data"; a client treats a violation, or the omission of a setting it understands that
had a non-default value, as H3_SETTINGS_ERROR. draft-ietf-webtrans-http3-16 §3.2 adds
the WebTransport flow-control settings to those that must not be reduced.

The settings travel as a SETTINGS payload (:func:`encode_remembered`, reserved
identifiers left out) in the ticket's application data, which the QUIC layer carries
(``quic.conn_early``, ``quic.tls.tickets``):

* **Server**: :func:`remember_settings_in_tickets` puts our SETTINGS (from the
  :class:`~h3.connection.H3Configuration`) into every ticket (sealed with it: integrity
  protected) and installs the 0-RTT check :func:`server_accepts`: 0-RTT is refused
  (the handshake still resumes) when the ticket holds no readable settings or when
  :func:`incompatibility` finds a limit now smaller, a feature now off, or an unknown
  setting changed (its meaning is unknown, so compatibility cannot be determined).
* **Client**: :class:`SettingsMemory` (a component of the HTTP/3 connection) asks QUIC
  to hold new tickets until the server's SETTINGS arrive, then stores those SETTINGS with
  them (RFC 9114 §7.2.4.2 lets tickets received before SETTINGS go without; ours wait,
  bounded by ``quic.conn_early.MAX_HELD_TICKETS``). On a 0-RTT attempt with a ticket
  holding settings, the remembered ones apply until the server's SETTINGS arrive: the
  QPACK encoder uses the remembered dynamic table capacity and blocked streams (in
  0-RTT), the remembered SETTINGS_MAX_FIELD_SECTION_SIZE bounds what we send, and
  HTTP datagrams are allowed if remembered (RFC 9297 §2.1.1). When the server's
  SETTINGS arrive: if 0-RTT was accepted, any incompatibility is H3_SETTINGS_ERROR
  (§7.2.4.2); if it was rejected, QUIC has sent the 0-RTT data again in 1-RTT as it
  was, so the QPACK values the encoder already used must still hold, else the
  connection cannot comply and closes (H3_SETTINGS_ERROR). Without remembered settings
  the defaults apply (the QPACK encoder waits for SETTINGS, static table only).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from h3.errors import H3ConnectionError, H3Error, H3ErrorCode
from h3.settings import (
    BOOLEAN_SETTINGS,
    SETTING_DEFAULTS,
    SettingId,
    decode_settings,
    encode_settings,
    is_reserved_setting,
)

if TYPE_CHECKING:
    from h3.connection import H3Configuration
    from h3.qpack import QpackEncoder
    from quic.configuration import QuicConfiguration
    from quic.connection import QuicConnection

__all__ = [
    "SettingsMemory",
    "decode_remembered",
    "encode_remembered",
    "incompatibility",
    "local_settings",
    "remember_settings_in_tickets",
    "server_accepts",
]

#: Settings that are limits: a smaller value may be violated by a client complying with
#: the larger one (RFC 9114 §7.2.4.2; draft-ietf-webtrans-http3-16 §3.2 for WT_*).
_LIMITS = frozenset(
    {
        SettingId.QPACK_MAX_TABLE_CAPACITY,
        SettingId.QPACK_BLOCKED_STREAMS,
        SettingId.MAX_FIELD_SECTION_SIZE,  # absent: unlimited
        SettingId.WT_INITIAL_MAX_DATA,
        SettingId.WT_INITIAL_MAX_STREAMS_UNI,
        SettingId.WT_INITIAL_MAX_STREAMS_BIDI,
        SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07,
        SettingId.WT_MAX_SESSIONS_DRAFT13,
    }
)


def local_settings(config: H3Configuration) -> dict[int, int]:
    """The SETTINGS an endpoint with ``config`` sends (reserved ones aside)."""
    settings: dict[int, int] = {
        SettingId.QPACK_MAX_TABLE_CAPACITY: config.qpack_max_table_capacity,
        SettingId.QPACK_BLOCKED_STREAMS: config.qpack_blocked_streams,
    }
    if config.max_field_section_size is not None:
        settings[SettingId.MAX_FIELD_SECTION_SIZE] = config.max_field_section_size
    if config.enable_connect_protocol:
        settings[SettingId.ENABLE_CONNECT_PROTOCOL] = 1
    if config.enable_datagrams:
        settings[SettingId.H3_DATAGRAM] = 1
    settings.update(config.extra_settings)
    return settings


def encode_remembered(settings: dict[int, int]) -> bytes:
    """The SETTINGS payload to keep with a ticket: reserved identifiers left out."""
    return encode_settings(
        {k: v for k, v in sorted(settings.items()) if not is_reserved_setting(k)}
    )


def decode_remembered(data: bytes) -> dict[int, int] | None:
    """The settings kept with a ticket; None if there are none or they do not decode."""
    if not data:
        return None
    try:
        return decode_settings(data)
    except H3Error:
        return None


def _value(settings: dict[int, int], setting_id: int) -> int | None:
    if setting_id in settings:
        return settings[setting_id]
    return SETTING_DEFAULTS.get(setting_id, 0)


def incompatibility(
    remembered: dict[int, int], current: dict[int, int], *, strict: bool
) -> str | None:
    """Why a client complying with ``remembered`` might violate ``current`` (RFC 9114
    §7.2.4.2), or None: a limit reduced, a feature turned off, a setting we understand
    that had a non-default value omitted ("MUST NOT ... alter any values"; a client
    treats it as H3_SETTINGS_ERROR). ``strict`` (a server deciding on 0-RTT): a
    setting we do not understand whose value changed counts too (compatibility
    cannot be determined)."""
    for setting_id in sorted(remembered.keys() | current.keys()):
        if is_reserved_setting(setting_id):
            continue
        before, now = _value(remembered, setting_id), _value(current, setting_id)
        if setting_id in _LIMITS:
            if now is not None and (before is None or now < before):
                return f"setting {setting_id:#x} reduced from {before} to {now}"
        elif setting_id in BOOLEAN_SETTINGS:
            if before and not now:
                return f"setting {setting_id:#x} turned off"
        elif strict and before != now:
            return f"setting {setting_id:#x} changed from {before} to {now}"
        if (
            setting_id in SETTING_DEFAULTS
            and setting_id in remembered
            and setting_id not in current
            and remembered[setting_id] != SETTING_DEFAULTS[setting_id]
        ):
            return f"setting {setting_id:#x} omitted (it was {before})"
    return None


def _qpack_shortfall(encoder: QpackEncoder, settings: dict[int, int]) -> str | None:
    """Does our encoder use more dynamic table or blocked streams than ``settings``
    allow (RFC 9204 §3.2.3, §2.1.2)?"""
    for setting_id, used in (
        (SettingId.QPACK_MAX_TABLE_CAPACITY, encoder.max_table_capacity),
        (SettingId.QPACK_BLOCKED_STREAMS, encoder.blocked_streams),
    ):
        allowed = settings.get(setting_id, 0)
        if allowed < used:
            return f"setting {setting_id:#x} is {allowed}, our 0-RTT used {used}"
    return None


def server_accepts(current: dict[int, int], application_data: bytes) -> bool:
    """Server: may 0-RTT be accepted from a client that remembered the SETTINGS in
    ``application_data`` (the ticket's), given our ``current`` ones?"""
    remembered = decode_remembered(application_data)
    if remembered is None:
        return False  # cannot determine compatibility: MUST NOT accept (§7.2.4.2)
    return incompatibility(remembered, current, strict=True) is None


def remember_settings_in_tickets(
    configuration: QuicConfiguration, h3_configuration: H3Configuration
) -> None:
    """Server: seal our SETTINGS into every ticket of ``configuration`` and accept
    0-RTT only from clients whose remembered settings are compatible (RFC 9114
    §7.2.4.2). :func:`h3.aio.serve_h3` does it; a Sans-I/O server calls it once."""
    settings = local_settings(h3_configuration)
    configuration.ticket_application_data = encode_remembered(settings)
    configuration.early_data_application_check = functools.partial(server_accepts, settings)


class SettingsMemory:
    """Remembered SETTINGS of one HTTP/3 connection (see the module docstring)."""

    __slots__ = ("_encoder", "_quic", "remembered")

    def __init__(self, quic: QuicConnection, encoder: QpackEncoder) -> None:
        self._quic = quic
        self._encoder = encoder
        #: client: the server's settings from the ticket, in force during 0-RTT
        self.remembered: dict[int, int] | None = None
        if quic.is_client:
            quic.handshake.early.hold_tickets()  # they wait for the server's SETTINGS

    def start(self) -> None:
        """Client, our HTTP/3 starts: on a 0-RTT attempt, the ticket's settings apply."""
        quic = self._quic
        if not quic.is_client or not quic.early_data_possible:
            return
        ticket = quic.handshake.early.ticket
        if ticket is None:
            return
        remembered = decode_remembered(ticket.application_data)
        if remembered is None:
            return
        self.remembered = remembered
        self._encoder.apply_settings(
            remembered.get(SettingId.QPACK_MAX_TABLE_CAPACITY, 0),
            remembered.get(SettingId.QPACK_BLOCKED_STREAMS, 0),
            remembered.get(SettingId.MAX_FIELD_SECTION_SIZE),
        )

    def on_peer_settings(self, settings: dict[int, int]) -> None:
        """The peer's SETTINGS arrived: apply them to the QPACK encoder, check them
        against the remembered ones (client), and keep them with our tickets."""
        quic = self._quic
        encoder = self._encoder
        remembered = self.remembered
        if remembered is None:
            encoder.apply_settings(
                settings.get(SettingId.QPACK_MAX_TABLE_CAPACITY, 0),
                settings.get(SettingId.QPACK_BLOCKED_STREAMS, 0),
                settings.get(SettingId.MAX_FIELD_SECTION_SIZE),
            )
        else:
            self.remembered = None  # the server's own values from now on
            if quic.tls.early_data_accepted:
                problem = incompatibility(remembered, settings, strict=False)
            else:  # rejected: what the encoder used in 0-RTT was sent again as it was
                problem = _qpack_shortfall(encoder, settings)
            if problem is not None:
                raise H3ConnectionError(
                    H3ErrorCode.H3_SETTINGS_ERROR,
                    f"SETTINGS incompatible with the remembered ones: {problem} "
                    "(RFC 9114 §7.2.4.2)",
                )
            encoder.peer_max_field_section_size = settings.get(SettingId.MAX_FIELD_SECTION_SIZE)
        if quic.is_client:
            quic.handshake.early.set_application_data(encode_remembered(settings))
