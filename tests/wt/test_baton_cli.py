"""``python -m pywebtransport baton`` against ``python -m pywebtransport serve``, both as
child processes on 127.0.0.1: the game completes (exit 0, ``BATON OK``), a bad query is
refused (exit 1, status 400), a wrong certificate hash gives no session (exit 3)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from pywebtransport.cli import build_parser
from tests.pwt.test_cli import REPO, Server
from tests.support.children import die_with_parent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    code, err = srv.stop()
    assert code == 0, err


def baton(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pywebtransport", "baton", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=die_with_parent,
    )
    return done.returncode, done.stdout + done.stderr


def test_parser() -> None:
    args = build_parser().parse_args(
        ["baton", "https://h:1/", "--count", "3", "--baton", "7", "--insecure"]
    )
    assert (args.command, args.url, args.count, args.baton, args.insecure) == (
        "baton", "https://h:1/", 3, 7, True,
    )  # fmt: skip
    with pytest.raises(SystemExit):  # one way to trust the server
        build_parser().parse_args(["baton", "https://h:1/", "--insecure", "--ca-certs", "f"])


@pytest.mark.parametrize(
    "extra",
    [[], ["--count", "3", "--baton", "250"], ["--count", "2", "--drafts", "draft02"]],
)
def test_baton_cli_completes(server: Server, extra: list[str]) -> None:
    code, out = baton(
        f"https://127.0.0.1:{server.port}", "--cert-hash", server.field("CERT-SHA256"), *extra
    )
    assert code == 0, out
    assert out.startswith("BATON OK "), out
    count = extra[extra.index("--count") + 1] if "--count" in extra else "1"
    assert f"count={count} completed={count} reset=0" in out


def test_baton_cli_bad_query_fails(server: Server) -> None:
    code, out = baton(
        f"https://127.0.0.1:{server.port}/webtransport/devious-baton",
        "--baton", "0", "--cert-hash", server.field("CERT-SHA256"),
    )  # fmt: skip
    assert code == 1, out
    assert out.startswith("BATON FAIL ") and "status=400" in out


def test_baton_cli_wrong_certificate(server: Server) -> None:
    code, out = baton(f"https://127.0.0.1:{server.port}", "--cert-hash", "00" * 32)
    assert code == 3, out
    assert out.startswith("BATON FAIL ")
