"""QUIC transport parameters (RFC 9000 §7.4, §18; RFC 9221 §3; RFC 9368 §3;
draft-ietf-quic-reliable-stream-reset §3).

Theory of operation
-------------------
Transport parameters travel in the TLS ``quic_transport_parameters`` extension as a
sequence of ``(id (i), length (i), value)`` tuples (RFC 9000 §18). One table,
:data:`PARAMETERS`, names every parameter this stack understands with its id, value
kind, default and limits; both directions of the codec and all validation are driven
by it. :class:`TransportParameters` holds one field per table row (same name, same
default), plus ``extensions`` for parameters this module does not interpret.

Decoding (:meth:`TransportParameters.decode`) validates everything the RFCs ask a
receiver to check and raises :class:`~quic.errors.QuicProtocolError` with
TRANSPORT_PARAMETER_ERROR for: truncation, duplicate ids (§7.4), a value that does not
match its kind or limits (§18.2), and server-only parameters sent by a client
(§18.2). Reserved "greasing" ids ``31 * N + 27`` (§18.1) are skipped; other unknown
ids are kept raw in ``extensions`` (and otherwise ignored), so extensions such as
RFC 9287's grease_quic_bit can be read without changing this module.

Encoding (:meth:`TransportParameters.encode`) writes every parameter whose value
differs from its default, raises :class:`ValueError` for out-of-range values, and can
add one random greasing parameter. The integers and flags, a configuration's and alike
for all its connections, are encoded once per set of values, as the runs between the
per-connection parameters (connection IDs, reset token, preferred address; version
information is kept per value): the bytes are those of table order either way.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

from quic.buffer import VARINT_MAX, decode_varint, encode_varint
from quic.errors import BufferReadError, QuicProtocolError, TransportErrorCode

__all__ = [
    "PARAMETERS",
    "ParameterSpec",
    "PreferredAddress",
    "TransportParameters",
    "VersionInformation",
    "is_reserved_parameter_id",
]

Kind = Literal["int", "cid", "token", "flag", "preferred_address", "version_information"]


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One row of the transport parameter table."""

    name: str
    id: int
    kind: Kind
    default: Any
    minimum: int = 0
    maximum: int = VARINT_MAX
    server_only: bool = False


#: RFC 9000 §18.2, RFC 9368 §3, RFC 9221 §3, draft-ietf-quic-reliable-stream-reset §3.
#: Integer defaults are 0 unless stated.
PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("original_destination_connection_id", 0x00, "cid", None, server_only=True),
    ParameterSpec("max_idle_timeout", 0x01, "int", 0),
    ParameterSpec("stateless_reset_token", 0x02, "token", None, server_only=True),
    ParameterSpec("max_udp_payload_size", 0x03, "int", 65527, minimum=1200),
    ParameterSpec("initial_max_data", 0x04, "int", 0),
    ParameterSpec("initial_max_stream_data_bidi_local", 0x05, "int", 0),
    ParameterSpec("initial_max_stream_data_bidi_remote", 0x06, "int", 0),
    ParameterSpec("initial_max_stream_data_uni", 0x07, "int", 0),
    ParameterSpec("initial_max_streams_bidi", 0x08, "int", 0, maximum=1 << 60),
    ParameterSpec("initial_max_streams_uni", 0x09, "int", 0, maximum=1 << 60),
    ParameterSpec("ack_delay_exponent", 0x0A, "int", 3, maximum=20),
    ParameterSpec("max_ack_delay", 0x0B, "int", 25, maximum=(1 << 14) - 1),
    ParameterSpec("disable_active_migration", 0x0C, "flag", False),
    ParameterSpec("preferred_address", 0x0D, "preferred_address", None, server_only=True),
    ParameterSpec("active_connection_id_limit", 0x0E, "int", 2, minimum=2),
    ParameterSpec("initial_source_connection_id", 0x0F, "cid", None),
    ParameterSpec("retry_source_connection_id", 0x10, "cid", None, server_only=True),
    ParameterSpec("version_information", 0x11, "version_information", None),
    ParameterSpec("max_datagram_frame_size", 0x20, "int", 0),
    # draft-ietf-quic-reliable-stream-reset §3: empty; we accept RESET_STREAM_AT frames
    ParameterSpec("reset_stream_at", 0x1D, "flag", False),
    # draft-ietf-quic-ack-frequency §3: microseconds; absent: ACK_FREQUENCY unsupported
    ParameterSpec("min_ack_delay", 0xFF04DE1B, "int", None, maximum=(1 << 14) * 1000 - 1),
)

_BY_ID = {spec.id: spec for spec in PARAMETERS}


def is_reserved_parameter_id(parameter_id: int) -> bool:
    """True for greasing ids ``31 * N + 27`` (RFC 9000 §18.1)."""
    return parameter_id % 31 == 27


@dataclass(frozen=True, slots=True)
class PreferredAddress:
    """The server's preferred_address (RFC 9000 §18.2, "Preferred Address Format").

    An unused address family is all zeros (0.0.0.0:0 or [::]:0).
    """

    ipv4_address: ipaddress.IPv4Address
    ipv4_port: int
    ipv6_address: ipaddress.IPv6Address
    ipv6_port: int
    connection_id: bytes
    stateless_reset_token: bytes

    @property
    def ipv4(self) -> tuple[str, int] | None:
        """``(host, port)`` or ``None`` if the IPv4 family is unused."""
        if not int(self.ipv4_address) and not self.ipv4_port:
            return None
        return str(self.ipv4_address), self.ipv4_port

    @property
    def ipv6(self) -> tuple[str, int] | None:
        """``(host, port)`` or ``None`` if the IPv6 family is unused."""
        if not int(self.ipv6_address) and not self.ipv6_port:
            return None
        return str(self.ipv6_address), self.ipv6_port


@dataclass(frozen=True, slots=True)
class VersionInformation:
    """version_information (RFC 9368 §3): Chosen Version and Available Versions."""

    chosen_version: int
    available_versions: tuple[int, ...] = ()


# -- value codecs ----------------------------------------------------------------------


def _check_value(spec: ParameterSpec, value: Any, is_client_sender: bool | None) -> str | None:
    """Why ``value`` is invalid for ``spec``, or ``None`` (RFC 9000 §18.2)."""
    kind = spec.kind
    if kind == "int":
        if not spec.minimum <= value <= spec.maximum:
            return f"{spec.name} out of range: {value}"
    elif kind == "cid":
        if len(value) > 20:
            return f"{spec.name} longer than 20 bytes"
    elif kind == "token":
        if len(value) != 16:
            return f"{spec.name} must be 16 bytes"
    elif kind == "preferred_address":
        # RFC 9000 §18.2: the connection ID must not be zero-length.
        if not 1 <= len(value.connection_id) <= 20:
            return "preferred_address connection ID length outside 1..20"
        if len(value.stateless_reset_token) != 16:
            return "preferred_address stateless reset token must be 16 bytes"
        if not (0 <= value.ipv4_port <= 0xFFFF and 0 <= value.ipv6_port <= 0xFFFF):
            return "preferred_address port out of range"
    elif kind == "version_information":
        # RFC 9368 §4: zero versions are parsing failures; a client's chosen version
        # must appear in its available versions.
        if not value.chosen_version or 0 in value.available_versions:
            return "version_information holds version 0"
        if not all(0 <= v <= 0xFFFFFFFF for v in (value.chosen_version, *value.available_versions)):
            return "version_information version out of range"
        if is_client_sender and value.chosen_version not in value.available_versions:
            return "client chosen version missing from available versions"
    return None


def _encode_value(spec: ParameterSpec, value: Any) -> bytes:
    kind = spec.kind
    if kind == "int":
        return encode_varint(value)
    if kind in ("cid", "token"):
        return bytes(value)
    if kind == "flag":
        return b""
    if kind == "preferred_address":
        return b"".join(
            (
                value.ipv4_address.packed,
                value.ipv4_port.to_bytes(2, "big"),
                value.ipv6_address.packed,
                value.ipv6_port.to_bytes(2, "big"),
                bytes((len(value.connection_id),)),
                value.connection_id,
                value.stateless_reset_token,
            )
        )
    versions = (value.chosen_version, *value.available_versions)
    return b"".join(v.to_bytes(4, "big") for v in versions)


def _decode_preferred_address(data: bytes) -> PreferredAddress:
    # RFC 9000 §18.2 (Preferred Address Format): 4 + 2 + 16 + 2 + 1 + CID + 16 bytes.
    if len(data) < 41:
        raise BufferReadError("preferred_address truncated")
    cid_len = data[24]
    if len(data) != 41 + cid_len:
        raise BufferReadError("preferred_address length mismatch")
    return PreferredAddress(
        ipaddress.IPv4Address(data[0:4]),
        int.from_bytes(data[4:6], "big"),
        ipaddress.IPv6Address(data[6:22]),
        int.from_bytes(data[22:24], "big"),
        data[25 : 25 + cid_len],
        data[25 + cid_len :],
    )


def _decode_value(spec: ParameterSpec, data: bytes) -> Any:
    """Parse one value; raises BufferReadError if it does not match its kind."""
    kind = spec.kind
    if kind == "int":
        value, end = decode_varint(data, 0)
        if end != len(data):
            raise BufferReadError(f"{spec.name}: value length mismatch")
        return value
    if kind in ("cid", "token"):
        return data
    if kind == "flag":
        if data:
            raise BufferReadError(f"{spec.name} must be empty")
        return True
    if kind == "preferred_address":
        return _decode_preferred_address(data)
    # RFC 9368 §4: at least the chosen version, length a multiple of 4.
    if not data or len(data) % 4:
        raise BufferReadError("version_information length not a positive multiple of 4")
    versions = [int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data), 4)]
    return VersionInformation(versions[0], tuple(versions[1:]))


# (id, value) -> the encoded integer parameter, and (id, encoded value) -> the checked
# value: a connection's parameters are mostly its configuration's and its peers' are
# mostly alike, so each is encoded or decoded once. Bounded: emptied when full.
_ENCODED_INTS: dict[tuple[int, int], bytes] = {}
_DECODED_INTS: dict[tuple[int, bytes], int] = {}
_INT_CACHE_LIMIT = 256


def _encode_int_parameter(spec: ParameterSpec, value: int) -> bytes:
    problem = _check_value(spec, value, None)
    if problem:
        raise ValueError(problem)
    body = encode_varint(value)
    encoded = encode_varint(spec.id) + encode_varint(len(body)) + body
    if len(_ENCODED_INTS) >= _INT_CACHE_LIMIT:
        _ENCODED_INTS.clear()
    _ENCODED_INTS[(spec.id, value)] = encoded
    return encoded


# A connection's integer and flag parameters come from its configuration, alike for all
# its connections; the others (connection IDs, the reset token, the preferred address,
# version information) are its own. The table's order, as runs of the former between
# the latter: each run's encoding is kept per set of values (bounded: emptied when full).
_LAYOUT: tuple[int | ParameterSpec, ...] = ()  # a run's index, or a per-connection spec
_RUNS: list[list[ParameterSpec]] = []
for _spec in PARAMETERS:
    if _spec.kind not in ("int", "flag"):
        _LAYOUT += (_spec,)
    elif _LAYOUT and type(_LAYOUT[-1]) is int:
        _RUNS[-1].append(_spec)
    else:
        _LAYOUT += (len(_RUNS),)
        _RUNS.append([_spec])
del _spec
_RUN_SPECS = tuple(spec for run in _RUNS for spec in run)
_RUN_VALUES = attrgetter(*(spec.name for spec in _RUN_SPECS))
_ENCODED_RUNS: dict[tuple[Any, ...], tuple[bytes, ...]] = {}
_RUNS_CACHE_LIMIT = 64


def _encode_runs(values: tuple[Any, ...]) -> tuple[bytes, ...]:
    """The encoded runs for the integer and flag ``values`` (in :data:`_RUN_SPECS`
    order); raises :class:`ValueError` for an out-of-range value (nothing is kept)."""
    encoded: list[bytes] = []
    at = 0
    for run in _RUNS:
        parts: list[bytes] = []
        for spec in run:
            value = values[at]
            at += 1
            if value == spec.default:
                continue
            if spec.kind == "flag":
                parts.append(encode_varint(spec.id) + b"\x00")
                continue
            part = _ENCODED_INTS.get((spec.id, value))
            parts.append(part if part is not None else _encode_int_parameter(spec, value))
        encoded.append(b"".join(parts))
    runs = tuple(encoded)
    if len(_ENCODED_RUNS) >= _RUNS_CACHE_LIMIT:
        _ENCODED_RUNS.clear()
    _ENCODED_RUNS[values] = runs
    return runs


def _encode_parameter(spec: ParameterSpec, value: Any) -> bytes:
    """Id, length and value of one parameter; :class:`ValueError` if ``value`` is invalid."""
    problem = _check_value(spec, value, None)
    if problem:
        raise ValueError(problem)
    body = _encode_value(spec, value)
    return encode_varint(spec.id) + encode_varint(len(body)) + body


_VERSION_INFORMATION = _BY_ID[0x11]
_ENCODED_VERSIONS: dict[tuple[int, tuple[int, ...]], bytes] = {}


def _encode_versions(key: tuple[int, tuple[int, ...]], value: VersionInformation) -> bytes:
    """version_information encoded, kept per ``key`` (its chosen and available
    versions; bounded: emptied when full)."""
    encoded = _encode_parameter(_VERSION_INFORMATION, value)
    if len(_ENCODED_VERSIONS) >= _RUNS_CACHE_LIMIT:
        _ENCODED_VERSIONS.clear()
    _ENCODED_VERSIONS[key] = encoded
    return encoded


def _decode_int_parameter(spec: ParameterSpec, raw: bytes) -> int:
    value: int = _decode_value(spec, raw)
    problem = _check_value(spec, value, None)  # an integer's check is the sender's too
    if problem:
        raise _tpe(problem)
    if len(_DECODED_INTS) >= _INT_CACHE_LIMIT:
        _DECODED_INTS.clear()
    _DECODED_INTS[(spec.id, raw)] = value
    return value


def _tpe(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.TRANSPORT_PARAMETER_ERROR, reason)


# -- the parameter set -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportParameters:
    """One endpoint's transport parameters; every field defaults as in RFC 9000 §18.2.

    ``None`` means "absent" for parameters without a default value.
    ``extensions`` holds ``(id, raw value)`` of unknown, non-greasing parameters.
    """

    original_destination_connection_id: bytes | None = None
    max_idle_timeout: int = 0
    stateless_reset_token: bytes | None = None
    max_udp_payload_size: int = 65527
    initial_max_data: int = 0
    initial_max_stream_data_bidi_local: int = 0
    initial_max_stream_data_bidi_remote: int = 0
    initial_max_stream_data_uni: int = 0
    initial_max_streams_bidi: int = 0
    initial_max_streams_uni: int = 0
    ack_delay_exponent: int = 3
    max_ack_delay: int = 25
    disable_active_migration: bool = False
    preferred_address: PreferredAddress | None = None
    active_connection_id_limit: int = 2
    initial_source_connection_id: bytes | None = None
    retry_source_connection_id: bytes | None = None
    version_information: VersionInformation | None = None
    max_datagram_frame_size: int = 0
    reset_stream_at: bool = False
    min_ack_delay: int | None = None  # µs (draft-ietf-quic-ack-frequency §3)
    extensions: tuple[tuple[int, bytes], ...] = ()

    def encode(self, grease: bool = False) -> bytes:
        """Encode every non-default parameter (RFC 9000 §18).

        With ``grease``, one reserved parameter (id ``31 * N + 27``, random value of
        0..16 bytes) is added first (RFC 9000 §18.1). Raises :class:`ValueError` for
        invalid values.
        """
        if self.preferred_address is not None and self.initial_source_connection_id == b"":
            raise ValueError("preferred_address with a zero-length connection ID")  # §18.2
        parts: list[bytes] = []
        if grease:
            n = secrets.randbelow(1 << 16)
            value = secrets.token_bytes(secrets.randbelow(17))
            parts += (encode_varint(31 * n + 27), encode_varint(len(value)), value)
        # the configuration's integers and flags: each run of them encoded once
        runs = _ENCODED_RUNS.get(values := _RUN_VALUES(self))
        if runs is None:
            runs = _encode_runs(values)
        for spec in _LAYOUT:
            if isinstance(spec, int):  # a run's index
                parts.append(runs[spec])
                continue
            value = getattr(self, spec.name)
            if value == spec.default:
                continue
            if spec is _VERSION_INFORMATION:  # the same few per configuration
                key = (value.chosen_version, value.available_versions)
                part = _ENCODED_VERSIONS.get(key)
                parts.append(part if part is not None else _encode_versions(key, value))
                continue
            parts.append(_encode_parameter(spec, value))
        seen: set[int] = set()
        for parameter_id, body in self.extensions:
            if parameter_id in _BY_ID or parameter_id in seen:
                raise ValueError(f"extension id 0x{parameter_id:x} duplicates a parameter")
            seen.add(parameter_id)
            parts += (encode_varint(parameter_id), encode_varint(len(body)), body)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, *, is_client_sender: bool) -> TransportParameters:
        """Decode and validate the parameters sent by a client or a server.

        Raises :class:`QuicProtocolError` (TRANSPORT_PARAMETER_ERROR) on any violation.
        """
        data = bytes(data)
        values: dict[str, Any] = {}
        seen: set[int] = set()
        extensions: list[tuple[int, bytes]] = []
        pos = 0
        end = len(data)
        try:
            while pos < end:
                parameter_id = data[pos]
                if parameter_id < 0x40 and pos + 1 < end and data[pos + 1] < 0x40:
                    # one-byte id and length (RFC 9000 §16), as most parameters have
                    length = data[pos + 1]
                    pos += 2
                else:
                    parameter_id, pos = decode_varint(data, pos)
                    length, pos = decode_varint(data, pos)
                value_end = pos + length
                if value_end > end:
                    raise _tpe("transport parameter truncated")
                if parameter_id in seen:
                    raise _tpe(f"duplicate transport parameter 0x{parameter_id:x}")  # §7.4
                seen.add(parameter_id)
                raw = data[pos:value_end]
                pos = value_end
                spec = _BY_ID.get(parameter_id)
                if spec is None:
                    if not is_reserved_parameter_id(parameter_id):
                        extensions.append((parameter_id, raw))
                    continue
                if spec.server_only and is_client_sender:
                    raise _tpe(f"client sent server-only {spec.name}")  # RFC 9000 §18.2
                if spec.kind == "int":  # a peer's values: the same few each connection
                    value = _DECODED_INTS.get((parameter_id, raw))
                    if value is None:
                        value = _decode_int_parameter(spec, raw)
                    values[spec.name] = value
                    continue
                value = _decode_value(spec, raw)
                problem = _check_value(spec, value, is_client_sender)
                if problem:
                    raise _tpe(problem)
                values[spec.name] = value
        except BufferReadError as exc:
            raise _tpe(f"malformed transport parameters: {exc}") from None
        min_ack_delay = values.get("min_ack_delay")
        if min_ack_delay is not None and min_ack_delay > values.get("max_ack_delay", 25) * 1000:
            # draft-ietf-quic-ack-frequency §3: min_ack_delay above max_ack_delay
            raise _tpe("min_ack_delay greater than max_ack_delay")
        if "preferred_address" in values and values.get("initial_source_connection_id") == b"":
            # RFC 9000 §18.2: a server using a zero-length connection ID MUST NOT
            # provide a preferred address.
            raise _tpe("preferred_address with a zero-length connection ID")
        return cls(**values, extensions=tuple(extensions))
