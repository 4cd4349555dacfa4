"""Property tests for the demo's page server (pywebtransport.demo.PageServer): any bytes
a client sends, cut anywhere, get one of the server's answers (or none, when no whole
request arrived) and never an exception; a report reaches the callback only when it is
a whole JSON object within the size limit. ``FUZZ_PROFILE=deep`` runs each with at
least 100,000 examples (fuzz/profiles.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from pywebtransport.demo import PageLimits, PageServer

LIMITS = PageLimits(max_head=512, max_body=256, read_timeout=5.0)
STATUSES = {200, 204, 400, 404, 405, 413, 431}
CONFIG = {"server": "https://127.0.0.1:1", "echoPath": "/echo", "certHash": "00" * 32}

heads = st.one_of(
    st.binary(max_size=700),
    st.builds(
        lambda method, target, fields, body: (
            f"{method} {target} HTTP/1.1\r\n{fields}\r\n\r\n".encode("latin-1", "replace") + body
        ),
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "", "GET GET"]),
        st.sampled_from(["/", "/index.html", "/demo.js", "/report", "/x", "", "/report?a"]),
        st.text(max_size=80),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda length, body: (
            b"POST /report HTTP/1.1\r\ncontent-length: %b\r\n\r\n%b" % (length.encode(), body)
        ),
        st.sampled_from(["0", "5", "-1", "x", "256", "257", "99999999999999999999", ""]),
        st.one_of(
            st.binary(max_size=300),
            st.recursive(
                st.none() | st.integers() | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3)
                ),
                max_leaves=10,
            ).map(lambda doc: json.dumps(doc).encode()),
            st.integers(0, 250).map(lambda depth: b"[" * depth + b"]" * depth),
        ),
    ),
)


async def _answer(data: bytes, cuts: list[int]) -> tuple[Any, list[Any]]:
    reports: list[Any] = []
    server = PageServer(CONFIG, on_report=reports.append, limits=LIMITS)
    reader = asyncio.StreamReader(limit=LIMITS.max_head)
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        reader.feed_data(data[start:cut])
        start = cut
    reader.feed_data(data[start:])
    reader.feed_eof()
    return await server.answer(reader), reports


@settings(max_examples=examples(300), deadline=None)
@given(heads, st.lists(st.integers(0, 1000), max_size=4))
def test_any_request_gets_an_answer_or_none(data: bytes, cuts: list[int]) -> None:
    answer, reports = asyncio.run(_answer(data, cuts))
    if answer is not None:
        status, body, kind = answer
        assert status in STATUSES and isinstance(body, bytes) and kind
        if status != 204:
            assert reports == []
    assert len(reports) <= 1
    for report in reports:
        assert isinstance(report, dict)
        assert len(json.dumps(report)) <= 4 * LIMITS.max_body
