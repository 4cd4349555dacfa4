"""WebTransport interop with headless Chromium (draft-02 by default, and draft-07).

Every party is a separate process talking over real sockets on 127.0.0.1 (the servers,
the page, the page server and the shared checks are in ``tests/interop/wt_browser.py``,
shared with the Firefox module):

* our interop server, ``python -m pywebtransport serve --port 0``, for the echo checks;
* for the close tests, the custom server ``python -m tests.interop.wt_browser serve``
  (``/record`` prints the code and reason of the page's close, ``/close-me`` closes the
  session with the code and reason the page asks for);
* :class:`~tests.interop.wt_browser.PageServer` serves ``wt_pages/wt.html`` and collects
  the one JSON document the page POSTs (``--dump-dom`` would return before the
  asynchronous JavaScript ends);
* headless Chromium (``tests/interop/chromium.py``), ended by its PID. The page connects
  with ``new WebTransport(url, {serverCertificateHashes: [...]})``.

Per browser variant — default (draft-02) and ``--enable-features=
EnableWebTransportDraft07`` — the tests check (issue 11's list): connect; bidi echo of a
short message and of 1 MB; datagram echo; a uni stream answered by the server's uni
stream; the draft the server negotiated (the page reads ``/stats``, in the close tests
too); the page's own close of the echo session; a client close whose code and reason the
server sees; a server close whose code and reason ``transport.closed`` resolves with.

Chromium writes a net log (``--log-net-log``) into the test's temporary directory; on a
failure its WebTransport/QUIC events are summarised in the assertion message.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.chromium import ChromiumProcess, find_chromium, netlog_events
from tests.interop.test_wt_aioquic import LineProcess
from tests.interop.wt_browser import (
    CLI_SERVER,
    CustomServer,
    PageServer,
    cert_hash,
    check_client_close,
    check_echo,
    check_server_close,
    explain,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
]

PAGE_TIMEOUT = 90.0
DRAFT07_FLAG = "--enable-features=EnableWebTransportDraft07"
VARIANTS = {"draft02": [], "draft07": [DRAFT07_FLAG]}


# ====================================================================== fixtures


@pytest.fixture
def cli_server() -> Iterator[LineProcess]:
    server = LineProcess(CLI_SERVER)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def custom_server() -> Iterator[LineProcess]:
    with CustomServer() as server:
        yield server


@pytest.fixture
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def _netlog_summary(path: Path) -> list[str]:
    """WebTransport / QUIC session events of a net log, for failure messages."""
    if not path.exists():
        return ["(no net log)"]
    try:
        events = netlog_events(path)
    except (ValueError, KeyError) as exc:
        return [f"(net log unreadable: {exc})"]
    lines = []
    for name, params in events:
        if any(word in name for word in _NETLOG_KEEP) and "COALESCED" not in name:
            lines.append(f"{name} {json.dumps(params)[:300]}")
    return lines[-80:]


#: net log events a failure message keeps: the sessions' states, every stream frame
#: either way (which stream got how far), resets, losses and closes
_NETLOG_KEEP = (
    "WEBTRANSPORT",
    "QUIC_SESSION_CLOSE",
    "QUIC_SESSION_PACKET_RECEIVED_ERROR",
    "HTTP3_",
    "STREAM_FRAME",
    "RST_STREAM",
    "STOP_SENDING",
    "PACKET_LOST",
    "CONNECTION_CLOSE",
)


def run_page(
    pages: PageServer, mode: str, wt_port: int, hash_hex: str, flags: list[str]
) -> dict[str, Any]:
    """Load the page in headless Chromium; the JSON it POSTed (the net log on failure)."""
    with tempfile.TemporaryDirectory(prefix="wt-netlog-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        browser_flags = [
            *flags,
            f"--log-net-log={netlog}",
            "--net-log-capture-mode=Everything",
        ]
        url = pages.page_url(mode, wt_port, hash_hex)
        browser = ChromiumProcess(url, browser_flags)
        with browser:
            try:
                result = pages.wait(PAGE_TIMEOUT)
            except TimeoutError:
                result = {"ok": False, "error": "no result from the page"}
            output = browser.output()
        if not result.get("ok"):
            result["netlog"] = _netlog_summary(netlog)
            result["browser_output"] = output[-3000:]
        return result


# ====================================================================== tests


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_echo(variant: str, cli_server: LineProcess, pages: PageServer) -> None:
    result = run_page(pages, "echo", cli_server.port, cert_hash(cli_server), VARIANTS[variant])
    check_echo(result, variant, explain(result, cli_server))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_client_close(variant: str, custom_server: LineProcess, pages: PageServer) -> None:
    result = run_page(
        pages, "client-close", custom_server.port, cert_hash(custom_server), VARIANTS[variant]
    )
    check_client_close(result, variant, custom_server, explain(result, custom_server))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chromium_server_close(variant: str, custom_server: LineProcess, pages: PageServer) -> None:
    result = run_page(
        pages, "server-close", custom_server.port, cert_hash(custom_server), VARIANTS[variant]
    )
    check_server_close(result, variant, custom_server, explain(result, custom_server))
