"""The demo's page (``python -m pywebtransport demo``) in headless Chromium.

The demo runs as a child process, exactly as a user starts it; its ``PAGE`` line names
the page URL. Headless Chromium (``tests/interop/chromium.py``) loads the page with
``#close=CODE,REASON``: the page connects with the certificate hash the demo injected,
takes its tour through the same functions as its buttons (draft from ``/stats``, bidi
echo of the text box, 10 datagrams, uni round trip), then closes the session with that
code and reason and POSTs the result to the demo, which prints it as a ``BROWSER`` line.
The demo runs with ``-v``, so its ``SESSION-CLOSED`` line shows the close as the server
saw it. Per browser variant: draft-02 (Chromium's default) and draft-07.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.interop.chromium import ChromiumProcess, find_chromium
from tests.interop.test_wt_aioquic import LineProcess

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
]

DEMO = [sys.executable, "-m", "pywebtransport", "demo", "--port", "0", "--http-port", "0", "-v"]
PAGE_TIMEOUT = 90.0
CLOSE = (4000, "bye from the test")
VARIANTS = {"draft02": [], "draft07": ["--enable-features=EnableWebTransportDraft07"]}


@pytest.fixture
def demo() -> Iterator[LineProcess]:
    process = LineProcess(DEMO)
    try:
        process.start()
        yield process
    finally:
        process.close()


def fields(line: str) -> dict[str, str]:
    """``key=value`` words of a live-output line (the reason is the JSON at the end)."""
    head, _, reason = line.partition(" reason=")
    out = dict(word.split("=", 1) for word in head.split()[1:] if "=" in word)
    out["reason"] = json.loads(reason) if reason else ""
    return out


def run_page(demo: LineProcess, browser: Callable[[str], Any]) -> tuple[dict[str, Any], str]:
    """Open the demo's page with ``#close=...`` in ``browser(url)`` (a context manager
    with ``output()``); the page's report (the ``BROWSER`` line) and a failure message."""
    page = demo.wait_line("PAGE ", 30.0).split()[1]
    assert page.startswith("http://127.0.0.1:") and page.endswith("/")
    assert demo.wait_line("SELF-CHECK ", 30.0).startswith("SELF-CHECK OK ")
    code, reason = CLOSE
    with browser(f"{page}#close={code},{reason}") as process:
        try:
            line = demo.wait_line("BROWSER ", PAGE_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"the page reported nothing; browser output:\n{process.output()[-3000:]}")
        output = process.output()
    verdict, _, body = line[len("BROWSER ") :].partition(" ")
    result: dict[str, Any] = json.loads(body)
    result["verdict"] = verdict
    return result, json.dumps(result, indent=1) + "\nbrowser:\n" + output[-3000:]


def check_page(demo: LineProcess, result: dict[str, Any], draft: str, why: str) -> None:
    """The page's tour passed on ``draft``, and the demo's -v output saw its close."""
    assert result["verdict"] == "OK" and result["ok"] is True, why
    assert result["draft"] == draft, why
    steps = result["steps"]
    text = len("hello from the page")
    assert steps["bidi"] == {"sent": text, "received": text, "equal": True}, why
    # loopback, but datagrams are unreliable: tolerate a little loss
    assert steps["datagrams"]["sent"] == 10 and steps["datagrams"]["received"] >= 7, why
    assert steps["uni"]["equal"] is True and steps["uni"]["received"] > 0, why
    code, reason = CLOSE
    assert steps["closed"] == {"resolved": True, "closeCode": code, "reason": reason}, why
    # the server's view of the same close, from the demo's live output (-v); the page
    # closed before it reported, so the line may already have been read
    closed = _echo_close(demo)
    assert closed["draft"] == draft, closed
    assert (closed["code"], closed["by"], closed["reason"]) == (str(code), "peer", reason)
    assert any(line.startswith("SESSION-OPENED path=/stats ") for line in demo.seen)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_demo_page_in_chromium(variant: str, demo: LineProcess) -> None:
    result, why = run_page(demo, lambda url: ChromiumProcess(url, VARIANTS[variant]))
    check_page(demo, result, variant, why)


def _echo_close(demo: LineProcess) -> dict[str, str]:
    """The ``SESSION-CLOSED`` line of the page's ``/echo`` session (a non-zero code)."""
    seen = 0
    while True:
        for line in demo.seen[seen:]:
            if line.startswith("SESSION-CLOSED "):
                closed = fields(line)
                if closed["path"] == "/echo" and closed["code"] != "0":
                    return closed
        seen = len(demo.seen)
        demo.wait_line("SESSION-CLOSED ", 10.0)
