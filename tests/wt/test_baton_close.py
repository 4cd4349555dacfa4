"""The no-error close of a Devious Baton session waits until every 0 this endpoint sent
was acknowledged (draft-frindell-webtrans-devious-baton §4.5): a close that overtook one
(lost and sent again while the game ended on another baton) ended the peer's game with
that baton still active (seen once on the seeded lossy link of tests/wt/test_baton.py)."""

from __future__ import annotations

from typing import Any

from pywebtransport.baton.codec import Answer, BatonConfig, BatonGame
from pywebtransport.baton.player import BatonPlayer


class _Stream:
    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name, self.log = name, log

    def answer_stop_sending_with(self, code: int) -> None:
        pass

    async def write(self, data: bytes, end_stream: bool = False) -> None:
        self.log.append(("write", self.name))

    async def wait_flushed(self, timeout: float) -> None:
        assert 0 < timeout <= 2.0
        self.log.append(("acknowledged", self.name))


class _Session:
    is_closed = False

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    async def close(self, code: int, reason: str = "") -> None:
        self.log.append(("close", code))


async def test_the_close_waits_for_a_zero_sent_before_the_game_ended_elsewhere() -> None:
    log: list[tuple[str, Any]] = []
    game = BatonGame(False, 2, None)
    player = BatonPlayer(_Session(log), game, BatonConfig())  # type: ignore[arg-type]
    sent = await player._send(_Stream("a", log), 0, Answer.SAME)  # type: ignore[arg-type]
    assert sent and not game.over  # our 0 ended baton a; baton b is still in play
    game.received(0)  # the peer's 0 ends baton b: the game is over here
    assert game.over
    await player._close()
    assert log == [("write", "a"), ("acknowledged", "a"), ("close", 0)]


async def test_the_last_zero_we_send_is_acknowledged_before_the_close() -> None:
    log: list[tuple[str, Any]] = []
    game = BatonGame(False, 2, None)
    player = BatonPlayer(_Session(log), game, BatonConfig())  # type: ignore[arg-type]
    for name in ("a", "b"):
        await player._send(_Stream(name, log), 0, Answer.SAME)  # type: ignore[arg-type]
    assert game.over
    await player._close()
    assert log == [
        ("write", "a"),
        ("write", "b"),
        ("acknowledged", "a"),
        ("acknowledged", "b"),
        ("close", 0),
    ]
