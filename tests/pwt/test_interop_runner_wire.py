"""The runner's WebTransport wire format and file naming
(:mod:`pywebtransport.interop.runner_wire`), the option parsing
(:mod:`pywebtransport.interop.runner_options`) and the request plan / protocol choice of
:mod:`pywebtransport.interop.runner`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pywebtransport.interop.runner import choose_protocol, main, plan_requests
from pywebtransport.interop.runner_options import EXIT_UNSUPPORTED, TESTCASES, parse_options
from pywebtransport.interop.runner_wire import (
    MAX_NAME_SIZE,
    RunnerErrorCode,
    RunnerWireError,
    check_name,
    download_path,
    encode_get,
    encode_push,
    endpoint_of,
    parse_get,
    parse_push_datagram,
    parse_push_header,
    resolve_file,
    split_request,
)

# ======================================================================================
# requests and pushes
# ======================================================================================


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"GET file1.txt", "file1.txt"),  # the runner's form: no newline
        (b"GET file1.txt\n", "file1.txt"),
        (b"GET file1.txt\r\n", "file1.txt"),
        (b"GET dir/file", "dir/file"),
        ("GET caf\u00e9".encode(), "caf\u00e9"),
    ],
)
def test_parse_get(data: bytes, name: str) -> None:
    assert parse_get(data) == name


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET",
        b"GET ",
        b"GET \n",
        b"PUT file",
        b"get file",
        b"GET ../secret",
        b"GET a/../../secret",
        b"GET /etc/passwd",
        b"GET ./a",
        b"GET a//b",
        b"GET a\\..\\b",
        b"GET a\x00b",
        b"GET a\x7fb",
        b"GET \xff\xfe",
        b"GET " + b"a" * (MAX_NAME_SIZE + 1),
        b"GET " + b"a" * 100_000,
    ],
)
def test_parse_get_refuses(data: bytes) -> None:
    with pytest.raises(RunnerWireError) as info:
        parse_get(data)
    assert info.value.error_code == RunnerErrorCode.BAD_REQUEST


def test_request_and_push_round_trip() -> None:
    for name in ("a", "x/y.bin", "n" * MAX_NAME_SIZE):
        assert parse_get(encode_get(name)) == name
        header = encode_push(name)
        assert header.endswith(b"\n")
        assert parse_push_header(header) == name
        assert parse_push_datagram(header + b"\nbody\x00") == (name, b"\nbody\x00")
    assert parse_push_datagram(encode_push("f")) == ("f", b"")


@pytest.mark.parametrize(
    "data",
    [
        b"PUSH f",  # a datagram needs the newline
        b"PUSH \nbody",
        b"GET f\nbody",
        b"PUSH ../f\nbody",
        b"PUSH " + b"a" * (MAX_NAME_SIZE + 10) + b"\nbody",
    ],
)
def test_parse_push_datagram_refuses(data: bytes) -> None:
    with pytest.raises(RunnerWireError):
        parse_push_datagram(data)


def test_encoders_refuse_unusable_names() -> None:
    for name in ("", "../x", "/x", "a\nb"):
        with pytest.raises(RunnerWireError):
            encode_get(name)
        with pytest.raises(RunnerWireError):
            encode_push(name)


# ======================================================================================
# files: nothing outside <www>/<endpoint> is read, nothing outside <downloads> written
# ======================================================================================


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "ep" / "sub").mkdir(parents=True)
    (root / "ep" / "a").write_bytes(b"A")
    (root / "ep" / "sub" / "b").write_bytes(b"B")
    (root / "other").mkdir()
    (root / "other" / "c").write_bytes(b"C")
    (root / "top").write_bytes(b"T")
    (tmp_path / "secret").write_bytes(b"S")
    os.symlink(tmp_path / "secret", root / "ep" / "link-out")
    os.symlink(root / "ep" / "a", root / "ep" / "link-in")
    os.symlink(tmp_path, root / "escape")
    return root


def test_resolve_file_serves_files_of_the_endpoint(www: Path) -> None:
    assert resolve_file(www, "ep", "a") == (www / "ep" / "a").resolve()
    assert resolve_file(www, "ep", "sub/b") == (www / "ep" / "sub" / "b").resolve()
    assert resolve_file(www, "ep", "link-in") == (www / "ep" / "a").resolve()


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("ep", "missing"),
        ("ep", "sub"),  # a directory
        ("ep", "../other/c"),  # another endpoint's file
        ("ep", "../top"),
        ("ep", "../../secret"),
        ("ep", "/etc/passwd"),
        ("ep", "link-out"),  # a symbolic link leading outside
        ("ep", "a\x00"),
        ("..", "secret"),
        ("escape", "secret"),  # an endpoint that is a link outside www
        ("nothere", "a"),
        ("", "top"),
    ],
)
def test_resolve_file_refuses(www: Path, endpoint: str, name: str) -> None:
    assert resolve_file(www, endpoint, name) is None


def test_download_path_stays_below_downloads(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    assert download_path(downloads, "ep", "a") == downloads / "ep" / "a"
    assert download_path(downloads, "ep", "x/y") == downloads / "ep" / "x" / "y"
    for endpoint, name in (("ep", "../a"), ("..", "a"), ("ep", "/abs"), ("a/b", "c")):
        with pytest.raises(RunnerWireError):
            download_path(downloads, endpoint, name)


# ======================================================================================
# endpoints, request plans, protocol choice
# ======================================================================================


def test_endpoint_of_session_paths() -> None:
    assert endpoint_of("/webtransport1") == "webtransport1"
    assert endpoint_of("/wt1/extra?q=1") == "wt1"
    for path in ("/", "", "/../x", "/%2e%2e/x"):
        with pytest.raises(RunnerWireError):
            endpoint_of(path)


def test_split_request_and_plan() -> None:
    assert split_request("https://server4:443/wt1/file1.txt") == ("wt1", "file1.txt")
    assert split_request("https://server4:443/wt1") == ("wt1", None)
    assert split_request("https://server4:443/wt1/") == ("wt1", None)
    assert split_request("wt2/file3.txt") == ("wt2", "file3.txt")
    assert split_request("/wt2/d/f") == ("wt2", "d/f")
    with pytest.raises(RunnerWireError):
        split_request("https://server4:443/")
    with pytest.raises(RunnerWireError):
        split_request("wt1/../../etc/passwd")
    plan = plan_requests(
        [
            "https://s/webtransport1/file1.txt",
            "https://s/webtransport1/file2.txt",
            "https://s/webtransport2/file3.txt",
            "https://s/webtransport1/file1.txt",
            "https://s/webtransport3",
        ]
    )
    assert plan == {
        "webtransport1": ["file1.txt", "file2.txt"],
        "webtransport2": ["file3.txt"],
        "webtransport3": [],
    }


def test_choose_protocol_is_the_clients_first_the_server_supports() -> None:
    assert choose_protocol(["c1", "a", "c2", "b"], ["s1", "b", "a"]) == "a"
    assert choose_protocol(["x"], ["y"]) is None
    assert choose_protocol([], ["y"]) is None


# ======================================================================================
# options: arguments over environment over the runner's defaults
# ======================================================================================


def test_options_from_environment_only() -> None:
    env = {
        "ROLE": "client",
        "TESTCASE": "handshake",
        "REQUESTS": "https://server4:443/a https://server4:443/b/f",
        "PROTOCOLS_CLIENT": '"p1 p2  p3"',  # the runner's variable, quoted by its shell
        "DOWNLOAD_DIR": "/dl",
        "SSLKEYLOGFILE": "/logs/keys.log",
        "QLOGDIR": "/logs/qlog/",
    }
    options = parse_options([], env)
    assert options.role == "client"
    assert options.testcase == "handshake"
    assert options.requests == ("https://server4:443/a", "https://server4:443/b/f")
    assert options.protocols == ("p1", "p2", "p3")
    assert options.downloads == Path("/dl")
    assert options.certs == Path("/certs")
    assert options.www == Path("/www")
    assert options.keylog_file == "/logs/keys.log"
    assert options.qlog_dir == "/logs/qlog/"
    server = parse_options([], {"ROLE": "server", "TESTCASE": "transfer-datagram-send",
                                "REQUESTS": "wt/a wt/b", "PROTOCOLS": "x"})  # fmt: skip
    assert server.port == 443
    assert server.host == "::"
    assert server.requests == ("wt/a", "wt/b")
    assert server.protocols == ("x",)


def test_arguments_override_environment() -> None:
    env = {"ROLE": "client", "TESTCASE": "handshake", "PROTOCOLS": "env", "PORT": "1"}
    options = parse_options(
        ["server", "--testcase", "transfer", "--port", "0", "--protocols", "a b",
         "--requests", "e/f", "--downloads", "/x", "--www", "/w", "--certs", "/c"],
        env,
    )  # fmt: skip
    assert (options.role, options.testcase, options.port) == ("server", "transfer", 0)
    assert options.protocols == ("a", "b")
    assert options.requests == ("e/f",)
    assert (options.downloads, options.www, options.certs) == (Path("/x"), Path("/w"), Path("/c"))
    client = parse_options(["client", "--testcase", "transfer", "https://h/e"], env)
    assert client.requests == ("https://h/e",)
    assert client.protocols == ("env",)


def test_usage_errors_exit_2() -> None:
    for argv, env in (([], {}), ([], {"ROLE": "client"}), (["client", "--port", "x"], {})):
        with pytest.raises(SystemExit) as info:
            parse_options(argv, {"TESTCASE": "handshake", **env} if argv else env)
        assert info.value.code == 2


def test_unknown_case_exits_127_in_process() -> None:
    assert main(["client", "--testcase", "goodput", "https://h/e"], {}) == EXIT_UNSUPPORTED
    assert main([], {"ROLE": "server", "TESTCASE": "multiconnect"}) == EXIT_UNSUPPORTED


def test_every_case_of_the_runner_is_known() -> None:
    # testcases_webtransport.py of quic-interop-runner (names as passed in TESTCASE)
    assert set(TESTCASES) == {
        "handshake",
        "transfer",
        *(
            f"transfer-{kind}-{direction}"
            for kind in ("unidirectional", "bidirectional", "datagram")
            for direction in ("receive", "send")
        ),
    }
    assert TESTCASES["transfer-datagram-send"].requester == "server"
    assert TESTCASES["transfer-bidirectional-receive"].requester == "client"


def test_check_name_bounds() -> None:
    assert check_name("a" * MAX_NAME_SIZE)
    with pytest.raises(RunnerWireError):
        check_name("a" * (MAX_NAME_SIZE + 1))
