"""Path MTU discovery (on by default) on real sockets, through the impairment proxy.

The proxy drops every datagram whose UDP payload is above its ``mtu`` (as a router does
with Don't Fragment set). Our endpoints (``python -m quic.interop``) run with the
default configuration, so they probe up to 1452 bytes once the handshake is confirmed.

* A 1280-byte IPv4 path (UDP payloads up to 1252): our side's probes above it are lost
  and our server's search settles within 16 bytes below 1252, where the rest of the
  download stays; the 2 MB file arrives byte-exact,
  with ours and aioquic in both roles (aioquic sends 1200-byte packets only, so its
  side of the capture never exceeds 1200 and it never needs to receive our probes
  back: nothing assumes the two directions have the same MTU).
* A black hole: the path MTU drops to 1252 bytes 0.6 s into a 2 MB download over a
  10 Mbit/s link, after our server reached 1452. Full-sized packets are lost until the
  server falls back to 1200 and searches again below; the file still arrives
  byte-exact, and the server's datagrams that the path carried after the drop are all
  within it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from quic.conn_pmtu import SEARCH_PRECISION
from quic.interop.impair import SCENARIOS, Fate, Scenario
from quic.interop.proxy import TO_CLIENT, TO_SERVER
from tests.support.interop_run import CaseRun, make_tree, run_case

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

MB = 1 << 20
PATH = 1280 - 20 - 8  # an IPv4 path of MTU 1280: UDP payloads up to 1252 bytes
STREAM_HEADER_MAX = 1 + 8 + 8 + 2  # type, stream ID, offset, length (quic/conn_streams.py)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("pmtu"), {"1m.bin": MB, "2m.bin": 2 * MB})


def with_mtu(scenario: Scenario, mtu: int, after: float = 0.0) -> Scenario:
    return replace(
        scenario,
        to_server=replace(scenario.to_server, mtu=mtu, mtu_from=after),
        to_client=replace(scenario.to_client, mtu=mtu, mtu_from=after),
    )


def sizes(run: CaseRun, direction: str, after: float = 0.0) -> list[int]:
    """UDP payload sizes the path carried in ``direction`` (from ``after`` seconds)."""
    return [
        r.size
        for r in run.records
        if r.direction == direction and not r.fate.dropped and r.arrived >= after
    ]


def too_big(run: CaseRun, direction: str) -> int:
    return sum(1 for r in run.records if r.direction == direction and r.fate is Fate.TOO_BIG)


@pytest.mark.parametrize(
    ("server", "client"),
    [("ours", "ours"), ("ours", "aioquic"), ("aioquic", "ours")],
    ids=["ours-both", "aioquic-client", "aioquic-server"],
)
async def test_a_1280_path_converges_with_every_peer(
    tree: Path, tmp_path: Path, server: str, client: str
) -> None:
    if "aioquic" in (server, client):
        pytest.importorskip("aioquic")
    # the runner's 10 Mbit/s link: the 2 MB download outlasts the search (~15 probes,
    # one at a time, most of them lost)
    scenario = with_mtu(SCENARIOS["simple-p2p"], PATH)
    run = await run_case(
        tree, "transfer", scenario, ["2m.bin"], server=server, client=client, run_dir=tmp_path
    )
    assert run.status == 0, run.output[-3000:]
    assert run.files_ok()  # byte-exact
    for direction, peer in ((TO_CLIENT, server), (TO_SERVER, client)):
        carried = sizes(run, direction)
        if peer == "aioquic":  # 1200-byte packets, no probes
            assert too_big(run, direction) == 0 and max(carried) <= 1200
            continue
        assert too_big(run, direction) >= 3  # ours probed above the path: lost
        assert max(carried) <= PATH
        if direction == TO_CLIENT:
            # the server, sending the file, settled just below the path MTU and the
            # rest of the download used that size (the client, sending ACKs only,
            # may still be searching when the download ends)
            assert max(carried) > PATH - SEARCH_PRECISION  # the last probe that passed
            full = [n for n in carried if n > 1200]
            assert len(full) > 300
            common, count = Counter(full[-300:]).most_common(1)[0]
            # one size to the end; a STREAM frame reserves room for its longest header
            assert count >= 240 and max(carried) - STREAM_HEADER_MAX <= common


async def test_a_black_hole_mid_download_falls_back_and_completes(
    tree: Path, tmp_path: Path
) -> None:
    drop_at = 0.6
    scenario = with_mtu(SCENARIOS["simple-p2p"], PATH, after=drop_at)  # 10 Mbit/s
    run = await run_case(tree, "transfer", scenario, ["2m.bin"], run_dir=tmp_path)
    assert run.status == 0, run.output[-3000:]
    assert run.files_ok()  # byte-exact, no stall
    before = [s for s in sizes(run, TO_CLIENT) if s > PATH]
    assert before and max(before) == 1452  # the server had reached 1452 before the drop
    assert too_big(run, TO_CLIENT) > 0  # full-sized packets fell into the black hole
    after = sizes(run, TO_CLIENT, after=drop_at)
    assert len(after) > 500 and max(after) <= PATH  # the rest of the download
