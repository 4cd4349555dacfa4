"""Devious Baton: the server route.

Theory of operation
-------------------
:func:`add_baton_route` puts two things on a :class:`~pywebtransport.app.ServerApp`:

* a middleware that looks at requests for the baton path only and parses their query
  (:func:`~pywebtransport.baton.codec.parse_query`): an invalid or unsupported
  ``version``, an invalid ``baton``, a ``count`` that is not positive or is above
  ``BatonConfig.max_count`` — the session is rejected with 400
  (draft-frindell-webtrans-devious-baton-00 §3.1, "MUST reject ... with a 4xx status
  code"), before anything is accepted;
* the route's handler, which reads the same query from the session's ``:path``
  request header, picks a random baton in 1..255 when the client gave none (§3.1) and
  plays the server's side (:class:`~pywebtransport.baton.player.BatonPlayer`) until
  the game ends. The session is closed by the player (no error once every baton is
  done, §4.5, or the error's code); the handler then returns.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from pywebtransport.app import ServerApp
from pywebtransport.baton.codec import (
    DEFAULT_PATH,
    BatonConfig,
    BatonGame,
    BatonParams,
    QueryError,
    parse_query,
)
from pywebtransport.baton.player import BatonOutcome, BatonPlayer
from pywebtransport.middleware import Middleware, Rejection
from pywebtransport.server import SessionRequest
from pywebtransport.session import WebTransportSession

__all__ = ["add_baton_route", "baton_middleware", "play_server", "session_params"]

logger = logging.getLogger("pywebtransport.baton")


def baton_middleware(path: str = DEFAULT_PATH, config: BatonConfig | None = None) -> Middleware:
    """A middleware rejecting (400) requests for ``path`` whose query is invalid."""
    max_count = (config or BatonConfig()).max_count

    def check(request: SessionRequest) -> Rejection | None:
        if request.path != path:
            return None
        try:
            parse_query(request.query, max_count)
        except QueryError as exc:
            return Rejection(exc.status, reason=str(exc))
        return None

    return check


def session_params(session: WebTransportSession, max_count: int) -> BatonParams:
    """The parameters in the session's request target (``:path``); QueryError."""
    target = session.headers.get(":path", "")
    return parse_query(urlsplit(target).query, max_count)


async def play_server(session: WebTransportSession, config: BatonConfig) -> BatonOutcome:
    """Play the server's side on an accepted session until the game ends."""
    params = session_params(session, config.max_count)
    initial = params.baton if params.baton is not None else 1 + secrets.randbelow(255)
    game = BatonGame(is_client=False, count=params.count, initial=initial)
    outcome = await BatonPlayer(session, game, config).play(initial=initial)
    logger.info(
        "baton session %d (count %d, baton %d): %s",
        session.session_id,
        params.count,
        initial,
        "ok" if outcome.ok else outcome.error,
    )
    return outcome


def add_baton_route(
    app: ServerApp,
    path: str = DEFAULT_PATH,
    config: BatonConfig | None = None,
    on_outcome: Callable[[BatonOutcome], None] | None = None,
) -> None:
    """Serve Devious Baton sessions on ``path`` of ``app`` (see the module doc);
    ``on_outcome`` is given how each game ended."""
    config = config or BatonConfig()
    app.add_middleware(baton_middleware(path, config))

    async def baton_handler(session: WebTransportSession) -> None:
        outcome = await play_server(session, config)
        if on_outcome is not None:
            on_outcome(outcome)

    app.add_route(path, baton_handler, name="devious-baton")
