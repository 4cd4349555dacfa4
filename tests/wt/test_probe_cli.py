"""``python -m pywebtransport probe`` against ``python -m pywebtransport serve``, both as
child processes on 127.0.0.1: the JSON report's schema, the table, and the exit status
(0 all passed, 2 bad arguments, 3 no connection); a failing check gives 1 (in process,
against a server that accepts every path)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywebtransport.cli import build_parser
from pywebtransport.interop import echo_handler
from pywebtransport.probe import run_probe_command
from quic.aio import wall_clock
from quic.tls.selfsigned import generate_self_signed
from tests.interop.test_wt_aioquic import LineProcess
from tests.pwt.test_cli import REPO, Server
from tests.support.children import die_with_parent
from tests.wt.test_probe import make_app, serving

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    code, err = srv.stop()
    assert code == 0, err


def probe(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pywebtransport", "probe", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        preexec_fn=die_with_parent,
    )
    return done.returncode, done.stdout, done.stderr


def test_parser() -> None:
    args = build_parser().parse_args(
        [
            "probe",
            "https://h:1/echo",
            "--json",
            "--insecure",
            "--drafts",
            "draft02",
            "--timeout",
            "2",
        ]
    )
    assert (args.command, args.url, args.json, args.insecure) == (
        "probe",
        "https://h:1/echo",
        True,
        True,
    )
    assert (args.drafts, args.timeout) == ("draft02", 2.0)


def test_json_schema_and_exit_0(server: Server) -> None:
    url = f"https://127.0.0.1:{server.port}/echo"
    code, out, err = probe(
        url, "--json", "--cert-hash", server.field("CERT-SHA256"), "--timeout", "5"
    )
    assert code == 0, out + err
    document = json.loads(out)
    assert set(document) == {"schema", "url", "ok", "summary", "info", "results"}
    assert document["schema"] == 1 and document["url"] == url and document["ok"] is True
    assert set(document["summary"]) == {"pass", "fail", "n/a"}
    assert document["summary"]["fail"] == 0
    assert sum(document["summary"].values()) == len(document["results"])
    checks = {row["check"]: row for row in document["results"]}
    for row in document["results"]:
        assert set(row) == {"check", "result", "section", "detail"}
        assert row["result"] in ("pass", "fail", "n/a")
        assert row["section"]
    assert checks["h3.settings.duplicate"]["section"] == "RFC 9114 §7.2.4"
    assert checks["echo.bidi"]["result"] == "pass"
    assert document["info"]["drafts_offered"] == ["draft-16", "draft-13", "draft-07", "draft-02"]


def test_table_and_draft_restriction(server: Server) -> None:
    url = f"https://127.0.0.1:{server.port}/echo"
    code, out, err = probe(
        url, "--cert-hash", server.field("CERT-SHA256"), "--drafts", "draft02", "--timeout", "5"
    )
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "SECTION", "DETAIL"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
    assert rows["wt.draft-02"] == "pass"
    assert rows["wt.draft-16"] == "n/a"  # excluded by --drafts
    assert lines[-1].startswith(f"probe {url}: OK")


def test_no_connection_exit_3(server: Server) -> None:
    code, out, _ = probe(
        f"https://127.0.0.1:{server.port}/echo", "--cert-hash", "00" * 32, "--timeout", "5"
    )
    assert code == 3, out
    assert "quic.handshake" in out and "fail" in out


async def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["http://127.0.0.1:1/", "--insecure"],
        ["https://127.0.0.1:1/", "--cert-hash", "abcd"],
        ["https://127.0.0.1:1/", "--insecure", "--drafts", "draft99"],
        ["https://127.0.0.1:1/", "--insecure", "--timeout", "0"],
    ):
        args = build_parser().parse_args(["probe", *argv])
        assert await run_probe_command(args) == 2, argv
        assert capsys.readouterr().out.startswith("error: ")


async def test_failing_check_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    cert = generate_self_signed(wall_clock())
    app = make_app(cert)
    app.add_pattern_route(r".*", echo_handler)  # 200 on every path
    async with serving(app) as port:
        args = build_parser().parse_args(
            ["probe", f"https://127.0.0.1:{port}/echo", "--json", "--cert-hash",
             cert.sha256_hex, "--timeout", "5"]
        )  # fmt: skip
        code = await asyncio.wait_for(run_probe_command(args), 120)
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    failed = [row for row in document["results"] if row["result"] == "fail"]
    assert [row["check"] for row in failed] == ["connect.unknown-path"]
    assert failed[0]["section"] == "draft-16 §3.2"


def test_plain_http3_server(tmp_path: Path) -> None:
    """``python -m h3 serve`` offers no WebTransport: the HTTP/3 checks run and pass,
    the WebTransport ones are n/a."""
    (tmp_path / "index.html").write_text("hello")
    server = LineProcess(
        [sys.executable, "-m", "h3", "serve", "--root", str(tmp_path), "--port", "0"]
    )
    server.start()
    try:
        digest = next(line.split()[1] for line in server.seen if line.startswith("CERT-SHA256 "))
        code, out, err = probe(
            f"https://127.0.0.1:{server.port}/", "--json", "--cert-hash", digest, "--timeout", "5"
        )
    finally:
        server.close()
    assert code == 0, out + err
    rows = {row["check"]: row["result"] for row in json.loads(out)["results"]}
    for check in ("malformed.frame", "malformed.h2-frame", "malformed.second-settings",
                  "grease", "connect.no-protocol", "connect.bad-protocol"):  # fmt: skip
        assert rows[check] == "pass", (check, out)
    for check in ("wt.drafts", "connect.accept", "echo.bidi", "close.session"):
        assert rows[check] == "n/a", (check, out)
