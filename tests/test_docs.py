"""The documentation site: it builds strictly, and what it shows is true of the code.

* ``mkdocs build --strict`` passes (no warning: broken links or anchors, pages missing
  from the nav, a ``gen:`` marker whose command fails).
* Every Python block of the hand-written pages compiles, and every name it imports from
  this project exists.
* Every ``python -m MODULE [SUBCOMMAND]`` line of a shell block answers ``--help``.
* The complete programs (blocks starting with ``# file: NAME``) run: the getting-started
  round trip in one process and as two programs, the server guide's app driven by the
  client guide's functions, the qlog/key-log program of the debugging page, the
  hardened configuration.
* The page of the browser guide connects from headless Chromium to
  ``python -m pywebtransport serve`` with the printed hash (skipped without Chromium).
* The API reference generator (``docs/hooks/apiref.py``) covers every public name and
  renders docstrings faithfully.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pywebtransport import ClientConfig, SessionRejected, WebTransportClient
from quic.tls.selfsigned import generate_self_signed
from tests.interop.chromium import ChromiumProcess, ResultServer, find_chromium

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_OURS = ("pywebtransport", "h3", "quic")


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _blocks(language: str) -> Iterator[tuple[Path, str]]:
    for page in _pages():
        for match in _FENCE.finditer(page.read_text(encoding="utf-8")):
            if match.group(1) == language:
                yield page, match.group(2)


def program(name: str) -> str:
    """The Python block of the docs that starts with ``# file: name``."""
    found = [code for _, code in _blocks("python") if code.startswith(f"# file: {name}\n")]
    assert len(found) == 1, f"expected one block '# file: {name}', found {len(found)}"
    return found[0]


def _load_apiref() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("docs_apiref", DOCS / "hooks" / "apiref.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_cert(directory: Path) -> bytes:
    cert = generate_self_signed(datetime.now(UTC))
    (directory / "cert.pem").write_bytes(cert.certificate_pem)
    (directory / "key.pem").write_bytes(cert.private_key_pem)
    return cert.sha256


# -- the site builds -------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")  # in the dev extra
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    site = tmp_path / "site"
    for page in ("getting-started", "server", "client", "browsers", "debugging", "hardening"):
        assert (site / page / "index.html").is_file()
    api = (site / "api" / "pywebtransport.app" / "index.html").read_text(encoding="utf-8")
    assert "ServerApp" in api and "pattern_route" in api
    browsers = (site / "browsers" / "index.html").read_text(encoding="utf-8")
    assert "gen:" not in browsers and "draft-02" in browsers


def test_every_page_is_in_the_nav() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(entry: object) -> Iterator[str]:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, list):
            for item in entry:
                yield from walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from walk(value)

    listed = set(walk(config["nav"]))
    missing = [p.name for p in _pages() if p.name not in listed]
    assert not missing, f"add these pages to mkdocs.yml's nav: {missing}"
    assert "api/index.md" in listed


# -- code blocks are true of the code ----------------------------------------------------


def test_python_blocks_compile_and_their_imports_exist() -> None:
    count = 0
    for page, code in _blocks("python"):
        tree = compile(code, f"{page.name}", "exec", ast.PyCF_ONLY_AST)
        count += 1
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] not in _OURS:
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{page.name}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in _OURS:
                        importlib.import_module(alias.name)
    assert count >= 8  # the guides have code


def _commands() -> Iterator[tuple[Path, list[str]]]:
    for page, code in _blocks("sh"):
        for line in code.replace("\\\n", " ").splitlines():
            words = line.split("#", 1)[0].split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # VAR=value prefixes
            if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
                yield page, words[2:]


def test_cli_commands_in_the_docs_answer_help() -> None:
    seen: set[tuple[str, ...]] = set()
    for page, words in _commands():
        module, rest = words[0], [w for w in words[1:] if w not in ("-v", "--verbose")]
        command = [module]
        if rest and not rest[0].startswith(("-", "[")):
            command.append(rest[0])  # a subcommand
        if tuple(command) in seen:
            continue
        seen.add(tuple(command))
        result = subprocess.run(
            [sys.executable, "-m", *command, "--help"],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{page.name}: python -m {' '.join(command)} --help\n" + (
            result.stderr
        )
        assert "usage" in result.stdout.lower()
    assert ("pywebtransport", "serve") in seen and ("h3", "serve") in seen


# -- the complete programs run ---------------------------------------------------------


def test_getting_started_round_trip_runs(tmp_path: Path) -> None:
    path = tmp_path / "first_round_trip.py"
    path.write_text(program("first_round_trip.py"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["b'hello'", "draft: draft16"]


def test_getting_started_server_and_client_programs(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(program("server.py"), encoding="utf-8")
    (tmp_path / "client.py").write_text(program("client.py"), encoding="utf-8")
    port = _free_udp_port()
    server = subprocess.Popen(
        [sys.executable, "server.py", str(port)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("certificate sha-256: "), line
        sha256 = line.split()[-1]
        client = None
        for _ in range(20):  # the server binds just after printing the hash
            client = subprocess.run(
                [sys.executable, "client.py", f"https://127.0.0.1:{port}/echo", sha256],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if client.returncode == 0:
                break
        assert client is not None and client.returncode == 0, client and client.stderr
        assert client.stdout.strip() == "b'hello'"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _exec_program(name: str, module_name: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    exec(compile(program(name), name, "exec"), module.__dict__)
    return module


async def test_server_guide_app_with_client_guide_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sha256 = _write_cert(tmp_path)
    guide = _exec_program("server_guide.py", "server_guide")
    exchange_code = next(c for p, c in _blocks("python") if "async def exchange(" in c)
    client_guide = types.ModuleType("client_guide")
    exec(compile(exchange_code, "client.md", "exec"), client_guide.__dict__)
    app = guide.app
    task = asyncio.create_task(app.serve(host="127.0.0.1", port=0))
    port = await app.wait_started()
    base = f"https://127.0.0.1:{port}"
    try:
        async with WebTransportClient(ClientConfig(server_certificate_hashes=[sha256])) as client:
            session = await client.connect(f"{base}/echo")
            answer, pushed, datagram = await client_guide.exchange(session)
            assert (answer, pushed, datagram) == (b"line 1\nline 2\n", b"to the server", b"ping")
            await session.close()

            room = await client.connect(f"{base}/rooms/lobby")
            stream = await room.accept_unidirectional_stream()
            assert await stream.read_all() == b"welcome to lobby\n"
            await room.close()

            with pytest.raises(SessionRejected) as refused:
                await client.connect(f"{base}/private/stats")
            assert refused.value.status_code == 401
            private = await client.connect(
                f"{base}/private/stats", headers={"authorization": "Bearer s3cret"}
            )
            stream = await private.create_bidirectional_stream()
            await stream.write_all(b"")
            assert b"sessions" in await stream.read_all()
            await private.close()

            with pytest.raises(SessionRejected) as foreign:
                await client.connect(f"{base}/echo", headers={"origin": "https://evil.example"})
            assert foreign.value.status_code == 403
            with pytest.raises(SessionRejected) as unknown:
                await client.connect(f"{base}/nowhere")
            # no route: 404, or 405 where the draft-16 §3.2 rule is implemented
            assert unknown.value.status_code in (404, 405)
    finally:
        app.stop()
        await task


async def test_client_guide_fetch_stats_against_the_cli_server(tmp_path: Path) -> None:
    code = next(c for p, c in _blocks("python") if "async def fetch_stats(" in c)
    guide = types.ModuleType("client_guide_fetch")
    exec(compile(code, "client.md", "exec"), guide.__dict__)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pywebtransport", "serve", "--port", "0",
        cwd=tmp_path, env=ENV, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        sha256 = port = None
        while port is None:
            line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
            assert line, "the server ended"
            if line.startswith("CERT-SHA256 "):
                sha256 = bytes.fromhex(line.split()[1])
            elif line.startswith("LISTENING "):
                port = int(line.split()[1])
        assert sha256 is not None
        stats = json.loads(await guide.fetch_stats(f"https://127.0.0.1:{port}/stats", sha256))
        assert isinstance(stats, dict) and stats
    finally:
        server.terminate()
        await server.wait()


class _CliServer:
    """``python -m pywebtransport serve --port 0``: its port and certificate hash."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pywebtransport", "serve", "--port", "0"],
            cwd=cwd,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.sha256 = ""
        self.port = 0
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("CERT-SHA256 "):
                self.sha256 = line.split()[1]
            elif line.startswith("LISTENING "):
                self.port = int(line.split()[1])
                return
        raise AssertionError("the server ended before listening")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


_REPORT = """
const report = (body) => fetch(REPORT, {method: "POST", mode: "no-cors",
  headers: {"content-type": "text/plain"}, body: JSON.stringify(body)});
addEventListener("unhandledrejection", (e) => report({error: String(e.reason)}));
addEventListener("error", (e) => report({error: String(e.message)}));
"""


@pytest.mark.interop
@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed")
def test_browser_guide_page_in_chromium(tmp_path: Path) -> None:
    html = next(c for _, c in _blocks("html") if "serverCertificateHashes" in c)
    server = _CliServer(tmp_path)
    try:
        with ResultServer() as results:
            page = html.replace('const HASH_HEX = "...";', f'const HASH_HEX = "{server.sha256}";')
            page = page.replace("127.0.0.1:4433", f"127.0.0.1:{server.port}")
            reporter = f'<script>const REPORT = "{results.url}";{_REPORT}</script>\n'
            page = page.replace('<script type="module">', reporter + '<script type="module">')
            page = page.replace(
                "wt.close(", 'report({log: document.getElementById("log").textContent});\nwt.close('
            )
            assert page.count("report(") == 3 and server.sha256 in page
            (tmp_path / "index.html").write_text(page, encoding="utf-8")
            handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
            web = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=web.serve_forever, daemon=True).start()
            try:
                url = f"http://127.0.0.1:{web.server_address[1]}/index.html"
                with ChromiumProcess(url):
                    record = results.wait(timeout=60)["body"]
            finally:
                web.shutdown()
                web.server_close()
    finally:
        server.stop()
    assert record == {"log": "echo: hello\ndatagram: 1,2,3\n"}, record


def test_debugging_program_writes_qlog_and_key_log(tmp_path: Path) -> None:
    path = tmp_path / "traced_round_trip.py"
    path.write_text(program("traced_round_trip.py"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "qlog").glob("*.sqlog"))
    assert len(names) == 3, names
    assert [n for n in names if n.endswith("_client.sqlog")]
    assert [n for n in names if n.startswith("endpoint-")]
    assert "JSON-SEQ" in result.stdout and "'http':" in result.stdout
    keys = (tmp_path / "keys.log").read_text(encoding="utf-8")
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET " in keys and "SERVER_TRAFFIC_SECRET_0 " in keys


def test_hardened_configuration_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_cert(tmp_path)
    module = _exec_program("hardened_config.py", "hardened_config")
    quic = module.config.quic_configuration()
    assert quic.max_connections_per_address == 16 and quic.retry_threshold == 100
    assert len(module.app._middleware) == 4


# -- the API reference generator ---------------------------------------------------------


def test_api_reference_covers_every_public_name() -> None:
    apiref = _load_apiref()
    pages = apiref.generate()
    modules = apiref.documented_modules()
    assert "pywebtransport.app" in modules and "pywebtransport.protocol.drafts" in modules
    assert "pywebtransport.cli" not in modules and "quic.connection" in modules
    for name in modules:
        page = pages[f"api/{name}.md"]
        for public in importlib.import_module(name).__all__:
            assert re.search(rf"^### .*`{re.escape(public)}(\(\))?`", page, re.M), (name, public)
        assert "](#)" not in page, f"{name}: a public-name link without its heading"
        assert " at 0x" not in page, f"{name}: an object's address in the reference"
    # an enum's members are one table; a dataclass's fields too
    assert "| `HANDSHAKE` | `'handshake'` |\n| `CONNECTED` |" in pages["api/quic.connection.md"]
    assert "| `drafts` |" in pages["api/pywebtransport.config.md"]
    assert re.search(r"\|\n\n\|", "".join(pages.values())) is None  # no table cut in two
    index = pages["api/index.md"]
    assert all(f"({name}.md)" in index for name in modules)


def test_docstring_rendering() -> None:
    apiref = _load_apiref()
    doc = """Summary with ``code`` and :class:`~a.b.Klass` and :mod:`a.b`.

    Theory of operation
    -------------------
    Text with <angle> brackets and *stars*.

    Example::

        x = 1

    ======  =====
    a       table
    ======  =====

    1. first item,
       continued
    2. second
    """
    text = apiref.docstring_markdown(doc)
    assert "`code`" in text and "`Klass`" in text and "`a.b`" in text
    assert "**Theory of operation**" in text and "---" not in text
    assert "&lt;angle&gt;" in text and "\\*stars\\*" in text
    assert "Example:\n\n```python\nx = 1\n```" in text
    assert "```text\n======  =====\na       table\n======  =====\n```" in text
    assert "1. first item, continued\n1. second" in text


def test_generated_tables_follow_the_code() -> None:
    apiref = _load_apiref()
    from pywebtransport.config import DEFAULT_DRAFTS, parse_draft
    from pywebtransport.protocol.drafts import PROFILES

    drafts = apiref.drafts_table()
    assert len(drafts.splitlines()) == 2 + len(PROFILES)
    for draft, profile in PROFILES.items():
        assert f"draft-{int(draft):02d} | `{profile.protocol.decode()}`" in drafts
    browsers = apiref.browsers_table()
    spoken = {int(parse_draft(d)) for d in DEFAULT_DRAFTS}
    for browser, draft, _ in apiref.BROWSERS:
        row = next(line for line in browsers.splitlines() if line.startswith(f"| {browser} |"))
        assert ("| offered |" in row) == (draft in spoken), row
    readme = apiref.expand_markers("<!-- gen:readme-commands -->")
    assert readme.startswith("```sh\n./run.sh ") and readme.endswith("```")
    listed = apiref.expand_markers("<!-- gen:optional-pages -->").splitlines()
    present = [p for p in apiref.OPTIONAL_PAGES if (DOCS / p).exists()]
    assert len(listed) == len(present) and all(f"]({p})" in "".join(listed) for p in present)
    assert apiref.expand_markers("<!-- gen:help python -m h3 serve -->").startswith(
        "```text\n$ python -m h3 serve --help\nusage:"
    )
    for bad in ("<!-- gen:nonsense -->", "<!-- gen:drafts>"):
        with pytest.raises(ValueError):
            apiref.expand_markers(bad)


def test_nav_entries_of_pages_not_written_yet_are_dropped(tmp_path: Path) -> None:
    apiref = _load_apiref()
    (tmp_path / "probe.md").write_text("# probe\n", encoding="utf-8")
    nav = [
        {"Home": "index.md"},
        {"Probe": "probe.md"},
        {"Messaging": "messaging.md"},  # optional, absent: dropped
        {"Group": [{"Clients": "clients.md"}]},  # a section left empty: dropped
        {"Typo": "serer.md"},  # not optional: kept, so the strict build reports it
    ]
    assert apiref.prune_nav(nav, tmp_path) == [
        {"Home": "index.md"},
        {"Probe": "probe.md"},
        {"Typo": "serer.md"},
    ]
