"""``python -m pywebtransport demo``: its stdout as a user sees it, its page server,
and the bounds of that page server at scale (N against 4N clients)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pywebtransport.demo import PageLimits, PageServer, render_page, report_line
from tests.interop.test_wt_aioquic import LineProcess

pytestmark = pytest.mark.timeout(120)

DEMO = [sys.executable, "-m", "pywebtransport", "demo", "--port", "0", "--http-port", "0"]
HASH = bytes(range(32))
CONFIG = {"server": "https://127.0.0.1:1", "echoPath": "/echo", "certHash": HASH.hex()}


class Demo(LineProcess):
    """The demo in a child process; :meth:`interrupt` is Ctrl-C."""

    def interrupt(self, timeout: float = 30.0) -> int:
        process = self._process
        assert process is not None
        process.send_signal(signal.SIGINT)
        return process.wait(timeout=timeout)


@pytest.fixture
def demo() -> Iterator[Demo]:
    process = Demo(DEMO)
    try:
        process.start()
        yield process
    finally:
        process.close()


def http(url: str, body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


# ====================================================================== the process


def test_demo_prints_page_and_self_check_then_ctrl_c_exits_0(demo: Demo) -> None:
    listening = int(demo.seen[-1].split()[1])
    page = demo.wait_line("PAGE ", 30.0).split()[1]
    assert page.startswith("http://127.0.0.1:") and page.endswith("/")
    check = demo.wait_line("SELF-CHECK ", 30.0)
    assert check.startswith("SELF-CHECK OK draft16: bidi echo 40 B, datagram echo after ")
    assert ", uni echo 40 B, " in check, check
    cert = next(line.split()[1] for line in demo.seen if line.startswith("CERT-SHA256 "))
    # the page carries the server's URL and certificate hash
    status, html, headers = http(page)
    assert status == 200 and headers["content-type"].startswith("text/html")
    config = json.loads(html.split(b'type="application/json">')[1].split(b"</script>")[0])
    assert config["server"] == f"https://127.0.0.1:{listening}"
    assert config["certHash"] == cert and config["echoPath"] == "/echo"
    status, script, _ = http(page + "demo.js")
    assert status == 200 and b"serverCertificateHashes" in script
    assert http(page + "nothing")[0] == 404
    # a page's report becomes a BROWSER line
    report = {"ok": True, "draft": "draft02", "steps": {"bidi": {"equal": True}}}
    assert http(page + "report", json.dumps(report).encode())[0] == 204
    line = demo.wait_line("BROWSER ", 10.0)
    assert line.startswith("BROWSER OK ") and json.loads(line.split(" ", 2)[2]) == report
    assert demo.interrupt() == 0, demo.stderr()


def test_demo_without_page() -> None:
    process = Demo([*DEMO, "--no-browser-page"])
    try:
        process.start()
        assert process.wait_line("SELF-CHECK ", 30.0).startswith("SELF-CHECK OK ")
        assert not any(line.startswith("PAGE ") for line in process.seen)
        assert process.interrupt() == 0, process.stderr()
    finally:
        process.close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_demo_port_in_use_fails_and_says_which(kind: str) -> None:
    udp = kind == "udp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        if not udp:
            busy.listen()
        port = busy.getsockname()[1]
        option = "--port" if udp else "--http-port"
        done = subprocess.run(
            [*DEMO, option, str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 3, done.stderr
    assert f"cannot bind 127.0.0.1 {'UDP' if udp else 'TCP'} port {port}" in done.stderr
    assert "SELF-CHECK" not in done.stdout


def test_render_page_escapes_the_config() -> None:
    page = render_page(b"<script>{{DEMO_CONFIG}}</script>", {"x": "</script><b>"})
    assert page.count(b"</script>") == 1
    assert json.loads(page[len(b"<script>") : -len(b"</script>")]) == {"x": "</script><b>"}


def test_report_line() -> None:
    assert report_line({"ok": True, "a": 1}) == 'BROWSER OK {"a":1,"ok":true}'
    assert report_line({"ok": "yes"}).startswith("BROWSER FAIL ")


# ====================================================================== the page server


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def started(limits: PageLimits | None = None) -> tuple[PageServer, int, list[Any]]:
    reports: list[Any] = []
    server = PageServer(CONFIG, on_report=reports.append, limits=limits)
    return server, await server.start("127.0.0.1", 0), reports


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


async def test_page_server_answers() -> None:
    server, port, reports = await started()
    try:
        page = await exchange(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert status_of(page) == 200 and HASH.hex().encode() in page
        assert b"{{DEMO_CONFIG}}" not in page
        head = await exchange(port, b"HEAD /demo.js HTTP/1.1\r\n\r\n")
        assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")
        assert status_of(await exchange(port, b"DELETE / HTTP/1.1\r\n\r\n")) == 405
        assert status_of(await exchange(port, b"GET /../etc HTTP/1.1\r\n\r\n")) == 404
        assert status_of(await exchange(port, b"garbage\r\n\r\n")) == 400
        body = b'{"ok": true}'
        post = b"POST /report HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        assert status_of(await exchange(port, post)) == 204
        assert reports == [{"ok": True}]
        for bad in (b"[1]", b"{nope"):
            post = b"POST /report HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (len(bad), bad)
            assert status_of(await exchange(port, post)) == 400
        deep = b"[" * 30000 + b"]" * 30000  # deeper than Python's recursion limit
        post = b"POST /report HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (len(deep), deep)
        assert status_of(await exchange(port, post)) == 400
        chunked = b"POST /report HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        assert status_of(await exchange(port, chunked)) == 400
        assert reports == [{"ok": True}]
    finally:
        await server.close()


async def test_page_server_refuses_large_requests() -> None:
    limits = PageLimits(max_head=1024, max_body=100)
    server, port, reports = await started(limits)
    try:
        huge = b"GET / HTTP/1.1\r\nx: " + b"a" * 4096 + b"\r\n\r\n"
        assert status_of(await exchange(port, huge)) == 431
        big = b"POST /report HTTP/1.1\r\ncontent-length: 101\r\n\r\n" + b"{" * 101
        assert status_of(await exchange(port, big)) == 413
        assert reports == [] and server.connections == 0
    finally:
        await server.close()


async def stalled_clients(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` clients that send half a request and wait."""
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")
        writers.append(writer)
    await asyncio.sleep(0.2)  # let the server take them all
    return writers


async def stalled_run(count: int) -> tuple[int, int, int]:
    """(connections held, refused, held after the read deadline) for ``count`` stalled
    clients against a server serving at most 8 at once."""
    limits = PageLimits(max_connections=8, read_timeout=2.0)
    server, port, _ = await started(limits)
    try:
        writers = await stalled_clients(port, count)
        held, refused = server.connections, server.refused
        for _ in range(400):  # the read deadline ends the stalled ones
            if server.connections == 0:
                break
            await asyncio.sleep(0.05)
        for writer in writers:
            writer.close()
        return held, refused, server.connections
    finally:
        await server.close()


async def test_page_server_bounded_under_stalled_clients_n_vs_4n() -> None:
    n = 16
    held_n, refused_n, after_n = await stalled_run(n)
    held_4n, refused_4n, after_4n = await stalled_run(4 * n)
    assert held_n == held_4n == 8  # the table never exceeds its limit
    assert (refused_n, refused_4n) == (n - 8, 4 * n - 8)  # the rest is closed at once
    assert after_n == after_4n == 0  # the deadline empties the table


async def served_run(count: int) -> tuple[int, int]:
    """(requests served, connections left) after ``count`` page loads."""
    server, port, _ = await started()
    try:
        for _ in range(count):
            assert status_of(await exchange(port, b"GET / HTTP/1.1\r\n\r\n")) == 200
        await asyncio.sleep(0)
        return server.requests, server.connections
    finally:
        await server.close()


async def test_page_server_every_request_leaves_n_vs_4n() -> None:
    n = 25
    served_n, left_n = await served_run(n)
    served_4n, left_4n = await served_run(4 * n)
    assert (served_n, served_4n) == (n, 4 * n)  # work linear in the requests
    assert left_n == left_4n == 0  # each connection left the table
