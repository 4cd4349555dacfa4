"""Instructions per unit of protocol work, counted by callgrind: a measure that does not
move with the machine's load.

Theory of operation
-------------------
CPU time on a shared 2-core VM moves by ±25% between runs of the same deterministic
work (the in-memory burst: 290-450 us per echo), so a change that saves 5% cannot be
told from noise by timing it. The number of instructions the work executes is the same
from run to run to within 0.01% (with ``PYTHONHASHSEED`` fixed): it measures what a
change to the protocol code does to its cost, not the machine.

``python -m benchmarks.micro.instructions WORKLOAD`` runs this module again under
``valgrind --tool=callgrind`` with collection off until the workload's timed part,
which runs inside :func:`functools.reduce` (a C function callgrind can toggle on by
name, ``functools_reduce``): the set-up (imports, certificates, handshakes before a
burst) is emulated but not counted. The workloads, both endpoints in this process, no
sockets and no event loop:

* ``burst``: :mod:`benchmarks.micro.bench_burst_inmem`, ``--sessions`` connections
  after their handshakes and a rest, one 64-byte echo on each at once (the QUIC layer
  of issue 10's 1,000-session burst); the unit is one echo, both sides;
* ``handshake``: :mod:`benchmarks.micro.bench_handshake`, ``--count`` handshakes of a
  new client endpoint with one server endpoint (default key shares, or
  ``--key-shares x25519``; ``--verify``: the client verifies the server's chain), each
  with its close; the unit is one handshake, both sides. ``--keys-ahead``: the
  ephemeral keys are made before each handshake, uncounted, as the event-loop driver
  makes them while idle (:mod:`quic.aio.ahead`): what remains is the handshake's own
  work.

Printed: one JSON line with the workload, the units, the instructions counted and the
instructions per unit. ``--keep FILE`` keeps callgrind's output for
``callgrind_annotate`` (C functions only: the interpreter's time is one function).
Valgrind runs the interpreter about 50 times slower: a burst of 100 sessions takes
about a minute, most of it the uncounted handshakes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

WORKLOADS = ("burst", "handshake")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def valgrind_command(args: argparse.Namespace, out_file: str) -> list[str]:
    """The command that runs ``args``'s workload under callgrind (this module's
    ``--child`` mode), its output written to ``out_file``."""
    child = [sys.executable, "-m", "benchmarks.micro.instructions", args.workload, "--child"]
    child += ["--sessions", str(args.sessions), "--count", str(args.count)]
    child += ["--key-shares", args.key_shares, *(["--verify"] if args.verify else [])]
    child += ["--keys-ahead"] if args.keys_ahead else []
    return [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        f"--callgrind-out-file={out_file}",
        *child,
    ]


def collected(valgrind_stderr: str) -> int:
    """The instruction count callgrind reports at exit (``Collected : N``)."""
    found = _COLLECTED.findall(valgrind_stderr)
    if not found:
        raise RuntimeError(f"no instruction count in valgrind's output: {valgrind_stderr[-500:]}")
    return int(found[-1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the workload under callgrind; its instructions in all and per unit."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    units = args.sessions if args.workload == "burst" else args.count
    with tempfile.TemporaryDirectory() as scratch:
        out_file = args.keep or os.path.join(scratch, "callgrind.out")
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts every run
        done = subprocess.run(
            valgrind_command(args, out_file),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the workload failed under valgrind: {done.stderr[-2000:]}")
    count = collected(done.stderr)
    return {
        "workload": args.workload,
        "units": units,
        "instructions": count,
        "per_unit": round(count / units),
        "key_shares": args.key_shares if args.workload == "handshake" else None,
        "verify": args.verify if args.workload == "handshake" else None,
        "keys_ahead": args.keys_ahead if args.workload == "handshake" else None,
    }


def run_child(args: argparse.Namespace) -> None:
    """The workload, its timed part inside :func:`functools.reduce` (counted)."""
    if args.workload == "burst":
        from benchmarks.micro.bench_burst_inmem import prepared

        bench = prepared(args.sessions, 1.5)
        functools.reduce(bench.burst, [0, 0])  # one call: the burst
        if len(bench.done) != args.sessions:
            raise SystemExit(f"{len(bench.done)} echoes of {args.sessions} completed")
        return
    from benchmarks.micro import bench_handshake
    from quic.tls.groups import KEYS_AHEAD

    config = bench_handshake.parse_args(
        ["--key-shares", args.key_shares, *(["--verify"] if args.verify else [])]
    )
    server = bench_handshake.new_server(config)
    now = 0.0
    for _ in range(3):  # the server's first handshakes fill its caches: not counted
        _, now = bench_handshake.handshake_once(server, config, now)

    def one(at: float, _: int) -> float:
        return bench_handshake.handshake_once(server, config, at)[1]

    if args.keys_ahead:  # each handshake counted alone: the refill before it is not
        with bench_handshake.both_sides_ahead(True):
            for _ in range(args.count):
                KEYS_AHEAD.refill()
                now = functools.reduce(one, [0], now)
    else:
        functools.reduce(one, range(args.count), now)
    if server.endpoint.connections:
        raise SystemExit("the server still holds connections after the handshakes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro.instructions")
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--sessions", type=int, default=100, help="burst: connections")
    parser.add_argument("--count", type=int, default=20, help="handshake: handshakes")
    parser.add_argument("--key-shares", choices=("default", "x25519"), default="default")
    parser.add_argument(
        "--verify", action="store_true", help="handshake: the client verifies the chain"
    )
    parser.add_argument(
        "--keys-ahead",
        action="store_true",
        help="handshake: the ephemeral keys made ahead, uncounted (quic.aio.ahead)",
    )
    parser.add_argument("--keep", help="keep callgrind's output in this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
    else:
        print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
