"""benchmarks.micro.instructions: the workloads it counts, the command it runs, the count
it reads; under valgrind (slow: about 25 s a run), two runs count the same."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from benchmarks.micro import instructions

VALGRIND_TAIL = """==4242== Events    : Ir
==4242== Collected : 13628262
==4242==
==4242== I   refs:      13,628,262
"""


def test_the_count_is_read_from_valgrinds_report() -> None:
    assert instructions.collected(VALGRIND_TAIL) == 13_628_262
    with pytest.raises(RuntimeError, match="no instruction count"):
        instructions.collected("==1== error: something else\n")


def test_the_command_counts_only_inside_reduce_and_passes_the_workload_on() -> None:
    args = instructions.parse_args(["handshake", "--count", "7", "--key-shares", "x25519"])
    command = instructions.valgrind_command(args, "/tmp/out")
    assert command[:5] == [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        "--callgrind-out-file=/tmp/out",
    ]
    child = command[5:]
    assert child[1:4] == ["-m", "benchmarks.micro.instructions", "handshake"]
    assert "--child" in child
    assert child[child.index("--count") + 1] == "7"
    assert child[child.index("--key-shares") + 1] == "x25519"
    assert instructions.parse_args(child[3:]).child
    assert "--verify" not in child
    verifying = instructions.parse_args(["handshake", "--verify"])
    assert instructions.parse_args(instructions.valgrind_command(verifying, "/o")[8:]).verify
    assert "--keys-ahead" not in child
    ahead = instructions.parse_args(["handshake", "--keys-ahead"])
    assert instructions.parse_args(instructions.valgrind_command(ahead, "/o")[8:]).keys_ahead


@pytest.mark.parametrize(
    "argv",
    [
        ["burst", "--sessions", "12"],
        ["handshake", "--count", "2"],
        ["handshake", "--verify"],
        ["handshake", "--count", "2", "--keys-ahead"],
    ],
    ids=["burst", "hs", "hs-verify", "hs-keys-ahead"],
)
def test_each_workload_runs_to_its_end_without_valgrind(argv: list[str]) -> None:
    # the child's own checks: every echo completed, no connection left on the server
    instructions.main([*argv, "--child"])


def test_a_failed_workload_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Done:
        returncode = 1
        stderr = "Traceback: boom"

    monkeypatch.setattr(shutil, "which", lambda _name: "/usr/bin/valgrind")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(RuntimeError, match="boom"):
        instructions.measure(instructions.parse_args(["burst", "--sessions", "3"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv", [["burst", "--sessions", "10"], ["handshake", "--count", "2"]], ids=["burst", "hs"]
)
def test_two_runs_under_valgrind_count_the_same(argv: list[str]) -> None:
    first = instructions.measure(instructions.parse_args(argv))
    second = instructions.measure(instructions.parse_args(argv))
    assert first["per_unit"] > 100_000
    assert abs(first["instructions"] - second["instructions"]) <= first["instructions"] / 1000
