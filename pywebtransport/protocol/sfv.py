"""The slice of Structured Field Values (RFC 9651) that protocol negotiation needs.

Theory of operation
-------------------
``WT-Available-Protocols`` is a List and ``WT-Protocol`` an Item whose only valid
value type is String (draft-ietf-webtrans-http3-16 §3.3). The parser below accepts the
full RFC 9651 syntax for Lists and Items (every bare-item type, inner lists and
parameters) so that a well-formed field with a non-String member can be told apart
from garbage, but either way the caller gets ``None``: "Any value type other than
String MUST be treated as an error that causes the entire field to be ignored".
Parameters are parsed and dropped ("parameters MUST be ignored").

Both parse functions never raise on bad input; they return ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["parse_string_item", "parse_string_list", "serialize_string", "serialize_string_list"]

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")
_DISPLAY = re.compile(r'%"(?:[\x20-\x21\x23-\x24\x26-\x7e]|%[0-9a-f]{2})*"')

_STRING = "string"


class _Invalid(Exception):
    pass


class _Parser:
    """RFC 9651 §4.2 parsing over one ASCII field value."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, chars: str) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in chars:
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def item(self) -> tuple[str, object]:
        kind, value = self.bare_item()
        self.parameters()
        return kind, value

    def member(self) -> tuple[str, object]:
        if self.peek() == "(":  # inner list (§4.2.1.2)
            self.pos += 1
            while True:
                self.skip(" ")
                if self.peek() == ")":
                    self.pos += 1
                    break
                self.item()
                if self.peek() not in (" ", ")"):
                    raise _Invalid
            self.parameters()
            return "inner-list", None
        return self.item()

    def parameters(self) -> None:  # §4.2.3.2
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            self.match(_KEY)
            if self.peek() == "=":
                self.pos += 1
                self.bare_item()

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise _Invalid
        self.pos = found.end()
        return found.group()

    def bare_item(self) -> tuple[str, object]:  # §4.2.3.1
        char = self.peek()
        if char == '"':
            return _STRING, self.string()
        if char == "-" or char.isdigit():
            number = self.match(_NUMBER)
            integer, _, fraction = number.lstrip("-").partition(".")
            if len(integer) > (12 if fraction else 15) or len(fraction) > 3:
                raise _Invalid
            return "number", number
        if char == ":":
            return "bytes", self.match(_BYTES)
        if char == "?":
            value = self.text[self.pos + 1 : self.pos + 2]
            if value not in ("0", "1"):
                raise _Invalid
            self.pos += 2
            return "boolean", value == "1"
        if char == "@":
            self.pos += 1
            if not (self.peek() == "-" or self.peek().isdigit()):
                raise _Invalid
            return "date", self.match(_NUMBER)
        if char == "%":
            return "display", self.match(_DISPLAY)
        return "token", self.match(_TOKEN)

    def string(self) -> str:  # §4.2.5
        text = self.text
        pos = self.pos + 1
        out: list[str] = []
        while pos < len(text):
            char = text[pos]
            pos += 1
            if char == "\\":
                if pos >= len(text) or text[pos] not in '"\\':
                    raise _Invalid
                out.append(text[pos])
                pos += 1
            elif char == '"':
                self.pos = pos
                return "".join(out)
            elif not " " <= char <= "~":
                raise _Invalid
            else:
                out.append(char)
        raise _Invalid


def _ascii(value: bytes | str) -> str | None:
    if isinstance(value, str):
        return value if value.isascii() else None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_string_list(value: bytes | str) -> list[str] | None:
    """The Strings of a List field (RFC 9651 §4.2.1), or None if the field is malformed
    or holds a member that is not a String."""
    text = _ascii(value)
    if text is None:
        return None
    parser = _Parser(text.strip(" "))
    out: list[str] = []
    try:
        while not parser.at_end():
            kind, member = parser.member()
            if kind != _STRING:
                return None
            assert isinstance(member, str)
            out.append(member)
            parser.skip(" \t")
            if parser.at_end():
                break
            if parser.peek() != ",":
                return None
            parser.pos += 1
            parser.skip(" \t")
            if parser.at_end():
                return None  # trailing comma
    except _Invalid:
        return None
    return out


def parse_string_item(value: bytes | str) -> str | None:
    """The String of an Item field (RFC 9651 §4.2.3), or None."""
    text = _ascii(value)
    if text is None:
        return None
    parser = _Parser(text.strip(" "))
    try:
        kind, item = parser.item()
    except _Invalid:
        return None
    if kind != _STRING or not parser.at_end():
        return None
    assert isinstance(item, str)
    return item


def serialize_string(value: str) -> str:
    """A String item (RFC 9651 §4.1.6); only printable ASCII can be serialised."""
    if not all(" " <= char <= "~" for char in value):
        raise ValueError(f"not a Structured Field String: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_string_list(values: Sequence[str]) -> str:
    """A List of Strings (RFC 9651 §4.1.1)."""
    return ", ".join(serialize_string(v) for v in values)
