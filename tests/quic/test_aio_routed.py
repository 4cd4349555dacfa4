"""quic.aio.routed: each datagram leaves the socket of its ``local`` index (RFC 9000
§9.6.2); the main socket's keep their ECN codepoint when the pump can mark them."""

from __future__ import annotations

from typing import Any

from quic.aio.routed import send_routed


class _Transport:
    def __init__(self, closing: bool = False, fails: bool = False) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.closing = closing
        self.fails = fails

    def is_closing(self) -> bool:
        return self.closing

    def sendto(self, data: bytes, addr: Any) -> None:
        if self.fails:
            raise OSError("unreachable")
        self.sent.append((data, addr))


PEER = ("127.0.0.1", 4433)
OUT = [(b"a", PEER, 2, 0), (b"b", PEER, 2, 1), (b"c", PEER, 0, 0), (b"d", PEER, 2, 7)]


def test_each_datagram_leaves_its_local_socket_marked_from_the_main_one() -> None:
    main, extra = _Transport(), _Transport()
    marked: list[list[tuple[bytes, Any, int]]] = []
    send_routed(OUT, main, [extra], marked.append)  # type: ignore[arg-type,list-item]
    assert marked == [[(b"a", PEER, 2), (b"c", PEER, 0)]]  # ECN kept, one call
    assert extra.sent == [(b"b", PEER)]
    assert main.sent == [(b"d", PEER)]  # an index no longer open: the main socket


def test_without_marking_everything_goes_through_the_transports() -> None:
    main, extra = _Transport(), _Transport()
    send_routed(OUT, main, [extra], None)  # type: ignore[arg-type,list-item]
    assert main.sent == [(b"a", PEER), (b"c", PEER), (b"d", PEER)]
    assert extra.sent == [(b"b", PEER)]


def test_a_closing_main_socket_sends_nothing_and_a_failed_send_is_skipped() -> None:
    main, extra = _Transport(closing=True), _Transport()
    send_routed(OUT, main, [extra], None)  # type: ignore[arg-type,list-item]
    assert main.sent == extra.sent == []
    main, extra = _Transport(), _Transport(fails=True)
    send_routed(OUT, main, [extra], None)  # type: ignore[arg-type,list-item]
    assert main.sent == [(b"a", PEER), (b"c", PEER), (b"d", PEER)]  # the rest still left
