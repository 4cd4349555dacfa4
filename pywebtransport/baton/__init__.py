"""Devious Baton (draft-frindell-webtrans-devious-baton-00) on the WebTransport API.

A test protocol that passes one-byte "batons" between client and server over
unidirectional and bidirectional streams (and datagrams), exercising a WebTransport
implementation end to end. Modules:

* :mod:`~pywebtransport.baton.codec` — Sans-I/O: the Baton message codec, the query
  parameters, the error codes and the game's bookkeeping;
* :mod:`~pywebtransport.baton.player` — one endpoint of the game on a session;
* :mod:`~pywebtransport.baton.server` — :func:`add_baton_route` for a ``ServerApp``
  (``python -m pywebtransport serve`` serves ``/webtransport/devious-baton``);
* :mod:`~pywebtransport.baton.client` — :func:`run_baton_client` and
  ``python -m pywebtransport baton URL``.

See docs/devious-baton.md.
"""

from pywebtransport.baton.client import BatonResult, run_baton_client
from pywebtransport.baton.codec import (
    DEFAULT_PATH,
    VERSION,
    BatonConfig,
    BatonDecoder,
    BatonError,
    BatonGame,
    BatonMessage,
    BatonParams,
    QueryError,
    SessionErrorCode,
    StreamErrorCode,
    decode_baton,
    encode_baton,
    parse_query,
)
from pywebtransport.baton.player import BatonOutcome, BatonPlayer
from pywebtransport.baton.server import add_baton_route

__all__ = [
    "DEFAULT_PATH",
    "VERSION",
    "BatonConfig",
    "BatonDecoder",
    "BatonError",
    "BatonGame",
    "BatonMessage",
    "BatonOutcome",
    "BatonParams",
    "BatonPlayer",
    "BatonResult",
    "QueryError",
    "SessionErrorCode",
    "StreamErrorCode",
    "add_baton_route",
    "decode_baton",
    "encode_baton",
    "parse_query",
    "run_baton_client",
]
