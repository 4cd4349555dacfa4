"""The harness's bookkeeping, and one real end-to-end row with a missing peer.

Nothing here asserts a speed: the end-to-end test checks that a row runs through real
client and server processes, that its numbers reach the report, and that a peer whose
venv is missing is reported "not available" without failing the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.common import RESUME_TEXT
from benchmarks.harness import Cell, Outcome, ratio, summarize
from benchmarks.peers import environments
from benchmarks.rows import Metric, Target, build_rows

THROUGHPUT = Metric("value", "throughput", "MB/s", True)
LATENCY = Metric("value", "latency", "ms", False)
SERIES = Metric("slices", "rate per slice", "MB/s", True, series=True)


def _cell(*values: object) -> Cell:
    cell = Cell()
    for value in values:
        if isinstance(value, str):
            cell.outcomes.append(Outcome(error=value))
        else:
            cell.outcomes.append(Outcome(result={"value": value, "slices": value}))
    return cell


def test_ratio_is_ours_over_peer_and_knows_which_way_is_better() -> None:
    assert ratio(THROUGHPUT, 20.0, 10.0) == "2.00x (better)"
    assert ratio(THROUGHPUT, 5.0, 10.0) == "0.50x (worse)"
    assert ratio(LATENCY, 20.0, 10.0) == "2.00x (worse)"
    assert ratio(LATENCY, 5.0, 10.0) == "0.50x (better)"
    assert ratio(THROUGHPUT, 50, 50) == "1.00x (same)"
    assert ratio(THROUGHPUT, None, 10.0) == "—"
    assert ratio(SERIES, [1.0], [2.0]) == "—"


def test_summary_is_the_median_of_the_successful_runs() -> None:
    median, text = summarize(_cell(1.0, 5.0, 3.0), THROUGHPUT)
    assert median == 3.0
    assert text == "3.00 (1.00..5.00, 3/3 ok)"
    median, text = summarize(_cell(2.0, "ERROR boom", 4.0), THROUGHPUT)
    assert median == 3.0 and text.endswith("2/3 ok)")
    median, text = summarize(_cell("ERROR a", "ERROR b"), THROUGHPUT)
    assert median is None and text == "failed (2/2)"
    assert summarize(None, THROUGHPUT) == (None, "n/a")


def test_paired_ratios_are_taken_round_by_round() -> None:
    # a machine that slowed down 2x after the first round: each stack's own runs
    # spread 2x, the comparison within each round does not
    ours, peer = _cell(3.0, 6.0, "ERROR x", 6.2), _cell(4.0, 8.0, 8.0, "ERROR y")
    assert harness.paired_ratios(ours, peer, LATENCY) == [0.75, 0.75]
    assert harness.paired_ratios(ours, None, LATENCY) == []
    assert harness.paired_ratios(_cell([1.0]), _cell([2.0]), SERIES) == []
    assert harness.paired_ratios(_cell(1.0), _cell(0.0), LATENCY) == []


def test_the_detail_table_gives_the_range_of_the_ratios_per_round() -> None:
    args = harness.parse_args(["--quick", "--rows", "handshake", "--profiles", "default"])
    (row,) = build_rows(args)
    results: harness.Results = {
        ("handshake", "default", "ours"): _cell(3.0, 6.0, 4.0),
        ("handshake", "default", "aioquic"): _cell(4.0, 12.0, 5.0),
    }
    lines = harness.render_row(row, results, ["default"])
    (aioquic,) = [line for line in lines if "aioquic" in line]
    # medians 4.0 and 5.0: 0.80x; round by round 0.75, 0.50, 0.80
    assert aioquic.endswith("| 0.80x (better); per round 0.50..0.80x |"), aioquic
    (qh3,) = [line for line in lines if "qh3" in line]
    assert qh3.endswith("| — |"), qh3  # no runs of qh3: no ratio, no pairs


def test_series_median_is_taken_slice_by_slice() -> None:
    median, _ = summarize(_cell([1.0, 10.0], [3.0, 30.0], [2.0, 20.0, 99.0]), SERIES)
    assert median == [2.0, 20.0]


def test_quick_rows_cover_the_issue_table(tmp_path: Path) -> None:
    args = harness.parse_args(["--quick"])
    rows = {row.key: row for row in build_rows(args)}
    assert list(rows) == [
        "quic-bulk",
        "h3-get",
        "handshake",
        "resume",
        "wt-echo",
        "wt-dgram",
        "wt-sessions",
        "wt-long",
    ]
    assert {t.stack for t in rows["quic-bulk"].targets} == {"ours", "aioquic", "qh3"}
    assert {t.stack for t in rows["wt-echo"].targets} == {"ours", "pwt021", "aioquic"}
    # the handshake: also x25519 for everyone on asyncio (like for like), and the
    # default with certificate verification on (test_verified_profile.py)
    assert rows["handshake"].profiles == ("default", "verified", "matched", "best")
    # resumption (issue 10's "session tickets for repeat clients"): the same profiles,
    # every stack's server issuing tickets
    assert rows["resume"].profiles == ("default", "matched", "best")
    assert {t.stack for t in rows["resume"].targets} == {"ours", "aioquic", "qh3"}
    assert rows["resume"].server_args == ("--tickets",)
    # every row: each stack in its default configuration and at its best (issue 10:
    # "state both"), the burst and the long echo included
    for key in ("quic-bulk", "h3-get", "wt-echo", "wt-dgram", "wt-sessions", "wt-long"):
        assert rows[key].profiles == ("default", "best"), key


def test_best_profile_runs_each_stack_on_its_faster_loop(tmp_path: Path) -> None:
    # aioquic and qh3 pace on loop.time(), which uvloop rounds to milliseconds: in the
    # bulk rows their best loop is asyncio (rows.BULK_BEST_LOOPS); elsewhere uvloop.
    args = harness.parse_args(["--quick"])
    rows = {row.key: row for row in build_rows(args)}
    runner = harness.Runner(args, tmp_path, environments(tmp_path))

    def loop(row: str, stack: str, profile: str, role: str = "client") -> str:
        command = runner._base(rows[row], Target(stack, stack), role, profile)
        return command[command.index("--loop") + 1]

    for row in ("quic-bulk", "h3-get"):
        for role in ("client", "server"):
            assert loop(row, "aioquic", "best", role) == "asyncio"
            assert loop(row, "qh3", "best", role) == "asyncio"
            assert loop(row, "ours", "best", role) == "uvloop"
        assert loop(row, "aioquic", "default") == "asyncio"
    assert loop("wt-echo", "aioquic", "best") == "uvloop"
    assert loop("wt-dgram", "aioquic", "best") == "uvloop"
    assert loop("handshake", "aioquic", "matched") == "asyncio"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_pin_puts_server_and_client_on_their_own_cpu(tmp_path: Path) -> None:
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    unpinned = harness.Runner(harness.parse_args([]), tmp_path, environments(tmp_path))
    assert unpinned.affinity("server") is None and unpinned.affinity("client") is None
    pinned = harness.Runner(harness.parse_args(["--pin"]), tmp_path, environments(tmp_path))
    for role, cpu in (("server", 0), ("client", 1)):
        done = subprocess.run(
            probe, preexec_fn=pinned.affinity(role), capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == f"[{cpu}]"


def test_udp_drops_are_read_from_the_kernel_table(tmp_path: Path) -> None:
    snmp = tmp_path / "snmp"
    snmp.write_text(
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "Udp: 17506245 55108 163267 15824112 163201 0\n"
        "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "UdpLite: 0 0 0 0 7 0\n"
    )
    assert harness.udp_receive_drops(str(snmp)) == 163201
    assert harness.udp_receive_drops(str(tmp_path / "missing")) is None
    snmp.write_text("Udp: InDatagrams\nUdp: 5\n")
    assert harness.udp_receive_drops(str(snmp)) is None


def test_missing_venv_is_reported_with_the_commands_that_create_it(tmp_path: Path) -> None:
    env = environments(tmp_path)["pwt021"]
    reason = harness.availability(env)
    assert reason is not None
    assert str(tmp_path / "pwt021") in reason and "pywebtransport==0.21.1" in reason


def test_one_real_row_and_an_unavailable_peer(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = [
        "--rows",
        "wt-dgram",
        "--stacks",
        "ours,pwt021",
        "--profiles",
        "default",
        "--repeat",
        "2",
        "--dgram-seconds",
        "1.0",  # long enough for round trips even on a loaded machine
        "--venvs",
        str(tmp_path),  # no venvs there: pywebtransport 0.21.1 is not available
        "--json",
        str(tmp_path / "runs.json"),
    ]
    with contextlib.redirect_stdout(out):
        status = harness.main(argv)
    report = out.getvalue()
    assert status == 0, report
    assert "### WT datagram ping-pong" in report
    line = next(row for row in report.splitlines() if row.startswith("| round trips"))
    ours = line.split("|")[3]
    assert "2/2 ok" in ours and float(ours.split()[0].replace(",", "")) > 0
    assert "not available: pywebtransport 0.21.1" in report
    assert "- ours: ours: default ServerConfig" in report and "(wt-dgram/default)" in report
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [run["target"] for run in runs] == ["ours", "ours"]
    if harness.udp_receive_drops() is not None:  # Linux: each run carries its drop count
        assert all(run["result"]["udp_drops"] >= 0 for run in runs)


def test_the_resume_row_resumes_every_timed_handshake(tmp_path: Path) -> None:
    # ours and aioquic (both in this environment): each timed handshake resumed (an
    # adapter fails its run otherwise), the servers started with --tickets
    out = io.StringIO()
    argv = ["--rows", "resume", "--stacks", "ours,aioquic", "--profiles", "default"]
    argv += ["--repeat", "1", "--handshakes", "5", "--json", str(tmp_path / "runs.json")]
    with contextlib.redirect_stdout(out):
        status = harness.main(argv)
    report = out.getvalue()
    assert status == 0, report
    assert "### handshake resumed with a session ticket, 5 sequential" in report
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert sorted(run["target"] for run in runs) == ["aioquic", "ours"]
    for run in runs:
        result = run["result"]
        assert result["workload"] == "resume" and result["count"] == 5, run
        assert result["config"].endswith(RESUME_TEXT) and result["value"] > 0
