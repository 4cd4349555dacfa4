"""Issue 9's check: the runner's cases against aioquic in both roles, through the proxy.

For each case of the list (retry, resumption, zerortt, keyupdate, chacha20, v2,
connectionmigration, rebind-port, handshakeloss, transferloss, handshakecorruption,
transfercorruption) and each direction — our server with aioquic's hq client
(``tests/peers/aioquic_hq.py``, its options per case chosen by
:mod:`tests.support.interop_run`), and aioquic's hq server with our client — the
endpoints run as processes on 127.0.0.1 through the impairment proxy with the case's
runner network (:data:`quic.interop.impair.SCENARIOS`, without its bandwidth limit
where the case does not need it, so that each run takes a few seconds). Every file
must arrive byte-exact, and the case's own runner check is made on the capture
(:mod:`quic.interop.trace`):

* retry: a Retry packet from the server, and still one handshake;
* resumption / zerortt: two handshakes; the second connection's ClientHello carries a
  pre_shared_key (and, for zerortt, early_data), the first one's does not; zerortt:
  0-RTT packets from the client, resumption: none;
* keyupdate: 1-RTT packets with Key Phase 1 from both sides;
* chacha20: only TLS_CHACHA20_POLY1305_SHA256 offered; the header protection keys
  derived for it remove the 1-RTT header protection;
* v2: the client starts on v1, the server's long headers are v2 (RFC 9369);
* connectionmigration / rebind-port: the server sent to more than one client address;
* handshake/transfer loss and corruption: the network did lose / corrupt packets.

Every (case, direction) pair runs here. aioquic's client cannot migrate through a public
call: ``--migrate`` opens a second socket on its protocol object and switches to a new
connection ID (see ``tests/peers/aioquic_hq.py``). aioquic offers v2 by default, so the
v2 check is shown to fail on a v1-only run (:func:`test_v2_check_can_fail`); the other
rows fail with the aioquic commands that ignored the test case (no Retry, no ticket, no
key update, no migration, the AES suites offered).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from quic.interop.impair import SCENARIOS, Scenario
from quic.interop.proxy import TO_CLIENT, TO_SERVER
from quic.interop.trace import (
    client_hello,
    count_handshakes,
    key_phases,
    packets,
    read_keylog,
)
from quic.packet import PacketType
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion
from tests.support.interop_run import CaseRun, make_tree, run_case

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

KB = 1 << 10
MB = 1 << 20
HANDSHAKES = 4  # the runner makes 50 (tests/interop/test_runner_cases.py: slow)
DIRECTIONS = [("ours", "aioquic"), ("aioquic", "ours")]  # (server, client)


def network(name: str) -> Scenario:
    return SCENARIOS[name].scaled(bandwidth=False)


def rebinding() -> Scenario:
    # the NAT rebinds the client's port after 0.2 s, then every second (the runner: 1 s,
    # then every 5 s); the 10 Mbit/s link keeps the 1 MB transfer going across it.
    # Every 0.3 s, our server with aioquic's client stalled in 1 run of 26: what the
    # server sends to a closed binding is lost, and aioquic's client, with nothing
    # ack-eliciting in flight, stays silent, so the server never learns the new port
    # (until the idle timeout); our server also slowed to ~13 packets per 0.3 s window
    # after the first rebindings (it validates each new path, RFC 9000 §9.3)
    s = SCENARIOS["rebind-port"]
    return replace(s, rebinding=replace(s.rebinding, first=0.2, every=1.0))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = {"1k.bin": KB, "5k.bin": 5 * KB, "10k.bin": 10 * KB, "1m.bin": MB}
    files |= {f"hs{i}.bin": KB for i in range(HANDSHAKES)}
    return make_tree(tmp_path_factory.mktemp("peers"), files)


def summary(run: CaseRun) -> dict[str, object]:
    """The aioquic client's JSON summary (its last line)."""
    for line in reversed(run.output.splitlines()):
        if line.startswith("{"):
            got = json.loads(line)
            assert isinstance(got, dict)
            return got
    raise AssertionError(run.output[-2000:])


def server_packets(run: CaseRun) -> list[PacketType | None]:
    return [p.packet_type for p in packets(r for r in run.records if r.direction == TO_CLIENT)]


def client_packets(run: CaseRun) -> list[PacketType | None]:
    return [p.packet_type for p in packets(r for r in run.records if r.direction == TO_SERVER)]


def fate_count(run: CaseRun, fate: str) -> int:
    total = 0
    for direction in (TO_SERVER, TO_CLIENT):
        got = run.summary[direction]
        assert isinstance(got, dict)
        total += int(got.get(fate, 0))
    return total


# ----------------------------------------------------------------------- the checks


def check_retry(run: CaseRun, client: str) -> None:
    assert PacketType.RETRY in server_packets(run)
    assert count_handshakes(run.records) == 1
    if client == "aioquic":
        assert 'RETRY {"retry_count": 1}' in run.output


def _check_resumed(run: CaseRun, client: str, zerortt: bool) -> None:
    assert count_handshakes(run.records) == 2
    first, second = client_hello(run.records, 0), client_hello(run.records, 1)
    assert first is not None and first.pre_shared_key is None
    assert second is not None and second.pre_shared_key is not None  # RFC 9846 §4.2.11
    assert second.early_data is zerortt
    early = client_packets(run).count(PacketType.ZERO_RTT)
    assert (early > 0) if zerortt else (early == 0)
    if client == "aioquic":
        got = summary(run)
        assert got["resumed"] == [False, True]
        assert got["early_data"] == [False, zerortt]


def check_resumption(run: CaseRun, client: str) -> None:
    _check_resumed(run, client, zerortt=False)


def check_zerortt(run: CaseRun, client: str) -> None:
    _check_resumed(run, client, zerortt=True)


def check_keyupdate(run: CaseRun, client: str) -> None:
    phases = key_phases(run.records, read_keylog(run.keylog))
    assert phases["client"][1] > 0 and phases["server"][1] > 0, phases


def check_chacha20(run: CaseRun, client: str) -> None:
    chacha = CipherSuite.TLS_CHACHA20_POLY1305_SHA256
    hello = client_hello(run.records)
    assert hello is not None and hello.cipher_suites == (chacha,)
    phases = key_phases(run.records, read_keylog(run.keylog), chacha)
    assert phases["client"][0] > 0 and phases["server"][0] > 0


def check_v2(run: CaseRun, client: str) -> None:
    sent = packets(run.records)
    first = next(p for p in sent if not p.from_server and p.version)
    assert first.version == QuicVersion.VERSION_1  # the client starts on v1
    served = [p for p in sent if p.from_server and p.version]
    assert {p.version for p in served if p.packet_type is PacketType.HANDSHAKE} == {
        QuicVersion.VERSION_2
    }  # upgraded, no round trip
    # before it has the whole ClientHello (two datagrams with our client's key shares)
    # the server cannot choose: aioquic acknowledges the first one in v1 (RFC 9368 §2.3);
    # once on v2 it never goes back
    versions = [p.version for p in served]
    start = versions.index(QuicVersion.VERSION_2)
    assert set(versions[:start]) <= {QuicVersion.VERSION_1}
    assert set(versions[start:]) == {QuicVersion.VERSION_2}, versions
    if client == "aioquic":
        assert summary(run)["versions"] == [QuicVersion.VERSION_2]


def check_moved(run: CaseRun, client: str) -> None:
    # the server followed the client to another address (as the proxy's NAT shows it)
    assert len({r.nat for r in run.records if r.direction == TO_CLIENT}) >= 2


def check_migration(run: CaseRun, client: str) -> None:
    assert run.summary["flows"] == 2  # the client used a second socket
    check_moved(run, client)
    if client == "aioquic":
        assert summary(run)["migrated"] is True


def check_rebinding(run: CaseRun, client: str) -> None:
    assert isinstance(run.summary["rebinds"], int) and run.summary["rebinds"] >= 1
    check_moved(run, client)


def check_lost(run: CaseRun, client: str) -> None:
    assert fate_count(run, "lost") > 0


def check_corrupted(run: CaseRun, client: str) -> None:
    assert fate_count(run, "corrupted") > 0


@dataclass(frozen=True)
class Case:
    testcase: str  # the name the runner gives the endpoints
    scenario: Callable[[], Scenario]
    files: tuple[str, ...]
    check: Callable[[CaseRun, str], None]
    handshakes: int = 1
    seed: int = 0


SMALL = ("1k.bin", "5k.bin", "10k.bin")
MULTI = tuple(f"hs{i}.bin" for i in range(HANDSHAKES))
CASES: dict[str, Case] = {
    "retry": Case("retry", lambda: network("simple-p2p"), SMALL, check_retry),
    "resumption": Case(
        "resumption", lambda: network("simple-p2p"), SMALL, check_resumption, handshakes=2
    ),
    "zerortt": Case("zerortt", lambda: network("simple-p2p"), SMALL, check_zerortt, handshakes=2),
    "keyupdate": Case("keyupdate", lambda: network("simple-p2p"), ("1m.bin",), check_keyupdate),
    "chacha20": Case("chacha20", lambda: network("simple-p2p"), ("1m.bin",), check_chacha20),
    "v2": Case("v2", lambda: network("simple-p2p"), ("1m.bin",), check_v2),
    "connectionmigration": Case(
        "connectionmigration", lambda: network("simple-p2p"), ("1m.bin",), check_migration
    ),
    "rebind-port": Case("rebind-port", rebinding, ("1m.bin",), check_rebinding),
    "handshakeloss": Case(
        "multiconnect",
        lambda: network("handshakeloss"),
        MULTI,
        check_lost,
        handshakes=HANDSHAKES,
        seed=3,
    ),
    "transferloss": Case(
        "transfer", lambda: network("transferloss"), ("1m.bin",), check_lost, seed=1
    ),
    "handshakecorruption": Case(
        "multiconnect",
        lambda: network("handshakecorruption"),
        MULTI,
        check_corrupted,
        handshakes=HANDSHAKES,
        seed=4,
    ),
    "transfercorruption": Case(
        "transfer", lambda: network("transfercorruption"), ("1m.bin",), check_corrupted, seed=2
    ),
}


@pytest.mark.parametrize(("server", "client"), DIRECTIONS, ids=["aioquic-client", "aioquic-server"])
@pytest.mark.parametrize("name", list(CASES))
async def test_case_against_aioquic(
    tree: Path, tmp_path: Path, name: str, server: str, client: str
) -> None:
    pytest.importorskip("aioquic")
    case = CASES[name]
    run = await run_case(
        tree, case.testcase, case.scenario(), case.files, seed=case.seed, server=server,
        client=client, run_dir=tmp_path, timeout=60,
    )  # fmt: skip
    assert run.status == 0, run.output[-3000:]
    assert run.files_ok()
    assert count_handshakes(run.records) == case.handshakes
    case.check(run, client)


async def test_v2_check_can_fail(tree: Path, tmp_path: Path) -> None:
    # aioquic offers v2 by default (so the v2 rows pass with its defaults too); our
    # client on a plain "transfer" stays on v1, and the check says so
    pytest.importorskip("aioquic")
    run = await run_case(
        tree, "transfer", network("simple-p2p"), ["1k.bin"], server="aioquic", run_dir=tmp_path
    )
    assert run.status == 0 and run.files_ok()
    with pytest.raises((AssertionError, ValueError)):
        check_v2(run, "ours")
