"""Soak runs, skipped by default (``./run.sh slow`` or ``pytest -m slow``).

They stress the same in-memory pairs as the unit tests, only longer: a 100 MB transfer
under loss, reordering and duplication, and 10,000 request/response streams.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from quic.connection import ConnectionState
from tests.support.quicpair import make_pair

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def test_100mb_under_loss_reordering_and_duplication() -> None:
    pair = make_pair(seed=11, loss=0.05, jitter=0.004, duplicate=0.01)
    pair.handshake()
    payload = random.Random(11).randbytes(100 * 1024 * 1024)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, payload, end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=3600)
    assert hashlib.sha256(pair.data["server"][sid]).digest() == hashlib.sha256(payload).digest()
    assert pair.client.last_internal_error is None and pair.server.last_internal_error is None
    assert pair.client.state is ConnectionState.CONNECTED


def test_ten_thousand_streams() -> None:
    pair = make_pair(seed=12, loss=0.01)
    pair.handshake()
    sent: dict[int, bytes] = {}
    answered: set[int] = set()

    def progress() -> bool:
        while len(sent) < 10_000 and pair.client.streams.manager.can_open(True):
            sid = pair.client.create_stream()
            sent[sid] = f"request {len(sent)}".encode()
            pair.client.send_stream_data(sid, sent[sid], end_stream=True)
        for sid in pair.fin["server"] - answered:
            answered.add(sid)
            pair.server.send_stream_data(sid, b"re: " + pair.data["server"][sid], end_stream=True)
        return len(pair.fin["client"]) == 10_000

    pair.run(progress, max_time=3600)
    for sid, request in sent.items():
        assert bytes(pair.data["client"][sid]) == b"re: " + request
