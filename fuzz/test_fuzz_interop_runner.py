"""Property tests for the quic-interop-runner WebTransport wire format
(:mod:`pywebtransport.interop.runner_wire`): any bytes either parse or raise
:class:`RunnerWireError`, and every accepted name maps below its directory. A stateful
machine feeds arbitrary ``PUSH`` datagrams (wanted, unwanted, duplicate, hostile names)
to a :class:`RunnerPeer` and checks that only wanted files are written, each once, with
the first payload, and that no state is left behind."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from pywebtransport.interop.runner_options import RunnerLimits
from pywebtransport.interop.runner_peer import RunnerPeer
from pywebtransport.interop.runner_wire import (
    RunnerWireError,
    download_path,
    encode_get,
    encode_push,
    parse_get,
    parse_push_datagram,
    parse_push_header,
)
from pywebtransport.session import WebTransportSession

HOSTILE = st.sampled_from(
    [b"..", b"../x", b"/abs", b"a/../../b", b"a\x00", b"\\x", b"a//b", b".", b"", b"\xff"]
)
NAMES = st.one_of(
    st.binary(max_size=40),
    HOSTILE,
    st.text(st.characters(codec="utf-8"), max_size=30).map(lambda t: t.encode()),
)


def _below(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


@settings(max_examples=examples(400))
@given(st.one_of(st.binary(max_size=2000), NAMES.map(lambda n: b"GET " + n)))
def test_requests_parse_or_raise_the_typed_error(data: bytes) -> None:
    root = Path("/downloads")
    try:
        name = parse_get(data)
    except RunnerWireError:
        return
    assert parse_get(encode_get(name)) == name
    assert _below(download_path(root, "ep", name), root / "ep")


@settings(max_examples=examples(400))
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.tuples(NAMES, st.binary(max_size=50)).map(lambda t: b"PUSH " + t[0] + b"\n" + t[1]),
    )
)
def test_pushes_parse_or_raise_the_typed_error(data: bytes) -> None:
    try:
        name, payload = parse_push_datagram(data)
    except RunnerWireError:
        return
    assert data.endswith(payload)
    assert parse_push_header(encode_push(name)) == name
    root = Path("/downloads")
    assert _below(download_path(root, "ep", name), root / "ep")


class _Session:
    session_id = 0


WANTED = ("a", "b", "dir/c")


class PushDatagrams(RuleBasedStateMachine):
    """Arbitrary PUSH datagrams at a requester that wants :data:`WANTED`."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="fuzz-runner-"))
        self.peer = RunnerPeer(
            cast(WebTransportSession, _Session()),
            "ep",
            www=None,
            downloads=self.tmp / "dl",
            wanted=WANTED,
            limits=RunnerLimits(),
        )
        self.first: dict[str, bytes] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _datagram(self, data: bytes) -> None:
        try:
            name, payload = parse_push_datagram(data)
        except RunnerWireError:
            return
        if name in WANTED and name not in self.first:
            self.first[name] = payload
        self.peer._on_push_datagram(name, payload)

    @rule(name=st.sampled_from(WANTED), payload=st.binary(max_size=64))
    def wanted_push(self, name: str, payload: bytes) -> None:
        self._datagram(encode_push(name) + payload)

    @rule(name=NAMES, payload=st.binary(max_size=64))
    def any_push(self, name: bytes, payload: bytes) -> None:
        self._datagram(b"PUSH " + name + b"\n" + payload)

    @rule(data=st.binary(max_size=200))
    def any_datagram(self, data: bytes) -> None:
        self._datagram(data)

    @invariant()
    def only_wanted_files_once_with_the_first_payload(self) -> None:
        peer = self.peer
        assert peer._receiving == set()
        assert sorted(peer.saved) == sorted(self.first)
        assert len(peer.saved) == len(set(peer.saved))
        assert sorted(peer.missing + peer.saved) == sorted(WANTED)
        root = self.tmp / "dl"
        written = sorted(
            str(p.relative_to(root / "ep")) for p in root.rglob("*") if p.is_file()
        ) if root.exists() else []  # fmt: skip
        assert written == sorted(self.first)
        for name, payload in self.first.items():
            assert (root / "ep" / name).read_bytes() == payload


PushDatagrams.TestCase.settings = settings(max_examples=examples(60), stateful_step_count=30)
test_push_datagrams = PushDatagrams.TestCase
