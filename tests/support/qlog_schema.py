"""A small checker of the qlog traces :mod:`quic.qlog` and :mod:`h3.qlog` write.

It checks what qvis needs to load a JSON-SEQ trace (qlog 0.3) and, for every event,
the fields the qlog event definitions make required (draft-ietf-quic-qlog-quic-events,
-h3-events, in their 0.3 naming), with their types. An event name it does not know is
an error: every event written must be described here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[dict[str, Any]], list[str]]

PACKET_TYPES = {"initial", "handshake", "0RTT", "1RTT", "retry", "version_negotiation"}
#: packet types of packet_dropped (read from a datagram's first byte) and packet_sent
PACKET_TYPES_ANY = PACKET_TYPES | {"stateless_reset", "unknown"}
DROP_TRIGGERS = {
    "internal_error",
    "rejected",
    "unsupported",
    "invalid",
    "duplicate",
    "connection_unknown",
    "decryption_failure",
    "key_unavailable",
    "general",
    "unexpected_packet",  # qlog 0.3's trigger (a Retry after the first, quic/connection.py)
}
#: quic-events §"stream_state_updated": base and granular states, by stream side
STREAM_STATES = {
    "sending": {"idle", "open", "closed", "ready", "send", "data_sent", "data_received"}
    | {"reset_sent", "reset_received", "destroyed"},
    "receiving": {"idle", "open", "closed", "receive", "size_known", "data_received"}
    | {"data_read", "reset_received", "reset_read", "destroyed"},
}
KEY_TYPE = re.compile(r"^(client|server)_(initial|0rtt|handshake|1rtt)_secret$")
HEX = re.compile(r"^[0-9a-f]*$")
VERSION = re.compile(r"^[0-9a-f]{8}$")
CC_STATES = {"slow_start", "congestion_avoidance", "recovery", "application_limited"}
METRICS = {
    "congestion_window",
    "bytes_in_flight",
    "smoothed_rtt",
    "min_rtt",
    "latest_rtt",
    "rtt_variance",
    "ssthresh",
    "pto_count",
}
H3_STREAM_TYPES = {
    "request",
    "control",
    "push",
    "qpack_encode",
    "qpack_decode",
    "webtransport",
    "reserved",
    "unknown",
}
H3_FRAME_TYPES = {
    "data",
    "headers",
    "cancel_push",
    "settings",
    "push_promise",
    "goaway",
    "max_push_id",
    "reserved",
    "unknown",
}


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> list[str]:
    if key not in data:
        return [f"missing {key!r}"]
    value = data[key]
    if isinstance(value, bool) and kind is int:
        return [f"{key!r} is a bool"]
    if not isinstance(value, kind):
        return [f"{key!r} has type {type(value).__name__}"]
    return []


def _owner(data: dict[str, Any]) -> list[str]:
    return [] if data.get("owner") in ("local", "remote") else ["bad 'owner'"]


def _header(header: Any, with_pn: bool) -> list[str]:
    if not isinstance(header, dict):
        return ["missing 'header'"]
    errors = []
    if header.get("packet_type") not in PACKET_TYPES:
        errors.append(f"bad packet_type {header.get('packet_type')!r}")
    if with_pn:
        errors += _need(header, "packet_number", int)
    for cid in ("dcid", "scid"):
        if cid in header and not (isinstance(header[cid], str) and HEX.match(header[cid])):
            errors.append(f"bad {cid}")
    return errors


def _stateless_reset(data: dict[str, Any]) -> list[str]:
    token = data.get("stateless_reset_token")
    ok = isinstance(token, str) and len(token) == 32 and HEX.match(token)
    return ([] if ok else ["bad stateless_reset_token"]) + _need(data.get("raw", {}), "length", int)


def _dropped(data: dict[str, Any]) -> list[str]:
    errors = [] if data.get("trigger") in DROP_TRIGGERS else [f"bad trigger {data.get('trigger')}"]
    header = data.get("header")
    if header is not None and header.get("packet_type") not in PACKET_TYPES_ANY:
        errors.append(f"bad packet_type {header.get('packet_type')!r}")
    if "raw" in data:
        errors += _need(data["raw"], "length", int)
    return errors


def _packet(data: dict[str, Any]) -> list[str]:
    header = data.get("header")
    if isinstance(header, dict) and header.get("packet_type") == "stateless_reset":
        return _stateless_reset(data)
    frameless = isinstance(header, dict) and (
        header.get("packet_type") in ("retry", "version_negotiation")
        # a stateless Initial logged from its bytes: no number, protected frames
        or (header.get("packet_type") == "initial" and "frames" not in data)
    )
    errors = _header(header, not frameless)
    raw = data.get("raw")
    if not (isinstance(raw, dict) and isinstance(raw.get("length"), int) and raw["length"] > 0):
        errors.append("bad raw.length")
    if frameless:
        if header.get("packet_type") == "initial" and "packet_number" in header:
            errors.append("a stateless Initial has no packet number here")
        if header.get("packet_type") == "version_negotiation":
            versions = data.get("supported_versions")
            if not (isinstance(versions, list) and all(VERSION.match(v) for v in versions)):
                errors.append("bad supported_versions")
        return errors
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        return [*errors, "no frames"]
    for frame in frames:
        if not (isinstance(frame, dict) and isinstance(frame.get("frame_type"), str)):
            errors.append(f"bad frame {frame!r}")
        elif frame["frame_type"] in ("stream", "crypto"):
            errors += _need(frame, "offset", int) + _need(frame, "length", int)
        elif frame["frame_type"] == "ack":
            errors += _need(frame, "acked_ranges", list)
    return errors


def _started(data: dict[str, Any]) -> list[str]:
    return (
        _need(data, "src_cid", str)
        + _need(data, "dst_ip", str)
        + _need(data, "dst_port", int)
        + ([] if data.get("ip_version") in ("ipv4", "ipv6") else ["bad ip_version"])
    )


def _closed(data: dict[str, Any]) -> list[str]:
    errors = _owner(data) + _need(data, "trigger", str) + _need(data, "reason", str)
    if "connection_code" not in data and "application_code" not in data:
        errors.append("no connection_code / application_code")
    return errors


def _versions(data: dict[str, Any]) -> list[str]:
    errors = []
    lists = [k for k in ("client_versions", "server_versions") if k in data]
    if not lists:
        errors.append("no version list")
    errors += [
        f"bad {key}"
        for key in lists
        if not all(isinstance(v, str) and VERSION.match(v) for v in data[key])
    ]
    if "chosen_version" in data and not VERSION.match(str(data["chosen_version"])):
        errors.append("bad chosen_version")
    return errors


def _alpn(data: dict[str, Any]) -> list[str]:
    lists = [k for k in ("client_alpns", "server_alpns") if isinstance(data.get(k), list)]
    return [] if lists else ["no alpn list"]


def _key(data: dict[str, Any]) -> list[str]:
    ok = isinstance(data.get("key_type"), str) and KEY_TYPE.match(data["key_type"])
    return ([] if ok else ["bad key_type"]) + _need(data, "trigger", str)


def _metrics(data: dict[str, Any]) -> list[str]:
    if not data:
        return ["empty metrics"]
    errors = [f"unknown metric {k!r}" for k in data if k not in METRICS]
    return errors + [f"bad {k}" for k, v in data.items() if not isinstance(v, int | float)]


def _cc_state(data: dict[str, Any]) -> list[str]:
    errors = [] if data.get("new") in CC_STATES else ["bad 'new'"]
    if "old" in data and data["old"] not in CC_STATES:
        errors.append("bad 'old'")
    return errors


def _datagrams(data: dict[str, Any]) -> list[str]:
    raw = data.get("raw")
    ok = isinstance(raw, list) and all(isinstance(r.get("length"), int) for r in raw)
    return _need(data, "count", int) + ([] if ok else ["bad raw"])


def _acked(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "packet_numbers", list)
    if data.get("packet_number_space") not in ("initial", "handshake", "application_data"):
        errors.append("bad packet_number_space")
    if not data.get("packet_numbers") or not all(
        isinstance(n, int) for n in data.get("packet_numbers", ())
    ):
        errors.append("bad packet_numbers")
    return errors


def _stream_state(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "stream_id", int)
    if data.get("stream_type") not in ("bidirectional", "unidirectional"):
        errors.append("bad stream_type")
    states = STREAM_STATES.get(data.get("stream_side"))  # type: ignore[arg-type]
    if states is None:
        return [*errors, "bad stream_side"]
    if data.get("new") not in states:
        errors.append(f"bad 'new' {data.get('new')!r}")
    if "old" in data and (data["old"] not in states or data["old"] == data["new"]):
        errors.append(f"bad 'old' {data['old']!r}")
    if "trigger" in data and data["trigger"] not in ("local", "remote"):
        errors.append("bad trigger")
    return errors


def _stream_type(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "stream_id", int) + _owner(data)
    return errors + ([] if data.get("new") in H3_STREAM_TYPES else ["bad 'new'"])


def _h3_datagram(data: dict[str, Any]) -> list[str]:
    """h3-events §"datagram_created" / §"datagram_parsed"."""
    errors = _need(data, "quarter_stream_id", int)
    raw = data.get("raw")
    if not (isinstance(raw, dict) and isinstance(raw.get("length"), int)):
        errors.append("raw.length")
    return errors


def _h3_frame(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "stream_id", int)
    if "length" in data:
        errors += _need(data, "length", int)
    frame = data.get("frame")
    if not isinstance(frame, dict) or frame.get("frame_type") not in H3_FRAME_TYPES:
        return [*errors, f"bad frame {frame!r}"]
    if frame["frame_type"] == "headers":
        headers = frame.get("headers")
        if not (isinstance(headers, list) and headers) or not all(
            isinstance(h.get("name"), str) and isinstance(h.get("value"), str) for h in headers
        ):
            errors.append("HEADERS without headers")
    return errors


CAPSULE_TYPES = {"datagram", "unknown", "wt_close_session", "wt_drain_session"} | {
    "wt_max_data",
    "wt_max_streams_bidi",
    "wt_max_streams_uni",
    "wt_data_blocked",
    "wt_streams_blocked_bidi",
    "wt_streams_blocked_uni",
}


def _capsule(data: dict[str, Any]) -> list[str]:
    """h3-events §"capsule_created" / §"capsule_parsed"."""
    errors = _need(data, "stream_id", int)
    capsule = data.get("capsule")
    if not isinstance(capsule, dict) or capsule.get("capsule_type") not in CAPSULE_TYPES:
        return [*errors, f"bad capsule {capsule!r}"]
    errors += _need(capsule.get("raw", {}), "length", int)
    kind = capsule["capsule_type"]
    if kind == "unknown":
        errors += _need(capsule, "capsule_type_value", int)
    elif kind == "wt_close_session":
        errors += _need(capsule, "application_error_code", int) + _need(capsule, "reason", str)
    elif kind not in ("datagram", "wt_drain_session"):
        errors += _need(capsule, "value", int)
    return errors


QPACK_INSTRUCTIONS: dict[str, tuple[str, ...]] = {  # qlog 0.3 (h3-events-03) fields
    "set_dynamic_table_capacity": ("capacity",),
    "insert_with_name_reference": ("name_index", "value_length"),
    "insert_without_name_reference": ("name_length", "value_length"),
    "duplicate": ("index",),
    "section_acknowledgement": ("stream_id",),
    "stream_cancellation": ("stream_id",),
    "insert_count_increment": ("increment",),
}
QPACK_LINES = {"indexed_header", "literal_with_name", "literal_without_name"}


def _qpack_instruction(data: dict[str, Any]) -> list[str]:
    instruction = data.get("instruction")
    if not isinstance(instruction, dict):
        return ["no instruction"]
    fields = QPACK_INSTRUCTIONS.get(instruction.get("instruction_type"))  # type: ignore[arg-type]
    if fields is None:
        return [f"bad instruction_type {instruction.get('instruction_type')!r}"]
    errors = [e for f in fields for e in _need(instruction, f, int)]
    if instruction["instruction_type"] == "insert_with_name_reference" and instruction.get(
        "table_type"
    ) not in ("static", "dynamic"):
        errors.append("bad table_type")
    return errors + _need(data.get("raw", {}), "length", int)


def _qpack_headers(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "stream_id", int) + _need(data, "headers", list)
    prefix = data.get("block_prefix")
    if not isinstance(prefix, dict):
        return [*errors, "no block_prefix"]
    errors += _need(prefix, "required_insert_count", int) + _need(prefix, "delta_base", int)
    errors += _need(prefix, "sign_bit", bool)
    lines = data.get("header_block")
    if not isinstance(lines, list):
        return [*errors, "no header_block"]
    for line in lines:
        if line.get("header_field_type") not in QPACK_LINES:
            errors.append(f"bad field line {line!r}")
        elif line["header_field_type"] != "literal_without_name":
            errors += _need(line, "index" if "index" in line else "name_index", int)
            errors += [] if line.get("table_type") in ("static", "dynamic") else ["bad table"]
    return errors


def _qpack_table(data: dict[str, Any]) -> list[str]:
    errors = _owner(data)
    if data.get("update_type") not in ("inserted", "evicted"):
        errors.append("bad update_type")
    entries = data.get("entries")
    if not (isinstance(entries, list) and entries):
        return [*errors, "no entries"]
    for entry in entries:
        errors += _need(entry, "index", int) + _need(entry, "name", str)
        errors += _need(entry, "value", str)
    return errors


def _qpack_state(data: dict[str, Any]) -> list[str]:
    keys = (
        "dynamic_table_capacity",
        "dynamic_table_size",
        "known_received_count",
        "current_insert_count",
    )
    return _owner(data) + [e for k in keys for e in _need(data, k, int)]


def _qpack_stream(data: dict[str, Any]) -> list[str]:
    errors = _need(data, "stream_id", int)
    return errors + ([] if data.get("state") in ("blocked", "unblocked") else ["bad state"])


def _ecn_state(data: dict[str, Any]) -> list[str]:
    states = ("testing", "unknown", "failed", "capable")  # RFC 9000 Appendix A.4
    errors = [] if data.get("new") in states else ["bad 'new'"]
    return errors + ([] if data.get("old", "testing") in states else ["bad 'old'"])


def _mtu(data: dict[str, Any]) -> list[str]:
    return _need(data, "new", int) + (_need(data, "old", int) if "old" in data else [])


SCHEMA: dict[str, Check] = {
    "connectivity:connection_started": _started,
    "connectivity:connection_closed": _closed,
    "transport:version_information": _versions,
    "transport:alpn_information": _alpn,
    "transport:parameters_set": _owner,
    "transport:packet_sent": _packet,
    "transport:packet_received": _packet,
    "transport:packet_dropped": _dropped,
    "transport:datagrams_sent": _datagrams,
    "transport:packets_acked": _acked,
    "transport:stream_state_updated": _stream_state,
    "transport:datagrams_received": _datagrams,
    "security:key_updated": _key,
    "security:key_discarded": _key,
    "recovery:metrics_updated": _metrics,
    "recovery:congestion_state_updated": _cc_state,
    "recovery:packet_lost": lambda d: _header(d.get("header"), True),
    "recovery:ecn_state_updated": _ecn_state,
    "connectivity:mtu_updated": _mtu,
    "http:parameters_set": _owner,
    "http:parameters_restored": lambda d: [] if isinstance(d, dict) else ["not an object"],
    "http:datagram_created": _h3_datagram,
    "http:datagram_parsed": _h3_datagram,
    "http:stream_type_set": _stream_type,
    "http:frame_created": _h3_frame,
    "http:frame_parsed": _h3_frame,
    "http:capsule_created": _capsule,
    "http:capsule_parsed": _capsule,
    "qpack:instruction_created": _qpack_instruction,
    "qpack:instruction_parsed": _qpack_instruction,
    "qpack:headers_encoded": _qpack_headers,
    "qpack:headers_decoded": _qpack_headers,
    "qpack:dynamic_table_updated": _qpack_table,
    "qpack:state_updated": _qpack_state,
    "qpack:stream_state_updated": _qpack_stream,
}


def check_header(header: dict[str, Any], vantage: str) -> list[str]:
    """What qvis's JSON-SEQ loader and its draft-02/0.3 parser need of the header."""
    errors = []
    if header.get("qlog_version") != "0.3" or header.get("qlog_format") != "JSON-SEQ":
        errors.append("qlog_version 0.3 / qlog_format JSON-SEQ missing")
    trace = header.get("trace")
    if not isinstance(trace, dict):
        return [*errors, "no trace"]
    if trace.get("vantage_point", {}).get("type") != vantage:
        errors.append("bad vantage_point")
    common = trace.get("common_fields", {})
    if common.get("time_format") != "relative":
        errors.append("time_format is not 'relative'")
    if not isinstance(common.get("reference_time"), int | float):
        errors.append("reference_time is not a number")
    return errors


def check_trace(raw: bytes, vantage: str) -> list[dict[str, Any]]:
    """Parse a JSON-SEQ trace the way qvis does and check every record; returns the
    events (raises AssertionError listing every problem)."""
    assert raw.startswith(b"\x1e"), "JSON-SEQ records start with RS (RFC 7464)"
    assert b"qlog_version" in raw[:1024] and b"JSON-SEQ" in raw[:1024], "qvis sniffing"
    chunks = raw.split(b"\x1e")[1:]
    assert all(c.endswith(b"\n") for c in chunks), "each record ends with LF"
    records = [json.loads(c) for c in chunks]
    errors = check_header(records[0], vantage)
    events = records[1:]
    errors += check_events(events)
    assert not errors, errors[:20]
    return events


def check_events(events: list[dict[str, Any]]) -> list[str]:
    """Every event's envelope and data; times are non-decreasing (qvis requires it)."""
    errors: list[str] = []
    last = 0.0
    for index, event in enumerate(events):
        where = f"event {index} {event.get('name')!r}"
        if set(event) != {"time", "name", "data"}:
            errors.append(f"{where}: keys {sorted(event)}")
            continue
        time = event["time"]
        if not isinstance(time, int | float) or time < last:
            errors.append(f"{where}: time {time!r} after {last}")
        else:
            last = time
        check = SCHEMA.get(event["name"])
        if check is None:
            errors.append(f"{where}: unknown event")
            continue
        if not isinstance(event["data"], dict):
            errors.append(f"{where}: data is not an object")
            continue
        errors += [f"{where}: {e}" for e in check(event["data"])]
    return errors
