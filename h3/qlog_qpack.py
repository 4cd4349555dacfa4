"""qlog of QPACK (RFC 9204): instructions, field sections and dynamic table state.

Theory of operation
-------------------
The h3-events draft in /work/shared/specs dropped its QPACK events (its change log:
"Removed all qpack event definitions (#335)"), so these are the closest defined ones:
the ``qpack`` events of qlog 0.3 (draft-ietf-quic-qlog-h3-events-03), in the naming
the rest of the trace uses — ``qpack:instruction_created`` / ``instruction_parsed``
(every encoder and decoder instruction, RFC 9204 §4.3, §4.4), ``qpack:headers_encoded``
/ ``headers_decoded`` (``stream_id``, ``headers``, the ``block_prefix`` of §4.5.1 with
the Required Insert Count decoded, and each field line representation of
§4.5.2-§4.5.6 in ``header_block``), ``qpack:dynamic_table_updated`` (``inserted`` /
``evicted`` entries with their absolute index, name and value), ``qpack:state_updated``
(capacity, size, Known Received Count, insert count) and ``qpack:stream_state_updated``
(``blocked`` / ``unblocked``). ``owner`` is ``local`` for our encoder's table, whose
instructions we create, and ``remote`` for the peer encoder's table our decoder
mirrors.

pylsqpack exposes none of this: it returns opaque instruction and field section bytes,
not its table. So the bytes are parsed here, and each direction's dynamic table is
mirrored (:class:`_Table`) from the instructions — capacity, entries, size (name +
value + 32 per entry, §3.2.1), insert count, Known Received Count (from Insert Count
Increment and Section Acknowledgment, §4.4). Huffman-coded strings (§4.1.2) are decoded
by pylsqpack itself: a one-line field section carrying the string is fed to a
static-only decoder (:func:`_huffman`), so this module needs no Huffman table; static
table names come from it the same way. What cannot be had: lsqpack's own view of its
table (draining, blocked-stream risk) and the values of entries it evicts silently.

Bounded: a mirror holds at most its table's capacity in entries (the capacity our
decoder advertised; for our encoder, what it set); partial instructions are buffered
up to :data:`MAX_PARTIAL_INSTRUCTION` bytes (beyond: parsing of that stream stops, the
decoder itself fails the connection on such an instruction); sections waiting for an
acknowledgment are remembered up to :data:`MAX_UNACKED_SECTIONS`, blocked ones only
while blocked. Nothing here exists when tracing is off: the QPACK encoder and decoder
hold ``trace = None`` and test it before any call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pylsqpack

__all__ = ["MAX_PARTIAL_INSTRUCTION", "MAX_UNACKED_SECTIONS", "QpackLogger"]

#: Longest partial instruction buffered for parsing (an insertion no larger than a
#: sane table; RFC 9204 §3.2.2 bounds entries by the capacity).
MAX_PARTIAL_INSTRUCTION = 1 << 16
#: Field sections awaiting a Section Acknowledgment remembered for Known Received Count.
MAX_UNACKED_SECTIONS = 1024

_ENTRY_OVERHEAD = 32  # RFC 9204 §3.2.1

Log = Callable[[float | None, str, dict[str, Any]], None]


class _Truncated(Exception):
    """The bytes end inside an instruction or representation."""


def _int(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """A prefixed integer (RFC 9204 §4.1.1, RFC 7541 §5.1) at ``pos``."""
    if pos >= len(data):
        raise _Truncated
    mask = (1 << prefix) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise _Truncated
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 62:
            raise ValueError("prefixed integer too long")


def _str(data: bytes, pos: int, prefix: int) -> tuple[bool, bytes, int]:
    """A string literal (§4.1.2): Huffman flag just above a ``prefix``-bit length."""
    if pos >= len(data):
        raise _Truncated
    huffman = bool(data[pos] & (1 << prefix))
    length, pos = _int(data, pos, prefix)
    if pos + length > len(data):
        raise _Truncated
    return huffman, data[pos : pos + length], pos + length


def _encode_int(value: int, prefix: int, flags: int) -> bytes:
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes((flags | value,))
    out = bytearray((flags | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Static:
    """Huffman strings and static table entries decoded by a static-only pylsqpack
    decoder fed one-line field sections (Required Insert Count 0, §4.5.1)."""

    def __init__(self) -> None:
        self._decoder = pylsqpack.Decoder(0, 0)

    def _line(self, line: bytes) -> tuple[bytes, bytes] | None:
        try:
            _, headers = self._decoder.feed_header(0, b"\x00\x00" + line)
        except (pylsqpack.DecompressionFailed, pylsqpack.StreamBlocked, ValueError):
            return None
        return headers[0] if len(headers) == 1 else None

    def huffman(self, coded: bytes) -> bytes | None:
        # Literal Field Line with Literal Name (§4.5.6): name "x", Huffman value
        line = self._line(b"\x21x" + _encode_int(len(coded), 7, 0x80) + coded)
        return None if line is None else line[1]

    def entry(self, index: int) -> tuple[bytes, bytes] | None:
        return self._line(_encode_int(index, 6, 0xC0))  # Indexed Field Line, static


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class _Table:
    """Mirror of one dynamic table (RFC 9204 §3.2), fed the instructions."""

    def __init__(self, owner: str, max_capacity: int) -> None:
        self.owner = owner
        self.max_capacity = max_capacity  # SETTINGS_QPACK_MAX_TABLE_CAPACITY (§3.2.3)
        self.capacity = 0
        self.size = 0
        self.inserts = 0  # absolute index of the next entry
        self.known_received = 0
        self.entries: deque[tuple[int, bytes, bytes]] = deque()  # (absolute, name, value)
        self.unacked: dict[int, deque[int]] = {}  # stream -> Required Insert Counts
        self._unacked_count = 0

    def get(self, absolute: int) -> tuple[bytes, bytes] | None:
        first = self.inserts - len(self.entries)
        if first <= absolute < self.inserts:
            _, name, value = self.entries[absolute - first]
            return name, value
        return None

    def insert(self, name: bytes, value: bytes) -> list[tuple[int, bytes, bytes]]:
        """Add an entry; returns the evicted ones (§3.2.2)."""
        entry = (self.inserts, name, value)
        self.inserts += 1
        self.entries.append(entry)
        self.size += len(name) + len(value) + _ENTRY_OVERHEAD
        return self._evict()

    def set_capacity(self, capacity: int) -> list[tuple[int, bytes, bytes]]:
        self.capacity = capacity
        return self._evict()

    def _evict(self) -> list[tuple[int, bytes, bytes]]:
        evicted = []
        while self.size > self.capacity and self.entries:
            entry = self.entries.popleft()
            self.size -= len(entry[1]) + len(entry[2]) + _ENTRY_OVERHEAD
            evicted.append(entry)
        return evicted

    def section(self, stream_id: int, required: int) -> None:
        """A field section referring to the table was sent or received (§2.1.4)."""
        if not required:
            return
        if self._unacked_count >= MAX_UNACKED_SECTIONS:
            oldest = next(iter(self.unacked))
            self._unacked_count -= len(self.unacked.pop(oldest))
        self.unacked.setdefault(stream_id, deque()).append(required)
        self._unacked_count += 1

    def acknowledged(self, stream_id: int) -> None:
        """Section Acknowledgment (§4.4.1): Known Received Count grows to its RIC."""
        pending = self.unacked.get(stream_id)
        if not pending:
            return
        required = pending.popleft()
        self._unacked_count -= 1
        if not pending:
            del self.unacked[stream_id]
        self.known_received = max(self.known_received, required)

    def cancelled(self, stream_id: int) -> None:
        self._unacked_count -= len(self.unacked.pop(stream_id, ()))

    def required_insert_count(self, encoded: int) -> int | None:
        """§4.5.1.1: the Required Insert Count of an encoded one (None: invalid)."""
        if encoded == 0:
            return 0
        max_entries = self.max_capacity // 32
        full_range = 2 * max_entries
        if encoded > full_range:
            return None
        max_value = self.inserts + max_entries
        required = (max_value // full_range) * full_range + encoded - 1
        if required > max_value:
            if required <= full_range:
                return None
            required -= full_range
        return required or None

    def state(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "dynamic_table_capacity": self.capacity,
            "dynamic_table_size": self.size,
            "known_received_count": self.known_received,
            "current_insert_count": self.inserts,
        }


def _named(
    instruction: dict[str, Any], name: bytes | None, value: bytes | None
) -> tuple[dict[str, Any], tuple[bytes, bytes] | None]:
    """An insertion with its entry's ``name`` and ``value`` when known."""
    if name is not None:
        instruction["name"] = _text(name)
    if value is not None:
        instruction["value"] = _text(value)
    return instruction, (name, value) if name is not None and value is not None else None


def _entries(entries: Iterable[tuple[int, bytes, bytes]]) -> list[dict[str, Any]]:
    return [{"index": i, "name": _text(n), "value": _text(v)} for i, n, v in entries]


class _Stream:
    """The parse state of one instruction stream (partial instructions)."""

    def __init__(self) -> None:
        self.partial = b""
        self.broken = False

    def take(self, data: bytes) -> bytes | None:
        if self.broken:
            return None
        return self.partial + data if self.partial else data

    def keep(self, rest: bytes) -> None:
        if len(rest) > MAX_PARTIAL_INSTRUCTION:
            self.broken, self.partial = True, b""
        else:
            self.partial = rest


class QpackLogger:
    """The QPACK events of one HTTP/3 connection (see the module docstring);
    ``local_capacity`` is our SETTINGS_QPACK_MAX_TABLE_CAPACITY."""

    def __init__(self, log: Log, local_capacity: int) -> None:
        self._log = log
        self._static = _Static()
        self.encoder_table = _Table("local", 0)  # the peer's maximum, once known
        self.decoder_table = _Table("remote", local_capacity)
        self._encoder_in = _Stream()  # the peer's encoder stream
        self._decoder_in = _Stream()  # the peer's decoder stream
        self._blocked: dict[int, bytes] = {}  # sections held by our decoder

    # -- hooks of h3.qpack -------------------------------------------------------------

    def peer_settings(self, max_table_capacity: int) -> None:
        """The peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY (the encoder's maximum)."""
        self.encoder_table.max_capacity = max_table_capacity

    def encoder_instructions_created(self, data: bytes) -> None:
        """Instructions our encoder wrote for its encoder stream (§4.3)."""
        self._encoder_instructions(data, self.encoder_table, "qpack:instruction_created")

    def encoder_instructions_parsed(self, data: bytes) -> None:
        """Bytes read from the peer's encoder stream (partial instructions wait)."""
        buffered = self._encoder_in.take(data)
        if buffered is not None:
            rest = self._encoder_instructions(
                buffered, self.decoder_table, "qpack:instruction_parsed"
            )
            self._encoder_in.keep(rest)

    def decoder_instructions_created(self, data: bytes) -> None:
        """Instructions our decoder wrote for its decoder stream (§4.4)."""
        self._decoder_instructions(data, self.decoder_table, "qpack:instruction_created")

    def decoder_instructions_parsed(self, data: bytes) -> None:
        buffered = self._decoder_in.take(data)
        if buffered is not None:
            rest = self._decoder_instructions(
                buffered, self.encoder_table, "qpack:instruction_parsed"
            )
            self._decoder_in.keep(rest)

    def headers_encoded(self, stream_id: int, headers: Any, block: bytes) -> None:
        self._section("qpack:headers_encoded", stream_id, headers, block, self.encoder_table)

    def headers_decoded(self, stream_id: int, headers: Any, block: bytes) -> None:
        self._section("qpack:headers_decoded", stream_id, headers, block, self.decoder_table)

    def blocked(self, stream_id: int, block: bytes) -> None:
        """Our decoder holds the section until the encoder stream catches up (§2.1.2)."""
        self._blocked[stream_id] = block
        data = {"stream_id": stream_id, "state": "blocked"}
        self._log(None, "qpack:stream_state_updated", data)

    def unblocked(self, stream_id: int, headers: Any) -> None:
        block = self._blocked.pop(stream_id, None)
        data = {"stream_id": stream_id, "state": "unblocked"}
        self._log(None, "qpack:stream_state_updated", data)
        if block is not None:
            self.headers_decoded(stream_id, headers, block)

    def cancelled(self, stream_id: int) -> None:
        """Our decoder abandoned the stream's sections (§2.2.2.2)."""
        self._blocked.pop(stream_id, None)

    # -- instructions ------------------------------------------------------------------

    def _encoder_instructions(self, data: bytes, table: _Table, name: str) -> bytes:
        """Log each complete encoder instruction of ``data`` and apply it to ``table``;
        returns the bytes of a trailing partial one."""
        pos = 0
        before = table.state()
        while pos < len(data):
            try:
                instruction, entry, end = self._encoder_instruction(data, pos, table)
            except _Truncated:
                break
            except ValueError:
                return b""
            self._log(None, name, {"instruction": instruction, "raw": {"length": end - pos}})
            pos = end
            self._apply(table, instruction, entry)
        self._state(table, before)
        return data[pos:]

    def _encoder_instruction(
        self, data: bytes, pos: int, table: _Table
    ) -> tuple[dict[str, Any], tuple[bytes, bytes] | None, int]:
        """One encoder instruction (§4.3) at ``pos``, and the entry it inserts when the
        mirror can tell (references resolved, strings decoded; shown in the
        instruction as ``name`` / ``value``)."""
        first = data[pos]
        if first & 0x80:  # Insert with Name Reference (§4.3.2)
            static = bool(first & 0x40)
            index, pos = _int(data, pos, 6)
            huffman, raw, pos = _str(data, pos, 7)
            ref = (
                self._static.entry(index)
                if static
                else table.get(table.inserts - 1 - index)  # relative index (§3.2.5)
            )
            instruction: dict[str, Any] = {
                "instruction_type": "insert_with_name_reference",
                "table_type": "static" if static else "dynamic",
                "name_index": index,
                "huffman_encoded_value": huffman,
                "value_length": len(raw),
            }
            return (*_named(instruction, ref and ref[0], self._decoded(huffman, raw)), pos)
        if first & 0x40:  # Insert with Literal Name (§4.3.3)
            name_huffman, raw_name, pos = _str(data, pos, 5)
            huffman, raw, pos = _str(data, pos, 7)
            instruction = {
                "instruction_type": "insert_without_name_reference",
                "huffman_encoded_name": name_huffman,
                "name_length": len(raw_name),
                "huffman_encoded_value": huffman,
                "value_length": len(raw),
            }
            name = self._decoded(name_huffman, raw_name)
            return (*_named(instruction, name, self._decoded(huffman, raw)), pos)
        if first & 0x20:  # Set Dynamic Table Capacity (§4.3.1)
            capacity, pos = _int(data, pos, 5)
            instruction = {"instruction_type": "set_dynamic_table_capacity", "capacity": capacity}
            return instruction, None, pos
        index, pos = _int(data, pos, 5)  # Duplicate (§4.3.4)
        entry = table.get(table.inserts - 1 - index)
        instruction = {"instruction_type": "duplicate", "index": index}
        return instruction, entry, pos

    def _apply(
        self, table: _Table, instruction: dict[str, Any], entry: tuple[bytes, bytes] | None
    ) -> None:
        """Apply an encoder instruction to the mirror; log the entries it inserted and
        evicted (``qpack:dynamic_table_updated``)."""
        if instruction["instruction_type"] == "set_dynamic_table_capacity":
            evicted = table.set_capacity(instruction["capacity"])
        elif entry is None:  # unknown to the mirror: counted only
            table.inserts += 1
            return
        else:
            evicted = table.insert(*entry)
            inserted = _entries([(table.inserts - 1, *entry)])
            data = {"owner": table.owner, "update_type": "inserted", "entries": inserted}
            self._log(None, "qpack:dynamic_table_updated", data)
        if evicted:
            data = {"owner": table.owner, "update_type": "evicted", "entries": _entries(evicted)}
            self._log(None, "qpack:dynamic_table_updated", data)

    def _decoder_instructions(self, data: bytes, table: _Table, name: str) -> bytes:
        """Log each complete decoder instruction (§4.4) and apply it to ``table``."""
        pos = 0
        before = table.state()
        while pos < len(data):
            first = data[pos]
            try:
                if first & 0x80:  # Section Acknowledgment (§4.4.1)
                    value, end = _int(data, pos, 7)
                    instruction = {
                        "instruction_type": "section_acknowledgement",
                        "stream_id": value,
                    }
                    table.acknowledged(value)
                elif first & 0x40:  # Stream Cancellation (§4.4.2)
                    value, end = _int(data, pos, 6)
                    instruction = {"instruction_type": "stream_cancellation", "stream_id": value}
                    table.cancelled(value)
                else:  # Insert Count Increment (§4.4.3)
                    value, end = _int(data, pos, 6)
                    instruction = {"instruction_type": "insert_count_increment", "increment": value}
                    table.known_received += value
            except _Truncated:
                break
            except ValueError:
                return b""
            self._log(None, name, {"instruction": instruction, "raw": {"length": end - pos}})
            pos = end
        self._state(table, before)
        return data[pos:]

    def _state(self, table: _Table, before: dict[str, Any]) -> None:
        now = table.state()
        if now != before:
            self._log(None, "qpack:state_updated", now)

    def _decoded(self, huffman: bool, raw: bytes) -> bytes | None:
        return self._static.huffman(raw) if huffman else raw

    # -- field sections ----------------------------------------------------------------

    def _section(
        self, name: str, stream_id: int, headers: Any, block: bytes, table: _Table
    ) -> None:
        """``headers_encoded`` / ``headers_decoded`` of a field section (§4.5)."""
        data: dict[str, Any] = {
            "stream_id": stream_id,
            "headers": [{"name": _text(k), "value": _text(v)} for k, v in headers],
            "length": len(block),
        }
        try:
            encoded, pos = _int(block, 0, 8)
            sign = bool(pos < len(block) and block[pos] & 0x80)
            delta, pos = _int(block, pos, 7)
            required = table.required_insert_count(encoded)
            data["block_prefix"] = {
                "required_insert_count": required if required is not None else encoded,
                "sign_bit": sign,
                "delta_base": delta,
            }
            data["header_block"] = _field_lines(block, pos)
        except (_Truncated, ValueError):
            data["block_prefix"] = {"required_insert_count": 0, "sign_bit": False, "delta_base": 0}
            data["header_block"] = []
            required = None
        if required:
            table.section(stream_id, required)
        self._log(None, name, data)


def _field_lines(block: bytes, pos: int) -> list[dict[str, Any]]:
    """Each field line representation (§4.5.2-§4.5.6) of a section, without values
    (the section's decoded ``headers`` carry them, in the same order)."""
    lines: list[dict[str, Any]] = []
    while pos < len(block):
        first = block[pos]
        line: dict[str, Any]
        if first & 0x80:  # Indexed Field Line (§4.5.2)
            index, pos = _int(block, pos, 6)
            line = {"header_field_type": "indexed_header", "index": index, "is_post_base": False}
            line["table_type"] = "static" if first & 0x40 else "dynamic"
        elif first & 0x40:  # Literal Field Line with Name Reference (§4.5.4)
            index, pos = _int(block, pos, 4)
            huffman, raw, pos = _str(block, pos, 7)
            line = {
                "header_field_type": "literal_with_name",
                "preserve_literal": bool(first & 0x20),
                "table_type": "static" if first & 0x10 else "dynamic",
                "name_index": index,
                "huffman_encoded_value": huffman,
                "value_length": len(raw),
                "is_post_base": False,
            }
        elif first & 0x20:  # Literal Field Line with Literal Name (§4.5.6)
            name_huffman, raw_name, pos = _str(block, pos, 3)
            huffman, raw, pos = _str(block, pos, 7)
            line = {
                "header_field_type": "literal_without_name",
                "preserve_literal": bool(first & 0x10),
                "huffman_encoded_name": name_huffman,
                "name_length": len(raw_name),
                "huffman_encoded_value": huffman,
                "value_length": len(raw),
            }
        elif first & 0x10:  # Indexed Field Line with Post-Base Index (§4.5.3)
            index, pos = _int(block, pos, 4)
            line = {"header_field_type": "indexed_header", "table_type": "dynamic"}
            line.update(index=index, is_post_base=True)
        else:  # Literal Field Line with Post-Base Name Reference (§4.5.5)
            index, pos = _int(block, pos, 3)
            huffman, raw, pos = _str(block, pos, 7)
            line = {
                "header_field_type": "literal_with_name",
                "preserve_literal": bool(first & 0x08),
                "table_type": "dynamic",
                "name_index": index,
                "huffman_encoded_value": huffman,
                "value_length": len(raw),
                "is_post_base": True,
            }
        lines.append(line)
    return lines
